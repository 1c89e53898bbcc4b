//! GPU kernels vs plain Rust references, on whatever adapter wgpu finds (lavapipe, a
//! CPU Vulkan device, in CI). Quantized matrices come from candle's `QTensor::quantize`
//! and its `dequantize()` is the independent reference for our block decoders.
//!
//! Over 600 lines: a test suite, one test per kernel against its plain Rust reference.
//!
//! Tolerances are relative to the scale of each output, stated per test. For linear
//! layers the scale is the dot product's L1 mass `sum_c |x_c w_rc|`, the quantity
//! float summation error is proportional to.

use std::io::Write;
use std::sync::OnceLock;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};

use super::attention::{AttentionShape, attention};
use super::elementwise::{AddMode, RowDest, add, copy_rows, gated, scale};
use super::matmul::{Linear, Tokens};
use super::rope::{RopeMode, inv_freq, rope};
use super::*;
use crate::engine::config::Activation;
use crate::engine::quant::QType;

/// The shared test device, or `None` (with a visible SKIPPED line) when the machine has
/// no adapter at all. Any other failure to open it fails the test.
fn gpu() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        if pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all())).is_empty() {
            // Written to the raw stderr handle, which the test harness does not capture,
            // so the skip shows in a normal `cargo test` run.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: no Vulkan/WebGPU adapter on this machine; the GPU kernel tests check nothing"
            );
            return None;
        }
        let ctx =
            pollster::block_on(GpuContext::new()).expect("an adapter exists but cannot be opened");
        eprintln!("GPU tests run on {}", ctx.describe());
        Some(ctx)
    });
    if ctx.is_none() {
        println!("SKIPPED: no Vulkan/WebGPU adapter on this machine; GPU kernel not tested");
    }
    ctx.as_ref()
}

/// Deterministic test data (splitmix64), no extra dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Roughly normal (sum of uniforms), scaled.
    fn normal(&mut self, scale: f32) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 0.866 * scale
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(scale)).collect()
    }
}

/// A random `[rows][cols]` matrix of a GGUF type: its GGUF bytes and candle's
/// dequantization of them.
struct TestMatrix {
    qtype: QType,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

impl TestMatrix {
    fn random(qtype: QType, rows: usize, cols: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        // Rows of different magnitude and offset, so per-block scales and mins vary.
        let data: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let scale = 0.2 + (r % 7) as f32 * 0.3;
                let offset = ((r % 5) as f32 - 2.0) * 0.1;
                (0..cols)
                    .map(|_| rng.normal(scale) + offset)
                    .collect::<Vec<_>>()
            })
            .collect();
        let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, qtype.to_ggml()).unwrap();
        Self::from_qtensor(qtype, rows, cols, &q)
    }

    fn from_qtensor(qtype: QType, rows: usize, cols: usize, q: &QTensor) -> Self {
        let bytes = q.data().unwrap().to_vec();
        assert_eq!(
            bytes.len(),
            rows * qtype.row_bytes(cols),
            "candle block size for {qtype:?}"
        );
        let values = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        Self {
            qtype,
            rows,
            cols,
            bytes,
            values,
        }
    }

    fn upload(&self, ctx: &GpuContext) -> GpuMatrix {
        GpuMatrix::upload(
            ctx,
            "test matrix",
            self.qtype,
            self.rows,
            self.cols,
            &self.bytes,
        )
        .unwrap()
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.values[r * self.cols..(r + 1) * self.cols]
    }
}

/// Largest `|got - want| / scale` over all outputs.
fn max_rel_err(got: &[f32], want: &[f64], scale: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .zip(scale)
        .map(|((&g, &w), &s)| (g as f64 - w).abs() / s.max(1e-30))
        .fold(0.0, f64::max)
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Run `kernel`-building code for one step and read back `len` floats of `out`.
fn run_and_read(
    ctx: &GpuContext,
    step: &Step,
    n_tok: u32,
    pos0: u32,
    kernels: &[&Kernel],
    out: &wgpu::Buffer,
    len: usize,
) -> Vec<f32> {
    step.set(ctx, n_tok, pos0);
    ctx.run(|pass| kernels.iter().try_for_each(|k| k.encode(pass)))
        .unwrap();
    pollster::block_on(ctx.read_f32(out, 0, len)).unwrap()
}

// ---------------------------------------------------------------- linear layers

/// Which kernel a linear test drives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    Matvec,
    Matmul,
    /// `Linear::encode`'s own choice.
    Auto,
    /// `Tokens::Last`: only the last token's row.
    LastToken,
}

