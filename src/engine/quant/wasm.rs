//! simd128 dot products for the browser, for the formats the default model runs (Q4_1 with
//! Q8_1 activations, Q8_0 with Q8_0). candle has none for Q4_1; integer block sums are exact, so
//! these agree with the scalar kernels up to float summation order.
//!
//! Decoding runs them four rows at a time (tiles, rows.rs): the activations are loaded once per
//! block for all four, and four independent weight streams keep the memory busy. That alone took
//! decoding in Chromium from 24 to 32 tokens/s (BENCHMARKS.md).
//!
//! With the `relaxed-simd` feature (the second worker binary, started where the page finds the
//! standard relaxed SIMD, src/web/page/client.rs) Q4_1 multiplies with
//! `i32x4.relaxed_dot_i8x16_i7x16_add`: one instruction per 16 weights instead of four widenings
//! and two 16-bit dot products. Its result is implementation-defined only when the second
//! operand has its top bit set; 4-bit weights never do, and the pairwise 16-bit sums (at most
//! 2 * 127 * 15) cannot saturate, so it is exact: both builds give bit-identical outputs.

use super::Acts;
use super::act::{BlockQ8_0, BlockQ8_1};
use super::rows::{Tile, by_tiles, f16_ptr};
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

/// Q4_1 weights with Q8_1 activations, in tiles ([`by_tiles`]), each pair exactly as alone.
///
/// # Safety
/// Every `xs[t]` is Q8_1 of `rb / 20` blocks.
pub unsafe fn dot_q4_1_tiles(rows: &[u8], rb: usize, xs: &[Acts], out: &mut [f32]) {
    // SAFETY: the caller's promise.
    unsafe { by_tiles(rows, rb, xs, out, &Q4_1) }
}

/// Q8_0 weights with Q8_0 activations, in tiles, each pair exactly as alone.
///
/// # Safety
/// Every `xs[t]` is Q8_0 of `rb / 34` blocks.
pub unsafe fn dot_q8_0_tiles(rows: &[u8], rb: usize, xs: &[Acts], out: &mut [f32]) {
    // SAFETY: the caller's promise.
    unsafe { by_tiles(rows, rb, xs, out, &Q8_0) }
}

struct Q4_1;
struct Q8_0;

impl Tile for Q4_1 {
    unsafe fn tile<const R: usize, const T: usize>(
        &self,
        base: *const u8,
        rb: usize,
        xs: &[Acts],
    ) -> [[f32; T]; R] {
        // SAFETY: the caller's promise.
        unsafe { q4_1_tile(base, rb, Acts::q8_1_rows(xs)) }
    }
}

impl Tile for Q8_0 {
    unsafe fn tile<const R: usize, const T: usize>(
        &self,
        base: *const u8,
        rb: usize,
        xs: &[Acts],
    ) -> [[f32; T]; R] {
        // SAFETY: the caller's promise.
        unsafe { q8_0_tile(base, rb, Acts::q8_0_rows(xs)) }
    }
}

/// R consecutive Q4_1 rows (20-byte blocks: f16 scale, f16 min, 16 bytes of nibbles) of `rb`
/// bytes from `base`, dotted with T activation rows: each weight block is unpacked once for the
/// T, each activation block loaded once for the R.
///
/// # Safety
/// `base` must point at R readable rows of `xs[t].len()` blocks.
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[allow(clippy::needless_range_loop)] // (r, t) index a tile's accumulators
unsafe fn q4_1_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8_1]; T],
) -> [[f32; T]; R] {
    let low = u8x16_splat(0x0F);
    let mut acc = [[f32x4_splat(0.0); T]; R];
    let mut mins = [[0f32; T]; R];
    for b in 0..xs[0].len() {
        let ys: [&BlockQ8_1; T] = core::array::from_fn(|t| &xs[t][b]);
        // SAFETY: the caller's rows hold block b of each row; qs holds 32 activations.
        unsafe {
            let a: [(v128, v128); T] = ys.map(|y| {
                (
                    v128_load(y.qs.as_ptr() as *const v128),
                    v128_load(y.qs.as_ptr().add(16) as *const v128),
                )
            });
            for r in 0..R {
                let blk = base.add(r * rb + b * 20);
                let qs = v128_load(blk.add(4) as *const v128);
                let (lo, hi) = (v128_and(qs, low), u8x16_shr(qs, 4));
                let (dw, mw) = (f16_ptr(blk), f16_ptr(blk.add(2)));
                for t in 0..T {
                    let s = dot_nibbles(lo, hi, a[t].0, a[t].1);
                    let d = f32x4_splat(dw * ys[t].d);
                    acc[r][t] = f32x4_add(acc[r][t], f32x4_mul(f32x4_convert_i32x4(s), d));
                    mins[r][t] += mw * ys[t].s;
                }
            }
        }
    }
    core::array::from_fn(|r| core::array::from_fn(|t| hsum(acc[r][t]) + mins[r][t]))
}

/// R consecutive Q8_0 rows (34-byte blocks: f16 scale, 32 signed bytes) dotted with T
/// activation rows; each activation block is widened once for the R, each weight block once for
/// the T.
///
/// # Safety
/// `base` must point at R readable rows of `xs[t].len()` blocks.
#[allow(clippy::needless_range_loop)]
unsafe fn q8_0_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8_0]; T],
) -> [[f32; T]; R] {
    let mut acc = [[f32x4_splat(0.0); T]; R];
    for b in 0..xs[0].len() {
        let ys: [&BlockQ8_0; T] = core::array::from_fn(|t| &xs[t][b]);
        // SAFETY: as in `q4_1_tile`.
        unsafe {
            let a: [[v128; 4]; T] = ys.map(|y| widen(y.qs.as_ptr()));
            for r in 0..R {
                let blk = base.add(r * rb + b * 34);
                let w = widen(blk.add(2) as *const i8);
                let dw = f16_ptr(blk);
                for t in 0..T {
                    let a = &a[t];
                    let s = i32x4_add(
                        i32x4_add(i32x4_dot_i16x8(w[0], a[0]), i32x4_dot_i16x8(w[1], a[1])),
                        i32x4_add(i32x4_dot_i16x8(w[2], a[2]), i32x4_dot_i16x8(w[3], a[3])),
                    );
                    let d = f32x4_splat(dw * ys[t].d);
                    acc[r][t] = f32x4_add(acc[r][t], f32x4_mul(f32x4_convert_i32x4(s), d));
                }
            }
        }
    }
    core::array::from_fn(|r| core::array::from_fn(|t| hsum(acc[r][t])))
}

/// 32 signed bytes from `p` widened to four i16x8 vectors.
///
/// # Safety
/// `p` must point at 32 readable bytes.
#[inline]
unsafe fn widen(p: *const i8) -> [v128; 4] {
    // SAFETY: the caller's promise.
    let (v0, v1) = unsafe {
        (
            v128_load(p as *const v128),
            v128_load(p.add(16) as *const v128),
        )
    };
    [
        i16x8_extend_low_i8x16(v0),
        i16x8_extend_high_i8x16(v0),
        i16x8_extend_low_i8x16(v1),
        i16x8_extend_high_i8x16(v1),
    ]
}
