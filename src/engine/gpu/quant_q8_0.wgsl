// Q8_0, 32 values per block, 9 words: [d f16 | pad] qs[32] (int8); x = d * q.
fn load8(base: u32, g: u32) -> W8 {
    let b = base + (g >> 2u) * 9u;
    let d = unpack2x16float(w[b]).x;
    let q = b + 1u + (g & 3u) * 2u;
    return W8(d * sbytes4(w[q]), d * sbytes4(w[q + 1u]));
}
