//! The GPU linear and embedding kernels on the real SmolLM2-135M Q4_1 weights
//! (`models/SmolLM2-135M-Instruct.Q4_1.gguf`, see docs), against candle's
//! dequantization of the same GGUF tensors. Checks the GGUF shape convention
//! (ne0 = cols contiguous) and real-world scales, which random tests cannot.
//! Skips with a visible message when the model file or a GPU adapter is absent.
#![cfg(not(target_arch = "wasm32"))]

use std::fs::File;
use std::path::PathBuf;

use axiscope::engine::gpu::embedding::embedding;
use axiscope::engine::gpu::matmul::{Linear, Tokens};
use axiscope::engine::gpu::{GpuContext, GpuMatrix, Step};
use axiscope::engine::quant::QType;
use candle_core::Device;
use candle_core::quantized::gguf_file::Content;

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Written to the raw stderr handle, which the test harness does not capture.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED gpu_model_weights: {why}");
}

#[test]
fn real_weights_match_candle() {
    let path = model_path();
    let Ok(mut file) = File::open(&path) else {
        return skip(&format!("{} not found", path.display()));
    };
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    if pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all())).is_empty() {
        return skip("no Vulkan/WebGPU adapter");
    }
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let content = Content::read(&mut file).unwrap();
    let step = Step::new(&ctx);

    for (name, want_type) in [
        ("blk.0.attn_q.weight", QType::Q4_1),
        ("blk.0.attn_k.weight", QType::Q4_1),
        ("blk.0.ffn_down.weight", QType::Q4_1),
        ("blk.29.ffn_gate.weight", QType::Q4_1),
        ("token_embd.weight", QType::Q8_0),
    ] {
        let info = &content.tensor_infos[name];
        let qt = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        let (rows, cols) = qt.shape().dims2().unwrap();
        let qtype = QType::from_ggml(info.ggml_dtype).unwrap();
        assert_eq!(qtype, want_type, "{name}");
        let w = GpuMatrix::upload(&ctx, name, qtype, rows, cols, &qt.data().unwrap()).unwrap();
        let values = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();

        // Decode and prefill paths; the LM head (token_embd, tied) only for decode.
        let n_toks: &[usize] = if rows > 10_000 { &[1] } else { &[1, 40] };
        for &n_tok in n_toks {
            let x: Vec<f32> = (0..n_tok * cols)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0)
                .collect();
            let xb = ctx.upload("x", &x).unwrap();
            let yb = ctx.storage("y", n_tok * rows).unwrap();
            let lin = Linear::new(&ctx, &step, &w, &xb, &yb, Tokens::All).unwrap();
            step.set(&ctx, n_tok as u32, 0);
            ctx.run(|pass| lin.encode(pass)).unwrap();
            let got = pollster::block_on(ctx.read_f32(&yb, 0, n_tok * rows)).unwrap();
            let mut worst = 0.0f64;
            for t in 0..n_tok {
                for r in 0..rows {
                    let (s, mass) = values[r * cols..(r + 1) * cols]
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .fold((0.0f64, 0.0f64), |(s, a), (&wv, &xv)| {
                            let p = wv as f64 * xv as f64;
                            (s + p, a + p.abs())
                        });
                    worst = worst.max((got[t * rows + r] as f64 - s).abs() / mass.max(1e-30));
                }
            }
            eprintln!("{name} {qtype:?} {rows}x{cols} n_tok {n_tok}: max rel err {worst:.2e}");
            // Same tolerance as the unit tests: 2e-5 of the L1 mass of each dot product.
            assert!(worst <= 2e-5, "{name} n_tok {n_tok}: error {worst:.2e}");
        }
    }

    // Embedding rows of real token ids equal candle's dequantized rows exactly.
    let qt = content
        .tensor(&mut file, "token_embd.weight", &Device::Cpu)
        .unwrap();
    let (rows, cols) = qt.shape().dims2().unwrap();
    let table = GpuMatrix::upload(
        &ctx,
        "token_embd",
        QType::Q8_0,
        rows,
        cols,
        &qt.data().unwrap(),
    )
    .unwrap();
    let values = qt
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let ids = [1u32, 2, 9690, 49151];
    let tok = ctx.upload("tokens", &ids).unwrap();
    let y = ctx.storage("y", ids.len() * cols).unwrap();
    let k = embedding(&ctx, &step, &table, &tok, &y).unwrap();
    step.set(&ctx, ids.len() as u32, 0);
    ctx.run(|pass| k.encode(pass)).unwrap();
    let got = pollster::block_on(ctx.read_f32(&y, 0, ids.len() * cols)).unwrap();
    for (t, &id) in ids.iter().enumerate() {
        let id = id as usize;
        assert_eq!(
            &got[t * cols..(t + 1) * cols],
            &values[id * cols..(id + 1) * cols],
            "row {id}"
        );
    }
}
