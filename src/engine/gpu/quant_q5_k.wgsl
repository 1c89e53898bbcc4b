// Q5_K, 256 values per super-block, 44 words:
// [d f16 | dmin f16] scales[12] qh[32] qs[128].
// As Q4_K, plus a 5th bit: value l of sub-block j (l < 32) takes bit j of qh[l].
// x = d * sc * q - dmin * m. Uses scale_min_k4 from the same layout as Q4_K.
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(s, j) & 63u), f32(byte_at(s, j + 4u) & 63u));
    }
    let hi = byte_at(s, j + 4u);
    let sc = (hi & 0xfu) | ((byte_at(s, j - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((byte_at(s, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn load8(base: u32, g: u32) -> W8 {
    let b = base + (g >> 5u) * 44u;
    let p = g & 31u;
    let sub = p >> 2u;
    let k = p & 3u;
    let dd = unpack2x16float(w[b]);
    let sm = scale_min_k4(b + 1u, sub);
    let scale = dd.x * sm.x;
    let offset = dd.y * sm.y;
    let h = b + 4u + k * 2u;
    let q = b + 12u + (sub >> 1u) * 8u + k * 2u;
    let shift = (sub & 1u) * 4u;
    let hlo = vec4<f32>((bytes4(w[h]) >> vec4<u32>(sub)) & vec4<u32>(1u));
    let hhi = vec4<f32>((bytes4(w[h + 1u]) >> vec4<u32>(sub)) & vec4<u32>(1u));
    return W8(
        scale * (nibbles4(w[q], shift) + 16.0 * hlo) - offset,
        scale * (nibbles4(w[q + 1u], shift) + 16.0 * hhi) - offset,
    );
}
