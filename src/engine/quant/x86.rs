//! AVX2 dot products, chosen at run time: Q4_1 with Q8_1 activations and Q8_0 with Q8_0 (the
//! default model), Q5_0 with Q8_0 and the K-quants with Q8_K (the menu's Q4_K_M models).
//! Integer block sums are exact, so Q4_1, Q5_0 and Q8_0 agree with the scalar kernels up to
//! float summation order; the K-quant kernels combine each block's integer sums in the scalar
//! kernels' order, so they equal them bit for bit.

use super::act::{BlockQ8_0, BlockQ8_1, BlockQ8K};
use super::kquants::{q6k_offset, q45k_block_dot, q45k_offsets, scale_mins};
use super::rows::{TOKENS, TokenScales, block, f16_ptr, tile_kernels};
use std::arch::x86_64::*;

pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

// The Tiles rows.rs dispatches to (Q4_1, Q5_0, Q8_0, Q4K, Q5K, Q6K), over the kernels below.
tile_kernels!();

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// 32 bytes from `p`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller points at 32 readable bytes.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// R consecutive Q4_1 rows of `rb` bytes from `base` dotted with T activation rows: each
/// weight block is unpacked once for the T, each activation block loaded once for the R.
///
/// # Safety
/// AVX2 and FMA; `base` must point at R readable rows of `xs[t].len()` blocks.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)] // (r, t) index a tile's accumulators
unsafe fn q4_1_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8_1]; T],
) -> [[f32; T]; R] {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut mins = [[0f32; T]; R];
        for b in 0..xs[0].len() {
            let ys: [&BlockQ8_1; T] = std::array::from_fn(|t| &xs[t][b]);
            let a: [__m256i; T] = ys.map(|y| load(y.qs.as_ptr() as *const u8));
            for r in 0..R {
                let (w, dw, mw) = q4_1_weights(base.add(r * rb + b * 20));
                for t in 0..T {
                    let d = _mm256_set1_ps(dw * ys[t].d);
                    acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8(w, a[t])), acc[r][t]);
                    mins[r][t] += mw * ys[t].s;
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|t| hsum(acc[r][t]) + mins[r][t]))
    }
}

/// One Q4_1 row dotted with [`TOKENS`] activation rows, each block's scales taken for all of
/// them at once from `g`: per row the same operations as [`q4_1_tile`], so the same bits.
///
/// # Safety
/// AVX2 and FMA; `base` must point at a readable row of `g.len()` blocks, as many as each
/// `xs[t]` holds.
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_1_tile8(
    base: *const u8,
    xs: [&[BlockQ8_1]; TOKENS],
    g: &[TokenScales],
) -> [f32; TOKENS] {
    unsafe {
        let mut acc = [_mm256_setzero_ps(); TOKENS];
        let mut mins = _mm256_setzero_ps();
        for (b, g) in g.iter().enumerate() {
            let (w, dw, mw) = q4_1_weights(base.add(b * 20));
            let d = scales(dw, &g.d);
            mins = _mm256_add_ps(
                mins,
                _mm256_mul_ps(_mm256_set1_ps(mw), _mm256_load_ps(g.s.as_ptr())),
            );
            for t in 0..TOKENS {
                let p = dot_u8(w, load(block(&xs, t, b).qs.as_ptr() as *const u8));
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d[t]), _mm256_cvtepi32_ps(p), acc[t]);
            }
        }
        let mins = std::mem::transmute::<__m256, [f32; TOKENS]>(mins);
        std::array::from_fn(|t| hsum(acc[t]) + mins[t])
    }
}

/// A Q4_1 block (20 bytes: f16 scale, f16 min, 16 bytes of nibbles) as its 32 weights (0..15,
/// low nibbles first), scale and min.
///
/// # Safety
/// AVX2 and FMA; `blk` must point at 20 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_1_weights(blk: *const u8) -> (__m256i, f32, f32) {
    unsafe {
        let qs = _mm_loadu_si128(blk.add(4) as *const __m128i);
        let low = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(qs, low);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low);
        (_mm256_set_m128i(hi, lo), f16_ptr(blk), f16_ptr(blk.add(2)))
    }
}

/// Unsigned weights below 128 times signed activations, summed in fours to i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot_u8(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

/// `dw * d[t]` for each token, rounded as the scalar product is.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scales(dw: f32, d: &[f32; TOKENS]) -> [f32; TOKENS] {
    // SAFETY: both arrays hold eight f32.
    unsafe {
        std::mem::transmute::<__m256, [f32; TOKENS]>(_mm256_mul_ps(
            _mm256_set1_ps(dw),
            _mm256_loadu_ps(d.as_ptr()),
        ))
    }
}

