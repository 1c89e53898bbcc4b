// The end of matvec.wgsl for every output but the gated one: each row's lane 0 stores the
// row's sum through store() (linear_out.wgsl or linear_qkv.wgsl).

fn finish(lane: u32, tid: u32, row: u32, t: u32) {
    if (lane == 0u && row < params.rows) {
        store(t, row, partial[tid]);
    }
}
