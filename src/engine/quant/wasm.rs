//! simd128 dot products for the browser, for the formats the default model runs (Q4_1 with
//! Q8_1 activations, Q8_0 with Q8_0). candle has none for Q4_1; integer block sums are exact, so
//! these agree with the scalar kernels up to float summation order.
//!
//! Decoding runs them four rows at a time (`*_rows`): the activations are loaded once per block
//! for all four, and four independent weight streams keep the memory busy. That alone took
//! decoding in Chromium from 24 to 32 tokens/s (BENCHMARKS.md).
//!
//! With the `relaxed-simd` feature (the second worker binary, started where the page finds the
//! standard relaxed SIMD, src/web/page/client.rs) Q4_1 multiplies with
//! `i32x4.relaxed_dot_i8x16_i7x16_add`: one instruction per 16 weights instead of four widenings
//! and two 16-bit dot products. Its result is implementation-defined only when the second
//! operand has its top bit set; 4-bit weights never do, and the pairwise 16-bit sums (at most
//! 2 * 127 * 15) cannot saturate, so it is exact: both builds give bit-identical outputs.

use super::act::{BlockQ8_0, BlockQ8_1};
use super::rows::{by_groups, f16_ptr};
use core::arch::wasm32::*;

#[cfg(not(feature = "relaxed-simd"))]
#[inline]
fn dot_u8_i8(w: v128, a: v128) -> v128 {
    // Both halves widened to i16, multiplied and pair-summed to i32 lanes.
    let lo = i32x4_dot_i16x8(u16x8_extend_low_u8x16(w), i16x8_extend_low_i8x16(a));
    let hi = i32x4_dot_i16x8(u16x8_extend_high_u8x16(w), i16x8_extend_high_i8x16(a));
    i32x4_add(lo, hi)
}

#[inline]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

/// Which kernels this build runs, for the backend line and the benchmarks.
pub const NAME: &str = if cfg!(feature = "relaxed-simd") {
    "simd128+relaxed"
} else {
    "simd128"
};

/// Integer dot product of one Q4_1 block's 32 nibbles (`lo`: elements 0-15, `hi`: 16-31) with
/// 32 activations, as four i32 lanes.
#[cfg(not(feature = "relaxed-simd"))]
#[inline]
fn dot_nibbles(lo: v128, hi: v128, a0: v128, a1: v128) -> v128 {
    i32x4_add(dot_u8_i8(lo, a0), dot_u8_i8(hi, a1))
}

#[cfg(feature = "relaxed-simd")]
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn dot_nibbles(lo: v128, hi: v128, a0: v128, a1: v128) -> v128 {
    let s = i32x4_relaxed_dot_i8x16_i7x16_add(a0, lo, i32x4_splat(0));
    i32x4_relaxed_dot_i8x16_i7x16_add(a1, hi, s)
}

pub fn dot_q4_1_rows(rows: &[u8], x: &[BlockQ8_1], out: &mut [f32]) {
    let rb = x.len() * 20;
    // SAFETY (both): `by_groups` passes the start of N whole rows of x.len() blocks.
    by_groups(
        rows,
        rb,
        out,
        |p| unsafe { q4_1_group(p, rb, x) },
        |p| unsafe { q4_1_group(p, rb, x) },
    );
}

pub fn dot_q8_0_rows(rows: &[u8], x: &[BlockQ8_0], out: &mut [f32]) {
    let rb = x.len() * 34;
    // SAFETY (both): as above.
    by_groups(
        rows,
        rb,
        out,
        |p| unsafe { q8_0_group(p, rb, x) },
        |p| unsafe { q8_0_group(p, rb, x) },
    );
}

/// N consecutive Q4_1 rows (20-byte blocks: f16 scale, f16 min, 16 bytes of nibbles) of `rb`
/// bytes from `base`, dotted with `x`.
///
/// # Safety
/// `base` must point at N readable rows of `x.len()` blocks.
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
unsafe fn q4_1_group<const N: usize>(base: *const u8, rb: usize, x: &[BlockQ8_1]) -> [f32; N] {
    let low = u8x16_splat(0x0F);
    let mut acc = [f32x4_splat(0.0); N];
    let mut mins = [0f32; N];
    for (b, y) in x.iter().enumerate() {
        // SAFETY: the caller's rows hold block b of each row; qs holds 32 activations.
        unsafe {
            let a0 = v128_load(y.qs.as_ptr() as *const v128);
            let a1 = v128_load(y.qs.as_ptr().add(16) as *const v128);
            for (k, (acc, min)) in acc.iter_mut().zip(&mut mins).enumerate() {
                let blk = base.add(k * rb + b * 20);
                let qs = v128_load(blk.add(4) as *const v128);
                let s = dot_nibbles(v128_and(qs, low), u8x16_shr(qs, 4), a0, a1);
                let d = f32x4_splat(f16_ptr(blk) * y.d);
                *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(s), d));
                *min += f16_ptr(blk.add(2)) * y.s;
            }
        }
    }
    core::array::from_fn(|k| hsum(acc[k]) + mins[k])
}

/// N consecutive Q8_0 rows (34-byte blocks: f16 scale, 32 signed bytes) dotted with `x`; the
/// activations are widened once per block for all N rows.
///
/// # Safety
/// `base` must point at N readable rows of `x.len()` blocks.
unsafe fn q8_0_group<const N: usize>(base: *const u8, rb: usize, x: &[BlockQ8_0]) -> [f32; N] {
    let mut acc = [f32x4_splat(0.0); N];
    for (b, y) in x.iter().enumerate() {
        // SAFETY: as in `q4_1_group`.
        unsafe {
            let a0 = v128_load(y.qs.as_ptr() as *const v128);
            let a1 = v128_load(y.qs.as_ptr().add(16) as *const v128);
            let a = [
                i16x8_extend_low_i8x16(a0),
                i16x8_extend_high_i8x16(a0),
                i16x8_extend_low_i8x16(a1),
                i16x8_extend_high_i8x16(a1),
            ];
            for (k, acc) in acc.iter_mut().enumerate() {
                let blk = base.add(k * rb + b * 34);
                let w0 = v128_load(blk.add(2) as *const v128);
                let w1 = v128_load(blk.add(18) as *const v128);
                let s = i32x4_add(
                    i32x4_add(
                        i32x4_dot_i16x8(i16x8_extend_low_i8x16(w0), a[0]),
                        i32x4_dot_i16x8(i16x8_extend_high_i8x16(w0), a[1]),
                    ),
                    i32x4_add(
                        i32x4_dot_i16x8(i16x8_extend_low_i8x16(w1), a[2]),
                        i32x4_dot_i16x8(i16x8_extend_high_i8x16(w1), a[3]),
                    ),
                );
                let d = f32x4_splat(f16_ptr(blk) * y.d);
                *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(s), d));
            }
        }
    }
    acc.map(hsum)
}