/// Summation-order tolerance relative to the L1 mass `sum |x w|` of each output.
/// The GPU decodes exactly the values candle's `dequantize` produces (f16 scale times a
/// small integer is exact in f32), except that types with an additive min (Q4_1, Q4_K,
/// Q5_K) may fuse `d*q + m` into one FMA and round once less: 1 ulp per weight.
fn linear_tolerance(q: QType) -> f64 {
    match q {
        QType::F32 | QType::F16 | QType::Q4_0 | QType::Q5_0 | QType::Q8_0 | QType::Q6K => 1e-5,
        QType::Q4_1 | QType::Q4K | QType::Q5K => 2e-5,
    }
}

/// Build a random matrix of `qtype` and input, run the GPU `path`, compare with the
/// f64 product of candle's dequantized matrix. Returns the measured relative error.
fn check_linear_matrix(
    ctx: &GpuContext,
    m: &TestMatrix,
    gpu_bytes: &[u8],
    n_tok: usize,
    path: Path,
    seed: u64,
) -> f64 {
    let (rows, cols) = (m.rows, m.cols);
    let x = Rng(seed).vec(n_tok * cols, 1.0);
    let w = GpuMatrix::upload(ctx, "w", m.qtype, rows, cols, gpu_bytes).unwrap();
    let x_buf = ctx.upload("x", &x).unwrap();
    let out_tok = if path == Path::LastToken { 1 } else { n_tok };
    let y_buf = ctx.storage("y", out_tok * rows).unwrap();
    let step = Step::new(ctx);
    let tokens = if path == Path::LastToken {
        Tokens::Last
    } else {
        Tokens::All
    };
    let lin = Linear::new(ctx, &step, &w, &x_buf, &y_buf, tokens).unwrap();
    step.set(ctx, n_tok as u32, 0);
    ctx.run(|pass| match path {
        Path::Matvec => lin.encode_matvec(pass),
        Path::Matmul => lin.encode_matmul(pass),
        Path::Auto | Path::LastToken => lin.encode(pass),
    })
    .unwrap();
    let got = pollster::block_on(ctx.read_f32(&y_buf, 0, out_tok * rows)).unwrap();

    let first_tok = n_tok - out_tok;
    let (mut want, mut mass) = (Vec::new(), Vec::new());
    for t in first_tok..n_tok {
        let xt = &x[t * cols..(t + 1) * cols];
        for r in 0..rows {
            let (s, a) = m
                .row(r)
                .iter()
                .zip(xt)
                .fold((0.0f64, 0.0f64), |(s, a), (&wv, &xv)| {
                    let p = wv as f64 * xv as f64;
                    (s + p, a + p.abs())
                });
            want.push(s);
            mass.push(a);
        }
    }
    max_rel_err(&got, &want, &mass)
}

fn check_linear(qtype: QType, rows: usize, cols: usize, n_tok: usize, path: Path) {
    let Some(ctx) = gpu() else { return };
    let seed = rows as u64 * 1000 + cols as u64 + n_tok as u64;
    let m = TestMatrix::random(qtype, rows, cols, seed);
    let err = check_linear_matrix(ctx, &m, &m.bytes, n_tok, path, seed + 1);
    let tol = linear_tolerance(qtype);
    eprintln!(
        "linear {qtype:?} {rows}x{cols} n_tok {n_tok} {path:?}: max rel err {err:.2e} (tol {tol:.0e})"
    );
    assert!(
        err <= tol,
        "{qtype:?} {path:?}: error {err:.3e} > {tol:.0e}"
    );
}

/// Every type through every path; 75 rows (not a multiple of the 8-row matvec groups
/// or the 64-row tiles), 512 columns (two K-quant super-blocks).
fn check_linear_all_paths(q: QType) {
    check_linear(q, 75, 512, 1, Path::Matvec);
    check_linear(q, 75, 512, 3, Path::Matvec);
    check_linear(q, 75, 512, 70, Path::Matmul); // two token tiles, the second partial
    check_linear(q, 75, 512, 2, Path::Matmul);
    check_linear(q, 75, 512, 9, Path::Auto);
    check_linear(q, 75, 512, 5, Path::LastToken);
}

#[test]
fn linear_f32() {
    check_linear_all_paths(QType::F32);
}
#[test]
fn linear_f16() {
    check_linear_all_paths(QType::F16);
}
#[test]
fn linear_q4_0() {
    check_linear_all_paths(QType::Q4_0);
}
#[test]
fn linear_q4_1() {
    check_linear_all_paths(QType::Q4_1);
}
#[test]
fn linear_q5_0() {
    check_linear_all_paths(QType::Q5_0);
}
#[test]
fn linear_q8_0() {
    check_linear_all_paths(QType::Q8_0);
}
#[test]
fn linear_q4_k() {
    check_linear_all_paths(QType::Q4K);
}
#[test]
fn linear_q5_k() {
    check_linear_all_paths(QType::Q5K);
}
#[test]
fn linear_q6_k() {
    check_linear_all_paths(QType::Q6K);
}

