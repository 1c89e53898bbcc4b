//! The one interface the science and the UI drive; the CPU engine and the GPU engine both
//! implement it, so neither knows which one runs.
//!
//! Two ways to run a forward pass: `forward` blocks, `forward_async` may yield. The CPU
//! engine and the native GPU only block (their `forward_async` is a finished future);
//! WebGPU in a browser cannot wait for a readback without returning to the event loop, so
//! there only `forward_async` works. The loops above the backend (`Session`, the science
//! pipeline, the web host) are written once, async, and their blocking twins run them with
//! [`now_or_err`], which is exact for every backend whose `forward_async` never waits.
//!
//! Batching: [`forward_batch`] advances several independent sequences, each its own backend
//! (its own KV cache, position and hooks), by one forward call each. CPU sequences forked from
//! one load ([`CpuModel::fork`]) run as one pass: every weight matrix is read once for all
//! their rows, and each sequence gets the same bits as alone. Any other mix (the GPU backend
//! today) runs the calls one after another: the same results, no saving.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::config::ModelConfig;
use super::error::{Error, Result};
use super::hooks::Hooks;
use super::model::{CpuModel, CpuStep};

pub trait Backend {
    fn config(&self) -> &ModelConfig;

    /// Runs `tokens` at positions `pos..pos + n` on top of the KV cache's `0..pos`. Returns the
    /// last token's logits, or every token's (`[n][vocab]`) with `all_logits`.
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        hooks: &mut Hooks,
        all_logits: bool,
    ) -> Result<Vec<f32>>;

    /// [`Backend::forward`] for callers that can yield (the browser's event loop). The
    /// default runs the blocking `forward`; WebGPU overrides it.
    fn forward_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        pos: usize,
        hooks: &'a mut Hooks,
        all_logits: bool,
    ) -> LocalFuture<'a, Result<Vec<f32>>> {
        Box::pin(std::future::ready(
            self.forward(tokens, pos, hooks, all_logits),
        ))
    }

    /// The CPU engine's sequence, which [`forward_batch`] can run together with others of the
    /// same load; `None` (the default) for backends that run a batch one call at a time.
    fn as_cpu(&mut self) -> Option<&mut CpuModel> {
        None
    }

    /// Another sequence on the same loaded weights, with an empty cache, for batching with this
    /// one ([`forward_batch`]); `None` (the default) where a backend cannot share its weights
    /// and a caller should run one sequence at a time.
    fn fork_sequence(&self) -> Option<Box<dyn Backend>> {
        None
    }

    /// Forgets cached positions from `len` on (undo, regenerate, branching replies).
    fn truncate(&mut self, len: usize);

    /// Positions currently cached.
    fn cached(&self) -> usize;

    /// "cpu (2 threads, avx2)", "webgpu (adapter name)": shown to the user.
    fn describe(&self) -> String;
}

/// Makes a backend for a loaded model. The browser's worker decides once which kind (CPU,
/// WebGPU) and hands its host this factory, so sessions created later match.
pub type BackendFactory = Box<dyn Fn(&super::Model) -> Result<Box<dyn Backend>>>;

/// The CPU engine as a backend; its batching is [`forward_batch`]'s shared pass.
impl Backend for CpuModel {
    fn config(&self) -> &ModelConfig {
        CpuModel::config(self)
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        hooks: &mut Hooks,
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        self.forward_one(tokens, pos, hooks, all_logits)
    }

    fn as_cpu(&mut self) -> Option<&mut CpuModel> {
        Some(self)
    }

    fn fork_sequence(&self) -> Option<Box<dyn Backend>> {
        Some(Box::new(self.fork()))
    }

    fn truncate(&mut self, len: usize) {
        self.truncate_cache(len);
    }

    fn cached(&self) -> usize {
        CpuModel::cached(self)
    }

    fn describe(&self) -> String {
        CpuModel::describe(self)
    }
}

/// A boxed future that need not be `Send` (WebGPU handles in a browser are not).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `fut` to its end without an executor: polls it once. Every future built over
/// backends whose `forward_async` is already finished completes in that poll; one that would
/// wait (WebGPU in a browser) gives an error instead of blocking the event loop forever.
pub fn now_or_err<T, E: From<Error>>(
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(E::from(Error::Gpu(
            "this backend answers asynchronously (WebGPU in a browser): use the async API".into(),
        ))),
    }
}

/// One sequence's forward call in a batch: what [`Backend::forward`] takes, on its backend.
pub struct BatchStep<'a> {
    pub backend: &'a mut dyn Backend,
    pub tokens: &'a [u32],
    pub pos: usize,
    pub hooks: &'a mut Hooks,
    pub all_logits: bool,
}

/// Runs every step's forward call and returns each one's logits, in order (see the module
/// notes for what is shared). All steps are checked first, as `forward` checks one: a bad
/// step refuses the whole batch before anything runs, naming the sequence, and no cache moves.
pub fn forward_batch(steps: &mut [BatchStep<'_>]) -> Result<Vec<Vec<f32>>> {
    now_or_err(forward_batch_async(steps))
}

/// [`forward_batch`] over [`Backend::forward_async`]. Where the calls run one after another and
/// one fails on the device (WebGPU), the sequences before it have advanced and those after it
/// have not; each backend's `cached()` tells which.
pub async fn forward_batch_async(steps: &mut [BatchStep<'_>]) -> Result<Vec<Vec<f32>>> {
    for (i, s) in steps.iter().enumerate() {
        s.backend
            .config()
            .check_forward(s.tokens, s.pos, s.backend.cached(), s.hooks)
            .map_err(|e| in_batch(i, e))?;
    }
    let cpu: Option<Vec<CpuStep<'_>>> = steps
        .iter_mut()
        .map(|s| {
            Some(CpuStep {
                model: s.backend.as_cpu()?,
                tokens: s.tokens,
                pos: s.pos,
                hooks: &mut *s.hooks,
                all_logits: s.all_logits,
            })
        })
        .collect();
    if let Some(logits) = cpu.and_then(|mut c| CpuModel::forward_batch(&mut c)) {
        return Ok(logits);
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter_mut().enumerate() {
        let logits = s
            .backend
            .forward_async(s.tokens, s.pos, s.hooks, s.all_logits)
            .await
            .map_err(|e| in_batch(i, e))?;
        out.push(logits);
    }
    Ok(out)
}

fn in_batch(seq: usize, source: Error) -> Error {
    Error::InBatch {
        seq,
        source: Box::new(source),
    }
}
