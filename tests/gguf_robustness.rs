//! Hostile and damaged GGUF files: a committed corpus of crafted files, each with the one-line
//! error it must give, and a mutation fuzzer over a tiny valid model. Nothing may panic, hang
//! or allocate what the file merely claims.

mod common;
use axiscope::engine::{Backend, Hooks, Model};
use common::tiny::tiny_model;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    common::root().join("tests/corpus")
}

fn patch_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset of the tensor-info record for `name` (its u64 length prefix), found by its bytes.
fn tensor_info_at(b: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    b.windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("tensor info present")
}

/// The crafted corpus: file name, bytes, and the error text each must produce.
fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = tiny_model();
    let mut out = Vec::new();
    let mut wrong_magic = good.clone();
    wrong_magic[..4].copy_from_slice(b"GGUX");
    out.push(("wrong_magic.gguf", wrong_magic, "not a GGUF file"));
    out.push((
        "png_image.gguf",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0".to_vec(),
        "not a GGUF file",
    ));
    out.push((
        "truncated_header.gguf",
        good[..40].to_vec(),
        "damaged GGUF file",
    ));
    out.push((
        "truncated_tensor_data.gguf",
        good[..good.len() - 100].to_vec(),
        "the file is truncated",
    ));
    let mut count = good.clone();
    patch_u64(&mut count, 8, 1 << 60);
    out.push(("absurd_tensor_count.gguf", count, "damaged GGUF file"));
    let mut keylen = good.clone();
    patch_u64(&mut keylen, 24, 1 << 60);
    out.push(("absurd_metadata_length.gguf", keylen, "damaged GGUF file"));
    let mut huge = good.clone();
    let at = tensor_info_at(&huge, "output_norm.weight") + 8 + "output_norm.weight".len() + 4;
    patch_u64(&mut huge, at, 25_000_000_000);
    out.push(("huge_tensor.gguf", huge, "beyond the end of the file"));
    let arch = String::from_utf8_lossy(&good).find("llama").unwrap();
    let mut rwkv = good.clone();
    rwkv[arch..arch + 5].copy_from_slice(b"rwkv7");
    out.push((
        "unknown_architecture.gguf",
        rwkv,
        "unsupported architecture 'rwkv7'",
    ));
    let mut quant = good.clone();
    let at = tensor_info_at(&quant, "blk.0.ffn_down.weight")
        + 8
        + "blk.0.ffn_down.weight".len()
        + 4
        + 16;
    quant[at..at + 4].copy_from_slice(&10u32.to_le_bytes()); // ggml type 10 = Q2_K
    out.push(("unknown_quant_type.gguf", quant, "unsupported quantization"));
    let mut shape = good.clone();
    let at =
        tensor_info_at(&shape, "blk.1.attn_q.weight") + 8 + "blk.1.attn_q.weight".len() + 4 + 8;
    patch_u64(&mut shape, at, 32); // 64 rows become 32
    out.push((
        "inconsistent_shapes.gguf",
        shape,
        "tensor 'blk.1.attn_q.weight' has shape [32, 64], expected [64, 64]",
    ));
    out
}

/// Regenerates tests/corpus (run with `cargo test --test gguf_robustness -- --ignored`).
#[test]
#[ignore]
fn write_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes, _) in corpus() {
        std::fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}

#[test]
fn committed_corpus_gives_the_named_errors() {
    for (name, generated, expect) in corpus() {
        let bytes =
            std::fs::read(corpus_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            bytes, generated,
            "{name} differs from its generator: rerun write_corpus"
        );
        let loaded = Model::from_bytes(bytes).and_then(|m| m.cpu_backend(1));
        let err = loaded
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"))
            .to_string();
        assert!(
            err.contains(expect),
            "{name}: expected '{expect}' in '{err}'"
        );
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
    }
}

#[test]
fn tiny_model_loads_and_runs() {
    let m = Model::from_bytes(tiny_model()).unwrap();
    assert_eq!(m.config.n_layers, common::tiny::LAYERS);
    let mut b = m.cpu_backend(1).unwrap();
    let logits = b
        .forward(&[1, 2, 3], 0, &mut Hooks::recording(vec![0, 1]), false)
        .unwrap();
    assert_eq!(logits.len(), m.config.vocab);
    assert!(logits.iter().all(|v| v.is_finite()));
    assert!(matches!(
        b.forward(&[9999], 3, &mut Hooks::none(), false),
        Err(axiscope::engine::Error::Invalid(_))
    ));
    assert!(matches!(
        b.forward(&vec![5; 70], 0, &mut Hooks::none(), false),
        Err(axiscope::engine::Error::ContextOverflow { .. })
    ));
}

/// Deterministic mutations: byte flips and random u64s in the header, truncations, garbage.
#[test]
fn mutated_files_never_panic() {
    let good = tiny_model();
    let header_len = 4096.min(good.len());
    let mut rng = axiscope::engine::sampler::Rng::new(42);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let (mut loaded, runs) = (0, 3000);
    for _ in 0..runs {
        let mut b = good.clone();
        match rng.next_u64() % 4 {
            0 => {
                for _ in 0..1 + rng.next_u64() % 8 {
                    let i = (rng.next_u64() as usize) % header_len;
                    b[i] ^= 1 << (rng.next_u64() % 8);
                }
            }
            1 => {
                let i = (rng.next_u64() as usize) % (header_len - 8);
                let v = rng.next_u64() >> (rng.next_u64() % 64);
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            2 => b.truncate((rng.next_u64() as usize) % good.len()),
            _ => {
                let i = (rng.next_u64() as usize) % header_len;
                let junk: Vec<u8> = (0..1 + rng.next_u64() % 64)
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                b.splice(i..i, junk);
            }
        }
        let outcome = std::panic::catch_unwind(move || match Model::from_bytes(b) {
            Ok(m) => {
                // A mutation the loader accepts must still run, or fail cleanly.
                let r = m
                    .cpu_backend(1)
                    .and_then(|mut be| be.forward(&[1, 2], 0, &mut Hooks::none(), false));
                r.map(|_| ()).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        });
        match outcome {
            Err(_) => panic!("a mutated file panicked the loader"),
            Ok(Ok(())) => loaded += 1,
            Ok(Err(msg)) => {
                assert_eq!(msg.lines().count(), 1, "multi-line error: {msg}");
                let kind = msg.split(':').next().unwrap_or("").to_string();
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
    eprintln!(
        "{runs} mutated files: {loaded} still loaded and ran, {} distinct error kinds: {errors:?}",
        errors.len()
    );
    assert!(
        errors.len() >= 4,
        "the mutations should reach several distinct checks"
    );
}