/// Q5_0's fifth bits as 0x10 in byte i for value i (bit i of `qh`).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q5_0_high_bits(qh: u32) -> __m256i {
    // Byte i takes byte i / 8 of qh (the shuffle stays within each 128-bit half, and both halves
    // hold qh), then keeps bit i % 8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// R consecutive Q5_0 rows (22-byte blocks: f16 scale, 32 fifth bits, 16 bytes of nibbles)
/// dotted with T activation rows. The weights are multiplied unsigned (0..31) and 16 times the
/// activations' pair sums taken off, which gives the signed products exactly.
///
/// # Safety
/// AVX2 and FMA; `base` must point at R readable rows of `xs[t].len()` blocks.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn q5_0_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8_0]; T],
) -> [[f32; T]; R] {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..xs[0].len() {
            let ys: [&BlockQ8_0; T] = std::array::from_fn(|t| &xs[t][b]);
            let a: [__m256i; T] = ys.map(|y| load(y.qs.as_ptr() as *const u8));
            let a16: [__m256i; T] = a.map(|a| sixteen_times(a));
            for r in 0..R {
                let (w, dw) = q5_0_weights(base.add(r * rb + b * 22));
                for t in 0..T {
                    let d = _mm256_set1_ps(dw * ys[t].d);
                    let p = q5_0_product(w, a[t], a16[t]);
                    acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r][t]);
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|t| hsum(acc[r][t])))
    }
}

/// One Q5_0 row dotted with [`TOKENS`] activation rows, each block's scales taken for all of
/// them at once from `g`: per row the same operations as [`q5_0_tile`], so the same bits.
///
/// # Safety
/// As [`q4_1_tile8`].
#[target_feature(enable = "avx2,fma")]
unsafe fn q5_0_tile8(
    base: *const u8,
    xs: [&[BlockQ8_0]; TOKENS],
    g: &[TokenScales],
) -> [f32; TOKENS] {
    let product = |w, a| q5_0_product(w, a, sixteen_times(a));
    // SAFETY: the caller's promise.
    unsafe { q8_0_acts_tile8(base, 22, xs, g, |blk| q5_0_weights(blk), product) }
}

/// One row of `size`-byte blocks dotted with [`TOKENS`] rows of Q8_0 activations, each block's
/// scales taken for all of them at once from `g`: `unpack` gives a block's weights and scale,
/// `product` their integer dot products with an activation block, in i32 lanes.
///
/// # Safety
/// As [`q4_1_tile8`], for blocks of `size` bytes that `unpack` reads.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_0_acts_tile8(
    base: *const u8,
    size: usize,
    xs: [&[BlockQ8_0]; TOKENS],
    g: &[TokenScales],
    unpack: impl Fn(*const u8) -> (__m256i, f32),
    product: impl Fn(__m256i, __m256i) -> __m256i,
) -> [f32; TOKENS] {
    unsafe {
        let mut acc = [_mm256_setzero_ps(); TOKENS];
        for (b, g) in g.iter().enumerate() {
            let (w, dw) = unpack(base.add(b * size));
            let d = scales(dw, &g.d);
            for t in 0..TOKENS {
                let p = product(w, load(block(&xs, t, b).qs.as_ptr() as *const u8));
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d[t]), _mm256_cvtepi32_ps(p), acc[t]);
            }
        }
        std::array::from_fn(|t| hsum(acc[t]))
    }
}

/// A Q5_0 block (22 bytes: f16 scale, 32 fifth bits, 16 bytes of nibbles) as its 32 unsigned
/// weights (0..31) and scale.
///
/// # Safety
/// AVX2 and FMA; `blk` must point at 22 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q5_0_weights(blk: *const u8) -> (__m256i, f32) {
    unsafe {
        let low = _mm_set1_epi8(0x0F);
        let qs = _mm_loadu_si128(blk.add(6) as *const __m128i);
        let lo = _mm_and_si128(qs, low);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low);
        let qh = u32::from_le_bytes(std::ptr::read_unaligned(blk.add(2) as *const [u8; 4]));
        let w = _mm256_or_si256(_mm256_set_m128i(hi, lo), q5_0_high_bits(qh));
        (w, f16_ptr(blk))
    }
}

/// 16 times the activations' pair sums, as i16 lanes: what the unsigned Q5_0 weights' products
/// overcount.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn sixteen_times(a: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_set1_epi8(16), a)
}

