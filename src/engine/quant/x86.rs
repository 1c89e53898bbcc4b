//! AVX2 dot products for the formats the default model runs (Q4_1 weights with Q8_1
//! activations, Q8_0 with Q8_0), chosen at run time. Integer block sums are exact, so these agree
//! with the scalar kernels up to float summation order.

use super::act::{BlockQ8_0, BlockQ8_1};
use super::rows::{by_groups, f16_ptr};
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

/// Consecutive Q4_1 rows, several at a time ([`by_groups`]), one row exactly as alone.
///
/// # Safety
/// The CPU must have AVX2 and FMA (see [`has_avx2`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_1_rows(rows: &[u8], x: &[BlockQ8_1], out: &mut [f32]) {
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

/// Consecutive Q8_0 rows, several at a time, one row exactly as alone.
///
/// # Safety
/// The CPU must have AVX2 and FMA (see [`has_avx2`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q8_0_rows(rows: &[u8], x: &[BlockQ8_0], out: &mut [f32]) {
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

/// N consecutive Q4_1 rows of `rb` bytes from `base` dotted with `x`, sharing each
/// activation block's load.
///
/// # Safety
/// AVX2 and FMA; `base` must point at N readable rows of `x.len()` blocks.
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_1_group<const N: usize>(base: *const u8, rb: usize, x: &[BlockQ8_1]) -> [f32; N] {
    unsafe {
        let mut acc = [_mm256_setzero_ps(); N];
        let mut mins = [0f32; N];
        let low = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        for (b, y) in x.iter().enumerate() {
            let a = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            for (k, (acc, min)) in acc.iter_mut().zip(&mut mins).enumerate() {
                let blk = base.add(k * rb + b * 20);
                let qs = _mm_loadu_si128(blk.add(4) as *const __m128i);
                let lo = _mm_and_si128(qs, low);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low);
                let w = _mm256_set_m128i(hi, lo);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones);
                let d = _mm256_set1_ps(f16_ptr(blk) * y.d);
                *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
                *min += f16_ptr(blk.add(2)) * y.s;
            }
        }
        std::array::from_fn(|k| hsum(acc[k]) + mins[k])
    }
}

/// N consecutive Q8_0 rows dotted with `x`.
///
/// # Safety
/// AVX2 and FMA; `base` must point at N readable rows of `x.len()` blocks.
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_0_group<const N: usize>(base: *const u8, rb: usize, x: &[BlockQ8_0]) -> [f32; N] {
    unsafe {
        let mut acc = [_mm256_setzero_ps(); N];
        let ones = _mm256_set1_epi16(1);
        for (b, y) in x.iter().enumerate() {
            let a = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            for (k, acc) in acc.iter_mut().enumerate() {
                let blk = base.add(k * rb + b * 34);
                let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                // maddubs needs an unsigned operand: move w's sign onto a.
                let p = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)),
                    ones,
                );
                let d = _mm256_set1_ps(f16_ptr(blk) * y.d);
                *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
            }
        }
        acc.map(|v| hsum(v))
    }
}
