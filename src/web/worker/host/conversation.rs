//! The conversation: turns in the default and capped branches, generated together and each
//! reply streamed, then
//! placed on the axis (read back unsteered when it was generated with edits), undo, reset,
//! and restoring a shared conversation.

use std::cell::{Cell, RefCell};

use crate::engine::chat::{Message, Rendered, Role};
use crate::engine::clock::now_ms;
use crate::engine::tokenizer::StreamDecoder;
use crate::engine::{Edit, GenerateOptions, Model, OnToken, SamplerConfig, StopReason};
use crate::science::stats::mean_rows;
use crate::science::{Bundle, capping_edits, pipeline, steering_edits};
use crate::web::protocol::{
    Branch, Event, Finish, SharedTurn, TokenPoint, TurnPointView, TurnSettings,
};

use super::track::Track;
use super::{BranchState, Host, HostError, ReplyTrace, TRACES_KEPT};

impl Host {
    fn edits_for(&self, settings: &TurnSettings, capped: bool) -> Result<Vec<Edit>, HostError> {
        let needs_bundle = settings.steer != 0.0 || capped;
        if !needs_bundle {
            return Ok(Vec::new());
        }
        let b = self.usable_bundle().ok_or(
            "steering and capping need the persona bundle of the loaded model; none is loaded",
        )?;
        let mut edits = Vec::new();
        if settings.steer != 0.0 {
            let l = b.analysis_layer;
            edits.extend(steering_edits(&b.vectors, l..l + 1, settings.steer)?);
        }
        if capped {
            let cap = settings.cap.as_ref().ok_or("capping is off")?;
            edits.extend(capping_edits(
                &b.vectors,
                &b.stats,
                cap.start..cap.end,
                cap.percentile,
            )?);
        }
        Ok(pipeline::engine_edits(&edits))
    }

    /// The generating track of `branch` with `edits`, made or rebuilt as needed: a cache
    /// computed under other edits (or another analysis layer) is stale.
    fn gen_track(&mut self, branch: usize, edits: Vec<Edit>) -> Result<(), HostError> {
        let layer = self.analysis_layer().ok_or("no model is loaded")?;
        let state = &self.branches[branch];
        let fresh = match &state.writer {
            Some(t) => t.hooks.edits != edits || t.layers != [layer],
            None => true,
        };
        if fresh {
            let track = self.new_track(vec![layer], edits)?;
            self.branches[branch].writer = Some(track);
        }
        Ok(())
    }

    fn with_system(&self, messages: &[Message]) -> Vec<Message> {
        let mut all = Vec::with_capacity(messages.len() + 1);
        if !self.system.is_empty() {
            all.push(Message::new(Role::System, self.system.clone()));
        }
        all.extend_from_slice(messages);
        all
    }

    /// Appends a user turn and generates the reply in the default branch, and in the capped
    /// branch when `settings.cap` is set. Streams through `emit`; `cancelled()` is polled
    /// after every token. On an error the turn is taken back in every branch.
    pub async fn chat(
        &mut self,
        id: u32,
        user: &str,
        settings: &TurnSettings,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), HostError> {
        if self.model.is_none() {
            return Err("no model is loaded yet".into());
        }
        if user.trim().is_empty() {
            return Err("the message is empty".into());
        }
        let default_edits = self.edits_for(settings, false)?;
        let capped_edits = if settings.cap.is_some() {
            Some(self.edits_for(settings, true)?)
        } else {
            None
        };
        // Capping switched on: the capped branch continues from the conversation so far.
        match (&capped_edits, self.capped_active) {
            (Some(_), false) => {
                let [d, c] = &mut self.branches;
                c.messages = d.messages.clone();
                c.own = vec![false; d.own.len()];
                c.writer = None;
                c.reader = None;
                self.capped_active = true;
            }
            (None, true) => {
                self.branches[1] = BranchState::default();
                self.capped_active = false;
            }
            _ => {}
        }
        if self.system != settings.system {
            self.system = settings.system.clone();
        }
        let turn = self.turns();
        let mut plan = vec![(Branch::Default, default_edits)];
        if let Some(e) = capped_edits {
            plan.push((Branch::Capped, e));
        }
        for (branch, _) in &plan {
            let b = &mut self.branches[branch.index()];
            b.messages.push(Message::new(Role::User, user));
        }
        let texts = self
            .generate_replies(id, turn, &plan, &settings.sampling, cancelled, emit)
            .await;
        match texts {
            Ok(texts) => {
                for ((branch, _), text) in plan.iter().zip(texts) {
                    let b = &mut self.branches[branch.index()];
                    b.messages.push(Message::new(Role::Assistant, text));
                    b.own.push(true);
                }
            }
            Err(e) => {
                self.take_back_partial_turn(turn);
                return Err(e);
            }
        }
        for (branch, _) in &plan {
            let point = self.measure(*branch, turn).await?;
            emit(Event::Measured {
                id,
                branch: *branch,
                turn,
                point,
            });
        }
        Ok(())
    }

