// Rotary position embedding, in place on x [n_tok][n_heads][head_dim].
// Token t sits at absolute position pos0 + t; pair i (< n_rot / 2) turns by
// angle = position * inv_freq[i]. NORM mode (llama) rotates (x[2i], x[2i+1]),
// NEOX mode (qwen2) rotates (x[i], x[i + n_rot/2]). Dimensions >= n_rot are untouched.

struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }
struct Params {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    neox: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

// 2 pi split in two so that k * TWO_PI_HI is exact for k < 2^16: the reduction to
// [-pi, pi] then adds no error beyond that of the f32 angle itself. WGSL only
// guarantees sin/cos accuracy inside [-pi, pi].
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = params.n_rot / 2u;
    let i = gid.x;
    if (i >= params.n_heads * half) {
        return;
    }
    let t = gid.y;
    let head = i / half;
    let j = i % half;
    let angle = f32(step.pos0 + t) * inv_freq[j];
    let k = round(angle * INV_TWO_PI);
    let r = (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
    let c = cos(r);
    let s = sin(r);
    let base = (t * params.n_heads + head) * params.head_dim;
    var a = base + 2u * j;
    var b = a + 1u;
    if (params.neox != 0u) {
        a = base + j;
        b = a + half;
    }
    let xa = x[a];
    let xb = x[b];
    x[a] = xa * c - xb * s;
    x[b] = xa * s + xb * c;
}
