//! CPU quantized kernels. Weights stay in their GGUF blocks and are read in place (Q4_1 rows
//! interleaved by eight where the machine has the kernel for it, `packed.rs`); activations
//! are quantized the way llama.cpp quantizes them before each dot product (Q8_0, Q8_1 or Q8_K,
//! f16 for f16 weights), so our logits track llama.cpp's, not just the float ideal.
//!
//! - `legacy.rs`: Q4_0, Q4_1, Q5_0, Q8_0 blocks (32 values).
//! - `kquants.rs`: Q4_K, Q5_K, Q6_K super-blocks (256 values).
//! - `float.rs`: F32 and F16.
//! - `act.rs`: activation quantization.
//! - `reference.rs`: the unoptimised twin (dequantize, f64 dot with unquantized activations)
//!   that tests hold the fast kernels to.
//! - `matrix.rs`: `QMatrix`, a weight matrix inside the file's bytes, and its threaded matmul.
//! - `packed.rs`: Q4_1 with eight rows interleaved, which the CPU engine computes from where
//!   this machine has the kernel (AVX2): the scalar kernel's values, bit for bit, faster.
//! - `x86.rs` (AVX2) and `wasm.rs` (simd128, relaxed SIMD): fast Q4_1, Q5_0, Q8_0 and K-quant
//!   dot products, weight rows by activation rows in tiles (`rows.rs`), chosen by
//!   [`QType::dot`] and [`QType::dot_tiles`].

pub mod act;
pub mod float;
pub mod kquants;
pub mod legacy;
pub mod matrix;
pub mod packed;
pub mod reference;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod rows;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;
// This target's tile kernels, for rows.rs.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use wasm as simd;
#[cfg(target_arch = "x86_64")]
use x86 as simd;

pub use act::Acts;
pub use matrix::{QMatrix, RowServer};
pub use rows::Gathered;

use candle_core::quantized::GgmlDType;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum QType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

pub const QK: usize = 32;
pub const QK_K: usize = 256;

impl QType {
    pub const ALL: [QType; 9] = [
        QType::F32,
        QType::F16,
        QType::Q4_0,
        QType::Q4_1,
        QType::Q5_0,
        QType::Q8_0,
        QType::Q4K,
        QType::Q5K,
        QType::Q6K,
    ];

    pub fn from_ggml(t: GgmlDType) -> Option<Self> {
        Some(match t {
            GgmlDType::F32 => QType::F32,
            GgmlDType::F16 => QType::F16,
            GgmlDType::Q4_0 => QType::Q4_0,
            GgmlDType::Q4_1 => QType::Q4_1,
            GgmlDType::Q5_0 => QType::Q5_0,
            GgmlDType::Q8_0 => QType::Q8_0,
            GgmlDType::Q4K => QType::Q4K,
            GgmlDType::Q5K => QType::Q5K,
            GgmlDType::Q6K => QType::Q6K,
            _ => return None,
        })
    }

    pub fn to_ggml(self) -> GgmlDType {
        match self {
            QType::F32 => GgmlDType::F32,
            QType::F16 => GgmlDType::F16,
            QType::Q4_0 => GgmlDType::Q4_0,
            QType::Q4_1 => GgmlDType::Q4_1,
            QType::Q5_0 => GgmlDType::Q5_0,
            QType::Q8_0 => GgmlDType::Q8_0,
            QType::Q4K => GgmlDType::Q4K,
            QType::Q5K => GgmlDType::Q5K,
            QType::Q6K => GgmlDType::Q6K,
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            QType::F32 | QType::F16 => 1,
            QType::Q4_0 | QType::Q4_1 | QType::Q5_0 | QType::Q8_0 => QK,
            QType::Q4K | QType::Q5K | QType::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            QType::F32 => 4,
            QType::F16 => 2,
            QType::Q4_0 => 18,
            QType::Q4_1 => 20,
            QType::Q5_0 => 22,
            QType::Q8_0 => 34,
            QType::Q4K => 144,
            QType::Q5K => 176,
            QType::Q6K => 210,
        }
    }

