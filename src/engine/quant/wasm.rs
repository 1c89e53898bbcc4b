//! simd128 dot products for the browser: Q4_1 with Q8_1 activations and Q8_0 with Q8_0 (the
//! default model), Q5_0 with Q8_0 and the K-quants with Q8_K (the menu's Q4_K_M models). candle
//! has none for Q4_1; integer block sums are exact, so Q4_1, Q5_0 and Q8_0 agree with the scalar
//! kernels up to float summation order, and the K-quant kernels, which combine each block's
//! integer sums in the scalar kernels' order, equal them bit for bit.
//!
//! Over 600 lines: the browser's whole kernel set (each format's tiles, and packed Q4_1), so
//! that each kernel's simd128 and relaxed forms sit beside each other, as x86.rs holds AVX2's.
//!
//! Decoding runs them four rows at a time (tiles, rows.rs): the activations are loaded once per
//! block for all four, and four independent weight streams keep the memory busy. That alone took
//! decoding in Chromium from 24 to 32 tokens/s (BENCHMARKS.md).
//!
//! With the `relaxed-simd` feature (the second worker binary, started where the page finds the
//! standard relaxed SIMD, src/web/page/client.rs) unsigned weights multiply with
//! `i32x4.relaxed_dot_i8x16_i7x16_add`: one instruction per 16 weights instead of four widenings
//! and two 16-bit dot products. Its result is implementation-defined only when the second
//! operand has its top bit set; the unsigned 4-, 5- and 6-bit weights never do, and the pairwise
//! 16-bit sums (at most 2 * 127 * 63) cannot saturate, so it is exact: both builds give
//! bit-identical outputs. Packed Q4_1 keeps a block's sums in 16-bit lanes
//! (`i16x8.relaxed_dot_i8x16_i7x16`, one instruction where the 32-bit form takes three on x86)
//! and widens them once per block.

use super::act::{BlockQ8_0, BlockQ8_1, BlockQ8K};
use super::kquants::{q6k_offset, q45k_block_dot, q45k_offsets, scale_mins};
use super::rows::{TOKENS, TokenScales, block, f16_ptr, tile_kernels};
use core::arch::wasm32::*;

/// Which kernels this build runs, for the backend line and the benchmarks.
pub const NAME: &str = if cfg!(feature = "relaxed-simd") {
    "simd128+relaxed"
} else {
    "simd128"
};

// The Tiles rows.rs dispatches to (Q4_1, Q5_0, Q8_0, Q4K, Q5K, Q6K), over the kernels below.
tile_kernels!();

/// `acc` plus the dot products of 16 unsigned weights below 128 with 16 signed activations,
/// as four i32 lanes.
#[cfg(not(feature = "relaxed-simd"))]
#[inline]
fn dot_acc(w: v128, a: v128, acc: v128) -> v128 {
    // Both halves widened to i16, multiplied and pair-summed to i32 lanes.
    let lo = i32x4_dot_i16x8(u16x8_extend_low_u8x16(w), i16x8_extend_low_i8x16(a));
    let hi = i32x4_dot_i16x8(u16x8_extend_high_u8x16(w), i16x8_extend_high_i8x16(a));
    i32x4_add(acc, i32x4_add(lo, hi))
}

#[cfg(feature = "relaxed-simd")]
#[inline]
#[target_feature(enable = "relaxed-simd")]
fn dot_acc(w: v128, a: v128, acc: v128) -> v128 {
    i32x4_relaxed_dot_i8x16_i7x16_add(a, w, acc)
}

/// Dot product of 32 unsigned weights below 128 (`lo`: elements 0-15, `hi`: 16-31) with 32
/// activations, as four i32 lanes.
#[inline]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
fn dot_32(lo: v128, hi: v128, a0: v128, a1: v128) -> v128 {
    dot_acc(hi, a1, dot_acc(lo, a0, i32x4_splat(0)))
}

#[inline]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

