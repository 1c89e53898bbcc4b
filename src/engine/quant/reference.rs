//! The unoptimised twin of the kernels: dequantize the row, then an f64 dot product with the
//! unquantized activations. Slow and obviously right; the fast kernels are tested against it.

use super::QType;

pub fn dot(qtype: QType, row: &[u8], x: &[f32]) -> f64 {
    let mut w = vec![0f32; x.len()];
    qtype.dequantize_row(row, &mut w);
    w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// `out[t][r] = W[r] . x[t]` for `x` of shape `[n_tok][cols]`.
pub fn matmul(qtype: QType, bytes: &[u8], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    let row_bytes = cols / qtype.block_size() * qtype.type_size();
    let mut out = Vec::with_capacity(x.len() / cols * rows);
    for xt in x.chunks_exact(cols) {
        for r in 0..rows {
            out.push(dot(qtype, &bytes[r * row_bytes..(r + 1) * row_bytes], xt) as f32);
        }
    }
    out
}
