//! Data-parallel loops: a pool of spinning workers natively (`engine::pool`), a plain loop in
//! the browser (one wasm thread), plus, optionally, a [`RowHelper`]: in a cross-origin isolated
//! page, a second worker that computes part of each large matmul's rows (the browser's second
//! core; see `web/row_helper.rs`).

use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
use crate::engine::pool::SpinPool;
use crate::engine::quant::QType;

pub struct Threads {
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<SpinPool>,
    helper: Option<Arc<dyn RowHelper>>,
}

/// Rows `first..end` of a weight matrix, named by where it sits in the model file (which the
/// helper holds a copy of), for `tokens` tokens' activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowJob {
    pub qtype: QType,
    pub rows: usize,
    pub cols: usize,
    /// Byte offset of the matrix in the model file.
    pub offset: usize,
    pub first: usize,
    pub end: usize,
    pub tokens: usize,
}

/// Computes a [`RowJob`] elsewhere while the caller computes the other rows. Without shared
/// wasm memory (wasm threads need a std this toolchain cannot build), a second worker with its
/// own copy of the model file is the way to the browser's second core.
pub trait RowHelper: Send + Sync {
    /// The largest job it takes: floats of input (`tokens x cols`) and of output
    /// (`tokens x (end - first)`).
    fn capacity(&self) -> (usize, usize);
    /// Starts `job` on the activations `x` (`[tokens][cols]`); false when the helper cannot
    /// take it now (not ready, or gone): the caller then computes every row itself.
    fn start(&self, job: &RowJob, x: &[f32]) -> bool;
    /// Waits for the job started last and writes its rows into `out` (`[row][token]`); false
    /// if the helper failed, and the caller computes them itself.
    fn finish(&self, out: &mut [f32]) -> bool;
}

impl Threads {
    /// `n` threads computing, the caller's included; 0 means one per core. One thread runs
    /// inline, without a pool.
    pub fn new(n: usize) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let n = if n == 0 {
                std::thread::available_parallelism().map_or(1, |c| c.get())
            } else {
                n
            };
            let pool = (n > 1).then(|| SpinPool::new(n - 1));
            Self { pool, helper: None }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = n;
            Self { helper: None }
        }
    }

    /// The same, with `helper` taking part of each large matmul.
    pub fn with_helper(mut self, helper: Arc<dyn RowHelper>) -> Self {
        self.helper = Some(helper);
        self
    }

    pub fn helper(&self) -> Option<&dyn RowHelper> {
        self.helper.as_deref()
    }

    /// Threads computing: the pool's (or the caller's one), plus the helper's.
    pub fn count(&self) -> usize {
        self.pool_threads() + usize::from(self.helper.is_some())
    }

    fn pool_threads(&self) -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(p) = &self.pool {
            return p.threads();
        }
        1
    }

    /// Calls `f(start_index, chunk)` for consecutive chunks of `out`, in parallel where possible.
    pub fn for_each_chunk<F>(&self, out: &mut [f32], chunk: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync + Send,
    {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(pool) = &self.pool {
            let (len, base) = (out.len(), SharedOut(out.as_mut_ptr()));
            pool.run(len.div_ceil(chunk), &|i| {
                let start = i * chunk;
                let n = chunk.min(len - start);
                // SAFETY: task i is the only one writing out[start..start + n], and `run`
                // returns only when every task is done, while `out` is still borrowed.
                let c = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), n) };
                f(start, c)
            });
            return;
        }
        for (i, c) in out.chunks_mut(chunk).enumerate() {
            f(i * chunk, c);
        }
    }
}

/// `out`'s start, handed to the pool's threads, which write disjoint chunks of it.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

#[cfg(not(target_arch = "wasm32"))]
impl SharedOut {
    // A method, so closures capture the whole (Sync) wrapper rather than its raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: see `for_each_chunk`: every task writes its own chunk.
#[cfg(not(target_arch = "wasm32"))]
unsafe impl Sync for SharedOut {}
#[cfg(not(target_arch = "wasm32"))]
unsafe impl Send for SharedOut {}
