// Where a linear layer puts y[t][r]: one buffer [n_tok][rows]; with `accumulate` the product
// is added to what the buffer holds (the residual add joined to the o and down products).
// Prepended to matvec.wgsl and matmul.wgsl, which call store().

@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn store(t: u32, r: u32, v: f32) {
    let i = t * params.rows + r;
    if (params.accumulate != 0u) {
        y[i] = y[i] + v;
    } else {
        y[i] = v;
    }
}
