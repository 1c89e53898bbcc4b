// Q6_K, 256 values per super-block, 53 words:
// ql[128] qh[64] scales[16] (int8) [d f16 | pad].
// Value e = 128 n + 32 t + l (n < 2 halves, t < 4 quarters, l < 32):
//   low 4 bits:  nibble (t >> 1) of ql[64 n + 32 (t & 1) + l]
//   high 2 bits: bits 2t, 2t+1 of qh[32 n + l]
//   scale:       scales[8 n + 2 t + l / 16]
// x = d * scale * (q - 32).
fn load8(base: u32, g: u32) -> W8 {
    let b = base + (g >> 5u) * 53u;
    let p = g & 31u;
    let n = p >> 4u;
    let t = (p >> 2u) & 3u;
    let k = p & 3u;
    let ql = b + n * 16u + (t & 1u) * 8u + k * 2u;
    let qh = b + 32u + n * 8u + k * 2u;
    let shift = (t >> 1u) * 4u;
    let sc_byte = byte_at(b + 48u, n * 8u + t * 2u + (k >> 1u));
    let sc = f32((i32(sc_byte) << 24u) >> 24u);
    let scale = unpack2x16float(w[b + 52u]).x * sc;
    let hlo = vec4<f32>((bytes4(w[qh]) >> vec4<u32>(2u * t)) & vec4<u32>(3u));
    let hhi = vec4<f32>((bytes4(w[qh + 1u]) >> vec4<u32>(2u * t)) & vec4<u32>(3u));
    return W8(
        scale * (nibbles4(w[ql], shift) + 16.0 * hlo - 32.0),
        scale * (nibbles4(w[ql + 1u], shift) + 16.0 * hhi - 32.0),
    );
}
