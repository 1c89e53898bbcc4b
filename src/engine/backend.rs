//! The one interface the science and the UI drive; the CPU engine and the GPU engine both
//! implement it, so neither knows which one runs.

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

    /// Forgets cached positions from `len` on (undo, regenerate, branching replies).
    fn truncate(&mut self, len: usize);

    /// Positions currently cached.
    fn cached(&self) -> usize;

    /// "cpu (2 threads)", "webgpu (adapter name)": shown to the user.
    fn describe(&self) -> String;
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
