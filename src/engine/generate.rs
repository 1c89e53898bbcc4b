//! The generation loop over any backend, and a `Session` that keeps the token ids behind the
//! backend's KV cache so a chat only runs what is new each turn.

use super::backend::{Backend, now_or_err};
use super::clock::now_ms;
use super::error::{Error, Result};
use super::hooks::Hooks;
use super::sampler::{Sampler, SamplerConfig};
use super::tokenizer::{StreamDecoder, Tokenizer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Tokens that end the reply (end of turn, end of text); not part of the reply's text.
    pub stop: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfTurn,
    MaxTokens,
    ContextFull,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    /// Generated ids, the stop token included when there was one.
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// Prompt tokens actually run (the rest came from the cache).
    pub prefilled: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub stop: StopReason,
    /// Per generated token, the best raw logits before sampling: how close a call it was
    /// (backends that round differently may part ways at a near-tie).
    pub top: Vec<TopLogits>,
}

/// Candidates kept per step in [`Generation::top`].
pub const TOP_K: usize = 4;

/// The [`TOP_K`] highest logits of one step and their token ids, best first (the first of
/// equal logits first, as the greedy sampler picks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopLogits {
    pub ids: [u32; TOP_K],
    pub logits: [f32; TOP_K],
}

impl TopLogits {
    /// `None` for fewer than [`TOP_K`] logits.
    pub fn of(logits: &[f32]) -> Option<Self> {
        if logits.len() < TOP_K {
            return None;
        }
        let mut top = Self {
            ids: [0; TOP_K],
            logits: [f32::NEG_INFINITY; TOP_K],
        };
        for (i, &x) in logits.iter().enumerate() {
            // Strictly greater: an equal logit later in the vocabulary ranks below.
            if x > top.logits[TOP_K - 1] {
                let mut k = TOP_K - 1;
                while k > 0 && x > top.logits[k - 1] {
                    top.logits[k] = top.logits[k - 1];
                    top.ids[k] = top.ids[k - 1];
                    k -= 1;
                }
                top.logits[k] = x;
                top.ids[k] = i as u32;
            }
        }
        Some(top)
    }

    /// Best minus second best.
    pub fn gap(&self) -> f32 {
        self.logits[0] - self.logits[1]
    }
}

impl Generation {
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prefilled, self.prefill_ms)
    }

    /// Decode speed over the tokens after the first (the first comes from the prefill logits).
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.tokens.len().saturating_sub(1), self.decode_ms)
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

pub struct Session {
    pub backend: Box<dyn Backend>,
    /// The tokens whose keys and values the backend holds, in order.
    tokens: Vec<u32>,
}

impl Session {
    pub fn new(backend: Box<dyn Backend>) -> Self {
        Self {
            backend,
            tokens: Vec::new(),
        }
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn reset(&mut self) {
        self.tokens.clear();
        self.backend.truncate(0);
    }

    /// Keeps only the first `len` cached tokens, so the next `prefill` runs (and records)
    /// everything after them while reusing the rest.
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
        self.backend.truncate(len);
    }

    /// Brings the cache to exactly `prompt`, running only the part not already cached, and
    /// returns the last token's logits and how many tokens ran.
    pub fn prefill(&mut self, prompt: &[u32], hooks: &mut Hooks) -> Result<(Vec<f32>, usize)> {
        now_or_err(self.prefill_async(prompt, hooks))
    }

    /// [`Session::prefill`] over [`Backend::forward_async`].
    pub async fn prefill_async(
        &mut self,
        prompt: &[u32],
        hooks: &mut Hooks,
    ) -> Result<(Vec<f32>, usize)> {
        if prompt.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        let limit = self.backend.config().context;
        if prompt.len() > limit {
            return Err(Error::ContextOverflow {
                needed: prompt.len(),
                limit,
            });
        }
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // The last prompt token always runs: its logits choose the first reply token.
        let start = common.min(prompt.len() - 1);
        self.backend.truncate(start);
        self.tokens.truncate(start);
        let logits = self
            .backend
            .forward_async(&prompt[start..], start, hooks, false)
            .await?;
        self.tokens.extend_from_slice(&prompt[start..]);
        Ok((logits, prompt.len() - start))
    }

    /// Runs one more token and returns its logits.
    pub fn step(&mut self, token: u32, hooks: &mut Hooks) -> Result<Vec<f32>> {
        now_or_err(self.step_async(token, hooks))
    }

    /// [`Session::step`] over [`Backend::forward_async`].
    pub async fn step_async(&mut self, token: u32, hooks: &mut Hooks) -> Result<Vec<f32>> {
        let pos = self.tokens.len();
        let logits = self
            .backend
            .forward_async(&[token], pos, hooks, false)
            .await?;
        self.tokens.push(token);
        Ok(logits)
    }

    /// Generates a reply to `prompt`, calling `on_token(id, text_piece)` for each token as it
    /// comes; returning `false` from it stops early.
    pub fn generate(
        &mut self,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        hooks: &mut Hooks,
        on_token: &mut dyn FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        now_or_err(self.generate_async(tok, prompt, opts, hooks, on_token))
    }

    /// [`Session::generate`] over [`Backend::forward_async`].
    pub async fn generate_async(
        &mut self,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        hooks: &mut Hooks,
        on_token: &mut dyn FnMut(u32, &str) -> bool,
    ) -> Result<Generation> {
        let t0 = now_ms();
        let (mut logits, prefilled) = self.prefill_async(prompt, hooks).await?;
        let t1 = now_ms();
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut history: Vec<u32> = prompt.to_vec();
        let mut tokens = Vec::new();
        let mut top = Vec::new();
        let mut text = String::new();
        let mut decoder = StreamDecoder::default();
        let limit = self.backend.config().context;
        let mut stop = StopReason::MaxTokens;
        while tokens.len() < opts.max_tokens {
            top.extend(TopLogits::of(&logits));
            let next = sampler.sample(&mut logits, &history);
            tokens.push(next);
            history.push(next);
            if opts.stop.contains(&next) {
                stop = StopReason::EndOfTurn;
                break;
            }
            let piece = decoder.push(tok, next);
            text.push_str(&piece);
            if !on_token(next, &piece) {
                stop = StopReason::Cancelled;
                break;
            }
            if tokens.len() == opts.max_tokens {
                break;
            }
            if self.tokens.len() >= limit {
                stop = StopReason::ContextFull;
                break;
            }
            logits = self.step_async(next, hooks).await?;
        }
        Ok(Generation {
            text,
            tokens,
            prompt_tokens: prompt.len(),
            prefilled,
            prefill_ms: t1 - t0,
            decode_ms: now_ms() - t1,
            stop,
            top,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::TopLogits;

    #[test]
    fn top_logits_are_the_best_in_order_first_of_ties_first() {
        let t = TopLogits::of(&[0.5, -1.0, 3.0, 2.5, 3.0, -7.0, 2.9]).unwrap();
        assert_eq!(t.ids, [2, 4, 6, 3]);
        assert_eq!(t.logits, [3.0, 3.0, 2.9, 2.5]);
        assert_eq!(t.gap(), 0.0);
        let t = TopLogits::of(&[-1.0, -4.0, -2.0, -3.0]).unwrap();
        assert_eq!((t.ids, t.gap()), ([0, 2, 3, 1], 1.0));
        assert_eq!(TopLogits::of(&[1.0, 2.0, 3.0]), None);
    }
}
