//! Activation quantization before a dot product, mirroring llama.cpp's x86 path: Q8_0/Q8_1 use
//! `id = 127 / amax` and round-half-even, store `d` (and Q8_1's `s = d * sum(q)`) as f16;
//! Q8_K keeps `d` in f32 and the sums of each 16 values. Rounding the stored scales matters:
//! it is part of what makes greedy decoding agree with llama.cpp token for token.

use super::float::{max_of, round_f16};
use super::{QK, QK_K, QType};

#[derive(Clone, Copy)]
pub struct BlockQ8_0 {
    pub d: f32,
    pub qs: [i8; QK],
}

#[derive(Clone, Copy)]
pub struct BlockQ8_1 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

#[derive(Clone, Copy)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

/// One activation row, in the form the weight type's dot product wants.
pub enum Acts {
    F32(Vec<f32>),
    /// Values rounded to f16 (kept as f32 for arithmetic).
    F16(Vec<f32>),
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
    Q8K(Vec<BlockQ8K>),
}

/// Round half to even, as llama.cpp's SIMD rounding does, for |x| < 2^22 (NaN gives 0): adding
/// 1.5 * 2^23 leaves no fraction bits, so the FPU's default rounding does the work, and the
/// sum's low mantissa bits are the rounded value. Read from the bits, not converted: Rust's
/// saturating `as i32` would keep x86 code scalar, and this way a block's loop vectorizes.
#[inline(always)]
fn round_even(x: f32) -> i32 {
    let r = (x + 12_582_912.0).to_bits() as i32 - 0x4B40_0000;
    if x.is_nan() { 0 } else { r }
}

/// Quantizes 32 values to i8 with llama.cpp's x86 rounding; returns (d as stored, sum of q).
fn q8_block(x: &[f32], qs: &mut [i8; QK]) -> (f32, f32, i32) {
    // Maxima in eight lanes, then across them: the largest |x| (NaN skipped) in any order.
    let mut lanes = [0f32; 8];
    for c in x.chunks_exact(8) {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = max_of(*m, v.abs());
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &v| max_of(m, v));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        // |v * id| <= 127 unless v is infinite, and then id is 0 and v * id NaN.
        let r = round_even(v * id);
        *q = r as i8;
        sum += r;
    }
    (round_f16(d), d, sum)
}

impl Acts {
    /// Blocks in this row (values, for F32 and F16): what a weight row of the matching type
    /// holds, `QType::type_size` bytes each.
    pub fn blocks(&self) -> usize {
        match self {
            Acts::F32(v) | Acts::F16(v) => v.len(),
            Acts::Q8_0(b) => b.len(),
            Acts::Q8_1(b) => b.len(),
            Acts::Q8K(b) => b.len(),
        }
    }

    /// The first `T` rows' Q8_1 blocks: what the Q4_1 tile kernels take.
    pub fn q8_1_rows<const T: usize>(xs: &[Acts]) -> [&[BlockQ8_1]; T] {
        core::array::from_fn(|t| match &xs[t] {
            Acts::Q8_1(x) => x.as_slice(),
            _ => unreachable!("Q4_1 weights take Q8_1 activations"),
        })
    }

    /// The first `T` rows' Q8_0 blocks: what the Q8_0 tile kernels take.
    pub fn q8_0_rows<const T: usize>(xs: &[Acts]) -> [&[BlockQ8_0]; T] {
        core::array::from_fn(|t| match &xs[t] {
            Acts::Q8_0(x) => x.as_slice(),
            _ => unreachable!("Q8_0 weights take Q8_0 activations"),
        })
    }

    /// The first `T` rows' Q8_K blocks: what the K-quant tile kernels take.
    pub fn q8k_rows<const T: usize>(xs: &[Acts]) -> [&[BlockQ8K]; T] {
        core::array::from_fn(|t| match &xs[t] {
            Acts::Q8K(x) => x.as_slice(),
            _ => unreachable!("K-quant weights take Q8_K activations"),
        })
    }

    pub fn quantize(qtype: QType, x: &[f32]) -> Acts {
        match qtype {
            QType::F32 => Acts::F32(x.to_vec()),
            QType::F16 => Acts::F16(x.iter().map(|&v| round_f16(v)).collect()),
            QType::Q4_0 | QType::Q5_0 | QType::Q8_0 => Acts::Q8_0(
                x.chunks_exact(QK)
                    .map(|c| {
                        let mut b = BlockQ8_0 {
                            d: 0.0,
                            qs: [0; QK],
                        };
                        b.d = q8_block(c, &mut b.qs).0;
                        b
                    })
                    .collect(),
            ),
            QType::Q4_1 => Acts::Q8_1(
                x.chunks_exact(QK)
                    .map(|c| {
                        let mut b = BlockQ8_1 {
                            d: 0.0,
                            s: 0.0,
                            qs: [0; QK],
                        };
                        let (d16, d, sum) = q8_block(c, &mut b.qs);
                        b.d = d16;
                        b.s = round_f16(d * sum as f32);
                        b
                    })
                    .collect(),
            ),
            QType::Q4K | QType::Q5K | QType::Q6K => {
                Acts::Q8K(x.chunks_exact(QK_K).map(q8k_block).collect())
            }
        }
    }
}

fn q8k_block(x: &[f32]) -> BlockQ8K {
    let mut b = BlockQ8K {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
    // The signed value of largest magnitude sets the scale, so it maps to exactly -127.
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return b;
    }
    let iscale = -127.0 / max;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = round_even(iscale * v).min(127) as i8;
    }
    for (s, c) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = c.iter().map(|&q| q as i16).sum();
    }
    b.d = 1.0 / iscale;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_rounding_rounds_half_to_even() {
        let want = |x: f32| x.round_ties_even() as i32;
        // Every quarter step over the range a block reaches, the halves included, both signs.
        for i in -4 * 130..=4 * 130 {
            let x = i as f32 / 4.0;
            assert_eq!(round_even(x), want(x), "{x}");
        }
        for x in [0.0, -0.0, 126.99999, -127.00001, 1e-30, -1e-30, f32::NAN] {
            assert_eq!(round_even(x), want(x), "{x}");
        }
    }

    #[test]
    fn a_block_skips_nan_and_maps_its_largest_value_to_127() {
        let mut x: Vec<f32> = (0..QK).map(|i| (i as f32 - 11.3) * 0.37).collect();
        x[5] = f32::NAN;
        x[30] = -20.0;
        let mut qs = [0i8; QK];
        let (_, d, sum) = q8_block(&x, &mut qs);
        assert_eq!(d, 20.0 / 127.0);
        assert_eq!((qs[5], qs[30]), (0, -127));
        assert_eq!(sum, qs.iter().map(|&q| q as i32).sum::<i32>());
        let mut inf = x.clone();
        inf[7] = f32::INFINITY;
        let (_, d, sum) = q8_block(&inf, &mut qs);
        assert_eq!((d, sum), (f32::INFINITY, 0));
    }
}
