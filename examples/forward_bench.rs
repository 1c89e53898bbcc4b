//! Whole-model throughput, GPU next to CPU in the same run:
//! `cargo run --release --example forward_bench [-- MODEL.gguf] [--prompt N] [--decode N] [--threads N]`.
//!
//! For each backend (the CPU; the GPU fused and unfused, with what a decode step dispatches):
//! one untimed warm-up forward, then a prefill of an N-token prompt (default 128) in one
//! `forward` call, then N greedy decode steps (default 32), one `forward` per token, each
//! reading back the logits as generation does. Prints tok/s.
//! Without a GPU adapter the GPU line says why and the CPU numbers still print.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = native::run() {
        eprintln!("forward_bench: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::Instant;

    use anyhow::{Context, Result, bail};
    use std::sync::Arc;

    use axiscope::engine::gpu::{GpuContext, GpuModel, GpuModelOptions};
    use axiscope::engine::{Backend, Hooks, Model};

    struct Args {
        model: String,
        prompt: usize,
        decode: usize,
        threads: usize,
    }

    fn args() -> Result<Args> {
        let mut a = Args {
            model: concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
            )
            .to_string(),
            prompt: 128,
            decode: 32,
            threads: 0,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut num = |name: &str| -> Result<usize> {
                it.next()
                    .with_context(|| format!("{name} needs a value"))?
                    .parse()
                    .with_context(|| format!("{name} needs a number"))
            };
            match arg.as_str() {
                "--prompt" => a.prompt = num("--prompt")?,
                "--decode" => a.decode = num("--decode")?,
                "--threads" => a.threads = num("--threads")?,
                s if !s.starts_with("--") => a.model = s.to_string(),
                s => bail!("unknown argument {s}"),
            }
        }
        if a.prompt == 0 {
            bail!("--prompt must be at least 1");
        }
        Ok(a)
    }

    fn argmax(v: &[f32]) -> u32 {
        let mut best = 0;
        for (i, &x) in v.iter().enumerate() {
            if x > v[best] {
                best = i;
            }
        }
        best as u32
    }

    /// (prefill tok/s, decode tok/s) of one backend.
    fn measure(b: &mut dyn Backend, prompt: &[u32], decode: usize) -> Result<(f64, f64)> {
        let mut hooks = Hooks::none();
        b.forward(&prompt[..prompt.len().min(8)], 0, &mut hooks, false)?;
        let t0 = Instant::now();
        let mut logits = b.forward(prompt, 0, &mut hooks, false)?;
        let prefill = prompt.len() as f64 / t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for i in 0..decode {
            let next = argmax(&logits);
            logits = b.forward(&[next], prompt.len() + i, &mut hooks, false)?;
        }
        let dec = decode as f64 / t1.elapsed().as_secs_f64();
        Ok((prefill, dec))
    }

    pub fn run() -> Result<()> {
        let a = args()?;
        let bytes = std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model))?;
        let m = Model::from_bytes(bytes)?;
        // A real chat turn, its text repeated until the prompt is long enough.
        let text = "<|im_start|>user\nTell me about the history of the lighthouse, how it \
                    works, and why so many of them are painted in stripes.<|im_end|>\n";
        let unit = m.tokenizer.encode(text)?;
        let prompt: Vec<u32> = unit.iter().copied().cycle().take(a.prompt).collect();
        println!(
            "model {}, prompt {} tokens, decode {} tokens",
            m.config.name, a.prompt, a.decode
        );

        let mut cpu = m.cpu_backend(a.threads)?;
        let (p, d) = measure(&mut cpu, &prompt, a.decode)?;
        println!(
            "{:<48} prefill {p:>8.1} tok/s   decode {d:>7.2} tok/s",
            cpu.describe()
        );

        match pollster::block_on(GpuContext::new()) {
            Ok(ctx) => {
                let ctx = Arc::new(ctx);
                // Fused (the default) and unfused side by side: same device, same run.
                for fused in [true, false] {
                    let opts = GpuModelOptions {
                        fused,
                        ..GpuModelOptions::default()
                    };
                    let mut gpu = GpuModel::load_with(&m.gguf, ctx.clone(), opts)?;
                    let (p, d) = measure(&mut gpu, &prompt, a.decode)?;
                    let step = gpu.profile(1);
                    let what = if fused { "fused" } else { "unfused" };
                    println!(
                        "{:<48} prefill {p:>8.1} tok/s   decode {d:>7.2} tok/s",
                        format!("{} {what}", gpu.describe())
                    );
                    println!(
                        "  a decode step: {} dispatches, {} workgroups, {:.1} MB of weights",
                        step.dispatches,
                        step.workgroups,
                        step.weight_bytes as f64 / 1e6
                    );
                }
            }
            Err(e) => println!("gpu: not measured: {e}"),
        }
        Ok(())
    }
}