#[inline]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// 32 bytes from `p` as two vectors.
///
/// # Safety
/// `p` must point at 32 readable bytes.
#[inline]
unsafe fn load2<P>(p: *const P) -> (v128, v128) {
    let p = p as *const u8;
    // SAFETY: the caller's promise.
    unsafe {
        (
            v128_load(p as *const v128),
            v128_load(p.add(16) as *const v128),
        )
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
    let mut acc = [[f32x4_splat(0.0); T]; R];
    let mut mins = [[0f32; T]; R];
    for b in 0..xs[0].len() {
        let ys: [&BlockQ8_1; T] = core::array::from_fn(|t| &xs[t][b]);
        // SAFETY: the caller's rows hold block b of each row; qs holds 32 activations.
        unsafe {
            let a: [(v128, v128); T] = ys.map(|y| load2(y.qs.as_ptr()));
            for r in 0..R {
                let (lo, hi, dw, mw) = q4_1_weights(base.add(r * rb + b * 20));
                for t in 0..T {
                    let s = dot_32(lo, hi, a[t].0, a[t].1);
                    acc[r][t] = scaled_add(acc[r][t], s, dw * ys[t].d);
                    mins[r][t] += mw * ys[t].s;
                }
            }
        }
    }
    core::array::from_fn(|r| core::array::from_fn(|t| hsum(acc[r][t]) + mins[r][t]))
}

/// One Q4_1 row dotted with [`TOKENS`] activation rows, each block's scales taken for all of
/// them at once from `g`: per row the same operations as [`q4_1_tile`], so the same bits.
///
/// # Safety
/// `base` must point at a readable row of `g.len()` blocks, as many as each `xs[t]` holds.
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
unsafe fn q4_1_tile8(
    base: *const u8,
    xs: [&[BlockQ8_1]; TOKENS],
    g: &[TokenScales],
) -> [f32; TOKENS] {
    let mut acc = [f32x4_splat(0.0); TOKENS];
    let mut mins = [f32x4_splat(0.0); 2];
    for (b, g) in g.iter().enumerate() {
        // SAFETY: the caller's row holds g.len() blocks, as each xs[t] does.
        unsafe {
            let (lo, hi, dw, mw) = q4_1_weights(base.add(b * 20));
            let d = scales(dw, &g.d);
            let m = scales(mw, &g.s);
            for h in 0..2 {
                mins[h] = f32x4_add(mins[h], v128_load(m.as_ptr().add(4 * h) as *const v128));
            }
            for t in 0..TOKENS {
                let (a0, a1) = load2(block(&xs, t, b).qs.as_ptr());
                acc[t] = scaled_add(acc[t], dot_32(lo, hi, a0, a1), d[t]);
            }
        }
    }
    // SAFETY: two f32x4 are eight f32.
    let mins: [f32; TOKENS] = unsafe { core::mem::transmute(mins) };
    core::array::from_fn(|t| hsum(acc[t]) + mins[t])
}

/// A Q4_1 block (20 bytes: f16 scale, f16 min, 16 bytes of nibbles) as its weights 0-15 and
/// 16-31 (0..15 each), scale and min.
///
/// # Safety
/// `blk` must point at 20 readable bytes.
#[inline]
unsafe fn q4_1_weights(blk: *const u8) -> (v128, v128, f32, f32) {
    // SAFETY: the caller's promise.
    unsafe {
        let qs = v128_load(blk.add(4) as *const v128);
        let (lo, hi) = (v128_and(qs, u8x16_splat(0x0F)), u8x16_shr(qs, 4));
        (lo, hi, f16_ptr(blk), f16_ptr(blk.add(2)))
    }
}

/// `acc` plus the block's integer sums `s` times its scale `d`.
#[inline]
fn scaled_add(acc: v128, s: v128, d: f32) -> v128 {
    f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(s), f32x4_splat(d)))
}

/// `k * v[t]` for each token, rounded as the scalar product is.
#[inline]
fn scales(k: f32, v: &[f32; TOKENS]) -> [f32; TOKENS] {
    let k = f32x4_splat(k);
    // SAFETY: eight f32 are two f32x4, and back.
    unsafe {
        let (v0, v1) = load2(v.as_ptr());
        core::mem::transmute([f32x4_mul(k, v0), f32x4_mul(k, v1)])
    }
}

