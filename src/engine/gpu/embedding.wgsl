// Embedding row gather: y[t][c] = W[tokens[t]][c], dequantized to f32.
// Prepended: quant_common.wgsl and the type's quant_*.wgsl (defines load8).

struct Params {
    rows: u32,
    cols: u32,
    row_words: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    let cols = params.cols;
    if (g * 8u >= cols) {
        return;
    }
    let t = gid.y;
    // Ids are validated on the CPU; the clamp only keeps a bad one inside the matrix.
    let row = min(tokens[t], params.rows - 1u);
    let v = load8(row * params.row_words, g);
    let base = t * cols + g * 8u;
    for (var i = 0u; i < 4u; i++) {
        if (g * 8u + i < cols) {
            y[base + i] = v.lo[i];
        }
        if (g * 8u + 4u + i < cols) {
            y[base + 4u + i] = v.hi[i];
        }
    }
}
