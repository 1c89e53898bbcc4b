// RoPE's rotation, shared by rope.wgsl and rope_store.wgsl. Token t sits at absolute
// position pos0 + t; pair j (< n_rot / 2) turns by angle = position * inv_freq[j]. NORM mode
// (llama) rotates (x[2j], x[2j+1]), NEOX mode (qwen2) rotates (x[j], x[j + n_rot/2]).
// Bindings 0-2 here; the kernel's buffers from binding 3.

struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }
struct Params {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    neox: u32,
    // rope_store.wgsl: the heads of k and v.
    n_kv_heads: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;

// 2 pi split in two so that k * TWO_PI_HI is exact for k < 2^16: the reduction to
// [-pi, pi] then adds no error beyond that of the f32 angle itself. WGSL only
// guarantees sin/cos accuracy inside [-pi, pi].
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

// (cos, sin) of pair j's angle at `position`.
fn rotation(position: u32, j: u32) -> vec2<f32> {
    let angle = f32(position) * inv_freq[j];
    let k = round(angle * INV_TWO_PI);
    let r = (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
    return vec2<f32>(cos(r), sin(r));
}

// The offsets of pair j's two values within a head.
fn pair(j: u32) -> vec2<u32> {
    if (params.neox != 0u) {
        return vec2<u32>(j, j + params.n_rot / 2u);
    }
    return vec2<u32>(2u * j, 2u * j + 1u);
}

// The pair (xa, xb) turned by `cs`.
fn rotate(xa: f32, xb: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(xa * cs.x - xb * cs.y, xa * cs.y + xb * cs.x);
}