/// Q5_0's fifth bits as 0x10 in byte i for value i (bit i of `qh`): values 0-15, then 16-31.
#[inline]
fn q5_0_high_bits(qh: u32) -> (v128, v128) {
    let v = u32x4_splat(qh);
    let bit = u64x2_splat(0x8040201008040201);
    // Byte i takes byte i / 8 of qh, then keeps bit i % 8.
    let spread = |idx: v128| {
        let s = v128_and(i8x16_swizzle(v, idx), bit);
        v128_and(u8x16_eq(s, bit), u8x16_splat(0x10))
    };
    (
        spread(u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
        spread(u8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)),
    )
}

/// R consecutive Q5_0 rows (22-byte blocks: f16 scale, 32 fifth bits, 16 bytes of nibbles)
/// dotted with T activation rows. The weights are multiplied unsigned (0..31) and 16 times the
/// activations' sum taken off, which gives the signed products exactly.
///
/// # Safety
/// `base` must point at R readable rows of `xs[t].len()` blocks.
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[allow(clippy::needless_range_loop)]
unsafe fn q5_0_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8_0]; T],
) -> [[f32; T]; R] {
    let mut acc = [[f32x4_splat(0.0); T]; R];
    for b in 0..xs[0].len() {
        let ys: [&BlockQ8_0; T] = core::array::from_fn(|t| &xs[t][b]);
        // SAFETY: as in `q4_1_tile`.
        unsafe {
            let a: [(v128, v128); T] = ys.map(|y| load2(y.qs.as_ptr()));
            let a16: [v128; T] = a.map(|(a0, a1)| sixteen_times(a0, a1));
            for r in 0..R {
                let (lo, hi, dw) = q5_0_weights(base.add(r * rb + b * 22));
                for t in 0..T {
                    let s = i32x4_sub(dot_32(lo, hi, a[t].0, a[t].1), a16[t]);
                    acc[r][t] = scaled_add(acc[r][t], s, dw * ys[t].d);
                }
            }
        }
    }
    core::array::from_fn(|r| core::array::from_fn(|t| hsum(acc[r][t])))
}

/// One Q5_0 row dotted with [`TOKENS`] activation rows, each block's scales taken for all of
/// them at once from `g`: per row the same operations as [`q5_0_tile`], so the same bits.
///
/// # Safety
/// As [`q4_1_tile8`].
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
unsafe fn q5_0_tile8(
    base: *const u8,
    xs: [&[BlockQ8_0]; TOKENS],
    g: &[TokenScales],
) -> [f32; TOKENS] {
    let unpack = |blk| {
        // SAFETY: q8_0_acts_tile8 points at whole blocks of the row.
        let (lo, hi, d) = unsafe { q5_0_weights(blk) };
        ((lo, hi), d)
    };
    let product = |&(lo, hi): &(v128, v128), &(a0, a1): &(v128, v128)| {
        i32x4_sub(dot_32(lo, hi, a0, a1), sixteen_times(a0, a1))
    };
    // SAFETY: the caller's promise.
    unsafe { q8_0_acts_tile8(base, 22, xs, g, unpack, |a| load2(a), product) }
}

/// One row of `size`-byte blocks dotted with [`TOKENS`] rows of Q8_0 activations, each block's
/// scales taken for all of them at once from `g`: `unpack` gives a block's weights and scale,
/// `load` an activation block in the form `product` takes, which gives their integer dot
/// products in i32 lanes.
///
/// # Safety
/// As [`q4_1_tile8`], for blocks of `size` bytes that `unpack` reads.
#[inline]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
unsafe fn q8_0_acts_tile8<W, A>(
    base: *const u8,
    size: usize,
    xs: [&[BlockQ8_0]; TOKENS],
    g: &[TokenScales],
    unpack: impl Fn(*const u8) -> (W, f32),
    load: impl Fn(*const i8) -> A,
    product: impl Fn(&W, &A) -> v128,
) -> [f32; TOKENS] {
    let mut acc = [f32x4_splat(0.0); TOKENS];
    for (b, g) in g.iter().enumerate() {
        // SAFETY: the caller's row holds g.len() blocks, as each xs[t] does.
        unsafe {
            let (w, dw) = unpack(base.add(b * size));
            let d = scales(dw, &g.d);
            for t in 0..TOKENS {
                let a = load(block(&xs, t, b).qs.as_ptr());
                acc[t] = scaled_add(acc[t], product(&w, &a), d[t]);
            }
        }
    }
    core::array::from_fn(|t| hsum(acc[t]))
}