    /// Dequantizes one row (a whole number of blocks) into `out`.
    pub fn dequantize_row(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            QType::F32 => float::dequantize_f32(bytes, out),
            QType::F16 => float::dequantize_f16(bytes, out),
            QType::Q4_0 => legacy::dequantize_q4_0(bytes, out),
            QType::Q4_1 => legacy::dequantize_q4_1(bytes, out),
            QType::Q5_0 => legacy::dequantize_q5_0(bytes, out),
            QType::Q8_0 => legacy::dequantize_q8_0(bytes, out),
            QType::Q4K => kquants::dequantize_q4k(bytes, out),
            QType::Q5K => kquants::dequantize_q5k(bytes, out),
            QType::Q6K => kquants::dequantize_q6k(bytes, out),
        }
    }

    /// Dot product of one weight row with one activation row quantized by [`Acts::quantize`]
    /// for this weight type.
    pub fn dot(self, row: &[u8], x: &Acts) -> f32 {
        let mut out = [0f32];
        let xs = std::slice::from_ref(x);
        if fast_tiles(self, row, xs, &Gathered::default(), &mut out) {
            return out[0];
        }
        match (self, x) {
            (QType::F32, Acts::F32(x)) => float::dot_f32(row, x),
            (QType::F16, Acts::F16(x)) => float::dot_f16(row, x),
            (QType::Q4_0, Acts::Q8_0(x)) => legacy::dot_q4_0(row, x),
            (QType::Q4_1, Acts::Q8_1(x)) => legacy::dot_q4_1(row, x),
            (QType::Q5_0, Acts::Q8_0(x)) => legacy::dot_q5_0(row, x),
            (QType::Q8_0, Acts::Q8_0(x)) => legacy::dot_q8_0(row, x),
            (QType::Q4K, Acts::Q8K(x)) => kquants::dot_q4k(row, x),
            (QType::Q5K, Acts::Q8K(x)) => kquants::dot_q5k(row, x),
            (QType::Q6K, Acts::Q8K(x)) => kquants::dot_q6k(row, x),
            _ => unreachable!("activations quantized for another weight type"),
        }
    }
}

impl QType {
    /// `out[r * xs.len() + t]` = row `r` of `rows` (consecutive rows of one matrix) dotted with
    /// `xs[t]`: what [`QType::dot`] gives for each pair, bit for bit, on a tiled kernel where
    /// one exists (rows.rs). `g` holds the scales of `xs` gathered for the kernels
    /// ([`Gathered::of`]), once for all the row chunks of one product.
    pub fn dot_tiles(self, rows: &[u8], xs: &[Acts], g: &Gathered, out: &mut [f32]) {
        if fast_tiles(self, rows, xs, g, out) {
            return;
        }
        let rb = rows.len() * xs.len() / out.len().max(1);
        for (per_tok, row) in out.chunks_exact_mut(xs.len()).zip(rows.chunks_exact(rb)) {
            for (o, x) in per_tok.iter_mut().zip(xs) {
                *o = self.dot(row, x);
            }
        }
    }
}

/// The dot-product kernels this build runs on this machine ("avx2", "simd128",
/// "simd128+relaxed" or "scalar"): shown on the backend line and recorded by the benchmarks.
pub fn kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        return "avx2";
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return wasm::NAME;
    #[allow(unreachable_code)]
    "scalar"
}

/// The fast kernels this machine has (AVX2, simd128 or relaxed SIMD): `out[r][t]` = row `r` of
/// `rows` dotted with `xs[t]`, in tiles. False where there is none for `qtype` (F32, F16, Q4_0),
/// and the caller runs the scalar kernels.
fn fast_tiles(qtype: QType, rows: &[u8], xs: &[Acts], g: &Gathered, out: &mut [f32]) -> bool {
    if xs.is_empty() || out.is_empty() {
        return false;
    }
    let rb = rows.len() * xs.len() / out.len();
    // The kernels read `rb` bytes of weights per activation row: its blocks must cover them.
    assert!(xs.iter().all(|x| x.blocks() * qtype.type_size() == rb));
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        // SAFETY: checked just above; the kernels take the activations in the form
        // `Acts::quantize` gives `qtype` and panic on another.
        return unsafe { rows::dot_tiles(qtype, rows, rb, xs, g, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    // SAFETY: as above.
    return unsafe { rows::dot_tiles(qtype, rows, rb, xs, g, out) };
    #[allow(unreachable_code)]
    {
        let _ = (rb, g);
        false
    }
}

/// Every f16 bit pattern's f32 value: block scales are read on every dot product, and a table
/// lookup beats software conversion where the CPU (or wasm) has no f16 instructions.
pub(super) static F16_TO_F32: [f32; 65536] = {
    let mut t = [0f32; 65536];
    let mut i = 0;
    while i < 65536 {
        t[i] = half::f16::from_bits(i as u16).to_f32_const();
        i += 1;
    }
    t
};

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    F16_TO_F32[u16::from_le_bytes([b[i], b[i + 1]]) as usize]
}
