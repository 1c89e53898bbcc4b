//! Decode throughput of B sequences advanced together versus one after another, in the same
//! run: `cargo run --release --example batch_bench [-- --batch B --steps N --threads T]`.
//! Each sequence is prefilled with its own 40-token prompt, then N one-token steps run for
//! all of them, once as B single `forward` calls per step and once as one `forward_batch`
//! (same tokens, checked bit for bit). Prints tokens per second of each and the ratio.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = native::run() {
        eprintln!("batch_bench: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use anyhow::{Context, Result};
    use axiscope::engine::backend::{BatchStep, forward_batch};
    use axiscope::engine::{Backend, CpuModel, Hooks, Model};
    use std::time::Instant;

    fn argmax(v: &[f32]) -> u32 {
        v.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0 as u32
    }

    /// Greedy decoding of `steps` tokens on every sequence; returns (seconds, tokens).
    fn decode(
        seqs: &mut [CpuModel],
        first: &[u32],
        steps: usize,
        batched: bool,
    ) -> Result<(f64, Vec<Vec<u32>>)> {
        let mut last: Vec<u32> = first.to_vec();
        let mut out = vec![Vec::new(); seqs.len()];
        let mut hooks: Vec<Hooks> = seqs.iter().map(|_| Hooks::none()).collect();
        let t0 = Instant::now();
        for _ in 0..steps {
            let inputs: Vec<[u32; 1]> = last.iter().map(|&t| [t]).collect();
            let logits = if batched {
                let mut batch: Vec<BatchStep> = seqs
                    .iter_mut()
                    .zip(&inputs)
                    .zip(&mut hooks)
                    .map(|((s, t), h)| BatchStep {
                        pos: s.cached(),
                        backend: s,
                        tokens: t,
                        hooks: h,
                        all_logits: false,
                    })
                    .collect();
                forward_batch(&mut batch)?
            } else {
                let mut l = Vec::new();
                for ((s, t), h) in seqs.iter_mut().zip(&inputs).zip(&mut hooks) {
                    let pos = s.cached();
                    l.push(s.forward(t, pos, h, false)?);
                }
                l
            };
            for (i, l) in logits.iter().enumerate() {
                last[i] = argmax(l);
                out[i].push(last[i]);
            }
        }
        Ok((t0.elapsed().as_secs_f64(), out))
    }

    pub fn run() -> Result<()> {
        let (mut batch, mut steps, mut threads) = (8usize, 32usize, 1usize);
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let v: usize = it.next().context("every option takes a value")?.parse()?;
            match a.as_str() {
                "--batch" => batch = v,
                "--steps" => steps = v,
                "--threads" => threads = v,
                _ => anyhow::bail!("unknown option {a}"),
            }
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        );
        let model = Model::from_bytes(std::fs::read(path).context(path)?)?;
        let load = model.cpu_backend(threads)?;
        let mut results = Vec::new();
        for batched in [false, true, false, true] {
            let mut seqs: Vec<CpuModel> = (0..batch).map(|_| load.fork()).collect();
            let mut first = Vec::new();
            for (i, s) in seqs.iter_mut().enumerate() {
                let prompt: Vec<u32> = (0..40).map(|k| (100 + 37 * i + 11 * k) as u32).collect();
                first.push(argmax(&s.forward(&prompt, 0, &mut Hooks::none(), false)?));
            }
            let (secs, tokens) = decode(&mut seqs, &first, steps, batched)?;
            results.push((batched, secs, tokens));
        }
        anyhow::ensure!(
            results.iter().all(|r| r.2 == results[0].2),
            "batched tokens differ"
        );
        let best = |b: bool| {
            results
                .iter()
                .filter(|r| r.0 == b)
                .map(|r| r.1)
                .fold(f64::INFINITY, f64::min)
        };
        let n = (batch * steps) as f64;
        let (one, many) = (n / best(false), n / best(true));
        println!(
            "{batch} sequences x {steps} steps, {threads} thread(s): one by one {one:.1} tok/s, batched {many:.1} tok/s, {:.2}x (same tokens)",
            many / one
        );
        Ok(())
    }
}
