// F32: one value per word; rows padded with zeros to a multiple of 32 values.
fn load8(base: u32, g: u32) -> W8 {
    let i = base + g * 8u;
    return W8(
        bitcast<vec4<f32>>(vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u])),
        bitcast<vec4<f32>>(vec4<u32>(w[i + 4u], w[i + 5u], w[i + 6u], w[i + 7u])),
    );
}
