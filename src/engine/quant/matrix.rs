//! A weight matrix inside the model file's bytes, and the matmul every layer uses.

use super::{Acts, QType};
use crate::engine::threads::Threads;
use std::sync::Arc;

#[derive(Clone)]
pub struct QMatrix {
    pub qtype: QType,
    pub rows: usize,
    pub cols: usize,
    bytes: Arc<Vec<u8>>,
    offset: usize,
}

/// Output rows per parallel task: big enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 32;

impl QMatrix {
    pub fn new(qtype: QType, rows: usize, cols: usize, bytes: Arc<Vec<u8>>, offset: usize) -> Self {
        debug_assert!(
            offset + rows * (cols / qtype.block_size() * qtype.type_size()) <= bytes.len()
        );
        Self {
            qtype,
            rows,
            cols,
            bytes,
            offset,
        }
    }

    pub fn row_bytes(&self) -> usize {
        self.cols / self.qtype.block_size() * self.qtype.type_size()
    }

    pub fn data(&self) -> &[u8] {
        &self.bytes[self.offset..self.offset + self.rows * self.row_bytes()]
    }

    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes[self.offset + r * rb..self.offset + (r + 1) * rb]
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        self.qtype.dequantize_row(self.row(r), out)
    }

    /// `out[t][r] = W[r] . x[t]`, `x` is `[n_tok][cols]`, `out` is `[n_tok][rows]`.
    pub fn matmul(&self, x: &[f32], out: &mut [f32], threads: &Threads) {
        let n_tok = x.len() / self.cols;
        debug_assert_eq!(out.len(), n_tok * self.rows);
        let acts: Vec<Acts> = x
            .chunks_exact(self.cols)
            .map(|xt| Acts::quantize(self.qtype, xt))
            .collect();
        if n_tok == 1 {
            let (data, rb) = (self.data(), self.row_bytes());
            threads.for_each_chunk(out, ROWS_PER_TASK, |r0, chunk| {
                let rows = &data[r0 * rb..(r0 + chunk.len()) * rb];
                self.qtype.dot_rows(rows, &acts[0], chunk);
            });
            return;
        }
        // Row-major per weight row ([rows][n_tok]) so each row is read once for all tokens.
        let mut tmp = vec![0f32; out.len()];
        threads.for_each_chunk(&mut tmp, ROWS_PER_TASK * n_tok, |start, chunk| {
            let r0 = start / n_tok;
            for (i, per_tok) in chunk.chunks_exact_mut(n_tok).enumerate() {
                let row = self.row(r0 + i);
                for (o, a) in per_tok.iter_mut().zip(&acts) {
                    *o = self.qtype.dot(row, a);
                }
            }
        });
        for r in 0..self.rows {
            for t in 0..n_tok {
                out[t * self.rows + r] = tmp[r * n_tok + t];
            }
        }
    }
}
