// Shared by the block decoders (quant_*.wgsl). The kernel that includes them declares
// `w: array<u32>`, the repacked weight matrix (layout: weights.rs).

// Eight consecutive dequantized weights.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The four bytes of a word, low byte first (GGUF is little-endian).
fn bytes4(v: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}

// Low (shift 0) or high (shift 4) nibbles of the four bytes of a word.
fn nibbles4(v: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(v) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(shift))) & vec4<u32>(0xfu));
}

// The four bytes of a word as signed int8.
fn sbytes4(v: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(bitcast<i32>(v)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Bits `first .. first+4` of `v`, one per lane, as 0.0 / 1.0.
fn bits4(v: u32, first: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(v) >> (vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(first))) & vec4<u32>(1u));
}

// Byte `i` of the byte array that starts at word `base`.
fn byte_at(base: u32, i: u32) -> u32 {
    return (w[base + (i >> 2u)] >> ((i & 3u) * 8u)) & 0xffu;
}
