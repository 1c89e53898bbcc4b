//! A weight matrix inside the model file's bytes, and the matmul every layer uses.

use super::{Acts, QType};
use crate::engine::threads::{RowJob, Threads};
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

/// Smallest matrix (weights) whose one-token matmul is shared with a [`RowHelper`]: below it the
/// hand-over (tens of microseconds between workers) costs more than the rows it saves.
///
/// [`RowHelper`]: crate::engine::threads::RowHelper
const HELPER_MIN_WEIGHTS: usize = 512 * 1024;

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
        if n_tok == 1 && self.matvec_with_helper(x, &acts[0], out, threads) {
            return;
        }
        // One token: chunks of rows. Several: row-major per weight row ([rows][n_tok]) so each
        // row is read and unpacked once for all tokens, then transposed.
        let (data, rb) = (self.data(), self.row_bytes());
        if n_tok == 1 {
            threads.for_each_chunk(out, ROWS_PER_TASK, |r0, chunk| {
                let rows = &data[r0 * rb..(r0 + chunk.len()) * rb];
                self.qtype.dot_tiles(rows, &acts, chunk);
            });
            return;
        }
        let mut tmp = vec![0f32; out.len()];
        threads.for_each_chunk(&mut tmp, ROWS_PER_TASK * n_tok, |start, chunk| {
            let r0 = start / n_tok;
            let rows = &data[r0 * rb..(r0 + chunk.len() / n_tok) * rb];
            self.qtype.dot_tiles(rows, &acts, chunk);
        });
        for r in 0..self.rows {
            for t in 0..n_tok {
                out[t * self.rows + r] = tmp[r * n_tok + t];
            }
        }
    }
}

impl QMatrix {
    /// One token's matmul split with the threads' helper: it computes the upper half of the
    /// rows while this thread computes the lower. False (nothing written) when there is no
    /// helper, the matrix is too small, or the helper cannot take it.
    fn matvec_with_helper(
        &self,
        x: &[f32],
        acts: &Acts,
        out: &mut [f32],
        threads: &Threads,
    ) -> bool {
        let Some(helper) = threads.helper() else {
            return false;
        };
        if self.rows * self.cols < HELPER_MIN_WEIGHTS {
            return false;
        }
        // A multiple of 4: whole groups for the multi-row kernels on both sides.
        let split = (self.rows / 2).next_multiple_of(4).min(self.rows);
        let job = RowJob {
            qtype: self.qtype,
            rows: self.rows,
            cols: self.cols,
            offset: self.offset,
            first: split,
            end: self.rows,
        };
        if !helper.start(&job, x) {
            return false;
        }
        let rb = self.row_bytes();
        let (mine, theirs) = out.split_at_mut(split);
        self.qtype
            .dot_tiles(&self.data()[..split * rb], std::slice::from_ref(acts), mine);
        if !helper.finish(theirs) {
            self.qtype.dot_tiles(
                &self.data()[split * rb..],
                std::slice::from_ref(acts),
                theirs,
            );
        }
        true
    }

    /// The helper's side of a [`RowJob`]: its rows for the activations `x`, from the helper's
    /// copy of the model file. The job comes from another worker, so it is checked against the
    /// file (a mismatch is an error, not a panic).
    pub fn serve(
        file: &Arc<Vec<u8>>,
        job: &RowJob,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), String> {
        let (bs, ts) = (job.qtype.block_size(), job.qtype.type_size());
        let row_bytes = (job.cols / bs) * ts;
        let fits = job.cols.is_multiple_of(bs)
            && x.len() == job.cols
            && job.first <= job.end
            && job.end <= job.rows
            && out.len() == job.end - job.first
            && job
                .rows
                .checked_mul(row_bytes)
                .and_then(|n| n.checked_add(job.offset))
                .is_some_and(|end| end <= file.len());
        if !fits {
            return Err(format!("row job {job:?} does not fit the model file"));
        }
        let m = QMatrix::new(job.qtype, job.rows, job.cols, file.clone(), job.offset);
        let acts = Acts::quantize(job.qtype, x);
        let rows = &m.data()[job.first * row_bytes..job.end * row_bytes];
        job.qtype.dot_tiles(rows, std::slice::from_ref(&acts), out);
        Ok(())
    }
}
