// Q4_K, 256 values per super-block, 36 words: [d f16 | dmin f16] scales[12] qs[128].
// Eight sub-blocks of 32 with 6-bit scale/min pairs packed into `scales` (ggml's
// get_scale_min_k4). Sub-blocks 2i and 2i+1 share qs[32i .. 32i+32]: low nibbles for
// 2i, high for 2i+1. x = d * sc * q - dmin * m.
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
    // `s` is the first word of the 12 scale bytes.
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(s, j) & 63u), f32(byte_at(s, j + 4u) & 63u));
    }
    let hi = byte_at(s, j + 4u);
    let sc = (hi & 0xfu) | ((byte_at(s, j - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((byte_at(s, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn load8(base: u32, g: u32) -> W8 {
    let b = base + (g >> 5u) * 36u;
    let p = g & 31u;
    let sub = p >> 2u;
    let dd = unpack2x16float(w[b]);
    let sm = scale_min_k4(b + 1u, sub);
    let scale = dd.x * sm.x;
    let offset = dd.y * sm.y;
    let q = b + 4u + (sub >> 1u) * 8u + (p & 3u) * 2u;
    let shift = (sub & 1u) * 4u;
    return W8(scale * nibbles4(w[q], shift) - offset, scale * nibbles4(w[q + 1u], shift) - offset);
}
