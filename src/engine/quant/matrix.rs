//! A weight matrix inside the model file's bytes, and the matmul every layer uses.

use super::{Acts, Gathered, QType, packed};
use crate::engine::threads::{RowJob, Threads};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct QMatrix {
    pub qtype: QType,
    pub rows: usize,
    pub cols: usize,
    bytes: Arc<Vec<u8>>,
    offset: usize,
    /// The rows interleaved for the CPU's packed kernel (packed.rs), which products then read
    /// instead of `bytes`; `row`, `data` and the GPU keep the file's layout.
    packed: Option<Arc<Vec<u8>>>,
}

/// Output rows per parallel task: big enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 32;

/// Smallest matmul (weights x tokens) shared with a [`RowHelper`]: below it the hand-over (tens
/// of microseconds between workers) costs more than the rows it saves.
///
/// [`RowHelper`]: crate::engine::threads::RowHelper
const HELPER_MIN_WEIGHTS: usize = 512 * 1024;

/// How a matmul shares its rows with the threads' helper: rows `first..` go to it, at most
/// `tokens` tokens per job (its buffers' size).
#[derive(Clone, Copy)]
struct HelperSplit {
    first: usize,
    tokens: usize,
}

/// Rows per block of the transposition after a several-token product (see `matmul`).
const TRANSPOSE_ROWS: usize = 64;

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
            packed: None,
        }
    }

    /// This matrix with an interleaved copy of its rows for the CPU's products, where its type
    /// and shape have one and this machine runs it ([`packed::available`]); unchanged elsewhere.
    /// The copy costs the matrix's size once more, and is only made for matrices the CPU
    /// engine multiplies.
    pub fn packed_for_cpu(mut self) -> Self {
        if self.qtype == QType::Q4_1 && packed::available() {
            self.packed = packed::pack_q4_1(self.data(), self.rows, self.cols).map(Arc::new);
        }
        self
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
        let split = self.helper_split(threads);
        // Tokens go in groups a helper job holds (all at once without a helper). Each (row,
        // token) pair is computed the same way in any group, so the grouping changes no bit.
        let group = split.map_or(n_tok, |s| s.tokens).clamp(1, n_tok.max(1));
        let mut tmp = Vec::new();
        for (xs, outs) in x
            .chunks(group * self.cols)
            .zip(out.chunks_mut(group * self.rows))
        {
            let acts: Vec<Acts> = xs
                .chunks_exact(self.cols)
                .map(|xt| Acts::quantize(self.qtype, xt))
                .collect();
            if acts.len() == 1 {
                self.rows_by_token(xs, &acts, outs, split, threads);
                continue;
            }
            // Several tokens: row-major per weight row ([rows][n]) so each row is read and
            // unpacked once for all tokens, then transposed.
            tmp.clear();
            tmp.resize(outs.len(), 0.0);
            self.rows_by_token(xs, &acts, &mut tmp, split, threads);
            // In blocks of rows: one token's outputs of a block are contiguous, so each store
            // lands in a cache line just written (row by row, the head's eight outputs per row
            // went to eight places 196 kB apart, ~4 % of a batched build).
            let n = acts.len();
            for r0 in (0..self.rows).step_by(TRANSPOSE_ROWS) {
                let block = r0..(r0 + TRANSPOSE_ROWS).min(self.rows);
                for (t, out) in outs.chunks_exact_mut(self.rows).enumerate() {
                    for r in block.clone() {
                        out[r] = tmp[r * n + t];
                    }
                }
            }
        }
    }

    /// Where a job for the threads' helper would start, and how many tokens one job holds;
    /// `None` without a helper, or when not one token fits its buffers.
    fn helper_split(&self, threads: &Threads) -> Option<HelperSplit> {
        let helper = threads.helper()?;
        // Whole groups for the multi-row kernels (and packed rows) on both sides.
        let first = (self.rows / 2)
            .next_multiple_of(packed::GROUP)
            .min(self.rows);
        let (max_x, max_out) = helper.capacity();
        let tokens = (max_x / self.cols).min(max_out / (self.rows - first).max(1));
        (tokens > 0 && first < self.rows).then_some(HelperSplit { first, tokens })
    }

    /// `out[r][t] = W[r] . x[t]` for the tokens of `acts` (`x` unquantized, `[n][cols]`), each
    /// weight row read and unpacked once for all of them. With `split`, the threads' helper
    /// computes the upper rows meanwhile, when the job is big enough to pay for the hand-over
    /// and the helper takes it; rows it fails to deliver are computed here.
    fn rows_by_token(
        &self,
        x: &[f32],
        acts: &[Acts],
        out: &mut [f32],
        split: Option<HelperSplit>,
        threads: &Threads,
    ) {
        let n = acts.len();
        let (data, rb) = (self.product_bytes(), self.row_bytes());
        let shared = split.filter(|_| self.rows * self.cols * n >= HELPER_MIN_WEIGHTS);
        let helper = threads.helper();
        let started = shared.zip(helper).is_some_and(|(s, h)| {
            let job = RowJob {
                qtype: self.qtype,
                rows: self.rows,
                cols: self.cols,
                offset: self.offset,
                first: s.first,
                end: self.rows,
                tokens: n,
            };
            h.start(&job, x)
        });
        let mine_rows = match shared {
            Some(s) if started => s.first,
            _ => self.rows,
        };
        let (mine, theirs) = out.split_at_mut(mine_rows * n);
        let g = self.gathered(acts);
        threads.for_each_chunk(mine, ROWS_PER_TASK * n, |start, chunk| {
            let r0 = start / n;
            self.dot_rows(&data[r0 * rb..(r0 + chunk.len() / n) * rb], acts, &g, chunk);
        });
        if started && !helper.is_some_and(|h| h.finish(theirs)) {
            self.dot_rows(&data[mine_rows * rb..], acts, &g, theirs);
        }
    }

    /// The rows products read: the packed copy where there is one, else the file's.
    fn product_bytes(&self) -> &[u8] {
        self.packed.as_deref().map_or(self.data(), |p| &p[..])
    }

    /// The activations' scales gathered for the tile kernels (packed rows need none).
    fn gathered(&self, acts: &[Acts]) -> Gathered {
        match self.packed {
            Some(_) => Gathered::default(),
            None => Gathered::of(acts),
        }
    }

    /// Rows of [`QMatrix::product_bytes`] dotted with `acts`.
    fn dot_rows(&self, rows: &[u8], acts: &[Acts], g: &Gathered, out: &mut [f32]) {
        if self.packed.is_some() {
            packed::dot_tiles_q4_1(rows, self.row_bytes(), acts, out);
        } else {
            self.qtype.dot_tiles(rows, acts, g, out);
        }
    }
}