/// Float rows whose length is not a multiple of 8 or 32 exercise the zero padding.
#[test]
fn linear_float_ragged_columns() {
    for q in [QType::F32, QType::F16] {
        check_linear(q, 13, 203, 2, Path::Matvec);
        check_linear(q, 13, 203, 66, Path::Matmul);
    }
}

/// More columns than one 2048-value x chunk of the matvec kernel.
#[test]
fn linear_multi_chunk() {
    check_linear(QType::Q4K, 10, 2304, 1, Path::Matvec);
    check_linear(QType::Q8_0, 10, 2080, 2, Path::Matvec);
    check_linear(QType::Q6K, 10, 2304, 8, Path::Matmul);
}

/// The SmolLM2 shapes: hidden 576, FFN 1536 (Q4_1), checked on the decode path.
#[test]
fn linear_model_shapes() {
    check_linear(QType::Q4_1, 1536, 576, 1, Path::Matvec);
    check_linear(QType::Q4_1, 576, 1536, 1, Path::Matvec);
}

/// The comparison can fail: corrupting one byte of one block (a Q4_K 6-bit scale, a
/// Q8_0 scale, a Q6_K high-bit byte) must push the error far past the tolerance.
#[test]
fn linear_check_detects_a_corrupt_block() {
    let Some(ctx) = gpu() else { return };
    // (type, byte offset inside the first block of row 3)
    for (q, at) in [(QType::Q4K, 4 + 5), (QType::Q8_0, 1), (QType::Q6K, 128 + 7)] {
        let m = TestMatrix::random(q, 8, 256, 7);
        let mut bad = m.bytes.clone();
        bad[3 * q.row_bytes(256) + at] ^= 0x24;
        let err = check_linear_matrix(ctx, &m, &bad, 1, Path::Matvec, 8);
        assert!(
            err > 100.0 * linear_tolerance(q),
            "{q:?}: corruption gave only {err:.2e}"
        );
    }
}

#[test]
fn linear_rejects_bad_input() {
    let Some(ctx) = gpu() else { return };
    let m = TestMatrix::random(QType::Q4_1, 4, 64, 1);
    // Wrong byte count, columns not whole blocks, unknown type id.
    assert!(GpuMatrix::upload(ctx, "w", QType::Q4_1, 4, 64, &m.bytes[1..]).is_err());
    assert!(GpuMatrix::upload(ctx, "w", QType::Q4_1, 2, 128, &m.bytes).is_ok());
    assert!(GpuMatrix::upload(ctx, "w", QType::Q4_1, 8, 40, &m.bytes).is_err());
    assert!(QType::from_ggml(GgmlDType::Q2K).is_none());
    // A step with more tokens than the buffers hold is refused at encode time.
    let w = m.upload(ctx);
    let step = Step::new(ctx);
    let x = ctx.storage("x", 2 * 64).unwrap();
    let y = ctx.storage("y", 2 * 4).unwrap();
    let lin = Linear::new(ctx, &step, &w, &x, &y, Tokens::All).unwrap();
    step.set(ctx, 3, 0);
    assert!(ctx.run(|pass| lin.encode(pass)).is_err());
    // A buffer too small for even one token is refused at build time.
    let tiny = ctx.storage("tiny", 8).unwrap();
    assert!(Linear::new(ctx, &step, &w, &tiny, &y, Tokens::All).is_err());
}

// ---------------------------------------------------------------- embedding

/// Gathered rows must equal candle's dequantized rows (the decoders are exact; 1e-6
/// relative to the row's largest value leaves room for an FMA in `d*q + m`).
fn check_embedding(ctx: &GpuContext, m: &TestMatrix, ids: &[u32]) {
    let table = m.upload(ctx);
    let step = Step::new(ctx);
    let tok = ctx.upload("tokens", ids).unwrap();
    let y = ctx.storage("y", ids.len() * m.cols).unwrap();
    let k = embedding::embedding(ctx, &step, &table, &tok, &y).unwrap();
    let got = run_and_read(
        ctx,
        &step,
        ids.len() as u32,
        0,
        &[&k],
        &y,
        ids.len() * m.cols,
    );
    for (t, &id) in ids.iter().enumerate() {
        let want = m.row(id as usize);
        let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        let err = max_rel_err(
            &got[t * m.cols..(t + 1) * m.cols],
            &to_f64(want),
            &vec![scale; m.cols],
        );
        assert!(err <= 1e-6, "{:?} row {id}: error {err:.2e}", m.qtype);
    }
}

