// F16: two values per word, low half first; rows padded with zeros to a multiple of 32.
fn load8(base: u32, g: u32) -> W8 {
    let i = base + g * 4u;
    return W8(
        vec4<f32>(unpack2x16float(w[i]), unpack2x16float(w[i + 1u])),
        vec4<f32>(unpack2x16float(w[i + 2u]), unpack2x16float(w[i + 3u])),
    );
}