/// The helper's side of [`RowJob`]s: its copy of the model file, and each matrix it has been
/// asked for, prepared as the caller prepares its own ([`QMatrix::packed_for_cpu`]) so that
/// every row comes out with the bits the caller would compute.
pub struct RowServer {
    file: Arc<Vec<u8>>,
    /// By offset in the file; a job naming another type or shape there replaces the entry.
    matrices: HashMap<usize, QMatrix>,
}

impl RowServer {
    pub fn new(file: Arc<Vec<u8>>) -> Self {
        Self {
            file,
            matrices: HashMap::new(),
        }
    }

    /// Rows `job.first..job.end` for the activations `x` (`[tokens][cols]`), written
    /// `[row][token]`. The job comes from another worker, so it is checked against the file
    /// (a mismatch is an error, not a panic).
    pub fn serve(&mut self, job: &RowJob, x: &[f32], out: &mut [f32]) -> Result<(), String> {
        let (bs, ts) = (job.qtype.block_size(), job.qtype.type_size());
        let row_bytes = (job.cols / bs) * ts;
        let fits = job.cols.is_multiple_of(bs)
            && job.tokens > 0
            && job.cols.checked_mul(job.tokens) == Some(x.len())
            && job.first <= job.end
            && job.end <= job.rows
            && (job.end - job.first).checked_mul(job.tokens) == Some(out.len())
            && job
                .rows
                .checked_mul(row_bytes)
                .and_then(|n| n.checked_add(job.offset))
                .is_some_and(|end| end <= self.file.len());
        if !fits {
            return Err(format!("row job {job:?} does not fit the model file"));
        }
        let m = match self.matrices.get(&job.offset) {
            Some(m) if (m.qtype, m.rows, m.cols) == (job.qtype, job.rows, job.cols) => m,
            _ => {
                let m = QMatrix::new(job.qtype, job.rows, job.cols, self.file.clone(), job.offset);
                self.matrices.insert(job.offset, m.packed_for_cpu());
                &self.matrices[&job.offset]
            }
        };
        let whole = |r: usize| r.is_multiple_of(packed::GROUP);
        if m.packed.is_some() && !(whole(job.first) && whole(job.end)) {
            return Err(format!("row job {job:?} splits a group of packed rows"));
        }
        let acts: Vec<Acts> = x
            .chunks_exact(job.cols)
            .map(|xt| Acts::quantize(job.qtype, xt))
            .collect();
        let rows = &m.product_bytes()[job.first * row_bytes..job.end * row_bytes];
        m.dot_rows(rows, &acts, &m.gathered(&acts), out);
        Ok(())
    }
}