/// A Q5_0 block (22 bytes: f16 scale, 32 fifth bits, 16 bytes of nibbles) as its unsigned
/// weights 0-15 and 16-31 (0..31 each) and scale.
///
/// # Safety
/// `blk` must point at 22 readable bytes.
#[inline]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
unsafe fn q5_0_weights(blk: *const u8) -> (v128, v128, f32) {
    // SAFETY: the caller's promise.
    unsafe {
        let qs = v128_load(blk.add(6) as *const v128);
        let qh = u32::from_le_bytes(core::ptr::read_unaligned(blk.add(2) as *const [u8; 4]));
        let (h0, h1) = q5_0_high_bits(qh);
        let low = u8x16_splat(0x0F);
        let (lo, hi) = (
            v128_or(v128_and(qs, low), h0),
            v128_or(u8x16_shr(qs, 4), h1),
        );
        (lo, hi, f16_ptr(blk))
    }
}

/// 16 times the sums of 32 activations, as four i32 lanes: what the unsigned Q5_0 weights'
/// products overcount.
#[inline]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
fn sixteen_times(a0: v128, a1: v128) -> v128 {
    let one = u8x16_splat(1);
    i32x4_shl(dot_32(one, one, a0, a1), 4)
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
                    acc[r][t] = scaled_add(acc[r][t], dot_i16(&w, &a[t]), dw * ys[t].d);
                }
            }
        }
    }
    core::array::from_fn(|r| core::array::from_fn(|t| hsum(acc[r][t])))
}

/// One Q8_0 row dotted with [`TOKENS`] activation rows, each block's scales taken for all of
/// them at once from `g`: per row the same operations as [`q8_0_tile`], so the same bits.
///
/// # Safety
/// As [`q4_1_tile8`].
unsafe fn q8_0_tile8(
    base: *const u8,
    xs: [&[BlockQ8_0]; TOKENS],
    g: &[TokenScales],
) -> [f32; TOKENS] {
    // SAFETY (both): q8_0_acts_tile8 points at whole 34-byte blocks (weights from byte 2) and
    // at 32-value activation blocks.
    let unpack = |blk: *const u8| unsafe { (widen(blk.add(2) as *const i8), f16_ptr(blk)) };
    let load = |a| unsafe { widen(a) };
    // SAFETY: the caller's promise.
    unsafe { q8_0_acts_tile8(base, 34, xs, g, unpack, load, dot_i16) }
}

/// Dot product of 32 widened weights with 32 widened activations, as four i32 lanes.
#[inline]
fn dot_i16(w: &[v128; 4], a: &[v128; 4]) -> v128 {
    i32x4_add(
        i32x4_add(i32x4_dot_i16x8(w[0], a[0]), i32x4_dot_i16x8(w[1], a[1])),
        i32x4_add(i32x4_dot_i16x8(w[2], a[2]), i32x4_dot_i16x8(w[3], a[3])),
    )
}

/// 32 signed bytes from `p` widened to four i16x8 vectors.
///
/// # Safety
/// `p` must point at 32 readable bytes.
#[inline]
unsafe fn widen(p: *const i8) -> [v128; 4] {
    // SAFETY: the caller's promise.
    let (v0, v1) = unsafe { load2(p) };
    [
        i16x8_extend_low_i8x16(v0),
        i16x8_extend_high_i8x16(v0),
        i16x8_extend_low_i8x16(v1),
        i16x8_extend_high_i8x16(v1),
    ]
}

