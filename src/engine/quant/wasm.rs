//! simd128 dot products for the browser, for the formats the default model runs (Q4_1 with
//! Q8_1 activations, Q8_0 with Q8_0). candle has none for Q4_1; integer block sums are exact, so
//! these agree with the scalar kernels up to float summation order.

use super::act::{BlockQ8_0, BlockQ8_1};
use super::f16_at;
use core::arch::wasm32::*;

#[inline]
fn dot_u8_i8(w: v128, a: v128) -> v128 {
    // Both halves widened to i16, multiplied and pair-summed to i32 lanes.
    let lo = i32x4_dot_i16x8(u16x8_extend_low_u8x16(w), i16x8_extend_low_i8x16(a));
    let hi = i32x4_dot_i16x8(u16x8_extend_high_u8x16(w), i16x8_extend_high_i8x16(a));
    i32x4_add(lo, hi)
}

#[inline]
fn dot_i8_i8(w: v128, a: v128) -> v128 {
    let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(a));
    let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(a));
    i32x4_add(lo, hi)
}

#[inline]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

pub fn dot_q4_1(row: &[u8], x: &[BlockQ8_1]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let mut mins = 0f32;
    let low = u8x16_splat(0x0F);
    for (blk, y) in row.chunks_exact(20).zip(x) {
        // SAFETY: chunks_exact(20) leaves 16 bytes after the 4-byte header; qs holds 32.
        let (qs, a0, a1) = unsafe {
            (
                v128_load(blk.as_ptr().add(4) as *const v128),
                v128_load(y.qs.as_ptr() as *const v128),
                v128_load(y.qs.as_ptr().add(16) as *const v128),
            )
        };
        let lo = v128_and(qs, low);
        let hi = u8x16_shr(qs, 4);
        let s = i32x4_add(dot_u8_i8(lo, a0), dot_u8_i8(hi, a1));
        acc = f32x4_add(
            acc,
            f32x4_mul(f32x4_convert_i32x4(s), f32x4_splat(f16_at(blk, 0) * y.d)),
        );
        mins += f16_at(blk, 2) * y.s;
    }
    hsum(acc) + mins
}

pub fn dot_q8_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (blk, y) in row.chunks_exact(34).zip(x) {
        // SAFETY: chunks_exact(34) leaves 32 bytes after the 2-byte scale; qs holds 32.
        let (w0, w1, a0, a1) = unsafe {
            (
                v128_load(blk.as_ptr().add(2) as *const v128),
                v128_load(blk.as_ptr().add(18) as *const v128),
                v128_load(y.qs.as_ptr() as *const v128),
                v128_load(y.qs.as_ptr().add(16) as *const v128),
            )
        };
        let s = i32x4_add(dot_i8_i8(w0, a0), dot_i8_i8(w1, a1));
        acc = f32x4_add(
            acc,
            f32x4_mul(f32x4_convert_i32x4(s), f32x4_splat(f16_at(blk, 0) * y.d)),
        );
    }
    hsum(acc)
}
