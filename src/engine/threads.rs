//! Data-parallel loops: a rayon pool natively, a plain loop in the browser (one wasm thread).

pub struct Threads {
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<rayon::ThreadPool>,
}

impl Threads {
    /// `n` worker threads; 0 means one per core. One thread runs inline, without a pool.
    pub fn new(n: usize) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let n = if n == 0 {
                std::thread::available_parallelism().map_or(1, |c| c.get())
            } else {
                n
            };
            let pool = (n > 1)
                .then(|| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok())
                .flatten();
            Self { pool }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = n;
            Self {}
        }
    }

    pub fn count(&self) -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(p) = &self.pool {
            return p.current_num_threads();
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
            use rayon::prelude::*;
            pool.install(|| {
                out.par_chunks_mut(chunk)
                    .enumerate()
                    .for_each(|(i, c)| f(i * chunk, c))
            });
            return;
        }
        for (i, c) in out.chunks_mut(chunk).enumerate() {
            f(i * chunk, c);
        }
    }
}
