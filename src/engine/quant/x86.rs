//! AVX2 dot products for the formats the default model runs (Q4_1 weights with Q8_1
//! activations, Q8_0 with Q8_0), chosen at run time. Integer block sums are exact, so these agree
//! with the scalar kernels up to float summation order.

use super::act::{BlockQ8_0, BlockQ8_1};
use super::f16_at;
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

/// # Safety
/// The CPU must have AVX2 and FMA (see [`has_avx2`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_1(row: &[u8], x: &[BlockQ8_1]) -> f32 {
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0f32;
        let low = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        for (blk, y) in row.chunks_exact(20).zip(x) {
            let qs = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
            let lo = _mm_and_si128(qs, low);
            let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low);
            let w = _mm256_set_m128i(hi, lo);
            let a = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones);
            let d = _mm256_set1_ps(f16_at(blk, 0) * y.d);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
            mins += f16_at(blk, 2) * y.s;
        }
        hsum(acc) + mins
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA (see [`has_avx2`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q8_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let ones = _mm256_set1_epi16(1);
        for (blk, y) in row.chunks_exact(34).zip(x) {
            let w = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
            let a = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            // maddubs needs an unsigned operand: move w's sign onto a.
            let p = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)),
                ones,
            );
            let d = _mm256_set1_ps(f16_at(blk, 0) * y.d);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
        hsum(acc)
    }
}
