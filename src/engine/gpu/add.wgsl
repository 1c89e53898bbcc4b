// h[t][i] += v[i] (broadcast: bias add, the `add` hook edit) or
// h[t][i] += v[t][i] (per token: the residual add).

struct Params {
    n: u32,
    broadcast: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> h: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.n) {
        return;
    }
    let i = gid.y * params.n + gid.x;
    h[i] += v[select(i, gid.x, params.broadcast != 0u)];
}
