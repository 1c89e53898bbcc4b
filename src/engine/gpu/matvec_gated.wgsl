// The end of matvec.wgsl for the gated MLP in one pass: the matrix is gate and up
// interleaved four rows at a time (linear_pairs.wgsl), so a workgroup's 8 rows are gate rows
// 4b..4b+3 and the same up rows, and it writes gate[t][4b + j] = act(gate) * up itself.
// Prepended: silu.wgsl or gelu.wgsl (defines act).

@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn finish(lane: u32, tid: u32, row: u32, t: u32) {
    // The up rows' sums were written by other threads.
    workgroupBarrier();
    let j = tid / LANES;
    if (lane == 0u && j < 4u && row < params.rows) {
        let i = t * (params.rows / 2u) + (row / 8u) * 4u + j;
        y[i] = act(partial[tid]) * partial[tid + 4u * LANES];
    }
}
