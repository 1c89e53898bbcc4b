//! Every CPU quant kernel against independent references: dequantization must equal candle's
//! bit for bit, and the fast dot products (activations quantized as llama.cpp does) must stay
//! within the error that activation quantization alone can cause, derived per block below.
//!
//! The same tests run on wasm32 in headless Chromium (wasm-bindgen-test-runner and chromedriver;
//! scripts/test.sh), once per browser kernel set: simd128 and `--features relaxed-simd`.

use axiscope::engine::quant::{Acts, Gathered, QMatrix, QType, kquants, legacy, packed, reference};
use axiscope::engine::threads::Threads;
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use std::sync::Arc;
// On wasm32 every `#[test]` below is a wasm-bindgen test.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Deterministic pseudo-random values with a few outliers, like real activations and weights.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if i % 97 == 13 { u * 8.0 } else { u }
        })
        .collect()
}

/// A `rows x cols` matrix of random values quantized by candle into `qtype` blocks.
fn quantized(qtype: QType, rows: usize, cols: usize, seed: u64) -> (Vec<u8>, QTensor) {
    let t = Tensor::from_vec(values(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, qtype.to_ggml()).unwrap();
    (q.data().unwrap().into_owned(), q)
}

const COLS: usize = 512;
const ROWS: usize = 24;

#[test]
fn dequantization_equals_candle() {
    for qtype in QType::ALL {
        let (bytes, q) = quantized(qtype, ROWS, COLS, 1);
        let want: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let m = QMatrix::new(qtype, ROWS, COLS, Arc::new(bytes), 0);
        let mut got = vec![0f32; COLS];
        for r in 0..ROWS {
            m.dequantize_row(r, &mut got);
            assert_eq!(got, want[r * COLS..(r + 1) * COLS], "{qtype:?} row {r}");
        }
    }
}

/// Worst-case |fast - exact| from quantizing the activations: per element at most half a step
/// plus the f16 rounding of the block scale (Q8_0/Q8_1: |q| <= 127, relative 2^-11), and for
/// Q4_1 the f16 rounding of the block sum `s` times the weight block's minimum.
fn activation_error_bound(qtype: QType, w: &[f32], x: &[f32]) -> f64 {
    let block = match qtype {
        QType::F32 => {
            return 1e-6
                * w.iter()
                    .zip(x)
                    .map(|(a, b)| (a * b).abs() as f64)
                    .sum::<f64>();
        }
        QType::F16 => {
            return w
                .iter()
                .zip(x)
                .map(|(a, b)| (a * b).abs() as f64)
                .sum::<f64>()
                * (2f64).powi(-11);
        }
        QType::Q4K | QType::Q5K | QType::Q6K => 256,
        _ => 32,
    };
    let mut bound = 0f64;
    for (wb, xb) in w.chunks(block).zip(x.chunks(block)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let d = amax / 127.0;
        let w_abs: f64 = wb.iter().map(|v| v.abs() as f64).sum();
        bound += w_abs * d * (0.5 + 127.0 / 2048.0);
        if qtype == QType::Q4_1 {
            let wmin = wb.iter().fold(f32::MAX, |m, &v| m.min(v)).abs() as f64;
            let s: f64 = xb.iter().map(|&v| v.abs() as f64).sum();
            bound += wmin * s * (2f64).powi(-10);
        }
    }
    // Float summation order: a few ulps of the sum of |w x|.
    bound
        + 1e-5
            * w.iter()
                .zip(x)
                .map(|(a, b)| (a * b).abs() as f64)
                .sum::<f64>()
}

#[test]
fn fast_dot_products_stay_within_the_activation_quantization_bound() {
    for qtype in QType::ALL {
        let (bytes, _) = quantized(qtype, ROWS, COLS, 2);
        let m = QMatrix::new(qtype, ROWS, COLS, Arc::new(bytes), 0);
        let x = values(COLS, 3);
        let acts = Acts::quantize(qtype, &x);
        let mut w = vec![0f32; COLS];
        for r in 0..ROWS {
            m.dequantize_row(r, &mut w);
            let exact = reference::dot(qtype, m.row(r), &x);
            let fast = qtype.dot(m.row(r), &acts) as f64;
            let bound = activation_error_bound(qtype, &w, &x);
            assert!(
                (fast - exact).abs() <= bound,
                "{qtype:?} row {r}: fast {fast} exact {exact} bound {bound}"
            );
        }
    }
}

/// The threaded matmul (decode and prefill shapes) equals row-by-row dot products exactly.
#[test]
fn threaded_matmul_equals_single_dots() {
    for qtype in [QType::Q4_1, QType::Q8_0, QType::Q4K, QType::F16] {
        let (bytes, _) = quantized(qtype, 100, COLS, 4);
        let m = QMatrix::new(qtype, 100, COLS, Arc::new(bytes), 0);
        for n_tok in [1, 3] {
            let x = values(n_tok * COLS, 5);
            let mut out = vec![0f32; n_tok * 100];
            m.matmul(&x, &mut out, &Threads::new(2));
            for t in 0..n_tok {
                let acts = Acts::quantize(qtype, &x[t * COLS..(t + 1) * COLS]);
                for r in 0..100 {
                    assert_eq!(
                        out[t * 100 + r],
                        qtype.dot(m.row(r), &acts),
                        "{qtype:?} tok {t} row {r}"
                    );
                }
            }
        }
    }
}

/// Packed Q4_1 (rows interleaved by eight, packed.rs) gives the scalar kernel's value for every
/// (row, token) pair, bit for bit, through the matmul the engine runs: one token, whole tiles of
/// tokens and the rest, on one thread and two.
#[test]
fn packed_q4_1_equals_the_scalar_kernel() {
    if !packed::available() {
        return eprintln!("skipped: no packed Q4_1 kernel on this machine");
    }
    let (qtype, rows) = (QType::Q4_1, 24);
    let (bytes, _) = quantized(qtype, rows, COLS, 8);
    let m = QMatrix::new(qtype, rows, COLS, Arc::new(bytes), 0).packed_for_cpu();
    for n_tok in [1, 2, 3, 4, 5, 9] {
        let x = values(n_tok * COLS, 9);
        for threads in [1, 2] {
            let mut out = vec![f32::NAN; n_tok * rows];
            m.matmul(&x, &mut out, &Threads::new(threads));
            for (t, out) in out.chunks_exact(rows).enumerate() {
                let Acts::Q8_1(a) = Acts::quantize(qtype, &x[t * COLS..(t + 1) * COLS]) else {
                    unreachable!("Q4_1 takes Q8_1 activations")
                };
                for (r, o) in out.iter().enumerate() {
                    let want = legacy::dot_q4_1(m.row(r), &a);
                    assert_eq!(o.to_bits(), want.to_bits(), "row {r}, token {t} of {n_tok}");
                }
            }
        }
    }
}

/// The tiled kernels (what decoding, prompts and batches run) give every (row, activation row)
/// pair exactly what a lone dot product gives, whatever the numbers of rows and of activation
/// rows (whole tiles and the rest one by one).
#[test]
fn tiled_kernels_equal_single_dots() {
    for qtype in QType::ALL {
        let (bytes, _) = quantized(qtype, 11, COLS, 6);
        let m = QMatrix::new(qtype, 11, COLS, Arc::new(bytes), 0);
        let acts: Vec<Acts> = (0..9)
            .map(|t| Acts::quantize(qtype, &values(COLS, 7 + t)))
            .collect();
        for n_tok in [1, 2, 4, 5, 9] {
            let xs = &acts[..n_tok];
            for (first, count) in [(0, 11), (0, 4), (3, 5), (10, 1), (2, 9)] {
                let mut out = vec![f32::NAN; count * n_tok];
                let rows = &m.data()[first * m.row_bytes()..(first + count) * m.row_bytes()];
                qtype.dot_tiles(rows, xs, &Gathered::of(xs), &mut out);
                for (i, per_tok) in out.chunks_exact(n_tok).enumerate() {
                    for (t, &o) in per_tok.iter().enumerate() {
                        let want = qtype.dot(m.row(first + i), &xs[t]);
                        assert_eq!(
                            o.to_bits(),
                            want.to_bits(),
                            "{qtype:?} row {} token {t} of {n_tok}",
                            first + i
                        );
                    }
                }
            }
        }
    }
}

/// The fast K-quant kernels combine each super-block's integer sums in the order the scalar
/// kernels (kquants.rs, the twins that follow ggml's layout value by value) do, so they must
/// equal them bit for bit; Q5_0's fast kernel sums blocks in SIMD lanes and is held to the
/// bound above instead.
#[test]
fn kquant_kernels_equal_their_scalar_twins() {
    for qtype in [QType::Q4K, QType::Q5K, QType::Q6K] {
        let (bytes, _) = quantized(qtype, ROWS, COLS, 8);
        let m = QMatrix::new(qtype, ROWS, COLS, Arc::new(bytes), 0);
        let acts = Acts::quantize(qtype, &values(COLS, 9));
        let Acts::Q8K(x) = &acts else {
            unreachable!("K-quants take Q8_K activations")
        };
        for r in 0..ROWS {
            let scalar = match qtype {
                QType::Q4K => kquants::dot_q4k(m.row(r), x),
                QType::Q5K => kquants::dot_q5k(m.row(r), x),
                _ => kquants::dot_q6k(m.row(r), x),
            };
            assert_eq!(
                qtype.dot(m.row(r), &acts).to_bits(),
                scalar.to_bits(),
                "{qtype:?} row {r}"
            );
        }
    }
}
