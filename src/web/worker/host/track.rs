//! A session and the residuals it recorded at every position of its KV cache.

use crate::engine::generate::{GenerateStep, generate_batch_async};
use crate::engine::{Backend, Edit, GenerateOptions, Hooks, Model, OnToken, Session};

/// A session plus the residuals at the recorded layers (the analysis layer for a chat, every
/// layer when building a bundle) of every position in its KV cache.
pub(super) struct Track {
    pub(super) session: Session,
    pub(super) hooks: Hooks,
    pub(super) layers: Vec<usize>,
    pub(super) hidden: usize,
    /// `[position][recorded layer][hidden]`, positions `0..session.tokens().len()`.
    log: Vec<f32>,
}

impl Track {
    pub(super) fn new(
        backend: Box<dyn Backend>,
        layers: Vec<usize>,
        hidden: usize,
        edits: Vec<Edit>,
    ) -> Self {
        let mut hooks = Hooks::recording(layers.clone());
        hooks.edits = edits;
        Self {
            session: Session::new(backend),
            hooks,
            layers,
            hidden,
            log: Vec::new(),
        }
    }

    /// Floats per position in the log.
    fn width(&self) -> usize {
        self.layers.len() * self.hidden
    }

    pub(super) fn reset(&mut self) {
        self.session.reset();
        self.hooks.recording = Default::default();
        self.log.clear();
    }

    /// Moves what the last forward calls recorded (positions `start..`) into the log.
    fn absorb(&mut self, start: usize) {
        let rec = std::mem::take(&mut self.hooks.recording);
        self.log.truncate(start * self.width());
        self.log.extend_from_slice(&rec.data);
        // Rows and cached positions must agree, or no row can be trusted: start over.
        if self.log.len() != self.session.tokens().len() * self.width() {
            self.reset();
        }
    }

    /// Generates a reply on each track together, one batched forward pass per token (issue 14:
    /// the capped branch beside the default costs little more than the default alone); each
    /// track ends as its own generation leaves it. On an error every track starts over.
    pub(super) async fn generate_together(
        tracks: &mut [&mut Track],
        model: &Model,
        prompts: &[&[u32]],
        opts: &GenerateOptions,
        on_token: &mut [&mut OnToken<'_>],
    ) -> crate::engine::Result<Vec<crate::engine::Generation>> {
        let mut seqs: Vec<GenerateStep<'_>> = tracks
            .iter_mut()
            .zip(prompts)
            .zip(on_token.iter_mut())
            .map(|((t, &prompt), on_token)| GenerateStep {
                session: &mut t.session,
                prompt,
                opts,
                hooks: &mut t.hooks,
                on_token: &mut **on_token,
            })
            .collect();
        let ran = generate_batch_async(&model.tokenizer, &mut seqs).await;
        drop(seqs);
        match ran {
            Ok(gens) => {
                for (t, g) in tracks.iter_mut().zip(&gens) {
                    t.absorb(g.prompt_tokens - g.prefilled);
                }
                Ok(gens)
            }
            Err(e) => {
                tracks.iter_mut().for_each(|t| t.reset());
                Err(e)
            }
        }
    }

    /// Brings the cache (and log) to exactly `ids`.
    pub(super) async fn prefill(&mut self, ids: &[u32]) -> crate::engine::Result<()> {
        match self.session.prefill_async(ids, &mut self.hooks).await {
            Ok((_, ran)) => {
                self.absorb(ids.len() - ran);
                Ok(())
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    /// The first recorded layer's residual at `pos` (the analysis layer of a chat track).
    pub(super) fn row(&self, pos: usize) -> &[f32] {
        let start = pos * self.width();
        &self.log[start..start + self.hidden]
    }
}
