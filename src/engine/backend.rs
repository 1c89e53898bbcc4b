//! The one interface the science and the UI drive; the CPU engine and the GPU engine both
//! implement it, so neither knows which one runs.
//!
//! Two ways to run a forward pass: `forward` blocks, `forward_async` may yield. The CPU
//! engine and the native GPU only block (their `forward_async` is a finished future);
//! WebGPU in a browser cannot wait for a readback without returning to the event loop, so
//! there only `forward_async` works. The loops above the backend (`Session`, the science
//! pipeline, the web host) are written once, async, and their blocking twins run them with
//! [`now_or_err`], which is exact for every backend whose `forward_async` never waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::config::ModelConfig;
use super::error::{Error, Result};
use super::hooks::Hooks;

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

    /// Forgets cached positions from `len` on (undo, regenerate, branching replies).
    fn truncate(&mut self, len: usize);

    /// Positions currently cached.
    fn cached(&self) -> usize;

    /// "cpu (2 threads, avx2)", "webgpu (adapter name)": shown to the user.
    fn describe(&self) -> String;
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

/// The checks every backend makes before a forward call, with the same messages: `tokens` at
/// `pos` must be non-empty, follow the `cached` positions, fit the context and the vocabulary.
pub fn check_forward(cfg: &ModelConfig, tokens: &[u32], pos: usize, cached: usize) -> Result<()> {
    let n = tokens.len();
    if n == 0 {
        return Err(Error::Invalid("no tokens to run".into()));
    }
    if pos > cached {
        return Err(Error::Invalid(format!(
            "position {pos} is past the {cached} cached tokens"
        )));
    }
    if pos + n > cfg.context {
        return Err(Error::ContextOverflow {
            needed: pos + n,
            limit: cfg.context,
        });
    }
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= cfg.vocab) {
        return Err(Error::Invalid(format!(
            "token id {t} is outside the vocabulary of {}",
            cfg.vocab
        )));
    }
    Ok(())
}
