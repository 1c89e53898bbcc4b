// Argmax over one row of logits, one workgroup: out[0] = first index of the largest
// value (NaNs ignored; 0xffffffff if every value is NaN). Decode reads back one u32.

struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }
struct Params {
    n: u32,
    // 1: the row of the step's last token (logits for every token); 0: row 0.
    last_row: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// Whether (v, i) beats (bv, bi): larger value, or equal value at a smaller index.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if (i == NONE) {
        return false;
    }
    return bi == NONE || v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
    let n = params.n;
    let base = select(0u, (step.n_tok - 1u) * n, params.last_row != 0u);
    var bv = 0.0;
    var bi = NONE;
    for (var i = tid; i < n; i += WG) {
        let v = logits[base + i];
        // v == v is false only for NaN.
        if (v == v && better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    best_v[tid] = bv;
    best_i[tid] = bi;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (tid < s && better(best_v[tid + s], best_i[tid + s], best_v[tid], best_i[tid])) {
            best_v[tid] = best_v[tid + s];
            best_i[tid] = best_i[tid + s];
        }
    }
    if (tid == 0u) {
        out[0] = best_i[0];
    }
}
