//! F32 and F16 weights. llama.cpp rounds the activations to f16 for f16 weights; products of
//! two f16 values are exact in f32, so only the summation order differs from it.

/// `x` rounded to the nearest f16 (ties to even), as an f32: `f16::from_f32(x).to_f32()`, bit
/// for bit (NaN stays NaN), without the two calls. The activations' block scales, the KV
/// cache and attention's queries and weights go through it on every token, and the calls
/// (with a feature check each natively, in software in wasm) cost ~4 % of a batched build.
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    let a = x.abs();
    // Below 2^-14, f16 has fixed steps of 2^-24: the step of an f32 in [0.5, 1), so adding
    // 0.5 rounds to it (ties to even) and subtracting it is exact.
    if a < 6.103_515_6e-5 {
        return ((a + 0.5) - 0.5).copysign(x);
    }
    if a.is_nan() {
        return x;
    }
    // 65520 lies halfway between f16's largest value (65504, odd) and the next step: infinity.
    if a >= 65520.0 {
        return f32::INFINITY.copysign(x);
    }
    // Normal: drop 13 of the 23 fraction bits, ties to even; a carry moves into the exponent.
    let b = x.to_bits();
    f32::from_bits((b + 0xFFF + ((b >> 13) & 1)) & !0x1FFF)
}

/// The larger of `m` and `v`, skipping `v` when it is NaN: `f32::max`'s value wherever `m` is
/// never NaN (a running maximum from 0 or -inf). A comparison, because wasm has no instruction
/// for `f32::max`'s NaN rule and called libm's `fmaxf` per value.
#[inline(always)]
pub fn max_of(m: f32, v: f32) -> f32 {
    if v > m { v } else { m }
}

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

#[cfg(test)]
mod tests {
    use super::round_f16;

    /// The same bits as the half crate's conversions, over every 997th f32 bit pattern (all
    /// exponents; 997 is odd, so the low fraction bits vary), both signs, and the edges: ties
    /// among subnormals and normals, the largest f16, overflow.
    #[test]
    fn rounding_to_f16_matches_the_conversions() {
        let edges = [
            0.0f32,
            6.103_515_6e-5,
            6.103_515_6e-5 * (1.0 - 1.0 / 4096.0),
            5.960_464_5e-8,
            2.980_232_2e-8,
            2.980_232_3e-8,
            8.940_697e-8,
            65504.0,
            65519.99,
            65520.0,
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            f32::INFINITY,
            f32::MAX,
            f32::MIN_POSITIVE,
        ];
        let sweep = (0..=u32::MAX / 997).map(|i| f32::from_bits(i * 997));
        for x in edges.into_iter().chain(sweep).flat_map(|x| [x, -x]) {
            let want = half::f16::from_f32(x).to_f32();
            let got = round_f16(x);
            if want.is_nan() {
                assert!(got.is_nan(), "{x:e}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{x:e}: {got:e} vs {want:e}");
            }
        }
    }
}
