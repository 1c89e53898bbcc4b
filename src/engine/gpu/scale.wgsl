// x[t][i] *= s, in place (gemma3's embedding scale).

struct Params {
    n: u32,
    s_bits: u32, // the f32 factor's bits (the params block is u32s)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.n) {
        return;
    }
    x[gid.y * params.n + gid.x] *= bitcast<f32>(params.s_bits);
}
