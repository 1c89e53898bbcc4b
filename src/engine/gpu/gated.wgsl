// The gated MLP's activation, in place: gate[t][i] = act(gate[t][i]) * up[t][i].
// Prepended: silu.wgsl or gelu.wgsl (defines act).

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.n) {
        return;
    }
    let i = gid.y * params.n + gid.x;
    gate[i] = act(gate[i]) * up[i];
}
