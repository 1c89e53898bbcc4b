// Strided row copy: dst[dst_offset + (t + pos0 * at_pos) * dst_stride + i] = src[t * n + i].
// With at_pos = 1 it stores this step's K or V rows into the cache at their positions;
// with at_pos = 0 and dst_stride = n_recorded * hidden it records one layer's residual
// into a [token][recorded layer][hidden] buffer.

struct Step { n_tok: u32, pos0: u32, _pad0: u32, _pad1: u32 }
struct Params {
    n: u32,
    dst_stride: u32,
    dst_offset: u32,
    at_pos: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.n) {
        return;
    }
    let t = gid.y;
    let row = t + step.pos0 * params.at_pos;
    dst[params.dst_offset + row * params.dst_stride + gid.x] = src[t * params.n + gid.x];
}
