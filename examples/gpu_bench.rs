//! Micro-benchmark of the GPU kernels on the adapter wgpu finds:
//! `cargo run --release --example gpu_bench [-- --quick]`.
//!
//! Prints, per weight type, the decode matrix-vector kernel's time and effective
//! bandwidth (bytes of the repacked matrix read per second) and the prefill
//! matrix-matrix kernel's throughput, then the SmolLM2-135M decode shapes.
//! Times are wall clock around `submit` + `poll(wait)` of a batch of identical
//! dispatches, so per-submit overhead is amortised but included.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = native::run() {
        eprintln!("gpu_bench: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use axiscope::engine::gpu::attention::{AttentionShape, attention};
    use axiscope::engine::gpu::matmul::{Linear, Tokens};
    use axiscope::engine::gpu::{GpuContext, GpuMatrix, Kernel, Step};
    use axiscope::engine::quant::QType;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// A quantized matrix of smooth pseudo-random values (content does not affect speed,
    /// but real blocks keep the f16 scales finite).
    fn matrix(ctx: &GpuContext, q: QType, rows: usize, cols: usize) -> Result<GpuMatrix> {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32) * 0.618_034).sin())
            .collect();
        let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu)?;
        let qt = QTensor::quantize(&t, q.to_ggml())?;
        let bytes = qt.data()?;
        Ok(GpuMatrix::upload(ctx, "bench", q, rows, cols, &bytes)?)
    }

    /// Seconds per dispatch of `encode`, batching until a batch takes `min_time`.
    fn time(
        ctx: &GpuContext,
        min_time: Duration,
        encode: &dyn Fn(&mut wgpu::ComputePass<'_>) -> axiscope::engine::gpu::Result<()>,
    ) -> Result<f64> {
        let run = |n: usize| -> Result<f64> {
            let start = Instant::now();
            ctx.run(|pass| (0..n).try_for_each(|_| encode(pass)))?;
            ctx.device.poll(wgpu::PollType::wait_indefinitely())?;
            ctx.take_error()?;
            Ok(start.elapsed().as_secs_f64())
        };
        run(2)?; // compile + warm up
        let mut n = 1;
        loop {
            let t = run(n)?;
            if t >= min_time.as_secs_f64() || n >= 4096 {
                return Ok(t / n as f64);
            }
            n = (n * 2)
                .max((n as f64 * min_time.as_secs_f64() / t.max(1e-6)) as usize + 1)
                .min(4096);
        }
    }

    pub fn run() -> Result<()> {
        let quick = std::env::args().any(|a| a == "--quick");
        let min_time = Duration::from_millis(if quick { 100 } else { 400 });
        let ctx = pollster::block_on(GpuContext::new())?;
        println!("adapter: {}", ctx.describe());
        let step = Step::new(&ctx);

        let (rows, cols) = (4096usize, 1536usize);
        let prefill = 128usize;
        println!(
            "\nmatrix {rows}x{cols}; decode = 1 token (matvec), prefill = {prefill} tokens (matmul)"
        );
        println!(
            "{:<6} {:>10} {:>12} {:>10} {:>14}",
            "type", "MB", "matvec us", "GB/s", "matmul GFLOP/s"
        );
        let x = ctx.storage("x", prefill * cols)?;
        let y = ctx.storage("y", prefill * rows)?;
        for q in QType::ALL {
            let w = matrix(&ctx, q, rows, cols)?;
            let lin = Linear::new(&ctx, &step, &w, &x, &y, Tokens::All)?;
            let mb = w.buffer.size() as f64 / 1e6;
            step.set(&ctx, 1, 0);
            let t_mv = time(&ctx, min_time, &|p| lin.encode_matvec(p))?;
            step.set(&ctx, prefill as u32, 0);
            let t_mm = time(&ctx, min_time, &|p| lin.encode_matmul(p))?;
            let gflops = 2.0 * (rows * cols * prefill) as f64 / t_mm / 1e9;
            println!(
                "{:<6} {:>10.2} {:>12.1} {:>10.2} {:>14.2}",
                q.name(),
                mb,
                t_mv * 1e6,
                mb / 1e3 / t_mv,
                gflops
            );
        }

        println!("\nSmolLM2-135M decode shapes (1 token)");
        let shapes = [
            ("q/o proj", QType::Q4_1, 576, 576),
            ("k/v proj", QType::Q4_1, 192, 576),
            ("gate/up", QType::Q4_1, 1536, 576),
            ("down", QType::Q4_1, 576, 1536),
            ("lm head", QType::Q8_0, 49152, 576),
        ];
        let mut per_token = 0.0;
        for (name, q, r, c) in shapes {
            let w = matrix(&ctx, q, r, c)?;
            let (xb, yb) = (ctx.storage("x", c)?, ctx.storage("y", r)?);
            let lin = Linear::new(&ctx, &step, &w, &xb, &yb, Tokens::All)?;
            step.set(&ctx, 1, 0);
            let t = time(&ctx, min_time, &|p| lin.encode(p))?;
            let per_layer = match name {
                "q/o proj" | "k/v proj" | "gate/up" => 2.0,
                _ => 1.0,
            };
            per_token += t * if name == "lm head" {
                1.0
            } else {
                30.0 * per_layer
            };
            let mb = w.buffer.size() as f64 / 1e6;
            println!(
                "{name:<9} {q:?} {r}x{c}: {:.1} us, {:.2} GB/s",
                t * 1e6,
                mb / 1e3 / t
            );
        }
        println!(
            "all linear layers of one decoded token: {:.2} ms",
            per_token * 1e3
        );

        let shape = AttentionShape {
            n_head: 9,
            n_kv_head: 3,
            head_dim: 64,
            scale: None,
            window: None,
        };
        let ctx_len = 1024;
        let q = ctx.storage("q", 9 * 64)?;
        let kc = ctx.storage("k", ctx_len * 3 * 64)?;
        let vc = ctx.storage("v", ctx_len * 3 * 64)?;
        let out = ctx.storage("out", 9 * 64)?;
        let k: Kernel = attention(&ctx, &step, shape, &q, &kc, &vc, &out)?;
        step.set(&ctx, 1, (ctx_len - 1) as u32);
        let t = time(&ctx, min_time, &|p| k.encode(p))?;
        println!(
            "attention decode, {ctx_len} cached positions, 9 heads: {:.1} us",
            t * 1e6
        );
        Ok(())
    }
}
