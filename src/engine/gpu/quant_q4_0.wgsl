// Q4_0, 32 values per block, 5 words: [d f16 | pad] qs[16].
// Value j < 16 is the low nibble of qs[j], value j + 16 its high nibble; x = d * (q - 8).
fn load8(base: u32, g: u32) -> W8 {
    let b = base + (g >> 2u) * 5u;
    let part = g & 3u;
    let d = unpack2x16float(w[b]).x;
    let q = b + 1u + (part & 1u) * 2u;
    let shift = (part >> 1u) * 4u;
    return W8(d * (nibbles4(w[q], shift) - 8.0), d * (nibbles4(w[q + 1u], shift) - 8.0));
}
