//! Hostile and damaged GGUF files: a committed corpus of crafted files, each with the one-line
//! error it must give, and a mutation fuzzer over a tiny valid model. Nothing may panic, hang
//! or allocate what the file merely claims.

use crate::common;
use axiscope::engine::{Backend, Hooks, Model};
use common::tiny::tiny_model;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Records the largest single allocation each thread asks for, so a test can show that a
/// header's claims (string lengths, counts, tensor sizes) never turn into allocations.
struct Biggest;

thread_local! {
    static BIGGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Biggest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = BIGGEST.try_with(|b| b.set(b.get().max(l.size())));
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let _ = BIGGEST.try_with(|b| b.set(b.get().max(l.size())));
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = BIGGEST.try_with(|b| b.set(b.get().max(new)));
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Biggest = Biggest;

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
    let mut align = good.clone();
    // candle's reader divides by this key unchecked; an appended key/value does it.
    let kvs = u64::from_le_bytes(align[16..24].try_into().unwrap());
    patch_u64(&mut align, 16, kvs + 1);
    let mut kv = ("general.alignment".len() as u64).to_le_bytes().to_vec();
    kv.extend_from_slice(b"general.alignment");
    kv.extend_from_slice(&4u32.to_le_bytes()); // u32
    kv.extend_from_slice(&0u32.to_le_bytes());
    align.splice(24..24, kv);
    out.push(("zero_alignment.gguf", align, "general.alignment is 0"));
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

/// Regenerates tests/corpus (run with `cargo test --release --test inputs gguf_robustness -- --ignored`).
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

/// What a batch of hostile inputs did: loads, errors, the slowest input, the biggest
/// allocation relative to the input.
#[derive(Default)]
struct Tally {
    runs: usize,
    loaded: usize,
    kinds: BTreeMap<String, usize>,
    /// Error messages with numbers and quoted names masked: the distinct checks reached.
    distinct: BTreeSet<String>,
    slowest: Duration,
    worst_alloc_over_input: isize,
    /// Largest single allocation as a multiple of the input's size.
    worst_alloc_ratio: f64,
}

impl Tally {
    /// Loads `bytes` (parse only: the header's claims against the file), catching panics.
    fn load(&mut self, bytes: Vec<u8>) {
        let len = bytes.len();
        BIGGEST.with(|b| b.set(0));
        let t0 = Instant::now();
        let outcome = std::panic::catch_unwind(move || Model::from_bytes(bytes).map(drop));
        self.slowest = self.slowest.max(t0.elapsed());
        let biggest = BIGGEST.with(|b| b.get());
        self.worst_alloc_over_input = self
            .worst_alloc_over_input
            .max(biggest as isize - len as isize);
        self.worst_alloc_ratio = self
            .worst_alloc_ratio
            .max(biggest as f64 / len.max(1) as f64);
        self.runs += 1;
        match outcome {
            Err(_) => panic!("input {} panicked the loader", self.runs),
            Ok(Ok(())) => self.loaded += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert_eq!(msg.lines().count(), 1, "multi-line error: {msg}");
                *self
                    .kinds
                    .entry(msg.split(':').next().unwrap_or("").to_string())
                    .or_default() += 1;
                self.distinct.insert(mask(&msg));
            }
        }
    }

    fn report(&self, what: &str) {
        eprintln!(
            "{what}: {} inputs, {} loaded, 0 panics, {} distinct errors in {} kinds {:?}; slowest {:?}, biggest allocation beyond the input {} bytes ({:.2} x the input)",
            self.runs,
            self.loaded,
            self.distinct.len(),
            self.kinds.len(),
            self.kinds,
            self.slowest,
            self.worst_alloc_over_input,
            self.worst_alloc_ratio
        );
    }
}

