//! The 256-value K-quant super-blocks, as ggml lays them out:
//! Q4_K {d: f16, dmin: f16, scales[12], qs[128]}, Q5_K {d, dmin, scales[12], qh[32], qs[128]},
//! Q6_K {ql[128], qh[64], scales: [i8; 16], d: f16}. Q4_K/Q5_K pack eight 6-bit (scale, min)
//! pairs into 12 bytes; each pair covers 32 values.

use super::act::BlockQ8K;
use super::{QK_K, f16_at};

/// Q6_K's values are stored unsigned, 32 above their signed value.
const Q6K_OFFSET: i32 = 32;

/// A Q4_K (`five_bit` false) or Q5_K block's size and where its 4-bit values and (Q5_K) its
/// fifth bits start.
pub(super) fn q45k_offsets(five_bit: bool) -> (usize, usize, usize) {
    if five_bit {
        (176, 48, 16)
    } else {
        (144, 16, 16)
    }
}

/// The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block, from its 12 packed bytes.
#[inline]
pub(super) fn scale_mins(q: &[u8]) -> [(u8, u8); 8] {
    core::array::from_fn(|j| scale_min(j, q))
}

/// The j-th 6-bit (scale, min) pair of a Q4_K/Q5_K block.
#[inline]
fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The unsigned 4- or 5-bit values of a Q4_K/Q5_K block in natural order.
#[inline]
fn q45k_values(qs: &[u8], qh: Option<&[u8]>) -> [u8; QK_K] {
    let mut v = [0u8; QK_K];
    for chunk in 0..4 {
        for l in 0..32 {
            let q = qs[32 * chunk + l];
            let (mut lo, mut hi) = (q & 0xF, q >> 4);
            if let Some(qh) = qh {
                lo |= ((qh[l] >> (2 * chunk)) & 1) << 4;
                hi |= ((qh[l] >> (2 * chunk + 1)) & 1) << 4;
            }
            v[64 * chunk + l] = lo;
            v[64 * chunk + 32 + l] = hi;
        }
    }
    v
}

fn q45k_parts(blk: &[u8], five_bit: bool) -> (f32, f32, &[u8], [u8; QK_K]) {
    let (d, dmin, scales) = (f16_at(blk, 0), f16_at(blk, 2), &blk[4..16]);
    let (size, qs_at, qh_at) = q45k_offsets(five_bit);
    let qh = five_bit.then(|| &blk[qh_at..qs_at]);
    (d, dmin, scales, q45k_values(&blk[qs_at..size], qh))
}

fn dequantize_q45k(b: &[u8], out: &mut [f32], five_bit: bool) {
    for (blk, y) in b
        .chunks_exact(q45k_offsets(five_bit).0)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let (d, dmin, scales, v) = q45k_parts(blk, five_bit);
        for (j, (sc, m)) in scale_mins(scales).into_iter().enumerate() {
            let (ds, ms) = (d * sc as f32, dmin * m as f32);
            for l in 32 * j..32 * (j + 1) {
                y[l] = ds * v[l] as f32 - ms;
            }
        }
    }
}

fn dot_q45k(row: &[u8], x: &[BlockQ8K], five_bit: bool) -> f32 {
    let mut sum = 0f32;
    for (blk, y) in row.chunks_exact(q45k_offsets(five_bit).0).zip(x) {
        let (d, dmin, scales, v) = q45k_parts(blk, five_bit);
        let sm = scale_mins(scales);
        let mut sumi = 0i32;
        for (j, &(sc, _)) in sm.iter().enumerate() {
            let s: i32 = (32 * j..32 * (j + 1))
                .map(|l| v[l] as i32 * y.qs[l] as i32)
                .sum();
            sumi += sc as i32 * s;
        }
        sum += q45k_block_dot(d, dmin, &sm, y, sumi);
    }
    sum
}

/// A Q4_K/Q5_K super-block's share of a dot product, given its (scale, min) pairs `sm` and
/// `sumi`, the sum over its eight groups of scale x (values . activations): the minimums apply
/// through the activations' group sums. The SIMD kernels (x86.rs, wasm.rs) finish each block here too, so they equal these
/// scalar kernels bit for bit.
#[inline]
pub(super) fn q45k_block_dot(
    d: f32,
    dmin: f32,
    sm: &[(u8, u8); 8],
    y: &BlockQ8K,
    sumi: i32,
) -> f32 {
    let summs: i32 = sm
        .iter()
        .enumerate()
        .map(|(j, &(_, m))| m as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32))
        .sum();
    d * y.d * sumi as f32 - dmin * y.d * summs as f32
}

/// What Q6_K's storage offset contributes to a block's integer sum when its unsigned values
/// are multiplied as they are: `Q6K_OFFSET` x the scaled activation group sums.
#[inline]
pub(super) fn q6k_offset(scales: &[i8; 16], y: &BlockQ8K) -> i32 {
    Q6K_OFFSET
        * (0..16)
            .map(|g| scales[g] as i32 * y.bsums[g] as i32)
            .sum::<i32>()
}

pub fn dequantize_q4k(b: &[u8], out: &mut [f32]) {
    dequantize_q45k(b, out, false)
}

pub fn dequantize_q5k(b: &[u8], out: &mut [f32]) {
    dequantize_q45k(b, out, true)
}

pub fn dot_q4k(row: &[u8], x: &[BlockQ8K]) -> f32 {
    dot_q45k(row, x, false)
}

pub fn dot_q5k(row: &[u8], x: &[BlockQ8K]) -> f32 {
    dot_q45k(row, x, true)
}

/// Signed 6-bit values of a Q6_K block in natural order, and its 16 scales.
#[inline]
fn q6k_values(blk: &[u8]) -> [i8; QK_K] {
    let mut v = [0i8; QK_K];
    for half in 0..2 {
        let (ql, qh) = (&blk[64 * half..], &blk[128 + 32 * half..]);
        let y = &mut v[128 * half..];
        for l in 0..32 {
            y[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - Q6K_OFFSET as i8;
            y[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - Q6K_OFFSET as i8;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - Q6K_OFFSET as i8;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - Q6K_OFFSET as i8;
        }
    }
    v
}

pub fn dequantize_q6k(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let (scales, d) = (&blk[192..208], f16_at(blk, 208));
        let v = q6k_values(blk);
        for (l, yl) in y.iter_mut().enumerate() {
            *yl = d * scales[l / 16] as i8 as f32 * v[l] as f32;
        }
    }
}

pub fn dot_q6k(row: &[u8], x: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (blk, y) in row.chunks_exact(210).zip(x) {
        let (scales, d) = (&blk[192..208], f16_at(blk, 208));
        let v = q6k_values(blk);
        let mut sumi = 0i32;
        for g in 0..16 {
            let s: i32 = (16 * g..16 * (g + 1))
                .map(|l| v[l] as i32 * y.qs[l] as i32)
                .sum();
            sumi += scales[g] as i8 as i32 * s;
        }
        sum += d * y.d * sumi as f32;
    }
    sum
}
