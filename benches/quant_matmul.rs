//! Micro-benchmark of the CPU quantized matmul on SmolLM2-135M's weight shapes (rows x cols:
//! attention 576x576, FFN up/gate 1536x576, FFN down 576x1536, the tied output head
//! 49152x576), for the model's two quant types, one token (decode) and 32 tokens (a prefill
//! slice), on 1 and 2 threads. Throughput is in weight bytes read per second: decode is
//! bandwidth bound, so this is the figure to hold against the machine's memory bandwidth.
//!
//! `cargo bench --bench quant_matmul` (add `-- q4_1/576x576` to filter). The end-to-end
//! comparison with llama.cpp is scripts/bench.sh.

use axiscope::engine::quant::{QMatrix, QType};
use axiscope::engine::threads::Threads;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const SHAPES: [(usize, usize); 4] = [(576, 576), (1536, 576), (576, 1536), (49152, 576)];

/// xorshift64: deterministic filler, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Valid blocks: random quants, with finite, model-sized f16 scales (and Q4_1 minimums) in
/// place, so no NaN or subnormal takes a slow path the real model never does.
fn weights(qtype: QType, rows: usize, cols: usize, rng: &mut Rng) -> QMatrix {
    let bs = qtype.type_size();
    let n_blocks = rows * cols / qtype.block_size();
    let mut bytes: Vec<u8> = (0..n_blocks * bs).map(|_| rng.next() as u8).collect();
    for b in bytes.chunks_exact_mut(bs) {
        b[0..2].copy_from_slice(&f16::from_f32(0.01 + 0.01 * rng.unit().abs()).to_le_bytes());
        if qtype == QType::Q4_1 {
            b[2..4].copy_from_slice(&f16::from_f32(-0.08 * rng.unit().abs()).to_le_bytes());
        }
    }
    QMatrix::new(qtype, rows, cols, Arc::new(bytes), 0)
}

fn matmul(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pools = [(1, Threads::new(1)), (2, Threads::new(2))];
    for (qtype, name) in [(QType::Q4_1, "q4_1"), (QType::Q8_0, "q8_0")] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (rows, cols) in SHAPES {
            let w = weights(qtype, rows, cols, &mut rng);
            g.throughput(Throughput::Bytes(w.data().len() as u64));
            for n_tok in [1, 32] {
                let x: Vec<f32> = (0..n_tok * cols).map(|_| rng.unit()).collect();
                let mut out = vec![0f32; n_tok * rows];
                for (n_thr, threads) in &pools {
                    let id = BenchmarkId::new(
                        format!("{rows}x{cols}"),
                        format!("{n_tok}tok/{n_thr}thr"),
                    );
                    g.bench_function(id, |b| {
                        b.iter(|| w.matmul(black_box(&x), black_box(&mut out), threads))
                    });
                }
            }
        }
        g.finish();
    }
}

criterion_group!(benches, matmul);
criterion_main!(benches);
