//! The generation loop over any backend, and a `Session` that keeps the token ids behind the
//! backend's KV cache so a chat only runs what is new each turn.

use super::backend::Backend;
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
            .forward(&prompt[start..], start, hooks, false)?;
        self.tokens.extend_from_slice(&prompt[start..]);
        Ok((logits, prompt.len() - start))
    }

    /// Runs one more token and returns its logits.
    pub fn step(&mut self, token: u32, hooks: &mut Hooks) -> Result<Vec<f32>> {
        let pos = self.tokens.len();
        let logits = self.backend.forward(&[token], pos, hooks, false)?;
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
        let t0 = now_ms();
        let (mut logits, prefilled) = self.prefill(prompt, hooks)?;
        let t1 = now_ms();
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut history: Vec<u32> = prompt.to_vec();
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut decoder = StreamDecoder::default();
        let limit = self.backend.config().context;
        let mut stop = StopReason::MaxTokens;
        while tokens.len() < opts.max_tokens {
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
            logits = self.step(next, hooks)?;
        }
        Ok(Generation {
            text,
            tokens,
            prompt_tokens: prompt.len(),
            prefilled,
            prefill_ms: t1 - t0,
            decode_ms: now_ms() - t1,
            stop,
        })
    }
}
