// Causal grouped-query attention over the KV cache, one workgroup per (head, token).
//   q     [n_tok][n_head][head_dim]        (RoPE applied)
//   k, v  [ctx][n_kv_head][head_dim]       cache; positions 0 .. pos0 + n_tok filled
//   out   [n_tok][n_head][head_dim]
// Query head h reads KV head h / (n_head / n_kv_head). Token t (position p = pos0 + t)
// attends to keys 0..=p (a local layer: its last `window` positions, p included) with
// softmax(q.k * scale) in f32. Keys are taken 256 at a
// time with an online softmax (running max and sum, rescaled per chunk), so the
// context length is not bounded by workgroup memory.

struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }
struct Params {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    scale: f32,
    window: u32, // 0: no window
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
// Below any real score; avoids inf - inf = NaN in the rescaling.
const NEG: f32 = -3.0e38;

var<workgroup> qs: array<f32, WG>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

fn reduce_max(tid: u32, value: f32) -> f32 {
    workgroupBarrier();
    red[tid] = value;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (tid < s) {
            red[tid] = max(red[tid], red[tid + s]);
        }
    }
    workgroupBarrier();
    return red[0];
}

fn reduce_sum(tid: u32, value: f32) -> f32 {
    workgroupBarrier();
    red[tid] = value;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (tid < s) {
            red[tid] += red[tid + s];
        }
    }
    workgroupBarrier();
    return red[0];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let hd = params.head_dim;
    let h = wg.x;
    let t = wg.y;
    let n_keys = step.pos0 + t + 1u;
    var first = 0u;
    if (params.window != 0u && n_keys > params.window) {
        first = n_keys - params.window;
    }
    let kv_stride = params.n_kv_head * hd;
    let kv_off = (h / (params.n_head / params.n_kv_head)) * hd;

    if (tid < hd) {
        qs[tid] = q[(t * params.n_head + h) * hd + tid] * params.scale;
    }
    // For the V sum, thread (slice, d) owns output dimension d for keys slice, slice +
    // n_slices, ...; slices are combined at the end.
    let n_slices = WG / hd;
    let slice = tid / hd;
    let d = tid % hd;
    let owns = slice < n_slices;

    var m = NEG;
    var l = 0.0;
    var acc = 0.0;
    for (var k0 = first; k0 < n_keys; k0 += WG) {
        workgroupBarrier(); // qs written / probs of the previous chunk consumed
        let key = k0 + tid;
        var s = NEG;
        if (key < n_keys) {
            let kb = key * kv_stride + kv_off;
            var dotp = 0.0;
            for (var i = 0u; i < hd; i++) {
                dotp += qs[i] * k[kb + i];
            }
            s = dotp;
        }
        let m_new = max(m, reduce_max(tid, s));
        var p = 0.0;
        if (key < n_keys) {
            p = exp(s - m_new);
        }
        probs[tid] = p;
        let chunk_sum = reduce_sum(tid, p); // its barriers also publish probs
        let correction = exp(m - m_new);
        l = l * correction + chunk_sum;
        m = m_new;
        if (owns) {
            acc *= correction;
            let n_chunk = min(WG, n_keys - k0);
            for (var j = slice; j < n_chunk; j += n_slices) {
                acc += probs[j] * v[(k0 + j) * kv_stride + kv_off + d];
            }
        }
    }

    workgroupBarrier();
    red[tid] = select(0.0, acc, owns);
    workgroupBarrier();
    if (tid < hd) {
        var sum = 0.0;
        for (var s = 0u; s < n_slices; s++) {
            sum += red[s * hd + tid];
        }
        out[(t * params.n_head + h) * hd + tid] = sum / l;
    }
}
