//! `e^x` in plain f64 arithmetic: the same bits natively and in the browser (the platforms'
//! libm differ in the last bit), vectorizable (no table, no branch but selects), and in wasm
//! much cheaper than Rust's libm, an fdlibm port with a division per call.
//!
//! Both functions split `x = k ln 2 + r` with `|r| <= ln 2 / 2`, take a Taylor polynomial for
//! `e^r` and multiply by `2^k`, built in the exponent bits.

/// `1 / n!` for n = 0..=12, the Taylor coefficients of `e^r`.
const INV_FACTORIAL: [f64; 13] = {
    let mut c = [1.0; 13];
    let mut n = 1;
    while n < 13 {
        c[n] = c[n - 1] / n as f64;
        n += 1;
    }
    c
};

/// `(r, 2^k)` with `x = k ln 2 + r`, for `|x| <= 708`.
#[inline(always)]
fn split(x: f64) -> (f64, f64) {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    // ln 2 split so that k * LN2_HI is exact for any k here (fdlibm's constants).
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    let t = x * std::f64::consts::LOG2_E + MAGIC;
    let k = t - MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // k (an integer in t's low mantissa bits) into the exponent field.
    let k_bits = t.to_bits().wrapping_sub(MAGIC.to_bits());
    (r, f64::from_bits(k_bits.wrapping_add(1023) << 52))
}

/// The Taylor polynomial of `e^r` up to degree `N - 1`, by Horner.
#[inline(always)]
fn taylor<const N: usize>(r: f64) -> f64 {
    INV_FACTORIAL[..N].iter().rev().fold(0.0, |p, &c| p * r + c)
}

/// `e^x` for `x <= 0`, degree 12 (error below 2e-16). Below -708 (and for NaN) it gives 0.
pub fn exp_nonpositive(x: f64) -> f64 {
    let inside = x >= -708.0;
    let (r, scale) = split(if inside { x } else { 0.0 });
    if inside { taylor::<13>(r) * scale } else { 0.0 }
}

/// `e^x` for f32, degree 10 (relative error below 3e-13 before the final rounding, so the
/// result is the correctly rounded one but where the true value lies that close to a rounding
/// boundary). Infinity above 88.73, 0 below -103.98, NaN for NaN, as the platforms' `exp`.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Beyond these e^x is infinite or rounds to 0 in f32; clamping keeps 2^k a normal f64.
    let x = f64::from(x).clamp(-110.0, 90.0);
    let (r, scale) = split(x);
    (taylor::<11>(r) * scale) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_f64_exponential_is_within_two_ulps_of_the_platforms() {
        let mut x = -708.0f64;
        while x <= 0.0 {
            let (got, want) = (exp_nonpositive(x), x.exp());
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}) = {got}, platform {want}");
            x += 0.0137;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1e-300), 1.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(f64::NAN), 0.0);
        assert_eq!(exp_nonpositive(-709.0), 0.0);
    }

    /// Against the correctly rounded value (from f64's exp, 29 bits more precise): the f32 in
    /// [-104, 89] at every 997th bit pattern (2.2 M of them, every binade), within one ulp,
    /// and off the correct rounding only where the true value is within 1e-6 ulp of a
    /// rounding boundary.
    #[test]
    fn the_f32_exponential_rounds_correctly_but_at_near_ties() {
        let (mut wrong, mut n) = (0, 0);
        let mut bits = 0u32;
        while bits < u32::MAX - 997 {
            let x = f32::from_bits(bits);
            bits += 997;
            if !(-104.0..=89.0).contains(&x) {
                continue;
            }
            n += 1;
            let exact = f64::from(x).exp();
            let (got, want) = (exp_f32(x), exact as f32);
            if got.to_bits() != want.to_bits() {
                let ulp = f64::from(f32::from_bits(want.to_bits() + 1) - want);
                let to_boundary = ((exact - f64::from(want)).abs() - ulp / 2.0).abs() / ulp;
                assert!(
                    got.to_bits().abs_diff(want.to_bits()) == 1 && to_boundary < 1e-6,
                    "exp({x}) = {got}, correctly rounded {want}"
                );
                wrong += 1;
            }
        }
        assert!(n > 2_000_000 && wrong * 100_000 < n, "{wrong} of {n} off");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(-104.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // Subnormal results, and the largest finite one.
        assert_eq!(exp_f32(-100.0), (-100f64).exp() as f32);
        assert_eq!(exp_f32(88.72), f64::from(88.72f32).exp() as f32);
    }
}