    /// Undoes a turn whose generation failed part-way, in every branch that started it.
    fn take_back_partial_turn(&mut self, turn: usize) {
        for b in &mut self.branches {
            b.messages.truncate(turn * 2);
            b.own.truncate(turn);
        }
    }

    /// Generates the turn's reply in each branch of `plan` (the default, then the capped one
    /// when capping is on) together, one batched forward pass per token, streaming each; Stop
    /// ends them all. Returns the texts in plan order.
    async fn generate_replies(
        &mut self,
        id: u32,
        turn: usize,
        plan: &[(Branch, Vec<Edit>)],
        sampling: &crate::web::protocol::GenSettings,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Vec<String>, HostError> {
        for (k, (branch, edits)) in plan.iter().enumerate() {
            debug_assert_eq!(branch.index(), k, "plan in branch order");
            self.gen_track(branch.index(), edits.clone())?;
        }
        let model = self.model.as_ref().ok_or("no model is loaded")?;
        let prompts = plan
            .iter()
            .map(|(b, _)| {
                let messages = self.with_system(&self.branches[b.index()].messages);
                Ok(model.render(&messages, true)?.ids)
            })
            .collect::<Result<Vec<_>, HostError>>()?;
        let opts = GenerateOptions {
            max_tokens: sampling.max_tokens.max(1),
            sampler: SamplerConfig {
                temperature: sampling.temperature.max(0.0),
                top_p: sampling.top_p.clamp(0.01, 1.0),
                repeat_penalty: sampling.repeat_penalty.max(1.0),
                // Each turn its own stream, reproducible from the seed; both branches of a turn
                // share it so that only the edits tell their replies apart.
                seed: sampling.seed.wrapping_add(turn as u64),
                ..SamplerConfig::default()
            },
            stop: model.stop_tokens(),
        };
        for (branch, _) in plan {
            emit(Event::ReplyStart {
                id,
                branch: *branch,
                turn,
            });
        }
        let t0 = now_ms();
        let firsts: Vec<Cell<Option<f64>>> = plan.iter().map(|_| Cell::new(None)).collect();
        let shared_emit = RefCell::new(&mut *emit);
        let mut streams: Vec<Box<OnToken<'_>>> = plan
            .iter()
            .zip(&firsts)
            .map(|((branch, _), first)| {
                let (branch, emit) = (*branch, &shared_emit);
                Box::new(move |_id: u32, piece: &str| {
                    if first.get().is_none() {
                        first.set(Some(now_ms() - t0));
                    }
                    if !piece.is_empty() {
                        (*emit.borrow_mut())(Event::Token {
                            id,
                            branch,
                            turn,
                            text: piece.to_string(),
                        });
                    }
                    !cancelled()
                }) as Box<OnToken<'_>>
            })
            .collect();
        let mut on_token: Vec<&mut OnToken> = streams
            .iter_mut()
            .map(|s| &mut **s as &mut OnToken)
            .collect();
        let mut tracks: Vec<&mut Track> = self
            .branches
            .iter_mut()
            .take(plan.len())
            .map(|b| b.writer.as_mut().expect("gen_track made it"))
            .collect();
        let prompt_refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let gens = Track::generate_together(&mut tracks, model, &prompt_refs, &opts, &mut on_token)
            .await?;
        let backends: Vec<String> = tracks
            .iter()
            .map(|t| t.session.backend.describe())
            .collect();
        drop(on_token);
        drop(streams);
        let mut texts = Vec::with_capacity(gens.len());
        for ((((branch, _), g), backend), first) in plan.iter().zip(gens).zip(backends).zip(firsts)
        {
            let n_content = g.tokens.iter().filter(|t| !opts.stop.contains(t)).count();
            if self.traces.len() == TRACES_KEPT {
                self.traces.remove(0);
            }
            self.traces.push(ReplyTrace {
                branch: *branch,
                turn,
                backend,
                tokens: g.tokens.clone(),
                top: g.top.clone(),
                prefilled: g.prefilled,
                prefill_tok_s: g.prefill_tok_s(),
                decode_tok_s: g.decode_tok_s(),
            });
            emit(Event::ReplyDone {
                id,
                branch: *branch,
                turn,
                text: g.text.clone(),
                finish: finish_of(g.stop),
                n_tokens: n_content,
                prompt_tokens: g.prompt_tokens,
                prefilled: g.prefilled,
                prefill_tok_s: g.prefill_tok_s(),
                decode_tok_s: g.decode_tok_s(),
                ms_to_first_token: first.get().unwrap_or(0.0),
            });
            texts.push(g.text);
        }
        Ok(texts)
    }

    /// Places reply `turn` of `branch` on the axis: the mean of its content tokens' residuals
    /// at the analysis layer, read from the generating session when it had no edits, else
    /// from the unsteered reader. `None` without a usable bundle or for an empty reply.
    async fn measure(
        &mut self,
        branch: Branch,
        turn: usize,
    ) -> Result<Option<TurnPointView>, HostError> {
        let Some(layer) = self.usable_bundle().map(|b| b.analysis_layer) else {
            return Ok(None);
        };
        let bi = branch.index();
        let edited = self.branches[bi]
            .writer
            .as_ref()
            .is_some_and(|t| !t.hooks.edits.is_empty());
        let messages = self.with_system(&self.branches[bi].messages);
        let model = self.model.as_ref().ok_or("no model is loaded")?;
        let rendered = model.render(&messages, false)?;
        let needs_new = {
            let slot = if edited {
                &self.branches[bi].reader
            } else {
                &self.branches[bi].writer
            };
            slot.as_ref().is_none_or(|t| t.layers != [layer])
        };
        if needs_new {
            let track = self.new_track(vec![layer], Vec::new())?;
            let b = &mut self.branches[bi];
            *(if edited { &mut b.reader } else { &mut b.writer }) = Some(track);
        }
        let b = &mut self.branches[bi];
        let track = if edited {
            b.reader.as_mut()
        } else {
            b.writer.as_mut()
        }
        .expect("made above");
        track.prefill(&rendered.ids).await?;
        let message = messages.len() - self.branches[bi].messages.len() + 2 * turn + 1;
        let b = &self.branches[bi];
        let track = if edited {
            b.reader.as_ref()
        } else {
            b.writer.as_ref()
        }
        .expect("made above");
        let model = self.model.as_ref().expect("checked above");
        let bundle = self.usable_bundle().expect("checked above");
        Ok(point_of(model, bundle, track, &rendered, message, edited))
    }

    /// Drops the last user turn and its replies.
    pub fn undo(&mut self) {
        for b in &mut self.branches {
            let n = b.own.len();
            if n > 0 {
                b.own.truncate(n - 1);
                b.messages.truncate((n - 1) * 2);
            }
        }
        // Caches are trimmed by the next prefill: it keeps only the common prefix.
    }

    pub fn reset(&mut self) {
        for b in &mut self.branches {
            b.messages.clear();
            b.own.clear();
            if let Some(t) = b.writer.as_mut() {
                t.reset();
            }
            if let Some(t) = b.reader.as_mut() {
                t.reset();
            }
        }
        self.branches[1] = BranchState::default();
        self.capped_active = false;
    }

    /// Replaces the conversation with `turns` (share links, a new model) and measures every
    /// reply; no text is generated.
    pub async fn restore(
        &mut self,
        id: u32,
        turns: &[SharedTurn],
        settings: &TurnSettings,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), HostError> {
        self.reset();
        self.system = settings.system.clone();
        let capped = turns.iter().any(|t| t.capped.is_some());
        for t in turns {
            let d = &mut self.branches[0];
            d.messages.push(Message::new(Role::User, t.user.clone()));
            d.messages
                .push(Message::new(Role::Assistant, t.assistant.clone()));
            d.own.push(true);
            if capped {
                let c = &mut self.branches[1];
                c.messages.push(Message::new(Role::User, t.user.clone()));
                c.messages.push(Message::new(
                    Role::Assistant,
                    t.capped.clone().unwrap_or_else(|| t.assistant.clone()),
                ));
                c.own.push(t.capped.is_some());
            }
        }
        self.capped_active = capped;
        self.remeasure(id, emit).await
    }

    /// Measures every reply of the conversation again (after a model or bundle change).
    pub async fn remeasure(
        &mut self,
        id: u32,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), HostError> {
        if self.model.is_none() || self.usable_bundle().is_none() {
            return Ok(());
        }
        let branches: &[Branch] = if self.capped_active {
            &[Branch::Default, Branch::Capped]
        } else {
            &[Branch::Default]
        };
        for &branch in branches {
            // Replies of a restored conversation are read back unsteered: the capped branch's
            // generating session holds capping edits only once it generates.
            for turn in 0..self.branches[branch.index()].turns() {
                if !self.branches[branch.index()].own[turn] {
                    continue;
                }
                let point = self.measure(branch, turn).await?;
                emit(Event::Measured {
                    id,
                    branch,
                    turn,
                    point,
                });
            }
        }
        Ok(())
    }
}

fn finish_of(s: StopReason) -> Finish {
    match s {
        StopReason::EndOfTurn => Finish::EndOfTurn,
        StopReason::MaxTokens => Finish::MaxTokens,
        StopReason::ContextFull => Finish::ContextFull,
        StopReason::Cancelled => Finish::Stopped,
    }
}

/// The positions of message `message`'s content tokens: the tokens a build's rollout
/// averages too (`pipeline::content_mask`).
fn content_positions(rendered: &Rendered, message: usize) -> Vec<usize> {
    let mask = pipeline::content_mask(rendered, message);
    (0..mask.len()).filter(|&t| mask[t]).collect()
}

/// The point of the assistant message at index `message` of a rendered chat.
fn point_of(
    model: &Model,
    bundle: &Bundle,
    track: &Track,
    rendered: &Rendered,
    message: usize,
    read_back: bool,
) -> Option<TurnPointView> {
    let layer = bundle.analysis_layer;
    let axis = bundle.vectors.at(layer);
    let positions = content_positions(rendered, message);
    let mean = mean_rows(positions.iter().map(|&p| track.row(p)), track.hidden)?;
    let mut decoder = StreamDecoder::default();
    let tokens = positions
        .into_iter()
        .map(|p| TokenPoint {
            text: decoder.push(&model.tokenizer, rendered.ids[p]),
            projection: axis.project(track.row(p)),
        })
        .collect();
    Some(TurnPointView {
        projection: axis.project(&mean),
        pcs: bundle.pca().project(&mean),
        tokens,
        read_back,
    })
}
