// The attention's inputs in one pass: RoPE in place on q [n_tok][n_heads][head_dim], RoPE of
// k [n_tok][n_kv_heads][head_dim] written into the K cache at the tokens' positions, and v
// copied into the V cache there (rope_common.wgsl, prepended, says how; n_rot = head_dim).
// One thread per pair: the first n_heads * half threads turn q, the next n_kv_heads * half
// turn k and carry the same two values of v.

@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = params.n_rot / 2u;
    let nq = params.n_heads * half;
    let i = gid.x;
    if (i >= nq + params.n_kv_heads * half) {
        return;
    }
    let t = gid.y;
    let position = step.pos0 + t;
    if (i < nq) {
        let j = i % half;
        let ab = (t * params.n_heads + i / half) * params.head_dim + pair(j);
        let r = rotate(q[ab.x], q[ab.y], rotation(position, j));
        q[ab.x] = r.x;
        q[ab.y] = r.y;
        return;
    }
    let ik = i - nq;
    let j = ik % half;
    let in_head = (ik / half) * params.head_dim + pair(j);
    let kv_dim = params.n_kv_heads * params.head_dim;
    let src = t * kv_dim + in_head;
    let dst = position * kv_dim + in_head;
    let r = rotate(k[src.x], k[src.y], rotation(position, j));
    k_cache[dst.x] = r.x;
    k_cache[dst.y] = r.y;
    v_cache[dst.x] = v[src.x];
    v_cache[dst.y] = v[src.y];
}