#[test]
fn embedding_all_types() {
    let Some(ctx) = gpu() else { return };
    for q in QType::ALL {
        let cols = if q.block_size() == 1 { 36 } else { 256 };
        let m = TestMatrix::random(q, 20, cols, 11);
        check_embedding(ctx, &m, &[0, 19, 5, 5, 12]);
    }
}

/// The SmolLM2 token table: 49152 x 576 Q8_0 (32 MB once repacked) must fit one
/// storage binding under the adapter's limits. Random blocks with sane f16 scales;
/// the reference decodes just the gathered rows with candle.
#[test]
fn embedding_full_size_q8_0_table() {
    let Some(ctx) = gpu() else { return };
    let (rows, cols) = (49152usize, 576usize);
    let q = QType::Q8_0;
    let row_bytes = q.row_bytes(cols);
    let mut rng = Rng(5);
    let mut bytes = vec![0u8; rows * row_bytes];
    for block in bytes.chunks_exact_mut(34) {
        let d = half::f16::from_f32(0.001 + 0.01 * (rng.uniform() + 1.0));
        block[..2].copy_from_slice(&d.to_le_bytes());
        for b in &mut block[2..] {
            *b = rng.next_u64() as u8;
        }
    }
    let table = GpuMatrix::upload(ctx, "token_embd", q, rows, cols, &bytes).unwrap();
    let ids = [0u32, 1, 30000, 49151];
    let step = Step::new(ctx);
    let tok = ctx.upload("tokens", &ids).unwrap();
    let y = ctx.storage("y", ids.len() * cols).unwrap();
    let k = embedding::embedding(ctx, &step, &table, &tok, &y).unwrap();
    let got = run_and_read(ctx, &step, ids.len() as u32, 0, &[&k], &y, ids.len() * cols);
    for (t, &id) in ids.iter().enumerate() {
        let row = &bytes[id as usize * row_bytes..(id as usize + 1) * row_bytes];
        let storage = QStorage::from_data(
            std::borrow::Cow::Borrowed(row),
            &Device::Cpu,
            GgmlDType::Q8_0,
        )
        .unwrap();
        let qt = QTensor::new(storage, (1, cols)).unwrap();
        let want = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(&got[t * cols..(t + 1) * cols], &want[..], "row {id}");
    }
}

// ---------------------------------------------------------------- norms, rope, attention

/// RMSNorm vs f64, a whole token per row and (qwen3's q/k norms) each head on its own;
/// tolerance 1e-5 relative to each row's largest output.
#[test]
fn rms_norm_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    for (heads, n) in [(1usize, 576usize), (4, 64)] {
        let (n_tok, eps) = (3usize, 1e-5f32);
        let mut rng = Rng(21);
        let x = rng.vec(heads * n * n_tok, 2.0);
        let wt = rng.vec(n, 1.0);
        let step = Step::new(ctx);
        let (xb, wb, yb) = (
            ctx.upload("x", &x).unwrap(),
            ctx.upload("w", &wt).unwrap(),
            ctx.storage("y", x.len()).unwrap(),
        );
        let k = norm::head_rms_norm(ctx, &step, heads, n, eps, &wb, &xb, &yb).unwrap();
        let got = run_and_read(ctx, &step, n_tok as u32, 0, &[&k], &yb, x.len());
        let mut want = Vec::new();
        for row in x.chunks_exact(n) {
            let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            want.extend(
                row.iter()
                    .zip(&wt)
                    .map(|(&v, &g)| v as f64 * inv * g as f64),
            );
        }
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let err = max_rel_err(&got, &want, &vec![scale; want.len()]);
        eprintln!("rms_norm {heads} x {n}: max rel err {err:.2e}");
        assert!(err <= 1e-5, "rms_norm {heads} x {n}: error {err:.2e}");
    }
}