/// Signed Q5_0 weights (`w` unsigned, 16 over) times the activations `a`, summed in fours.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn q5_0_product(w: __m256i, a: __m256i, a16: __m256i) -> __m256i {
    let pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(w, a), a16);
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// R consecutive Q8_0 rows dotted with T activation rows.
///
/// # Safety
/// AVX2 and FMA; `base` must point at R readable rows of `xs[t].len()` blocks.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn q8_0_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8_0]; T],
) -> [[f32; T]; R] {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..xs[0].len() {
            let ys: [&BlockQ8_0; T] = std::array::from_fn(|t| &xs[t][b]);
            let a: [__m256i; T] = ys.map(|y| load(y.qs.as_ptr() as *const u8));
            for r in 0..R {
                let blk = base.add(r * rb + b * 34);
                let (w, dw) = (load(blk.add(2)), f16_ptr(blk));
                for t in 0..T {
                    let d = _mm256_set1_ps(dw * ys[t].d);
                    let p = q8_0_product(w, a[t]);
                    acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r][t]);
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|t| hsum(acc[r][t])))
    }
}

/// One Q8_0 row dotted with [`TOKENS`] activation rows, each block's scales taken for all of
/// them at once from `g`: per row the same operations as [`q8_0_tile`], so the same bits.
///
/// # Safety
/// As [`q4_1_tile8`].
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_0_tile8(
    base: *const u8,
    xs: [&[BlockQ8_0]; TOKENS],
    g: &[TokenScales],
) -> [f32; TOKENS] {
    // SAFETY: the caller's promise; a block is 34 bytes, its weights from byte 2.
    unsafe {
        let unpack = |blk: *const u8| (load(blk.add(2)), f16_ptr(blk));
        q8_0_acts_tile8(base, 34, xs, g, unpack, |w, a| q8_0_product(w, a))
    }
}

/// Signed weights times signed activations, summed in fours to i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn q8_0_product(w: __m256i, a: __m256i) -> __m256i {
    // maddubs needs an unsigned operand: move w's sign onto a.
    dot_u8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

/// Sum over a super-block's eight (or sixteen) groups of scale x (unsigned weights . activations):
/// `w[k]` holds values 32k..32k+32, `sc[k]` their scale(s) as i16 lanes (one per 16 values),
/// `y` the activation block. The unsigned 4-6 bit weights times 127 fit maddubs' i16 pairs.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scaled_sum(w: &[__m256i; 8], sc: &[__m256i; 8], y: &BlockQ8K) -> i32 {
    unsafe {
        let mut s = _mm256_setzero_si256();
        for k in 0..8 {
            let a = load(y.qs.as_ptr().add(32 * k) as *const u8);
            s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(w[k], a), sc[k]));
        }
        hsum_i32(s)
    }
}

