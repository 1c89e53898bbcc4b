//! AVX2 dot products for the formats the default model runs (Q4_1 weights with Q8_1
//! activations, Q8_0 with Q8_0), chosen at run time. Integer block sums are exact, so these agree
//! with the scalar kernels up to float summation order.

use super::Acts;
use super::act::{BlockQ8_0, BlockQ8_1};
use super::rows::{Tile, by_tiles, f16_ptr};
use std::arch::x86_64::*;

pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// Q4_1 weights with Q8_1 activations, in tiles ([`by_tiles`]), each pair exactly as alone.
///
/// # Safety
/// The CPU must have AVX2 and FMA (see [`has_avx2`]); every `xs[t]` is Q8_1 of `rb / 20` blocks.
pub unsafe fn dot_q4_1_tiles(rows: &[u8], rb: usize, xs: &[Acts], out: &mut [f32]) {
    // SAFETY: the caller's promise.
    unsafe { by_tiles(rows, rb, xs, out, &Q4_1) }
}

/// Q8_0 weights with Q8_0 activations, in tiles, each pair exactly as alone.
///
/// # Safety
/// As [`dot_q4_1_tiles`], with Q8_0 activations of `rb / 34` blocks.
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
        let low = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        for b in 0..xs[0].len() {
            let ys: [&BlockQ8_1; T] = std::array::from_fn(|t| &xs[t][b]);
            let a: [__m256i; T] = ys.map(|y| _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i));
            for r in 0..R {
                let blk = base.add(r * rb + b * 20);
                let qs = _mm_loadu_si128(blk.add(4) as *const __m128i);
                let lo = _mm_and_si128(qs, low);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low);
                let w = _mm256_set_m128i(hi, lo);
                let (dw, mw) = (f16_ptr(blk), f16_ptr(blk.add(2)));
                for t in 0..T {
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, a[t]), ones);
                    let d = _mm256_set1_ps(dw * ys[t].d);
                    acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r][t]);
                    mins[r][t] += mw * ys[t].s;
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|t| hsum(acc[r][t]) + mins[r][t]))
    }
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
        let ones = _mm256_set1_epi16(1);
        for b in 0..xs[0].len() {
            let ys: [&BlockQ8_0; T] = std::array::from_fn(|t| &xs[t][b]);
            let a: [__m256i; T] = ys.map(|y| _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i));
            for r in 0..R {
                let blk = base.add(r * rb + b * 34);
                let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                // maddubs needs an unsigned operand: move w's sign onto a.
                let wabs = _mm256_sign_epi8(w, w);
                let dw = f16_ptr(blk);
                for t in 0..T {
                    let p = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(a[t], w)),
                        ones,
                    );
                    let d = _mm256_set1_ps(dw * ys[t].d);
                    acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r][t]);
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|t| hsum(acc[r][t])))
    }
}
