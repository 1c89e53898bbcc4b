// Tiled dequantize + matrix-matrix product, for prefill (many tokens):
//   y[t][r] = sum_c x[t][c] * W[r][c]
// A workgroup computes a 64-token x 64-row tile, walking the shared dimension 32 values
// at a time: each thread dequantizes one 8-value group of W (load8) and loads 8 values
// of x into workgroup memory (k-major, so the inner loop reads without bank conflicts),
// then accumulates a 4 x 4 block of outputs. 16 KiB of workgroup memory: the WebGPU
// default limit.
// Prepended: quant_common.wgsl and the type's quant_*.wgsl (defines load8), and where the
// rows go (linear_out.wgsl, linear_qkv.wgsl or linear_pairs.wgsl, defining store).

struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }
struct Params {
    rows: u32,
    cols: u32,
    row_words: u32,
    // As matvec.wgsl's Params (last_only unused here).
    last_only: u32,
    accumulate: u32,
    split1: u32,
    split2: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 32u;

var<workgroup> xs: array<f32, 2048>; // [TK][TILE tokens]
var<workgroup> ws: array<f32, 2048>; // [TK][TILE rows]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let rows = params.rows;
    let cols = params.cols;
    let n_tok = step.n_tok;
    let row0 = wg.x * TILE;
    let tok0 = wg.y * TILE;

    // Loader role: tile row/token `ld` (0..63), 8-value group `lg` (0..3) of the 32.
    let ld = tid / 4u;
    let lg = tid % 4u;
    let w_base = min(row0 + ld, rows - 1u) * params.row_words;
    let x_tok = tok0 + ld;
    let x_ok = x_tok < n_tok;
    let x_base = x_tok * cols;

    // Compute role: tokens ty + 16 i, rows tx + 16 j (i, j < 4).
    let tx = tid % 16u;
    let ty = tid / 16u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < cols; k0 += TK) {
        // Rows are padded to whole 32-value groups (weights.rs), so this group exists.
        let wv = load8(w_base, k0 / 8u + lg);
        let kk = lg * 8u;
        for (var i = 0u; i < 4u; i++) {
            ws[(kk + i) * TILE + ld] = wv.lo[i];
            ws[(kk + 4u + i) * TILE + ld] = wv.hi[i];
        }
        for (var i = 0u; i < 8u; i++) {
            let c = k0 + kk + i;
            var v = 0.0;
            if (x_ok && c < cols) {
                v = x[x_base + c];
            }
            xs[(kk + i) * TILE + ld] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < TK; k++) {
            let o = k * TILE;
            let b = vec4<f32>(ws[o + tx], ws[o + tx + 16u], ws[o + tx + 32u], ws[o + tx + 48u]);
            acc0 += xs[o + ty] * b;
            acc1 += xs[o + ty + 16u] * b;
            acc2 += xs[o + ty + 32u] * b;
            acc3 += xs[o + ty + 48u] * b;
        }
        workgroupBarrier();
    }

    // A `var`: runtime indexing of a memory view is valid everywhere (Tint and naga).
    var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let t = tok0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let r = row0 + tx + 16u * j;
            if (t < n_tok && r < rows) {
                store(t, r, accs[i][j]);
            }
        }
    }
}