/// RoPE reference: angles formed in f32 exactly as both engines do (position as f32
/// times the shared inv_freq table), sin/cos and rotation in f64.
fn rope_reference(
    x: &[f32],
    n_heads: usize,
    head_dim: usize,
    n_rot: usize,
    freqs: &[f32],
    mode: RopeMode,
    pos0: usize,
) -> Vec<f64> {
    let mut out = to_f64(x);
    let per_tok = n_heads * head_dim;
    for (t, tok) in out.chunks_exact_mut(per_tok).enumerate() {
        for head in tok.chunks_exact_mut(head_dim) {
            for (i, &f) in freqs.iter().enumerate() {
                let angle = ((pos0 + t) as f32 * f) as f64;
                let (a, b) = match mode {
                    RopeMode::Norm => (2 * i, 2 * i + 1),
                    RopeMode::Neox => (i, i + n_rot / 2),
                };
                let (xa, xb) = (head[a], head[b]);
                head[a] = xa * angle.cos() - xb * angle.sin();
                head[b] = xa * angle.sin() + xb * angle.cos();
            }
        }
    }
    out
}

/// Both modes, at positions past 4000 (angles of thousands of radians, where an
/// unreduced f32 sin/cos goes wrong), partial rotation in one case, Llama 3 frequency
/// factors in one. Tolerance 1e-3 of the largest |x|: WGSL only promises 2^-11 absolute
/// for sin/cos.
#[test]
fn rope_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // Llama 3.x's shape: 1 for the fast pairs, up to the scale factor (8) for the slow ones.
    let factors: Vec<f32> = (0..32)
        .map(|i| 1.0 + 7.0 * (i as f32 / 31.0).powi(2))
        .collect();
    for (mode, n_rot, pos0, ff) in [
        (RopeMode::Norm, 64, 0, None),
        (RopeMode::Norm, 64, 4090, None),
        (RopeMode::Neox, 64, 4090, None),
        (RopeMode::Neox, 32, 7, None),
        (RopeMode::Norm, 64, 1000, Some(&factors[..])),
    ] {
        let (n_heads, head_dim, n_tok, theta) = (3usize, 64usize, 4usize, 100_000.0f32);
        let x = Rng(31).vec(n_tok * n_heads * head_dim, 1.0);
        let step = Step::new(ctx);
        let xb = ctx.upload("x", &x).unwrap();
        let k = rope(ctx, &step, n_heads, head_dim, n_rot, theta, ff, mode, &xb).unwrap();
        let got = run_and_read(ctx, &step, n_tok as u32, pos0 as u32, &[&k], &xb, x.len());
        let freqs = inv_freq(n_rot, theta, ff);
        let want = rope_reference(&x, n_heads, head_dim, n_rot, &freqs, mode, pos0);
        if let Some(ff) = ff {
            // The factors must matter here, or the case tests nothing.
            let plain_freqs = inv_freq(n_rot, theta, None);
            let plain = rope_reference(&x, n_heads, head_dim, n_rot, &plain_freqs, mode, pos0);
            let moved = plain
                .iter()
                .zip(&want)
                .fold(0f64, |a, (p, w)| a.max((p - w).abs()));
            assert!(
                moved > 0.1,
                "factors {:?}.. move rope by only {moved}",
                &ff[..2]
            );
        }
        let scale = x.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        let err = max_rel_err(&got, &want, &vec![scale; x.len()]);
        eprintln!("rope {mode:?} n_rot {n_rot} pos0 {pos0}: max rel err {err:.2e}");
        assert!(err <= 1e-3, "rope {mode:?} pos0 {pos0}: error {err:.2e}");
    }
}

