//! The 32-value block formats, as ggml lays them out:
//! Q4_0 {d: f16, qs[16]}, Q4_1 {d: f16, m: f16, qs[16]}, Q5_0 {d: f16, qh: u32, qs[16]},
//! Q8_0 {d: f16, qs: [i8; 32]}. Nibble j of a 4-bit block holds value j (low) and j+16 (high).

use super::act::{BlockQ8_0, BlockQ8_1};
use super::f16_at;

pub fn dequantize_q4_0(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(blk, 0);
        for j in 0..16 {
            let q = blk[2 + j];
            y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_q4_1(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
        for j in 0..16 {
            let q = blk[4 + j];
            y[j] = (q & 0xF) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

#[inline]
fn q5_0_values(blk: &[u8]) -> [i8; 32] {
    let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
    let mut v = [0i8; 32];
    for j in 0..16 {
        let q = blk[6 + j];
        let h0 = ((qh >> j) << 4) as u8 & 0x10;
        let h1 = (qh >> (j + 12)) as u8 & 0x10;
        v[j] = ((q & 0xF) | h0) as i8 - 16;
        v[j + 16] = ((q >> 4) | h1) as i8 - 16;
    }
    v
}

pub fn dequantize_q5_0(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(blk, 0);
        for (yj, q) in y.iter_mut().zip(q5_0_values(blk)) {
            *yj = q as f32 * d;
        }
    }
}

pub fn dequantize_q8_0(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(blk, 0);
        for j in 0..32 {
            y[j] = blk[2 + j] as i8 as f32 * d;
        }
    }
}

pub fn dot_q4_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (blk, y) in row.chunks_exact(18).zip(x) {
        let qs = &blk[2..18];
        let mut s = 0i32;
        for j in 0..16 {
            s += ((qs[j] & 0xF) as i32 - 8) * y.qs[j] as i32
                + ((qs[j] >> 4) as i32 - 8) * y.qs[j + 16] as i32;
        }
        sum += f16_at(blk, 0) * y.d * s as f32;
    }
    sum
}

pub fn dot_q4_1(row: &[u8], x: &[BlockQ8_1]) -> f32 {
    // llama.cpp: sum(d_x d_y sum_i(q_x q_y)) + sum(m_x s_y), s_y = d_y sum(q_y) stored as f16.
    let (mut sum, mut mins) = (0f32, 0f32);
    for (blk, y) in row.chunks_exact(20).zip(x) {
        let qs = &blk[4..20];
        let mut s = 0i32;
        for j in 0..16 {
            s += (qs[j] & 0xF) as i32 * y.qs[j] as i32 + (qs[j] >> 4) as i32 * y.qs[j + 16] as i32;
        }
        sum += f16_at(blk, 0) * y.d * s as f32;
        mins += f16_at(blk, 2) * y.s;
    }
    sum + mins
}

pub fn dot_q5_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (blk, y) in row.chunks_exact(22).zip(x) {
        let v = q5_0_values(blk);
        let s: i32 = v
            .iter()
            .zip(&y.qs)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
        sum += f16_at(blk, 0) * y.d * s as f32;
    }
    sum
}

pub fn dot_q8_0(row: &[u8], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (blk, y) in row.chunks_exact(34).zip(x) {
        let s: i32 = blk[2..34]
            .iter()
            .zip(&y.qs)
            .map(|(&a, &b)| a as i8 as i32 * b as i32)
            .sum();
        sum += f16_at(blk, 0) * y.d * s as f32;
    }
    sum
}
