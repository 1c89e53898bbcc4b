//! The generation loop over any backend, and a `Session` that keeps the token ids behind the
//! backend's KV cache so a chat only runs what is new each turn.

use super::backend::{Backend, BatchStep, forward_batch_async, now_or_err};
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
        let mut one = [SessionStep {
            session: self,
            input: Input::Prompt(prompt),
            hooks,
        }];
        Ok(run_batch_async(&mut one).await?.remove(0))
    }

    /// Runs one more token and returns its logits.
    pub fn step(&mut self, token: u32, hooks: &mut Hooks) -> Result<Vec<f32>> {
        now_or_err(self.step_async(token, hooks))
    }

    /// [`Session::step`] over [`Backend::forward_async`].
    pub async fn step_async(&mut self, token: u32, hooks: &mut Hooks) -> Result<Vec<f32>> {
        let mut one = [SessionStep {
            session: self,
            input: Input::Token(token),
            hooks,
        }];
        Ok(run_batch_async(&mut one).await?.remove(0).0)
    }

    /// Where `input` runs from, and which of its tokens run: a prompt reuses the cached
    /// tokens it starts with (but always runs its last token, whose logits choose the first
    /// reply token).
    fn plan(&self, input: &Input<'_>) -> Result<(usize, std::ops::Range<usize>)> {
        match input {
            Input::Token(_) => Ok((self.tokens.len(), 0..1)),
            Input::Prompt(prompt) => {
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
                    .zip(prompt.iter())
                    .take_while(|(a, b)| a == b)
                    .count();
                let start = common.min(prompt.len() - 1);
                Ok((start, start..prompt.len()))
            }
        }
    }

    /// Generates a reply to `prompt`, calling `on_token(id, text_piece)` for each token as it
    /// comes; returning `false` from it stops early.
    pub fn generate(
        &mut self,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        hooks: &mut Hooks,
        on_token: &mut OnToken<'_>,
    ) -> Result<Generation> {
        now_or_err(self.generate_async(tok, prompt, opts, hooks, on_token))
    }

    /// [`Session::generate`] over [`Backend::forward_async`]: [`generate_batch_async`] of one.
    pub async fn generate_async(
        &mut self,
        tok: &Tokenizer,
        prompt: &[u32],
        opts: &GenerateOptions,
        hooks: &mut Hooks,
        on_token: &mut OnToken<'_>,
    ) -> Result<Generation> {
        let mut one = [GenerateStep {
            session: self,
            prompt,
            opts,
            hooks,
            on_token,
        }];
        Ok(generate_batch_async(tok, &mut one).await?.remove(0))
    }
}

/// What a generation calls with each token's id and text piece; `false` stops it.
pub type OnToken<'a> = dyn FnMut(u32, &str) -> bool + 'a;

/// One sequence of [`generate_batch_async`]: what [`Session::generate`] takes.
pub struct GenerateStep<'a> {
    pub session: &'a mut Session,
    pub prompt: &'a [u32],
    pub opts: &'a GenerateOptions,
    pub hooks: &'a mut Hooks,
    pub on_token: &'a mut OnToken<'a>,
}

/// Generates every sequence's reply together: the prompts in one batched pass, then one pass
/// per token for the sequences still going ([`run_batch_async`]). Each gets the reply, the
/// calls of its `on_token` and the recording [`Session::generate`] gives it alone; the
/// timings are the batch's. A failing pass fails them all (each cache keeps what it holds).
pub async fn generate_batch_async(
    tok: &Tokenizer,
    seqs: &mut [GenerateStep<'_>],
) -> Result<Vec<Generation>> {
    let t0 = now_ms();
    let mut steps: Vec<SessionStep<'_>> = seqs
        .iter_mut()
        .map(|s| SessionStep {
            session: &mut *s.session,
            input: Input::Prompt(s.prompt),
            hooks: &mut *s.hooks,
        })
        .collect();
    let mut prefilled = run_batch_async(&mut steps).await?;
    drop(steps);
    let t1 = now_ms();
    let mut replies: Vec<Reply> = seqs.iter().map(|s| Reply::new(s.prompt, s.opts)).collect();
    let mut next: Vec<Option<u32>> = Vec::with_capacity(seqs.len());
    for ((s, reply), (logits, _)) in seqs.iter_mut().zip(&mut replies).zip(&mut prefilled) {
        next.push(reply.next(logits, tok, s.session, s.on_token));
    }
    while next.iter().any(Option::is_some) {
        let mut going = Vec::new();
        let mut steps: Vec<SessionStep<'_>> = Vec::new();
        for (i, s) in seqs.iter_mut().enumerate() {
            if let Some(token) = next[i] {
                going.push(i);
                steps.push(SessionStep {
                    session: &mut *s.session,
                    input: Input::Token(token),
                    hooks: &mut *s.hooks,
                });
            }
        }
        let out = run_batch_async(&mut steps).await?;
        drop(steps);
        for (i, (mut logits, _)) in going.into_iter().zip(out) {
            let s = &mut seqs[i];
            next[i] = replies[i].next(&mut logits, tok, s.session, s.on_token);
        }
    }
    let (prefill_ms, decode_ms) = (t1 - t0, now_ms() - t1);
    Ok(replies
        .into_iter()
        .zip(prefilled)
        .map(|(r, (_, ran))| r.finish(ran, prefill_ms, decode_ms))
        .collect())
}

/// What a session runs in a batched pass: a prompt (as [`Session::prefill`]) or one more
/// token (as [`Session::step`]).
pub enum Input<'a> {
    Prompt(&'a [u32]),
    Token(u32),
}

impl Input<'_> {
    fn tokens(&self) -> &[u32] {
        match self {
            Input::Prompt(p) => p,
            Input::Token(t) => std::slice::from_ref(t),
        }
    }
}