/// f64 reference: causal grouped-query attention of tokens at pos0.. over the cache.
fn attention_reference(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    s: AttentionShape,
    n_tok: usize,
    pos0: usize,
) -> Vec<f64> {
    let hd = s.head_dim;
    let group = s.n_head / s.n_kv_head;
    let mut out = Vec::new();
    for t in 0..n_tok {
        for h in 0..s.n_head {
            let qv = &q[(t * s.n_head + h) * hd..][..hd];
            let kvh = h / group;
            let n_keys = pos0 + t + 1;
            let first = s.window.map_or(0, |w| n_keys.saturating_sub(w));
            let scale = s.scale.map_or(1.0 / (hd as f64).sqrt(), |v| v as f64);
            let scores: Vec<f64> = (first..n_keys)
                .map(|j| {
                    let kv = &kc[(j * s.n_kv_head + kvh) * hd..][..hd];
                    qv.iter()
                        .zip(kv)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out.push(
                    (first..n_keys)
                        .map(|j| e[j - first] * vc[(j * s.n_kv_head + kvh) * hd + d] as f64)
                        .sum::<f64>()
                        / z,
                );
            }
        }
    }
    out
}

/// Prefill (pos0 0) and decode after 300 cached positions (two 256-key chunks of the
/// online softmax), head_dim 64 (four V slices) and 96 (two, with idle threads), and
/// gemma3's local layers: a given scale and windows inside one chunk and across two.
/// Tolerance 5e-5 of the largest |v| (WGSL's exp is accurate to a few ulp).
#[test]
fn attention_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let cases = [
        (
            AttentionShape {
                n_head: 6,
                n_kv_head: 2,
                head_dim: 64,
                scale: None,
                window: None,
            },
            5usize,
            0usize,
        ),
        (
            AttentionShape {
                n_head: 6,
                n_kv_head: 2,
                head_dim: 64,
                scale: None,
                window: None,
            },
            2,
            300,
        ),
        (
            AttentionShape {
                n_head: 2,
                n_kv_head: 2,
                head_dim: 96,
                scale: None,
                window: None,
            },
            3,
            260,
        ),
        (
            AttentionShape {
                n_head: 4,
                n_kv_head: 1,
                head_dim: 64,
                scale: Some(0.3),
                window: Some(4),
            },
            6,
            2,
        ),
        (
            AttentionShape {
                n_head: 4,
                n_kv_head: 1,
                head_dim: 64,
                scale: Some(0.3),
                window: Some(270),
            },
            3,
            300,
        ),
    ];
    for (shape, n_tok, pos0) in cases {
        let ctx_len = 320;
        let mut rng = Rng(41 + pos0 as u64);
        let kv_dim = shape.n_kv_head * shape.head_dim;
        let q_dim = shape.n_head * shape.head_dim;
        // Sharp scores (scale 3) so the softmax is far from uniform.
        let q = rng.vec(n_tok * q_dim, 3.0);
        let kc = rng.vec(ctx_len * kv_dim, 1.0);
        let vc = rng.vec(ctx_len * kv_dim, 1.0);
        let step = Step::new(ctx);
        let (qb, kb, vb) = (
            ctx.upload("q", &q).unwrap(),
            ctx.upload("k", &kc).unwrap(),
            ctx.upload("v", &vc).unwrap(),
        );
        let ob = ctx.storage("out", n_tok * q_dim).unwrap();
        let k = attention(ctx, &step, shape, &qb, &kb, &vb, &ob).unwrap();
        let got = run_and_read(
            ctx,
            &step,
            n_tok as u32,
            pos0 as u32,
            &[&k],
            &ob,
            n_tok * q_dim,
        );
        let want = attention_reference(&q, &kc, &vc, shape, n_tok, pos0);
        let scale = vc.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        let err = max_rel_err(&got, &want, &vec![scale; want.len()]);
        eprintln!("attention {shape:?} n_tok {n_tok} pos0 {pos0}: max rel err {err:.2e}");
        assert!(
            err <= 5e-5,
            "attention {shape:?} pos0 {pos0}: error {err:.2e}"
        );
    }
    // A step reading past the cache (320 positions) is refused.
    let shape = AttentionShape {
        n_head: 2,
        n_kv_head: 1,
        head_dim: 64,
        scale: None,
        window: None,
    };
    let (q, kv, o) = (
        ctx.storage("q", 128).unwrap(),
        ctx.storage("kv", 320 * 64).unwrap(),
        ctx.storage("o", 128).unwrap(),
    );
    let step = Step::new(ctx);
    let k = attention(ctx, &step, shape, &q, &kv, &kv, &o).unwrap();
    step.set(ctx, 1, 319);
    assert!(ctx.run(|pass| k.encode(pass)).is_ok());
    step.set(ctx, 1, 320);
    assert!(ctx.run(|pass| k.encode(pass)).is_err());
    let bad = AttentionShape {
        n_head: 6,
        n_kv_head: 4,
        head_dim: 64,
        scale: None,
        window: None,
    };
    let b = ctx.storage("b", 1024).unwrap();
    assert!(attention(ctx, &Step::new(ctx), bad, &b, &b, &b, &b).is_err());
}

// ---------------------------------------------------------------- element-wise and hooks

/// SiLU gate vs f64, 1e-6 relative to each output's |silu(g)|·|u| scale floor of 1e-3.
#[test]
fn silu_mul_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let (n, n_tok) = (300usize, 2usize);
    let mut rng = Rng(51);
    let mut g = rng.vec(n * n_tok, 4.0);
    g[0] = -200.0; // exp overflow path
    g[1] = 200.0;
    let u = rng.vec(n * n_tok, 1.0);
    let step = Step::new(ctx);
    let (gb, ub) = (ctx.upload("g", &g).unwrap(), ctx.upload("u", &u).unwrap());
    let k = gated(ctx, &step, Activation::Silu, n, &gb, &ub).unwrap();
    let got = run_and_read(ctx, &step, n_tok as u32, 0, &[&k], &gb, n * n_tok);
    let want: Vec<f64> = g
        .iter()
        .zip(&u)
        .map(|(&a, &b)| a as f64 / (1.0 + (-a as f64).exp()) * b as f64)
        .collect();
    let scale: Vec<f64> = want.iter().map(|w| w.abs().max(1e-3)).collect();
    let err = max_rel_err(&got, &want, &scale);
    assert!(err <= 1e-5, "silu_mul error {err:.2e}");
}