/// R consecutive Q4_K (`five_bit` false) or Q5_K rows dotted with T activation rows, each
/// block's sums combined as `kquants::dot_q45k` combines them.
///
/// # Safety
/// AVX2 and FMA; `base` must point at R readable rows of `xs[t].len()` blocks.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn q45k_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8K]; T],
    five_bit: bool,
) -> [[f32; T]; R] {
    let (size, qs_at, qh_at) = q45k_offsets(five_bit);
    let mut sum = [[0f32; T]; R];
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        for b in 0..xs[0].len() {
            for r in 0..R {
                let blk = base.add(r * rb + b * size);
                let scales = &*(blk.add(4) as *const [u8; 12]);
                let sm = scale_mins(scales);
                let sc = sm.map(|(s, _)| _mm256_set1_epi16(s as i16));
                let qh = if five_bit {
                    load(blk.add(qh_at))
                } else {
                    _mm256_setzero_si256()
                };
                let mut w = [_mm256_setzero_si256(); 8];
                for c in 0..4 {
                    let q = load(blk.add(qs_at + 32 * c));
                    w[2 * c] = _mm256_and_si256(q, low);
                    w[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
                    if five_bit {
                        for (k, v) in [(2 * c, 1u8 << (2 * c)), (2 * c + 1, 2u8 << (2 * c))] {
                            let m = _mm256_set1_epi8(v as i8);
                            let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, m), m);
                            let high = _mm256_and_si256(set, _mm256_set1_epi8(0x10));
                            w[k] = _mm256_or_si256(w[k], high);
                        }
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
/// AVX2 and FMA; `base` must point at R readable rows of `xs[t].len()` blocks.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn q6k_tile<const R: usize, const T: usize>(
    base: *const u8,
    rb: usize,
    xs: [&[BlockQ8K]; T],
) -> [[f32; T]; R] {
    let mut sum = [[0f32; T]; R];
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        let two = _mm256_set1_epi8(0x30);
        for b in 0..xs[0].len() {
            for r in 0..R {
                let blk = base.add(r * rb + b * 210);
                let scales = &*(blk.add(192) as *const [i8; 16]);
                let mut w = [_mm256_setzero_si256(); 8];
                for h in 0..2 {
                    let (ql0, ql1) = (load(blk.add(64 * h)), load(blk.add(64 * h + 32)));
                    let qh = load(blk.add(128 + 32 * h));
                    let nib = |q: __m256i, hi: bool| {
                        let q = if hi { _mm256_srli_epi16(q, 4) } else { q };
                        _mm256_and_si256(q, low)
                    };
                    w[4 * h] = _mm256_or_si256(
                        nib(ql0, false),
                        _mm256_and_si256(_mm256_slli_epi16(qh, 4), two),
                    );
                    w[4 * h + 1] = _mm256_or_si256(
                        nib(ql1, false),
                        _mm256_and_si256(_mm256_slli_epi16(qh, 2), two),
                    );
                    w[4 * h + 2] = _mm256_or_si256(nib(ql0, true), _mm256_and_si256(qh, two));
                    w[4 * h + 3] = _mm256_or_si256(
                        nib(ql1, true),
                        _mm256_and_si256(_mm256_srli_epi16(qh, 2), two),
                    );
                }
                let sc: [__m256i; 8] = std::array::from_fn(|k| {
                    _mm256_set_m128i(
                        _mm_set1_epi16(scales[2 * k + 1] as i16),
                        _mm_set1_epi16(scales[2 * k] as i16),
                    )
                });
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

/// AVX2 with FMA and F16C: what [`q4_1_packed`] runs on.
pub fn has_packed() -> bool {
    has_avx2() && is_x86_feature_detected!("f16c")
}

/// Eight interleaved Q4_1 rows (one group of packed.rs's layout: blocks of 160 bytes, `blocks`
/// of them from `g`) dotted with the first T activation rows of `xs`, as `[token][row]`: per
/// token, each block's integer sums for the eight rows in one register, then
/// [`super::legacy::dot_q4_1`]'s float steps on the eight at once.
///
/// # Safety
/// AVX2, FMA and F16C; `g` points at `blocks` group blocks, and `xs` holds at least T rows of
/// `blocks` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // t indexes the accumulators and the rows alike
pub unsafe fn q4_1_group<const T: usize>(
    g: *const u8,
    blocks: usize,
    xs: &[&[BlockQ8_1]],
) -> [[f32; 8]; T] {
    unsafe {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut sum = [_mm256_setzero_ps(); T];
        let mut mins = [_mm256_setzero_ps(); T];
        let ys: [*const BlockQ8_1; T] = std::array::from_fn(|t| xs[t].as_ptr());
        for b in 0..blocks {
            let p = g.add(b * 160);
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let mw = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
            let q: [__m256i; 4] = std::array::from_fn(|c| load(p.add(32 + 32 * c)));
            let lo = q.map(|q| _mm256_and_si256(q, low));
            let hi = q.map(|q| _mm256_and_si256(_mm256_srli_epi16(q, 4), low));
            for t in 0..T {
                let y = &*ys[t].add(b);
                let a = y.qs.as_ptr() as *const i32;
                // Weights 4c.. (low nibbles) meet activations 4c..; 16 + 4c.. (high) meet 16 + 4c...
                // Each i16 lane sums at most 16 products of 15 by 128: no overflow.
                let mut p16 = _mm256_setzero_si256();
                for c in 0..4 {
                    let al = _mm256_set1_epi32(std::ptr::read_unaligned(a.add(c)));
                    let ah = _mm256_set1_epi32(std::ptr::read_unaligned(a.add(4 + c)));
                    p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(lo[c], al));
                    p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(hi[c], ah));
                }
                let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(y.d));
                sum[t] = _mm256_add_ps(sum[t], _mm256_mul_ps(d, s));
                mins[t] = _mm256_add_ps(mins[t], _mm256_mul_ps(mw, _mm256_set1_ps(y.s)));
            }
        }
        std::array::from_fn(|t| {
            std::mem::transmute::<__m256, [f32; 8]>(_mm256_add_ps(sum[t], mins[t]))
        })
    }
}