/// Sum over a super-block's sixteen groups of 16 values of scale x (unsigned weights .
/// activations): `w[g]` holds values 16g..16g+16, `sc[g]` their scale, `y` the activations.
///
/// # Safety
/// None beyond reading `y`; unsafe for the loads.
#[inline]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
unsafe fn scaled_sum(w: &[v128; 16], sc: &[i32; 16], y: &BlockQ8K) -> i32 {
    let mut s = i32x4_splat(0);
    for g in 0..16 {
        // SAFETY: qs holds 256 activations.
        let a = unsafe { v128_load(y.qs.as_ptr().add(16 * g) as *const v128) };
        s = i32x4_add(
            s,
            i32x4_mul(dot_acc(w[g], a, i32x4_splat(0)), i32x4_splat(sc[g])),
        );
    }
    hsum_i32(s)
}

/// R consecutive Q4_K (`five_bit` false) or Q5_K rows dotted with T activation rows, each
/// block's sums combined as `kquants::dot_q45k` combines them.
///
/// # Safety
/// `base` must point at R readable rows of `xs[t].len()` blocks.
#[inline]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[allow(clippy::needless_range_loop)]
unsafe fn q45k_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8K]; T],
    five_bit: bool,
) -> [[f32; T]; R] {
    let (size, qs_at, qh_at) = q45k_offsets(five_bit);
    let low = u8x16_splat(0x0F);
    let mut sum = [[0f32; T]; R];
    for b in 0..xs[0].len() {
        for r in 0..R {
            // SAFETY: the caller's rows hold block b of each row.
            unsafe {
                let blk = base.add(r * rb + b * size);
                let scales = &*(blk.add(4) as *const [u8; 12]);
                let sm = scale_mins(scales);
                let sc: [i32; 16] = core::array::from_fn(|g| sm[g / 2].0 as i32);
                let qh = if five_bit {
                    load2(blk.add(qh_at))
                } else {
                    (low, low)
                };
                let mut w = [i32x4_splat(0); 16];
                for c in 0..4 {
                    let q = load2(blk.add(qs_at + 32 * c));
                    // Values 64c..64c+32 are the low nibbles, the next 32 the high ones.
                    w[4 * c] = v128_and(q.0, low);
                    w[4 * c + 1] = v128_and(q.1, low);
                    w[4 * c + 2] = u8x16_shr(q.0, 4);
                    w[4 * c + 3] = u8x16_shr(q.1, 4);
                    if five_bit {
                        let fifth = |h: v128, k: u32| {
                            v128_and(i8x16_shl(u8x16_shr(h, k), 4), u8x16_splat(0x10))
                        };
                        let k = 2 * c as u32;
                        w[4 * c] = v128_or(w[4 * c], fifth(qh.0, k));
                        w[4 * c + 1] = v128_or(w[4 * c + 1], fifth(qh.1, k));
                        w[4 * c + 2] = v128_or(w[4 * c + 2], fifth(qh.0, k + 1));
                        w[4 * c + 3] = v128_or(w[4 * c + 3], fifth(qh.1, k + 1));
                    }
                }
                let (d, dmin) = (f16_ptr(blk), f16_ptr(blk.add(2)));
                for t in 0..T {
                    let y = xs[t].get_unchecked(b);
                    let sumi = scaled_sum(&w, &sc, y);
                    sum[r][t] += q45k_block_dot(d, dmin, &sm, y, sumi);
                }
            }
        }
    }
    sum
}

