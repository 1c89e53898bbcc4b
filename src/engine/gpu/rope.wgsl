// Rotary position embedding, in place on x [n_tok][n_heads][head_dim] (rope_common.wgsl,
// prepended, says how). Dimensions >= n_rot are untouched.

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

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = params.n_rot / 2u;
    let i = gid.x;
    if (i >= params.n_heads * half) {
        return;
    }
    let t = gid.y;
    let j = i % half;
    let cs = rotation(step.pos0 + t, j);
    let ab = (t * params.n_heads + i / half) * params.head_dim + pair(j);
    let r = rotate(x[ab.x], x[ab.y], cs);
    x[ab.x] = r.x;
    x[ab.y] = r.y;
}
