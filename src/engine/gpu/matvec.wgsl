// Fused dequantize + matrix-vector product, for decode (few tokens):
//   y[t][r] = sum_c x[t][c] * W[r][c]
// One workgroup computes ROWS rows for one token (workgroup_id.z). Each row is handled by
// LANES threads that walk its 8-value groups; x is staged in workgroup memory in chunks
// and shared by all rows; per-row partial sums are reduced in workgroup memory.
// Prepended: quant_common.wgsl and the type's quant_*.wgsl (defines load8), where the rows
// go (linear_out.wgsl or linear_qkv.wgsl, defining store), and the end of the kernel
// (matvec_store.wgsl, or matvec_gated.wgsl with an activation, defining finish).

struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }
struct Params {
    rows: u32,
    cols: u32,
    row_words: u32,
    // 1: only the last token of the step (x row n_tok - 1 -> y row 0), e.g. the LM head.
    last_only: u32,
    // 1: add the product to y (linear_out.wgsl).
    accumulate: u32,
    // Where the q, k and v rows of a stacked matrix start (linear_qkv.wgsl).
    split1: u32,
    split2: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;

const WG: u32 = 256u;
const LANES: u32 = 32u;
const ROWS: u32 = WG / LANES;
// Values of x staged at once: a multiple of 256 (a K-quant super-block), 8 KiB.
const CHUNK: u32 = 2048u;

var<workgroup> xs: array<vec4<f32>, 512>; // CHUNK / 4
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let cols = params.cols;
    let tok_in = select(wg.z, step.n_tok - 1u, params.last_only != 0u);
    let tok_out = select(wg.z, 0u, params.last_only != 0u);
    let x_base = tok_in * cols;
    let lane = tid % LANES;
    let row = wg.x * ROWS + tid / LANES;
    // Rows past the end still take part in the barriers; they read a valid row.
    let base = min(row, params.rows - 1u) * params.row_words;
    let n_groups = (cols + 7u) / 8u;

    var acc = 0.0;
    for (var c0 = 0u; c0 < cols; c0 += CHUNK) {
        workgroupBarrier();
        for (var i = tid; i < CHUNK / 4u; i += WG) {
            let c = c0 + i * 4u;
            var v = vec4<f32>(0.0);
            if (c + 3u < cols) {
                v = vec4<f32>(x[x_base + c], x[x_base + c + 1u], x[x_base + c + 2u], x[x_base + c + 3u]);
            } else {
                // Zeros past the end meet the zero padding of F32/F16 rows.
                for (var j = 0u; j < 4u; j++) {
                    if (c + j < cols) {
                        v[j] = x[x_base + c + j];
                    }
                }
            }
            xs[i] = v;
        }
        workgroupBarrier();
        let g0 = c0 / 8u;
        let g_end = min(n_groups - g0, CHUNK / 8u);
        for (var g = lane; g < g_end; g += LANES) {
            let wv = load8(base, g0 + g);
            acc += dot(wv.lo, xs[2u * g]) + dot(wv.hi, xs[2u * g + 1u]);
        }
    }

    partial[tid] = acc;
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lane < s) {
            partial[tid] += partial[tid + s];
        }
    }
    finish(lane, tid, row, tok_out);
}