/// R consecutive Q6_K rows (210-byte blocks: 128 bytes of low nibbles, 64 of high bit pairs,
/// 16 signed scales, f16 scale) dotted with T activation rows. The unsigned 6-bit weights are
/// multiplied as they are and the storage offset's share taken off (`kquants::q6k_offset`),
/// which gives what `kquants::dot_q6k` gets from its signed values.
///
/// # Safety
/// `base` must point at R readable rows of `xs[t].len()` blocks.
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[allow(clippy::needless_range_loop)]
unsafe fn q6k_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8K]; T],
) -> [[f32; T]; R] {
    let (low, two) = (u8x16_splat(0x0F), u8x16_splat(0x30));
    let mut sum = [[0f32; T]; R];
    for b in 0..xs[0].len() {
        for r in 0..R {
            // SAFETY: the caller's rows hold block b of each row.
            unsafe {
                let blk = base.add(r * rb + b * 210);
                let scales = &*(blk.add(192) as *const [i8; 16]);
                let sc: [i32; 16] = scales.map(|s| s as i32);
                let mut w = [i32x4_splat(0); 16];
                for h in 0..2 {
                    let (ql0, ql1) = (load2(blk.add(64 * h)), load2(blk.add(64 * h + 32)));
                    let qh = load2(blk.add(128 + 32 * h));
                    for (i, (l0, l1, qh)) in [(ql0.0, ql1.0, qh.0), (ql0.1, ql1.1, qh.1)]
                        .into_iter()
                        .enumerate()
                    {
                        // Group 8h + 2k + i holds values 128h + 32k + 16i .. + 16.
                        let g = 8 * h + i;
                        w[g] = v128_or(v128_and(l0, low), v128_and(i8x16_shl(qh, 4), two));
                        w[g + 2] = v128_or(v128_and(l1, low), v128_and(i8x16_shl(qh, 2), two));
                        w[g + 4] = v128_or(u8x16_shr(l0, 4), v128_and(qh, two));
                        w[g + 6] = v128_or(u8x16_shr(l1, 4), v128_and(u8x16_shr(qh, 2), two));
                    }
                }
                let d = f16_ptr(blk.add(208));
                for t in 0..T {
                    let y = xs[t].get_unchecked(b);
                    let sumi = scaled_sum(&w, &sc, y) - q6k_offset(scales, y);
                    sum[r][t] += d * y.d * sumi as f32;
                }
            }
        }
    }
    sum
}

/// Four f16 from `p` as f32 lanes, through the shared table.
///
/// # Safety
/// `p` must point at 8 readable bytes.
#[inline]
unsafe fn f16x4(p: *const u8) -> v128 {
    // SAFETY: the caller's promise.
    unsafe {
        f32x4(
            f16_ptr(p),
            f16_ptr(p.add(2)),
            f16_ptr(p.add(4)),
            f16_ptr(p.add(6)),
        )
    }
}

/// One token's four activation bytes `4c..4c + 4` of `a` (16 bytes) repeated across a vector.
#[inline]
fn repeat4<const C: usize>(a: v128) -> v128 {
    i32x4_shuffle::<C, C, C, C>(a, a)
}

/// Four interleaved rows' products with one token, summed over a block as 16-bit lanes: each
/// lane takes one (relaxed: two) products of a 4-bit weight by an activation byte per (chunk,
/// nibble), eight of those a block, so at most 16 * 15 * 128 = 30720 in magnitude: no overflow,
/// and integer sums in any order are exact.
#[cfg(feature = "relaxed-simd")]
mod four_rows {
    use core::arch::wasm32::*;

    /// Lanes (row, pair of weights).
    pub type Sums = v128;
    /// A chunk's 16 bytes as loaded (four of each row).
    pub type Weights = v128;

    pub const ZERO: Sums = u64x2(0, 0);

    #[inline]
    pub fn weights(q: v128) -> Weights {
        q
    }

    /// Adds the products of `w` with `a` (four activation bytes repeated).
    #[inline]
    #[target_feature(enable = "relaxed-simd")]
    pub fn add(s: Sums, w: Weights, a: v128) -> Sums {
        i16x8_add(s, i16x8_relaxed_dot_i8x16_i7x16(a, w))
    }

    /// Each row's sum, as four i32 lanes.
    #[inline]
    pub fn rows(s: Sums) -> v128 {
        i32x4_extadd_pairwise_i16x8(s)
    }
}

#[cfg(not(feature = "relaxed-simd"))]
mod four_rows {
    use core::arch::wasm32::*;

    /// Lanes (row, weight): rows 0-1, then rows 2-3.
    pub type Sums = [v128; 2];
    /// A chunk's 16 bytes widened to 16 bits: rows 0-1, then 2-3.
    pub type Weights = [v128; 2];

    pub const ZERO: Sums = [u64x2(0, 0); 2];

    #[inline]
    pub fn weights(q: v128) -> Weights {
        [u16x8_extend_low_u8x16(q), u16x8_extend_high_u8x16(q)]
    }

