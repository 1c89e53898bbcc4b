//! A session and the residuals it recorded at every position of its KV cache.

use crate::engine::{Backend, Edit, GenerateOptions, Hooks, Model, Session};

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

    pub(super) async fn generate(
        &mut self,
        model: &Model,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32, &str) -> bool,
    ) -> crate::engine::Result<crate::engine::Generation> {
        match self
            .session
            .generate_async(&model.tokenizer, prompt, opts, &mut self.hooks, on_token)
            .await
        {
            Ok(g) => {
                self.absorb(g.prompt_tokens - g.prefilled);
                Ok(g)
            }
            Err(e) => {
                self.reset();
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
