// Rotary position embedding, in place on x [n_tok][n_heads][head_dim] (rope_common.wgsl,
// prepended, says how). Dimensions >= n_rot are untouched.

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