/// One session's part of [`run_batch_async`].
pub struct SessionStep<'a> {
    pub session: &'a mut Session,
    pub input: Input<'a>,
    pub hooks: &'a mut Hooks,
}

/// Runs every step's input on its session in one batched forward call (see
/// [`crate::engine::backend::forward_batch`]) and returns, per step, the logits of its last
/// token and how many tokens ran. Each session ends as its own `prefill`/`step` leaves it, bit
/// for bit. A bad step refuses the whole batch before anything runs.
pub async fn run_batch_async(steps: &mut [SessionStep<'_>]) -> Result<Vec<(Vec<f32>, usize)>> {
    let mut runs = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let run = s.session.plan(&s.input);
        runs.push(if steps.len() > 1 {
            run.map_err(|e| Error::InBatch {
                seq: i,
                source: Box::new(e),
            })?
        } else {
            run?
        });
    }
    let mut batch: Vec<BatchStep<'_>> = steps
        .iter_mut()
        .zip(&runs)
        .map(|(s, (pos, range))| BatchStep {
            backend: s.session.backend.as_mut(),
            tokens: &s.input.tokens()[range.clone()],
            pos: *pos,
            hooks: &mut *s.hooks,
            all_logits: false,
        })
        .collect();
    let logits = forward_batch_async(&mut batch).await;
    drop(batch);
    let logits = logits.inspect_err(|_| {
        // Refused: nothing moved. Failed on the device midway: keep what each cache holds.
        for s in steps.iter_mut() {
            let held = s.session.backend.cached();
            s.session.tokens.truncate(held);
        }
    })?;
    let mut out = Vec::with_capacity(steps.len());
    for ((s, (pos, range)), l) in steps.iter_mut().zip(runs).zip(logits) {
        let ran = range.len();
        s.session.tokens.truncate(pos);
        s.session.tokens.extend_from_slice(&s.input.tokens()[range]);
        out.push((l, ran));
    }
    Ok(out)
}

/// One reply being sampled: what [`Session::generate`] keeps between forward calls, so that
/// several replies can also advance in one batch (the science pipeline's rollouts) with the
/// same tokens as alone.
pub struct Reply {
    sampler: Sampler,
    history: Vec<u32>,
    prompt_tokens: usize,
    max_tokens: usize,
    stop_ids: Vec<u32>,
    tokens: Vec<u32>,
    top: Vec<TopLogits>,
    text: String,
    decoder: StreamDecoder,
    stop: StopReason,
}

impl Reply {
    pub fn new(prompt: &[u32], opts: &GenerateOptions) -> Self {
        Self {
            sampler: Sampler::new(opts.sampler.clone()),
            history: prompt.to_vec(),
            prompt_tokens: prompt.len(),
            max_tokens: opts.max_tokens,
            stop_ids: opts.stop.clone(),
            tokens: Vec::new(),
            top: Vec::new(),
            text: String::new(),
            decoder: StreamDecoder::default(),
            stop: StopReason::MaxTokens,
        }
    }

    /// Takes the logits of the last token `session` ran and chooses the next one: `Some`
    /// when it is to run (the reply goes on), `None` when the reply is finished.
    pub fn next(
        &mut self,
        logits: &mut [f32],
        tok: &Tokenizer,
        session: &Session,
        on_token: &mut OnToken<'_>,
    ) -> Option<u32> {
        if self.tokens.len() >= self.max_tokens {
            return None;
        }
        self.top.extend(TopLogits::of(logits));
        let next = self.sampler.sample(logits, &self.history);
        self.tokens.push(next);
        self.history.push(next);
        if self.stop_ids.contains(&next) {
            self.stop = StopReason::EndOfTurn;
            return None;
        }
        let piece = self.decoder.push(tok, next);
        self.text.push_str(&piece);
        if !on_token(next, &piece) {
            self.stop = StopReason::Cancelled;
            return None;
        }
        if self.tokens.len() == self.max_tokens {
            return None;
        }
        if session.tokens.len() >= session.backend.config().context {
            self.stop = StopReason::ContextFull;
            return None;
        }
        Some(next)
    }

    /// Generated ids so far, the stop token included when there was one.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn finish(self, prefilled: usize, prefill_ms: f64, decode_ms: f64) -> Generation {
        Generation {
            text: self.text,
            tokens: self.tokens,
            prompt_tokens: self.prompt_tokens,
            prefilled,
            prefill_ms,
            decode_ms,
            stop: self.stop,
            top: self.top,
        }
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
