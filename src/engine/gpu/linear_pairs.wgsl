// Where a linear layer puts y[t][r] when its matrix is gate and up interleaved four rows at a
// time (rows 8b..8b+3 are gate rows 4b..4b+3, rows 8b+4..8b+7 the same up rows; weights.rs):
// into gate and up, each [n_tok][rows / 2]. The prefill path; decode computes the activation
// in the same pass (matvec_gated.wgsl). Prepended to matmul.wgsl, which calls store().

@group(0) @binding(4) var<storage, read_write> gate: array<f32>;
@group(0) @binding(5) var<storage, read_write> up: array<f32>;

fn store(t: u32, r: u32, v: f32) {
    let i = t * (params.rows / 2u) + (r / 8u) * 4u + r % 4u;
    if ((r / 4u) % 2u == 0u) {
        gate[i] = v;
    } else {
        up[i] = v;
    }
}
