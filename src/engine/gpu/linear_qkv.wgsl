// Where a linear layer puts y[t][r] when its matrix is q, k and v stacked (one pass over the
// input for all three): rows below split1 into q [n_tok][split1], rows below split2 into
// k [n_tok][split2 - split1], the rest into v [n_tok][rows - split2].
// Prepended to matvec.wgsl and matmul.wgsl, which call store().

@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

fn store(t: u32, r: u32, value: f32) {
    let s1 = params.split1;
    let s2 = params.split2;
    if (r < s1) {
        q[t * s1 + r] = value;
    } else if (r < s2) {
        k[t * (s2 - s1) + r - s1] = value;
    } else {
        v[t * (params.rows - s2) + r - s2] = value;
    }
}
