// Q4_1, 32 values per block, 5 words: [d f16 | m f16] qs[16].
// Value j < 16 is the low nibble of qs[j], value j + 16 its high nibble; x = d * q + m.
fn load8(base: u32, g: u32) -> W8 {
    let b = base + (g >> 2u) * 5u;
    let part = g & 3u;
    let dm = unpack2x16float(w[b]);
    let q = b + 1u + (part & 1u) * 2u;
    let shift = (part >> 1u) * 4u;
    return W8(dm.x * nibbles4(w[q], shift) + dm.y, dm.x * nibbles4(w[q + 1u], shift) + dm.y);
}