/// GELU gate vs the CPU engine's rule (tanh form in f64 here, input and output rounded to
/// f16, 0 and x beyond +-10). Tolerance 2e-3 relative to each output's |u| (scale floor
/// 1e-3): WGSL does not fix pack2x16float's rounding, so an input or output may land on the
/// neighbouring f16 (2^-10 relative).
#[test]
fn gelu_mul_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let (n, n_tok) = (300usize, 2usize);
    let mut rng = Rng(53);
    let mut g = rng.vec(n * n_tok, 4.0);
    g[..4].copy_from_slice(&[-200.0, 200.0, -10.0, 9.99]);
    let u = rng.vec(n * n_tok, 1.0);
    let step = Step::new(ctx);
    let (gb, ub) = (ctx.upload("g", &g).unwrap(), ctx.upload("u", &u).unwrap());
    let k = gated(ctx, &step, Activation::GeluTanh, n, &gb, &ub).unwrap();
    let got = run_and_read(ctx, &step, n_tok as u32, 0, &[&k], &gb, n * n_tok);
    let f16 = |x: f64| half::f16::from_f64(x).to_f64();
    let gelu = |x: f64| 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044715 * x * x)).tanh());
    let want: Vec<f64> = g
        .iter()
        .zip(&u)
        .map(|(&a, &b)| {
            let a = a as f64;
            let y = match a {
                a if a <= -10.0 => 0.0,
                a if a >= 10.0 => a,
                a => f16(gelu(f16(a))),
            };
            y * b as f64
        })
        .collect();
    let scale: Vec<f64> = want.iter().map(|w| w.abs().max(1e-3)).collect();
    let err = max_rel_err(&got, &want, &scale);
    eprintln!("gelu_mul max rel err {err:.2e}");
    assert!(err <= 2e-3, "gelu_mul error {err:.2e}");
}

/// A scale is one f32 product: bit for bit.
#[test]
fn scale_is_exact() {
    let Some(ctx) = gpu() else { return };
    let (n, n_tok, s) = (300usize, 3usize, 24.0f32.sqrt());
    let x = Rng(57).vec(n * n_tok, 2.0);
    let step = Step::new(ctx);
    let xb = ctx.upload("x", &x).unwrap();
    let k = scale(ctx, &step, n, s, &xb).unwrap();
    let got = run_and_read(ctx, &step, n_tok as u32, 0, &[&k], &xb, x.len());
    let want: Vec<f32> = x.iter().map(|v| v * s).collect();
    assert_eq!(got, want);
}

/// Adds are exact in f32, so results must match the CPU f32 sums bit for bit.
#[test]
fn add_both_modes() {
    let Some(ctx) = gpu() else { return };
    let (n, n_tok) = (300usize, 3usize);
    let mut rng = Rng(61);
    let h = rng.vec(n * n_tok, 1.0);
    let per_tok = rng.vec(n * n_tok, 1.0);
    let bias = rng.vec(n, 1.0);
    for (mode, v) in [(AddMode::PerToken, &per_tok), (AddMode::Broadcast, &bias)] {
        let step = Step::new(ctx);
        let (hb, vb) = (ctx.upload("h", &h).unwrap(), ctx.upload("v", v).unwrap());
        let k = add(ctx, &step, n, mode, &hb, &vb).unwrap();
        let got = run_and_read(ctx, &step, n_tok as u32, 0, &[&k], &hb, n * n_tok);
        let want: Vec<f32> = h
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                a + if mode == AddMode::Broadcast {
                    v[i % n]
                } else {
                    v[i]
                }
            })
            .collect();
        assert_eq!(got, want, "{mode:?}");
    }
}

