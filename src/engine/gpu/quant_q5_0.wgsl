// Q5_0, 32 values per block, 6 words: [d f16 | pad] qh(u32) qs[16].
// Value j: 4 low bits from the nibbles as in Q4_0, 5th bit is bit j of qh;
// x = d * (q - 16).
fn load8(base: u32, g: u32) -> W8 {
    let b = base + (g >> 2u) * 6u;
    let part = g & 3u;
    let d = unpack2x16float(w[b]).x;
    let qh = w[b + 1u];
    let q = b + 2u + (part & 1u) * 2u;
    let shift = (part >> 1u) * 4u;
    let first = part * 8u;
    return W8(
        d * (nibbles4(w[q], shift) + 16.0 * bits4(qh, first) - 16.0),
        d * (nibbles4(w[q + 1u], shift) + 16.0 * bits4(qh, first + 4u) - 16.0),
    );
}