    #[inline]
    pub fn add(s: Sums, w: Weights, a: v128) -> Sums {
        let a = i16x8_extend_low_i8x16(a);
        [0, 1].map(|i| i16x8_add(s[i], i16x8_mul(w[i], a)))
    }

    #[inline]
    pub fn rows(s: Sums) -> v128 {
        let (lo, hi) = (
            i32x4_extadd_pairwise_i16x8(s[0]),
            i32x4_extadd_pairwise_i16x8(s[1]),
        );
        i32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(lo, hi),
            i32x4_shuffle::<1, 3, 5, 7>(lo, hi),
        )
    }
}

/// Eight interleaved Q4_1 rows (one group of packed.rs's layout: blocks of 160 bytes, `blocks`
/// of them from `g`) dotted with the first T activation rows of `xs`, as `[token][row]`: per
/// block, the weights are unpacked once for all T tokens; per token, the block's integer sums
/// for four rows build up in one set of 16-bit lanes ([`four_rows`]), then
/// [`super::legacy::dot_q4_1`]'s float steps run on four rows at once.
///
/// # Safety
/// `g` points at `blocks` group blocks, and `xs` holds at least T rows of `blocks` blocks.
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[allow(clippy::needless_range_loop)] // t and h index the accumulators and the rows alike
pub unsafe fn q4_1_group<const T: usize>(
    g: *const u8,
    blocks: usize,
    xs: &[&[BlockQ8_1]],
) -> [[f32; 8]; T] {
    let low = u8x16_splat(0x0F);
    let mut sum = [[f32x4_splat(0.0); 2]; T];
    let mut mins = [[f32x4_splat(0.0); 2]; T];
    let ys: [*const BlockQ8_1; T] = core::array::from_fn(|t| xs[t].as_ptr());
    for b in 0..blocks {
        // SAFETY: the caller's promise: block b of the group and of each activation row.
        unsafe {
            let p = g.add(b * 160);
            // Chunk c holds bytes 4c..4c + 4 of each row: low nibbles are weights 4c.., high
            // ones 16 + 4c.., meeting activations 4c.. and 16 + 4c... Per half h (four rows):
            // [c][nibble].
            let w: [[[four_rows::Weights; 2]; 4]; 2] = core::array::from_fn(|h| {
                core::array::from_fn(|c| {
                    let q = v128_load(p.add(32 + 32 * c + 16 * h) as *const v128);
                    [v128_and(q, low), u8x16_shr(q, 4)].map(four_rows::weights)
                })
            });
            let dw = [f16x4(p), f16x4(p.add(8))];
            let mw = [f16x4(p.add(16)), f16x4(p.add(24))];
            for t in 0..T {
                let y = &*ys[t].add(b);
                let a = [0, 16].map(|i| v128_load(y.qs.as_ptr().add(i) as *const v128));
                let a: [[v128; 2]; 4] = [
                    [repeat4::<0>(a[0]), repeat4::<0>(a[1])],
                    [repeat4::<1>(a[0]), repeat4::<1>(a[1])],
                    [repeat4::<2>(a[0]), repeat4::<2>(a[1])],
                    [repeat4::<3>(a[0]), repeat4::<3>(a[1])],
                ];
                let (d, m) = (f32x4_splat(y.d), f32x4_splat(y.s));
                for h in 0..2 {
                    let mut s = four_rows::ZERO;
                    for c in 0..4 {
                        for n in 0..2 {
                            s = four_rows::add(s, w[h][c][n], a[c][n]);
                        }
                    }
                    let s = f32x4_convert_i32x4(four_rows::rows(s));
                    let prod = f32x4_mul(f32x4_mul(dw[h], d), s);
                    sum[t][h] = f32x4_add(sum[t][h], prod);
                    mins[t][h] = f32x4_add(mins[t][h], f32x4_mul(mw[h], m));
                }
            }
        }
    }
    core::array::from_fn(|t| {
        let v = [0, 1].map(|h| f32x4_add(sum[t][h], mins[t][h]));
        // SAFETY: two f32x4 are eight f32.
        unsafe { core::mem::transmute::<[v128; 2], [f32; 8]>(v) }
    })
}
