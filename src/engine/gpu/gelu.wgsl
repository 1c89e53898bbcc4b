// GELU's tanh form, gemma3's gate activation, as ggml's CPU path computes it (a table over
// f16 inputs): the input and its GELU rounded to f16, except at and beyond +-10, where GELU
// is 0 or x. Prepended to gated.wgsl and matvec_gated.wgsl.

const SQRT_2_OVER_PI: f32 = 0.7978846;
const COEF_A: f32 = 0.044715;

fn to_f16(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

fn act(x: f32) -> f32 {
    if (x <= -10.0) {
        return 0.0;
    }
    if (x >= 10.0) {
        return x;
    }
    let h = to_f16(x);
    // |argument| < 45 here; tanh is 1 to f32 precision past 10, and the clamp keeps an
    // exp-based tanh from dividing inf by inf.
    let a = clamp(SQRT_2_OVER_PI * h * (1.0 + COEF_A * h * h), -10.0, 10.0);
    return to_f16(0.5 * h * (1.0 + tanh(a)));
}
