// Hook edit `Clamp { unit, min, max }` on every token, one workgroup per token:
//   p = h[t] . unit;  h[t] += unit * (clamp(p, min, max) - p)
// A missing bound is flagged off rather than passed as an infinity (WGSL lets
// implementations assume floats are finite).

struct Params {
    n: u32,
    has_min: u32,
    has_max: u32,
    _pad: u32,
    min_v: f32,
    max_v: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> unit_v: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let n = params.n;
    let base = wg.x * n;
    var part = 0.0;
    for (var i = tid; i < n; i += WG) {
        part += h[base + i] * unit_v[i];
    }
    red[tid] = part;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (tid < s) {
            red[tid] += red[tid + s];
        }
    }
    workgroupBarrier();
    let p = red[0];
    var c = p;
    if (params.has_min != 0u) {
        c = max(c, params.min_v);
    }
    if (params.has_max != 0u) {
        c = min(c, params.max_v);
    }
    let delta = c - p;
    // Each thread updates exactly the elements it read above: no barrier needed.
    for (var i = tid; i < n; i += WG) {
        h[base + i] += unit_v[i] * delta;
    }
}
