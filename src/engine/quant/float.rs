//! F32 and F16 weights. llama.cpp rounds the activations to f16 for f16 weights; products of
//! two f16 values are exact in f32, so only the summation order differs from it.

pub fn dequantize_f32(b: &[u8], out: &mut [f32]) {
    for (y, c) in out.iter_mut().zip(b.chunks_exact(4)) {
        *y = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

pub fn dequantize_f16(b: &[u8], out: &mut [f32]) {
    for (y, c) in out.iter_mut().zip(b.chunks_exact(2)) {
        *y = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (c8, x8) in row.chunks_exact(32).zip(x.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += f32::from_le_bytes([c8[4 * k], c8[4 * k + 1], c8[4 * k + 2], c8[4 * k + 3]])
                * x8[k];
        }
    }
    let tail = x.len() / 8 * 8;
    let mut sum: f32 = acc.iter().sum();
    for (i, &xv) in x.iter().enumerate().skip(tail) {
        sum +=
            f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]]) * xv;
    }
    sum
}

pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (c8, x8) in row.chunks_exact(16).zip(x.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += half::f16::from_le_bytes([c8[2 * k], c8[2 * k + 1]]).to_f32() * x8[k];
        }
    }
    let tail = x.len() / 8 * 8;
    let mut sum: f32 = acc.iter().sum();
    for (i, &xv) in x.iter().enumerate().skip(tail) {
        sum += half::f16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32() * xv;
    }
    sum
}
