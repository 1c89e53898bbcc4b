// RMSNorm, one workgroup per row of n values (a token, or one head of a token):
// y = x / sqrt(mean(x^2) + eps) * weight.

struct Params {
    n: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let n = params.n;
    let base = wg.x * n;
    var ss = 0.0;
    for (var i = tid; i < n; i += WG) {
        let v = x[base + i];
        ss += v * v;
    }
    red[tid] = ss;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (tid < s) {
            red[tid] += red[tid + s];
        }
    }
    workgroupBarrier();
    // 1/sqrt rather than inverseSqrt: the latter may be a low-precision approximation.
    let inv = 1.0 / sqrt(red[0] / f32(n) + params.eps);
    for (var i = tid; i < n; i += WG) {
        y[base + i] = x[base + i] * inv * weight[i];
    }
}
