// SiLU, the gate activation of llama, qwen2 and qwen3: act(g) = g / (1 + e^-g).
// Prepended to gated.wgsl and matvec_gated.wgsl.

fn act(g: f32) -> f32 {
    // For very negative g the denominator overflows to inf and the result is the correct -0.
    return g / (1.0 + exp(-g));
}