/// Masks digits and quoted text, so "tensor 'a' needs 12 bytes" and "tensor 'b' needs 9
/// bytes" count as one check.
fn mask(msg: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in msg.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            _ if quoted => {}
            '0'..='9' => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Iterations, raised with AXISCOPE_FUZZ_SCALE=N for a long run (N times the CI count).
fn iterations(ci: usize) -> usize {
    let scale = std::env::var("AXISCOPE_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1);
    ci * scale.max(1)
}

/// One random edit of the first `header` bytes of `b`: bit flips, a random (often small)
/// u64 written over a length or count, a cut, or inserted junk.
fn mutate(b: &mut Vec<u8>, header: usize, rng: &mut axiscope::engine::sampler::Rng) {
    let header = header.min(b.len());
    match rng.next_u64() % 5 {
        0 => {
            for _ in 0..1 + rng.next_u64() % 8 {
                let i = (rng.next_u64() as usize) % header;
                b[i] ^= 1 << (rng.next_u64() % 8);
            }
        }
        1 => {
            let i = (rng.next_u64() as usize) % (header - 8);
            let v = rng.next_u64() >> (rng.next_u64() % 64);
            b[i..i + 8].copy_from_slice(&v.to_le_bytes());
        }
        2 => {
            // A small value over an aligned word: lengths and counts are u64 and u32.
            let i = ((rng.next_u64() as usize) % (header - 8)) & !3;
            let v = [0, 1, 2, 3, u32::MAX as u64, u64::MAX][rng.next_u64() as usize % 6];
            b[i..i + 8].copy_from_slice(&v.to_le_bytes());
        }
        3 => b.truncate((rng.next_u64() as usize) % b.len()),
        _ => {
            let i = (rng.next_u64() as usize) % header;
            let junk: Vec<u8> = (0..1 + rng.next_u64() % 64)
                .map(|_| rng.next_u64() as u8)
                .collect();
            b.splice(i..i, junk);
        }
    }
}

/// Offset where tensor data starts in a valid file (candle's reader, independent of ours).
fn data_offset(bytes: &[u8]) -> usize {
    candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(bytes))
        .unwrap()
        .tensor_data_offset as usize
}

/// Mutations of the real default model's header. Its first 2 MB (metadata with the 49,152-token
/// vocabulary, the merges and the chat template, all tensor infos, the first tensors) are
/// mutated anywhere; most of these fail at the tensor bounds check. A smaller number of
/// mutations go to the header of the whole file, so the configuration, the tokenizer and the
/// template readers see damaged real metadata too.
#[test]
fn mutated_real_model_headers_never_panic() {
    let path = common::default_model_path();
    if !path.exists() {
        eprintln!("skipped: {} is missing", path.display());
        return;
    }
    let real = common::model_bytes(&path);
    let header = data_offset(&real);
    let mut rng = axiscope::engine::sampler::Rng::new(7);
    let mut prefix = Tally::default();
    let head = real[..(2 << 20).min(real.len())].to_vec();
    for _ in 0..iterations(600) {
        let mut b = head.clone();
        mutate(&mut b, header, &mut rng);
        prefix.load(b);
    }
    prefix.report("real model, first 2 MB mutated");
    let mut whole = Tally::default();
    for _ in 0..iterations(20) {
        let mut b = real.clone();
        mutate(&mut b, header, &mut rng);
        whole.load(b);
    }
    whole.report("real model, whole file with a mutated header");
    for t in [&prefix, &whole] {
        // No hang: the slowest parse of a 98 MB file took 1.2 s alone, 7.7 s while a web
        // build ran on the same 2 cores.
        assert!(t.slowest < Duration::from_secs(30), "{:?}", t.slowest);
        // Claims never become allocations beyond the bytes really there: a string length
        // raised to 50 MB inside a 98 MB file does read 50 MB (and up to 3x that when the
        // bytes are not UTF-8 and get replacement characters), never the 2^60 it may claim.
        // Cut files reach 4.2x: the parsed vocabulary costs more than its bytes on disk.
        assert!(t.worst_alloc_ratio < 8.0, "{}", t.worst_alloc_ratio);
    }
    assert!(
        prefix.worst_alloc_over_input < 16 << 20,
        "{}",
        prefix.worst_alloc_over_input
    );
    assert!(prefix.distinct.len() >= 8, "{:?}", prefix.distinct);
    assert!(whole.distinct.len() >= 3, "{:?}", whole.distinct);
}

/// A GGUF header made up from scratch: random version, counts, keys, value types (known or
/// not), lengths (from honest to absurd), nested arrays and tensor infos.
fn random_header(rng: &mut axiscope::engine::sampler::Rng) -> Vec<u8> {
    let mut r = || rng.next_u64();
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&[1u32, 2, 3, 3, 3, 4][r() as usize % 6].to_le_bytes());
    // A length: usually honest, sometimes a lie.
    let claim = |honest: u64, r: &mut dyn FnMut() -> u64| -> u64 {
        match r() % 8 {
            0 => r(),
            1 => honest + 1 + r() % 1000,
            2 => 1 << (r() % 64),
            _ => honest,
        }
    };
    let (n_kv, n_t) = (r() % 6, r() % 4);
    b.extend_from_slice(&claim(n_t, &mut r).to_le_bytes());
    b.extend_from_slice(&claim(n_kv, &mut r).to_le_bytes());
    let string = |b: &mut Vec<u8>, s: &[u8], r: &mut dyn FnMut() -> u64| {
        b.extend_from_slice(&claim(s.len() as u64, r).to_le_bytes());
        b.extend_from_slice(s);
    };
    let keys: [&[u8]; 6] = [
        b"general.architecture",
        b"general.alignment",
        b"llama.block_count",
        b"tokenizer.ggml.tokens",
        b"llama.context_length",
        b"x",
    ];
    for _ in 0..n_kv {
        string(&mut b, keys[r() as usize % keys.len()], &mut r);
        let ty = (r() % 14) as u32; // 13 is not a type
        b.extend_from_slice(&ty.to_le_bytes());
        match ty {
            8 => string(&mut b, b"llama", &mut r),
            9 => {
                let inner = [0u32, 4, 8, 9, 12, 99][r() as usize % 6];
                let n = r() % 5;
                b.extend_from_slice(&inner.to_le_bytes());
                b.extend_from_slice(&claim(n, &mut r).to_le_bytes());
                for _ in 0..n * 8 {
                    b.push(r() as u8);
                }
            }
            _ => b.extend_from_slice(&r().to_le_bytes()[..(r() % 9) as usize]),
        }
    }
    for i in 0..n_t {
        string(&mut b, format!("t{i}").as_bytes(), &mut r);
        let dims = claim(2, &mut r) as u32;
        b.extend_from_slice(&dims.to_le_bytes());
        for _ in 0..dims.min(6) {
            b.extend_from_slice(&claim(32, &mut r).to_le_bytes());
        }
        b.extend_from_slice(&((r() % 40) as u32).to_le_bytes());
        b.extend_from_slice(&claim(0, &mut r).to_le_bytes());
    }
    let pad = r() % 128;
    b.extend((0..pad).map(|_| r() as u8));
    b
}

#[test]
fn hand_made_headers_never_panic() {
    let mut rng = axiscope::engine::sampler::Rng::new(2026);
    let mut t = Tally::default();
    for _ in 0..iterations(5000) {
        let b = random_header(&mut rng);
        t.load(b);
    }
    t.report("hand-made headers");
    assert!(t.slowest < Duration::from_secs(1), "{:?}", t.slowest);
    assert!(
        t.worst_alloc_over_input < 1 << 20,
        "{}",
        t.worst_alloc_over_input
    );
    assert!(t.distinct.len() >= 10, "{:?}", t.distinct);
}