/// KV store at pos0 and interleaved recording place rows exactly where the CPU would.
#[test]
fn copy_rows_places_rows() {
    let Some(ctx) = gpu() else { return };
    let (n, n_tok) = (40usize, 3usize);
    let src = Rng(71).vec(n * n_tok, 1.0);
    let sb = ctx.upload("src", &src).unwrap();

    // Cache of 10 rows, store tokens at positions 5, 6, 7.
    let step = Step::new(ctx);
    let cache = ctx.upload("cache", &vec![-1.0f32; 10 * n]).unwrap();
    let k = copy_rows(ctx, &step, n, RowDest::AtPosition, &sb, &cache).unwrap();
    let got = run_and_read(ctx, &step, n_tok as u32, 5, &[&k], &cache, 10 * n);
    let mut want = vec![-1.0f32; 10 * n];
    want[5 * n..8 * n].copy_from_slice(&src);
    assert_eq!(got, want, "KV store");
    // Positions 8..11 would run past the 10-row cache: refused, nothing dispatched.
    step.set(ctx, n_tok as u32, 8);
    assert!(ctx.run(|pass| k.encode(pass)).is_err());

    // Record as slot 1 of 2 per token.
    let rec = ctx.upload("rec", &vec![-1.0f32; n_tok * 2 * n]).unwrap();
    let k = copy_rows(
        ctx,
        &step,
        n,
        RowDest::Interleaved { slot: 1, stride: 2 },
        &sb,
        &rec,
    )
    .unwrap();
    let got = run_and_read(ctx, &step, n_tok as u32, 5, &[&k], &rec, n_tok * 2 * n);
    let mut want = vec![-1.0f32; n_tok * 2 * n];
    for t in 0..n_tok {
        want[(2 * t + 1) * n..(2 * t + 2) * n].copy_from_slice(&src[t * n..(t + 1) * n]);
    }
    assert_eq!(got, want, "record");
}

/// Argmax: a planted maximum, ties resolved to the first index, NaNs ignored, and the
/// last-row mode reading the step's last token.
#[test]
fn argmax_picks_first_largest() {
    let Some(ctx) = gpu() else { return };
    let vocab = 49152usize;
    let mut logits = Rng(81).vec(2 * vocab, 3.0);
    logits[vocab + 777] = 50.0;
    logits[vocab + 40000] = 50.0; // tie: the earlier index wins
    logits[vocab + 5] = f32::NAN;
    logits[123] = 60.0; // row 0's maximum
    let step = Step::new(ctx);
    let lb = ctx.upload("logits", &logits).unwrap();
    let out = ctx.storage("out", 1).unwrap();
    for (last_row, want) in [(true, 777u32), (false, 123)] {
        let k = argmax::argmax(ctx, &step, vocab, last_row, &lb, &out).unwrap();
        step.set(ctx, 2, 0);
        ctx.run(|pass| k.encode(pass)).unwrap();
        let got = pollster::block_on(ctx.read_u32(&out, 0, 1)).unwrap();
        assert_eq!(got, vec![want], "last_row {last_row}");
    }
}

/// Clamp with each bound combination vs f64; 1e-5 relative to max |h|.
#[test]
fn clamp_projection_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let (n, n_tok) = (576usize, 4usize);
    let mut rng = Rng(91);
    let h = rng.vec(n * n_tok, 1.0);
    let mut unit = rng.vec(n, 1.0);
    let norm = unit.iter().map(|v| v * v).sum::<f32>().sqrt();
    unit.iter_mut().for_each(|v| *v /= norm);
    // Projections of the four tokens are spread around 0; bounds cut some of them.
    for (min, max) in [
        (Some(-0.2f32), None),
        (None, Some(0.1f32)),
        (Some(-0.3), Some(0.3)),
        (None, None),
    ] {
        let step = Step::new(ctx);
        let (ub, hb) = (
            ctx.upload("u", &unit).unwrap(),
            ctx.upload("h", &h).unwrap(),
        );
        let k = hooks::clamp_projection(ctx, &step, n, min, max, &ub, &hb).unwrap();
        let got = run_and_read(ctx, &step, n_tok as u32, 0, &[&k], &hb, n * n_tok);
        let mut want = Vec::new();
        for t in 0..n_tok {
            let row = &h[t * n..(t + 1) * n];
            let p: f64 = row
                .iter()
                .zip(&unit)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let mut c = p;
            if let Some(lo) = min {
                c = c.max(lo as f64);
            }
            if let Some(hi) = max {
                c = c.min(hi as f64);
            }
            want.extend(
                row.iter()
                    .zip(&unit)
                    .map(|(&a, &u)| a as f64 + u as f64 * (c - p)),
            );
        }
        let scale = h.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        let err = max_rel_err(&got, &want, &vec![scale; want.len()]);
        assert!(err <= 1e-5, "clamp {min:?} {max:?}: error {err:.2e}");
    }
    let b = ctx.storage("b", n).unwrap();
    assert!(
        hooks::clamp_projection(ctx, &Step::new(ctx), n, Some(1.0), Some(0.0), &b, &b).is_err()
    );
}
