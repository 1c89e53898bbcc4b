//! The glue that drives the engine for the method: rollouts (generate a reply recording every
//! layer, read back teacher-forced only what generation did not run, average the assistant
//! reply's content tokens), conversations (generated turn by turn, projected per assistant
//! turn), and the mapping of the science's edits onto the engine's hooks. The other science files stay free of engine
//! types; this one is where the two meet. It runs on any [`crate::engine::Backend`] behind a
//! [`Session`], natively or in the browser (no threads, no file system here).
//!
//! Over 600 lines: the only file where the science drives the engine (rollouts, teacher
//! forcing, batching, conversations); its split into planning, reading and conversation
//! files is open in issue 15.

use super::bundle::{BuildSettings, Bundle, ModelInfo};
use super::data::{Question, RoleSpec};
use super::heldout::QuestionSums;
use super::report::FidelityReport;
use super::stats::RunningMean;
use super::steer::{DEFAULT_CAP_PERCENTILE, EditKind, LayerEdit, cap_reach, default_cap_band};
use super::vectors::{
    DEFAULT_ROLE, PersonaVectors, ProjectionStats, RolloutActivation, TokenActivations,
};
use super::{Error, Result};
use crate::engine::backend::now_or_err;
use crate::engine::chat::{Message, Rendered, Role, TokenKind};
use crate::engine::generate::{Input, Reply, SessionStep, run_batch_async};
use crate::engine::sampler::{Rng, fnv1a};
use crate::engine::{
    Edit, EditOp, GenerateOptions, Hooks, Model, SamplerConfig, Session, StopReason,
};

/// Principal components kept in a bundle (the map shows two or three; the rest cost little).
pub const BUNDLE_PCS: usize = 8;

/// Replies that came back empty are regenerated with a derived seed this many times in all.
const MAX_ATTEMPTS: u32 = 3;

/// How rollouts are produced. `full()` is what `axiscope build` uses by default,
/// `standard()` and `quick()` smaller plans by the same rule (the browser's build sizes).
#[derive(Clone, Debug, PartialEq)]
pub struct BuildOptions {
    /// System prompts used per role: the first K of its file. The default condition always
    /// uses all of its prompts (it is one point, so it gets every neutral framing).
    pub prompts_per_role: usize,
    /// Questions answered under every prompt; the same seeded choice for every role.
    pub questions_per_role: usize,
    /// Independent sampled replies per default prompt x question. The default is the one
    /// point every role is measured against, so its noise enters the whole axis: it gets
    /// more samples than a role (docs/method.md, "Build plan").
    pub default_seeds: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub repeat_penalty: f32,
    pub seed: u64,
    /// Read every reply back in a second, teacher-forced pass, as builds did before they
    /// recorded replies while generating them. The values are the same bit for bit (tests hold
    /// the two paths equal); this is the check, and the baseline the benchmark times.
    pub always_reread: bool,
}

impl BuildOptions {
    /// The default plan: every one of our 80 questions x 1 prompt per role, the default's 5
    /// prompts x the same questions x 4 seeds. The axis's noise comes mostly from the
    /// default's rollouts and the question x default interaction, little from the roles'
    /// prompts, so rollouts go to distinct questions and the default; the Assistant's rank on
    /// PC1 settles only past 64 questions (docs/method.md, "Build plan").
    pub fn full() -> Self {
        Self {
            questions_per_role: 80,
            ..Self::standard()
        }
    }

    /// The same rule at a fifth of the size (16 questions), which a browser builds in
    /// minutes: the axis is already stable, the Assistant's rank not yet.
    pub fn standard() -> Self {
        Self {
            questions_per_role: 16,
            default_seeds: 4,
            max_tokens: 32,
            ..Self::quick()
        }
    }

    /// The same rule, small: 2 questions x 1 prompt, the default 2 seeds, 16-token replies.
    pub fn quick() -> Self {
        Self {
            prompts_per_role: 1,
            questions_per_role: 2,
            default_seeds: 2,
            max_tokens: 16,
            // The reference's sampling (docs/method.md), plus the repetition penalty a 135M model
            // needs to avoid loops (docs/method.md, "Rollouts").
            temperature: 0.7,
            top_p: 0.9,
            repeat_penalty: 1.1,
            seed: 0,
            always_reread: false,
        }
    }

    /// How the rollouts of a bundle's roles were sampled, for placing more roles beside them
    /// with `questions` questions each (a bundle from before a setting gets the quick preset's
    /// value, and nonsense is clamped).
    pub fn of_bundle(s: &BuildSettings, questions: usize) -> Self {
        let d = Self::quick();
        let pos = |v: f32, fallback: f32| if v > 0.0 { v } else { fallback };
        Self {
            prompts_per_role: (s.prompts_per_role as usize).max(1),
            questions_per_role: questions.max(1),
            default_seeds: (s.default_seeds as usize).max(1),
            max_tokens: match s.max_new_tokens {
                0 => d.max_tokens,
                n => n as usize,
            },
            temperature: s.temperature.max(0.0),
            top_p: pos(s.top_p, d.top_p).min(1.0),
            repeat_penalty: pos(s.repetition_penalty, d.repeat_penalty),
            seed: s.seed,
            always_reread: false,
        }
    }

    /// The sampler of one rollout or turn.
    pub fn sampler(&self, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            seed,
            ..SamplerConfig::default()
        }
    }

    fn check(&self) -> Result<()> {
        if self.prompts_per_role == 0
            || self.questions_per_role == 0
            || self.default_seeds == 0
            || self.max_tokens == 0
        {
            return Err(Error::Invalid(
                "build: prompts, questions, default seeds and max tokens per rollout must be at least 1".into(),
            ));
        }
        if !(self.temperature >= 0.0
            && self.top_p > 0.0
            && self.top_p <= 1.0
            && self.repeat_penalty > 0.0)
        {
            return Err(Error::Invalid(format!(
                "build: bad sampling (temperature {}, top-p {}, repetition penalty {})",
                self.temperature, self.top_p, self.repeat_penalty
            )));
        }
        Ok(())
    }

    /// What the bundle records about these options and where its rollouts came from.
    pub fn settings(&self, questions: &[Question], from: &Provenance<'_>) -> BuildSettings {
        let mut extra = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| extra.insert(k.to_string(), v);
        put(
            "judge",
            "none: every rollout is kept (no judge model)".into(),
        );
        put("model_name", from.model_name.into());
        put("chat_template", from.chat_template.into());
        put(
            "question_ids",
            questions.iter().map(|q| q.id).collect::<Vec<_>>().into(),
        );
        put("default_prompts", from.default_prompts.into());
        put("skipped_empty_rollouts", from.skipped_empty_rollouts.into());
        put(
            "activations",
            serde_json::json!({
                "recorded_while_generated": from.recorded_rollouts,
                "read_back_teacher_forced": from.reread_rollouts,
            }),
        );
        put("tool", from.tool.clone().into());
        BuildSettings {
            questions: questions.len() as u32,
            prompts_per_role: self.prompts_per_role as u32,
            default_seeds: self.default_seeds as u32,
            max_new_tokens: self.max_tokens as u32,
            temperature: self.temperature,
            top_p: self.top_p,
            repetition_penalty: self.repeat_penalty,
            seed: self.seed,
            extra,
        }
    }
}

/// Where a build's rollouts came from, as the bundle's manifest records it (`settings.extra`):
/// the same keys whether the CLI or the browser built it.
pub struct Provenance<'a> {
    /// What `{model_name}` in the default prompts became.
    pub model_name: &'a str,
    pub chat_template: &'a str,
    pub default_prompts: usize,
    pub skipped_empty_rollouts: usize,
    /// Rollouts whose activations were recorded while their replies were generated, and
    /// those read back in a second pass (see [`RolloutOutput::reread`]).
    pub recorded_rollouts: usize,
    pub reread_rollouts: usize,
    /// "axiscope 0.1.0", or "axiscope 0.1.0 (web app)".
    pub tool: String,
}

/// One (role, system prompt, question) rollout to run.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutPlan {
    pub role: String,
    pub prompt_index: u32,
    /// `""`: no system turn (the template may inject its own, as SmolLM2's does).
    pub system: String,
    pub question_id: u32,
    pub question: String,
    /// Which sampled reply of this (prompt, question): 0 for roles, 0..default_seeds for
    /// the default.
    pub sample: u32,
    pub seed: u64,
}

/// The seed of one rollout: depends on the build seed and the rollout's identity only, so
/// adding or removing roles, or running rollouts in another order, changes no other reply.
/// Sample 0 has the seed rollouts had before there were several samples (same replies).
pub fn rollout_seed(
    seed: u64,
    role: &str,
    prompt_index: u32,
    question_id: u32,
    sample: u32,
) -> u64 {
    let mut name = format!("{role}\u{0}{prompt_index}\u{0}{question_id}");
    if sample > 0 {
        name.push_str(&format!("\u{0}{sample}"));
    }
    Rng::new(seed ^ fnv1a(name.as_bytes())).next_u64()
}

/// `n` questions chosen by a seeded shuffle, returned in file order. Every role answers these.
pub fn choose_questions(questions: &[Question], n: usize, seed: u64) -> Result<Vec<Question>> {
    if n == 0 || n > questions.len() {
        return Err(Error::Invalid(format!(
            "build: {n} questions per role asked, the file has {}",
            questions.len()
        )));
    }
    let mut idx: Vec<usize> = (0..questions.len()).collect();
    // A different stream from the rollouts' seeds: the choice must not correlate with them.
    let mut rng = Rng::new(seed ^ 0x5155_4553_5449_4f4e);
    for i in (1..idx.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    let mut chosen: Vec<usize> = idx[..n].to_vec();
    chosen.sort_unstable();
    Ok(chosen.into_iter().map(|i| questions[i].clone()).collect())
}

/// Every rollout of a build: each role's first `prompts_per_role` prompts crossed with
/// `questions` (already chosen, see [`choose_questions`]), roles in the given order, then the
/// default with all its prompts x the questions x `default_seeds` samples. Within a role by
/// prompt, then question, then sample: consecutive rollouts share a system prompt, whose
/// cached tokens the session reuses.
pub fn plan_rollouts(
    roles: &[RoleSpec],
    default: Option<&RoleSpec>,
    questions: &[Question],
    opts: &BuildOptions,
) -> Result<Vec<RolloutPlan>> {
    opts.check()?;
    if let Some(d) = default
        && d.name != DEFAULT_ROLE
    {
        return Err(Error::Invalid(format!(
            "build: the default condition must be named \"{DEFAULT_ROLE}\", not \"{}\"",
            d.name
        )));
    }
    if roles.is_empty() || questions.is_empty() {
        return Err(Error::Invalid("build: no roles or no questions".into()));
    }
    for (i, r) in roles.iter().enumerate() {
        if r.name == DEFAULT_ROLE || roles[..i].iter().any(|o| o.name == r.name) {
            return Err(Error::Invalid(format!(
                "build: role name \"{}\" is reserved or used twice",
                r.name
            )));
        }
    }
    let mut plans = Vec::new();
    for (role, k, samples) in roles
        .iter()
        .map(|r| (r, opts.prompts_per_role, 1))
        .chain(default.map(|d| (d, usize::MAX, opts.default_seeds as u32)))
    {
        for (p, system) in role.prompts.iter().enumerate().take(k) {
            for q in questions {
                for sample in 0..samples {
                    plans.push(RolloutPlan {
                        role: role.name.clone(),
                        prompt_index: p as u32,
                        system: system.clone(),
                        question_id: q.id,
                        question: q.text.clone(),
                        sample,
                        seed: rollout_seed(opts.seed, &role.name, p as u32, q.id, sample),
                    });
                }
            }
        }
    }
    Ok(plans)
}

/// `[system (if not empty), user]`.
pub fn chat_messages(system: &str, user: &str) -> Vec<Message> {
    let mut m = Vec::with_capacity(2);
    if !system.is_empty() {
        m.push(Message::new(Role::System, system));
    }
    m.push(Message::new(Role::User, user));
    m
}

/// Which tokens of a rendered chat are the content of message `message`: its own tokens of
/// kind user/system/assistant content, never its header, its end of turn, BOS or an injected
/// system prompt.
pub fn content_mask(r: &Rendered, message: usize) -> Vec<bool> {
    r.kinds
        .iter()
        .zip(&r.messages)
        .map(|(k, m)| {
            *m == Some(message)
                && matches!(
                    k,
                    TokenKind::AssistantContent | TokenKind::User | TokenKind::System
                )
        })
        .collect()
}

/// One teacher-forced pass over `ids` recording `layers`, reusing the session's cached prefix
/// up to `first_needed` (the first token whose residual is wanted) when `reuse_cache` holds.
/// Returns the index of the first recorded token; `hooks.recording` holds this pass's
/// tokens only. A cache filled while edits were active must not be reused for an unedited
/// read: pass `reuse_cache = false` then.
///
/// Reuse gives the same residuals as a pass from position 0: the backend computes every row
/// independently and attention reads the cached keys/values either way.
pub fn teacher_force(
    session: &mut Session,
    ids: &[u32],
    first_needed: usize,
    hooks: &mut Hooks,
    reuse_cache: bool,
) -> Result<usize> {
    now_or_err(teacher_force_async(
        session,
        ids,
        first_needed,
        hooks,
        reuse_cache,
    ))
}

/// [`teacher_force`] over the backend's async forward (WebGPU in a browser).
pub async fn teacher_force_async(
    session: &mut Session,
    ids: &[u32],
    first_needed: usize,
    hooks: &mut Hooks,
    reuse_cache: bool,
) -> Result<usize> {
    let start = reread_start(session, ids, first_needed, hooks, reuse_cache)?;
    session.prefill_async(ids, hooks).await?;
    check_recorded(hooks, ids.len() - start, start)?;
    Ok(start)
}

/// Readies `session` for a teacher-forced pass over `ids` (see [`teacher_force`]): truncates it
/// to the reusable prefix and clears the recording; returns where the pass starts.
fn reread_start(
    session: &mut Session,
    ids: &[u32],
    first_needed: usize,
    hooks: &mut Hooks,
    reuse_cache: bool,
) -> Result<usize> {
    if first_needed >= ids.len() {
        return Err(Error::Invalid(format!(
            "teacher forcing: token {first_needed} of a {}-token chat",
            ids.len()
        )));
    }
    let common = if reuse_cache {
        session
            .tokens()
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
    } else {
        0
    };
    let start = common.min(first_needed);
    session.truncate(start);
    hooks.recording.data.clear();
    Ok(start)
}

fn check_recorded(hooks: &Hooks, expected: usize, start: usize) -> Result<()> {
    let recorded = hooks.recording.n_tokens();
    if !hooks.record.is_empty() && recorded != expected {
        return Err(Error::Invalid(format!(
            "teacher forcing: recorded {recorded} tokens, expected {expected} from position {start}"
        )));
    }
    Ok(())
}

fn all_layers(model: &Model) -> Vec<usize> {
    (0..model.config.n_layers).collect()
}

/// The rollout activation of a chat whose last message is the assistant's reply: one
/// teacher-forced pass over the whole chat (prompt, reply, end of turn) recording every
/// layer, averaged over the reply's content tokens only.
pub fn reply_activation(
    model: &Model,
    session: &mut Session,
    messages: &[Message],
    role: &str,
    prompt_index: u32,
    question_id: u32,
) -> Result<RolloutActivation> {
    now_or_err(reply_activation_async(
        model,
        session,
        messages,
        role,
        prompt_index,
        question_id,
    ))
}

/// [`reply_activation`] over the backend's async forward.
pub async fn reply_activation_async(
    model: &Model,
    session: &mut Session,
    messages: &[Message],
    role: &str,
    prompt_index: u32,
    question_id: u32,
) -> Result<RolloutActivation> {
    let read = ReplyRead::new(model, messages, role, prompt_index, question_id)?;
    let mut hooks = Hooks::recording(all_layers(model));
    let start = teacher_force_async(session, &read.chat.ids, read.first, &mut hooks, true).await?;
    Ok(read.activation(model, &hooks, start, 0..0)?.0)
}

/// A chat ending with the assistant's reply, ready to be read back: which tokens are the
/// reply's content, and the first of them.
struct ReplyRead {
    chat: Rendered,
    mask: Vec<bool>,
    /// The reply's first content token, and one past its last.
    first: usize,
    end: usize,
    role: String,
    prompt_index: u32,
    question_id: u32,
}

impl ReplyRead {
    fn new(
        model: &Model,
        messages: &[Message],
        role: &str,
        prompt_index: u32,
        question_id: u32,
    ) -> Result<Self> {
        let last = messages
            .len()
            .checked_sub(1)
            .filter(|&i| messages[i].role == Role::Assistant);
        let last = last.ok_or_else(|| {
            Error::Invalid("rollout: the chat does not end with the assistant's reply".into())
        })?;
        let chat = model.render(messages, false).map_err(Error::Engine)?;
        let mask = content_mask(&chat, last);
        let first = mask.iter().position(|&m| m).ok_or_else(|| {
            Error::Invalid(format!(
                "rollout {role}/{prompt_index}/{question_id}: the reply has no content tokens"
            ))
        })?;
        let end = mask.iter().rposition(|&m| m).map_or(first, |l| l + 1);
        Ok(Self {
            chat,
            mask,
            first,
            end,
            role: role.into(),
            prompt_index,
            question_id,
        })
    }

    /// Keeps, of the rows `hooks` recorded while the reply was generated on `session`, those a
    /// teacher-forced read of this chat would compute again: the same tokens at the same
    /// positions after the same cached prefix give the same residuals bit for bit (the engine
    /// computes every row alone, whichever pass or batch it is in). Leaves in `hooks` the rows
    /// from the reply's first content token on and returns where the read must go on from
    /// (the reply's last token is sampled, never run, and the chat's own end of turn follows);
    /// `None` when the generated tokens and the chat's part ways before the reply's first
    /// content token (its text re-tokenized otherwise): then the whole reply is read back.
    fn keep_recorded(&self, session: &Session, hooks: &mut Hooks) -> Option<usize> {
        let tokens = session.tokens();
        let rec = &mut hooks.recording;
        let rec_start = tokens.len().checked_sub(rec.n_tokens())?;
        let usable = tokens
            .iter()
            .zip(&self.chat.ids)
            .take_while(|(a, b)| a == b)
            .count();
        if rec.n_tokens() == 0 || rec_start > self.first || usable <= self.first {
            return None;
        }
        let row = rec.layers.len() * rec.hidden;
        rec.data.truncate((usable - rec_start) * row);
        rec.data.drain(..(self.first - rec_start) * row);
        Some(usable)
    }

    /// The finished rollout from a recording of every layer of the chat from position `start`
    /// to at least the reply's end.
    #[allow(clippy::too_many_arguments)]
    fn output(
        &self,
        model: &Model,
        plans: &[RolloutPlan],
        plan: usize,
        attempt: u32,
        generation: crate::engine::Generation,
        hooks: &Hooks,
        start: usize,
        reread: bool,
    ) -> Result<RolloutOutput> {
        let keep = if plans[plan].role == DEFAULT_ROLE {
            default_cap_band(model.config.n_layers)
        } else {
            0..0
        };
        let (activation, band_tokens) = self.activation(model, hooks, start, keep)?;
        Ok(RolloutOutput {
            activation,
            reply: generation.text,
            generated: generation.tokens.len(),
            stop: generation.stop,
            attempts: attempt + 1,
            reread,
            band_tokens,
        })
    }

    /// The activation from a pass that recorded every layer of the chat from `start` on, and
    /// the reply's content-token residuals at the `keep` layers, `[tokens][keep.len()][hidden]`
    /// (how far a capping floor reaches into the default's own tokens needs them,
    /// docs/method.md "Capping").
    fn activation(
        &self,
        model: &Model,
        hooks: &Hooks,
        start: usize,
        keep: std::ops::Range<usize>,
    ) -> Result<(RolloutActivation, Vec<f32>)> {
        let acts = TokenActivations::new(
            &hooks.recording.data,
            model.config.n_layers,
            model.config.hidden,
        )?;
        // The recording may stop after the reply's last content token (the chat's end of turn
        // not run: see `keep_recorded`).
        let end = (start + acts.n_tokens()).min(self.mask.len());
        let mask = &self.mask[start.min(end)..end];
        let mut kept = Vec::new();
        for t in (0..acts.n_tokens()).filter(|&t| mask[t]) {
            for l in keep.clone() {
                kept.extend_from_slice(acts.get(t, l));
            }
        }
        let act = RolloutActivation::from_tokens(
            &self.role,
            self.prompt_index,
            self.question_id,
            &acts,
            mask,
        )?;
        Ok((act, kept))
    }
}

/// A finished rollout: its activation and what the model said.
#[derive(Clone, Debug)]
pub struct RolloutOutput {
    pub activation: RolloutActivation,
    pub reply: String,
    /// Tokens generated (the stop token included) in the last attempt.
    pub generated: usize,
    pub stop: StopReason,
    /// 1 unless earlier replies came back empty.
    pub attempts: u32,
    /// The activation came from a teacher-forced re-read of the whole reply: its text
    /// re-tokenized to other tokens than were generated (or [`BuildOptions::always_reread`]).
    /// Otherwise the residuals recorded while generating were used: the same values, bit for
    /// bit, as a re-read computes (docs/method.md, "Rollout activation").
    pub reread: bool,
    /// Default rollouts only (empty for roles): the reply's content-token residuals at the
    /// layers of [`default_cap_band`], `[tokens][band][hidden]`.
    pub band_tokens: Vec<f32>,
}

/// Generates the reply of one rollout and reads its activation; `None` when every attempt
/// gave an empty reply (the caller leaves the rollout out and says so).
pub fn run_rollout(
    model: &Model,
    session: &mut Session,
    plan: &RolloutPlan,
    opts: &BuildOptions,
) -> Result<Option<RolloutOutput>> {
    now_or_err(run_rollout_async(model, session, plan, opts))
}

/// [`run_rollout`] over the backend's async forward: [`run_rollouts_async`] on one session.
pub async fn run_rollout_async(
    model: &Model,
    session: &mut Session,
    plan: &RolloutPlan,
    opts: &BuildOptions,
) -> Result<Option<RolloutOutput>> {
    let (mut first, mut out) = (Some(0), None);
    run_rollouts_async(
        model,
        std::slice::from_mut(session),
        std::slice::from_ref(plan),
        opts,
        &mut |_| first.take(),
        &mut |_, o| out = o,
    )
    .await?;
    Ok(out)
}

/// Where one session of a batch of rollouts is.
enum Slot {
    Idle,
    /// Generating attempt `attempt` of plan `plan`: the prompt runs first, then each sampled
    /// token (`next`).
    Generating {
        plan: usize,
        attempt: u32,
        prompt: Vec<u32>,
        reply: Reply,
        next: Option<u32>,
        hooks: Hooks,
    },
    /// Reading the finished reply back, teacher-forced, from the session's end on; `hooks`
    /// holds the chat's rows from position `rows_from` (those recorded while generating that
    /// were kept come first). `reread`: the whole reply is read back.
    Reading {
        plan: usize,
        attempt: u32,
        generation: crate::engine::Generation,
        read: ReplyRead,
        rows_from: usize,
        reread: bool,
        hooks: Hooks,
    },
}

impl Slot {
    fn plan(&self) -> Option<usize> {
        match self {
            Slot::Idle => None,
            Slot::Generating { plan, .. } | Slot::Reading { plan, .. } => Some(*plan),
        }
    }

    /// Attempt `attempt` of `plan` (a retry after an empty reply gets a derived seed).
    fn generating(
        model: &Model,
        plans: &[RolloutPlan],
        plan: usize,
        attempt: u32,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let p = &plans[plan];
        let prompt = model
            .render(&chat_messages(&p.system, &p.question), true)
            .map_err(Error::Engine)?
            .ids;
        let seed = if attempt == 0 {
            p.seed
        } else {
            Rng::new(p.seed ^ attempt as u64).next_u64()
        };
        let gen_opts = GenerateOptions {
            max_tokens: opts.max_tokens,
            sampler: opts.sampler(seed),
            stop: model.stop_tokens(),
        };
        // Every layer of every token run while generating, so that the reading can keep what
        // a re-read would compute again ([`ReplyRead::keep_recorded`]).
        let hooks = if opts.always_reread {
            Hooks::none()
        } else {
            Hooks::recording(all_layers(model))
        };
        Ok(Slot::Generating {
            plan,
            attempt,
            reply: Reply::new(&prompt, &gen_opts),
            prompt,
            next: None,
            hooks,
        })
    }
}

/// Runs rollouts on `sessions`, one per session at a time, all sessions advancing together
/// through batched forward calls (see [`crate::engine::backend::forward_batch`]): each free
/// session takes the plan index `next(its previous plan)` gives (see [`PlanQueue`]), generates
/// its reply recording every layer, then reads back teacher-forced what generation did not run
/// (`ReplyRead::keep_recorded`; all of it with [`BuildOptions::always_reread`]);
/// `done(index, output)` gets each finished rollout (`None`: every reply was empty). Every
/// rollout's tokens and activation are those [`run_rollout`] gives it alone, bit for bit,
/// whatever the batch, the order and the reading.
pub async fn run_rollouts_async(
    model: &Model,
    sessions: &mut [Session],
    plans: &[RolloutPlan],
    opts: &BuildOptions,
    next: &mut dyn FnMut(Option<usize>) -> Option<usize>,
    done: &mut dyn FnMut(usize, Option<RolloutOutput>),
) -> Result<()> {
    let mut slots: Vec<Slot> = sessions.iter().map(|_| Slot::Idle).collect();
    // Each session's last plan, so it can be given the next one with the same prompt.
    let mut last: Vec<Option<usize>> = vec![None; sessions.len()];
    let named = |plan: usize, e: crate::engine::Error| {
        let p = &plans[plan];
        Error::Rollout {
            role: p.role.clone(),
            prompt: p.prompt_index,
            question: p.question_id,
            source: match e {
                crate::engine::Error::InBatch { source, .. } => *source,
                e => e,
            },
        }
    };
    loop {
        for (slot, last) in slots.iter_mut().zip(&mut last) {
            if matches!(slot, Slot::Idle)
                && let Some(i) = next(*last)
            {
                if i >= plans.len() {
                    return Err(Error::Invalid(format!(
                        "rollouts: plan {i} of {}",
                        plans.len()
                    )));
                }
                *slot = Slot::generating(model, plans, i, 0, opts)?;
                *last = Some(i);
            }
        }
        let mut steps = Vec::with_capacity(slots.len());
        let mut who = Vec::with_capacity(slots.len());
        for (k, (session, slot)) in sessions.iter_mut().zip(&mut slots).enumerate() {
            let (input, hooks) = match slot {
                Slot::Idle => continue,
                Slot::Generating {
                    prompt,
                    next,
                    hooks,
                    ..
                } => (next.map_or(Input::Prompt(prompt), Input::Token), hooks),
                Slot::Reading { read, hooks, .. } => (Input::Prompt(&read.chat.ids), hooks),
            };
            steps.push(SessionStep {
                session,
                input,
                hooks,
            });
            who.push(k);
        }
        if steps.is_empty() {
            return Ok(());
        }
        let ran = run_batch_async(&mut steps).await;
        drop(steps);
        let ran = ran.map_err(|e| {
            let seq = match &e {
                crate::engine::Error::InBatch { seq, .. } => *seq,
                _ => 0,
            };
            named(slots[who[seq]].plan().expect("a running slot"), e)
        })?;
        for (k, (mut logits, _)) in who.into_iter().zip(ran) {
            let session = &mut sessions[k];
            let slot = &mut slots[k];
            match slot {
                Slot::Idle => unreachable!("idle slots do not run"),
                Slot::Generating { reply, next, .. } => {
                    *next = reply.next(&mut logits, &model.tokenizer, session, &mut |_, _| true);
                    if next.is_some() {
                        continue;
                    }
                    let Slot::Generating {
                        plan,
                        attempt,
                        reply,
                        hooks,
                        ..
                    } = std::mem::replace(slot, Slot::Idle)
                    else {
                        unreachable!()
                    };
                    let generation = reply.finish(0, 0.0, 0.0);
                    let p = &plans[plan];
                    if generation.text.trim().is_empty() {
                        if attempt + 1 < MAX_ATTEMPTS {
                            *slot = Slot::generating(model, plans, plan, attempt + 1, opts)?;
                        } else {
                            done(plan, None);
                        }
                        continue;
                    }
                    let mut messages = chat_messages(&p.system, &p.question);
                    messages.push(Message::new(Role::Assistant, generation.text.clone()));
                    let read =
                        ReplyRead::new(model, &messages, &p.role, p.prompt_index, p.question_id)?;
                    let mut hooks = hooks;
                    let kept = if opts.always_reread {
                        None
                    } else {
                        read.keep_recorded(session, &mut hooks)
                    };
                    let rows_from = match kept {
                        Some(resume) if resume >= read.end => {
                            let out = read.output(
                                model, plans, plan, attempt, generation, &hooks, read.first, false,
                            )?;
                            done(plan, Some(out));
                            continue;
                        }
                        Some(resume) => {
                            session.truncate(resume);
                            read.first
                        }
                        None => {
                            hooks = Hooks::recording(all_layers(model));
                            reread_start(session, &read.chat.ids, read.first, &mut hooks, true)?
                        }
                    };
                    *slot = Slot::Reading {
                        plan,
                        attempt,
                        generation,
                        read,
                        rows_from,
                        reread: kept.is_none(),
                        hooks,
                    };
                }
                Slot::Reading { .. } => {
                    let Slot::Reading {
                        plan,
                        attempt,
                        generation,
                        read,
                        rows_from,
                        reread,
                        hooks,
                    } = std::mem::replace(slot, Slot::Idle)
                    else {
                        unreachable!()
                    };
                    check_recorded(&hooks, read.chat.ids.len() - rows_from, rows_from)?;
                    let out = read.output(
                        model, plans, plan, attempt, generation, &hooks, rows_from, reread,
                    )?;
                    done(plan, Some(out));
                }
            }
        }
    }
}

/// Hands out a build's plans to sessions (of one batch or of several jobs: it is shared) so
/// that each session runs whole groups of consecutive plans with one system prompt, whose
/// cached tokens it then reuses (the default's seeds of one question share the whole prompt):
/// a session gets the next free plan of its last plan's group; else the first plan of a group
/// no session has started; else, when every group is under way, the second half of the longest
/// run of free plans left in a group (work split as a work-stealing queue splits it). Which
/// session runs a plan changes no result, only the work.
pub struct PlanQueue<'a> {
    plans: &'a [RolloutPlan],
    /// Each plan's group: the index of the first plan of its run with the same system prompt.
    group: Vec<usize>,
    /// Which plans are taken, and which groups have been started.
    state: std::sync::Mutex<(Vec<bool>, Vec<bool>)>,
}

impl<'a> PlanQueue<'a> {
    pub fn new(plans: &'a [RolloutPlan]) -> Self {
        let mut group = Vec::with_capacity(plans.len());
        for (i, p) in plans.iter().enumerate() {
            let same = i > 0 && plans[i - 1].system == p.system;
            group.push(if same { group[i - 1] } else { i });
        }
        Self {
            plans,
            group,
            state: std::sync::Mutex::new((vec![false; plans.len()], vec![false; plans.len()])),
        }
    }

    /// The next plan for a session whose last plan was `prev`, or `None` when all are taken.
    pub fn take(&self, prev: Option<usize>) -> Option<usize> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (taken, started) = &mut *guard;
        let n = self.plans.len();
        let group = &self.group;
        let same = prev.and_then(|p| {
            (p + 1..n)
                .take_while(|&j| group[j] == group[p])
                .find(|&j| !taken[j])
        });
        let fresh = || (0..n).find(|&j| !taken[j] && !started[group[j]]);
        let split = || {
            // The longest run of free plans within one group: (start, length).
            let mut best: Option<(usize, usize)> = None;
            let mut j = 0;
            while j < n {
                if taken[j] {
                    j += 1;
                    continue;
                }
                let a = j;
                while j < n && !taken[j] && group[j] == group[a] {
                    j += 1;
                }
                if best.is_none_or(|(_, len)| j - a > len) {
                    best = Some((a, j - a));
                }
            }
            best.map(|(a, len)| a + len / 2)
        };
        let i = same.or_else(fresh).or_else(split)?;
        taken[i] = true;
        started[group[i]] = true;
        Some(i)
    }
}

/// [`run_rollouts_async`] over every plan, in order: the outputs in plan order.
pub fn run_rollouts(
    model: &Model,
    sessions: &mut [Session],
    plans: &[RolloutPlan],
    opts: &BuildOptions,
) -> Result<Vec<Option<RolloutOutput>>> {
    let queue = PlanQueue::new(plans);
    let mut out = vec![None; plans.len()];
    now_or_err(run_rollouts_async(
        model,
        sessions,
        plans,
        opts,
        &mut |prev| queue.take(prev),
        &mut |i, o| out[i] = o,
    ))?;
    Ok(out)
}

/// Role vectors, the default, the axis, projection percentiles, the fidelity report (with
/// split-half stability, held-out figures and intervals) and the PCA at every layer, as a
/// bundle. The analysis layer is `analysis_layer` when given, else chosen on held-out
/// questions ([`super::heldout`]; the middle layer when there are too few questions).
/// `roles` gives each role's category; `default_band_tokens` are the default rollouts'
/// token residuals at the default capping band ([`RolloutOutput::band_tokens`], all
/// concatenated; empty: the report leaves out how far the cap reaches).
pub fn assemble_bundle(
    model: ModelInfo,
    analysis_layer: Option<usize>,
    roles: &[RoleSpec],
    settings: BuildSettings,
    rollouts: &[RolloutActivation],
    default_band_tokens: &[f32],
) -> Result<Bundle> {
    if let Some(l) = analysis_layer.filter(|&l| l >= model.n_layers) {
        return Err(Error::Invalid(format!(
            "build: analysis layer {l} of a {}-layer model",
            model.n_layers
        )));
    }
    let pv = PersonaVectors::from_rollouts(rollouts, model.n_layers, model.hidden)?;
    let stats = ProjectionStats::compute(&pv, rollouts)?;
    let sums = QuestionSums::new(rollouts, model.n_layers, model.hidden)?;
    let choice = sums.choose_layer()?;
    let analysis_layer = analysis_layer
        .or(choice.as_ref().map(|c| c.layer))
        .unwrap_or(model.n_layers / 2);
    let mut report = FidelityReport::compute(&pv, analysis_layer, Some(rollouts))?;
    report.layer_choice = choice.filter(|c| c.layer == analysis_layer);
    report.held_out = sums.held_out(analysis_layer)?;
    report.default_cap = cap_reach(
        &pv,
        &stats,
        default_cap_band(model.n_layers),
        DEFAULT_CAP_PERCENTILE,
        default_band_tokens,
    )?;
    let categories = pv
        .roles
        .iter()
        .map(|n| {
            roles
                .iter()
                .find(|r| &r.name == n)
                .map_or(super::data::UNKNOWN_CATEGORY.to_string(), |r| {
                    r.category.clone()
                })
        })
        .collect();
    Bundle::new(
        model,
        analysis_layer,
        categories,
        settings,
        Some(report),
        pv,
        stats,
        BUNDLE_PCS,
    )
}

/// The science's edits as the engine's hooks (the same two operations).
pub fn engine_edits(edits: &[LayerEdit]) -> Vec<Edit> {
    edits
        .iter()
        .map(|e| Edit {
            layer: e.layer,
            op: match &e.kind {
                EditKind::Add { vector } => EditOp::Add {
                    vector: vector.clone(),
                },
                EditKind::Clamp { unit, min, max } => EditOp::Clamp {
                    unit: unit.clone(),
                    min: *min,
                    max: *max,
                },
            },
        })
        .collect()
}

/// Generates an assistant reply after every user turn of `messages` (which holds user turns
/// and optionally a leading system turn), turn `k` seeded with `seed + k`, with `edits`
/// active. Calls `on_turn(k, reply)` after each. Returns the whole conversation.
pub fn generate_conversation(
    model: &Model,
    session: &mut Session,
    messages: &[Message],
    opts: &BuildOptions,
    edits: &[Edit],
    on_turn: &mut dyn FnMut(usize, &str),
) -> Result<Vec<Message>> {
    let mut chat: Vec<Message> = Vec::with_capacity(messages.len() * 2);
    let mut hooks = Hooks::none();
    hooks.edits = edits.to_vec();
    // The cache may hold another conversation, or this one computed with other edits.
    session.reset();
    let mut turn = 0;
    for m in messages {
        if m.role == Role::Assistant {
            return Err(Error::Invalid(
                "generating a conversation: give only user (and system) turns".into(),
            ));
        }
        chat.push(m.clone());
        if m.role != Role::User {
            continue;
        }
        let prompt = model.render(&chat, true).map_err(Error::Engine)?;
        let gen_opts = GenerateOptions {
            max_tokens: opts.max_tokens,
            sampler: opts.sampler(opts.seed.wrapping_add(turn as u64)),
            stop: model.stop_tokens(),
        };
        let g = session
            .generate(
                &model.tokenizer,
                &prompt.ids,
                &gen_opts,
                &mut hooks,
                &mut |_, _| true,
            )
            .map_err(Error::Engine)?;
        on_turn(turn, &g.text);
        chat.push(Message::new(Role::Assistant, g.text));
        turn += 1;
    }
    Ok(chat)
}

/// One assistant turn of a projected conversation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TurnProjection {
    /// Assistant turn number, from 0.
    pub turn: usize,
    /// Index of the assistant message in the conversation.
    pub message: usize,
    /// Centred projection `(mean_h - mu_roles) . u` of the reply's content tokens.
    pub projection: f32,
    pub n_tokens: usize,
    /// The same for the user message just before the reply, if any: projections depend on
    /// topic as well as persona, and the paper finds the latest user turn predicts the reply.
    pub user_projection: Option<f32>,
    /// The reply's coordinates on the given PCA (the map's trail); empty without one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pc: Vec<f32>,
}

/// Teacher-forces `messages` (no edits) and projects every assistant turn at `layer`, and
/// onto `pca` (a PCA of that layer) when given. Empty replies have no point. `reuse_cache`
/// as in [`teacher_force`].
pub fn project_conversation(
    model: &Model,
    session: &mut Session,
    messages: &[Message],
    pv: &PersonaVectors,
    layer: usize,
    pca: Option<&super::pca::Pca>,
    reuse_cache: bool,
) -> Result<Vec<TurnProjection>> {
    if layer >= pv.n_layers
        || pv.n_layers != model.config.n_layers
        || pv.hidden != model.config.hidden
        || pca.is_some_and(|p| p.dim != pv.hidden)
    {
        return Err(Error::Invalid(format!(
            "projection: the bundle ({} layers x {}) does not fit the model ({} x {}) or layer {layer}",
            pv.n_layers, pv.hidden, model.config.n_layers, model.config.hidden
        )));
    }
    let chat = model.render(messages, false).map_err(Error::Engine)?;
    let wanted = |k: &TokenKind| matches!(k, TokenKind::AssistantContent | TokenKind::User);
    let first = chat
        .kinds
        .iter()
        .zip(&chat.messages)
        .position(|(k, m)| m.is_some() && wanted(k))
        .ok_or_else(|| {
            Error::Invalid("projection: the conversation has no user or assistant content".into())
        })?;
    let mut hooks = Hooks::recording(vec![layer]);
    let start = teacher_force(session, &chat.ids, first, &mut hooks, reuse_cache)?;
    let hidden = pv.hidden;
    let mut means: Vec<RunningMean> = (0..messages.len())
        .map(|_| RunningMean::new(hidden))
        .collect();
    for t in start..chat.ids.len() {
        if let (Some(m), true) = (chat.messages[t], wanted(&chat.kinds[t])) {
            let h = hooks
                .recording
                .get(t - start, layer)
                .expect("layer recorded");
            means[m].add(h);
        }
    }
    let axis = pv.at(layer);
    let project = |m: &RunningMean| m.mean().map(|v| axis.project(&v));
    let mut out = Vec::new();
    let mut turn = 0;
    for (i, msg) in messages.iter().enumerate() {
        if msg.role != Role::Assistant {
            continue;
        }
        if let Some(mean) = means[i].mean() {
            let projection = axis.project(&mean);
            let pc = pca.map_or(Vec::new(), |p| p.project(&mean));
            let user_projection = i
                .checked_sub(1)
                .filter(|&j| messages[j].role == Role::User)
                .and_then(|j| project(&means[j]));
            out.push(TurnProjection {
                turn,
                message: i,
                projection,
                n_tokens: means[i].weight() as usize,
                user_projection,
                pc,
            });
        }
        turn += 1;
    }
    Ok(out)
}

/// A new role placed on a bundle's map.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlacedRole {
    pub role: String,
    pub n_rollouts: usize,
    /// Centred projection on the axis at the requested layer.
    pub projection: f32,
    /// The standard deviation of its single rollouts' projections there (under two: `None`).
    pub spread: Option<f32>,
    /// Coordinates on the bundle's PCs (the bundle's analysis layer).
    pub pc: Vec<f32>,
    /// The bundle's roles nearest on the first three PCs, nearest first.
    pub nearest: Vec<String>,
}

/// Places a role given its rollouts (all of one role) on `bundle`'s map.
pub fn place_role(
    bundle: &Bundle,
    rollouts: &[RolloutActivation],
    layer: usize,
) -> Result<PlacedRole> {
    let pv = &bundle.vectors;
    let (l_all, h) = (pv.n_layers, pv.hidden);
    let Some(first) = rollouts.first() else {
        return Err(Error::Invalid("placing a role: no rollouts".into()));
    };
    if layer >= l_all {
        return Err(Error::Invalid(format!(
            "placing a role: layer {layer} of {l_all}"
        )));
    }
    let mut mean = RunningMean::new(l_all * h);
    for r in rollouts {
        if r.per_layer.len() != l_all * h {
            return Err(Error::Invalid(format!(
                "placing a role: rollout of {} floats, bundle has {l_all} x {h}",
                r.per_layer.len()
            )));
        }
        mean.add(&r.per_layer);
    }
    let v = mean.mean().expect("at least one rollout");
    let a = bundle.analysis_layer;
    let pc = bundle.pca().project(&v[a * h..(a + 1) * h]);
    let dims = pc.len().min(3);
    let mut dist: Vec<(f64, &String)> = pv
        .roles
        .iter()
        .enumerate()
        .map(|(r, name)| {
            let s = bundle.pca().row_scores(r);
            let d: f64 = (0..dims)
                .map(|i| (s[i] as f64 - pc[i] as f64).powi(2))
                .sum();
            (d, name)
        })
        .collect();
    dist.sort_by(|x, y| x.0.total_cmp(&y.0));
    let singles: Vec<f64> = rollouts
        .iter()
        .map(|r| {
            pv.at(layer)
                .project(&r.per_layer[layer * h..(layer + 1) * h]) as f64
        })
        .collect();
    Ok(PlacedRole {
        role: first.role.clone(),
        n_rollouts: rollouts.len(),
        projection: pv.at(layer).project(&v[layer * h..(layer + 1) * h]),
        spread: super::stats::sd(&singles).map(|s| s as f32),
        pc,
        nearest: dist.iter().take(3).map(|(_, n)| (*n).clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs(n: u32) -> Vec<Question> {
        (0..n)
            .map(|id| Question {
                id: id * 10,
                text: format!("q{id}"),
            })
            .collect()
    }

    fn role(name: &str, n: usize) -> RoleSpec {
        RoleSpec {
            name: name.into(),
            category: "human".into(),
            prompts: (0..n).map(|i| format!("{name} {i}")).collect(),
        }
    }

    #[test]
    fn question_choice_is_seeded_and_shared() {
        let q = qs(20);
        let a = choose_questions(&q, 5, 1).unwrap();
        assert_eq!(a, choose_questions(&q, 5, 1).unwrap());
        assert_ne!(a, choose_questions(&q, 5, 2).unwrap());
        assert!(a.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(choose_questions(&q, 20, 3).unwrap(), q);
        assert!(choose_questions(&q, 21, 3).is_err());
        assert!(choose_questions(&q, 0, 3).is_err());
    }

    #[test]
    fn plans_cross_prompts_and_questions() {
        let opts = BuildOptions {
            prompts_per_role: 2,
            questions_per_role: 3,
            default_seeds: 2,
            ..BuildOptions::quick()
        };
        let roles = [role("a", 5), role("b", 1)];
        let default = role(DEFAULT_ROLE, 4);
        let chosen = choose_questions(&qs(10), 3, opts.seed).unwrap();
        let plans = plan_rollouts(&roles, Some(&default), &chosen, &opts).unwrap();
        // a: 2 prompts x 3, b: its only prompt x 3, default: all 4 prompts x 3 x 2 seeds.
        assert_eq!(plans.len(), 6 + 3 + 24);
        assert!(plans[..9].iter().all(|p| p.sample == 0));
        assert_eq!(
            plans[9..13]
                .iter()
                .map(|p| (p.prompt_index, p.sample))
                .collect::<Vec<_>>(),
            [(0, 0), (0, 1), (0, 0), (0, 1)]
        );
        // Sample 0 keeps the seed a rollout had before samples existed: those replies stay.
        assert_eq!(
            plans[9].seed,
            Rng::new(opts.seed ^ fnv1a(format!("{DEFAULT_ROLE}\u{0}0\u{0}0").as_bytes()))
                .next_u64()
        );
        let questions = |r: &str| {
            let mut v: Vec<u32> = plans
                .iter()
                .filter(|p| p.role == r)
                .map(|p| p.question_id)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        assert_eq!(questions("a"), questions("b"));
        assert_eq!(questions("a"), questions(DEFAULT_ROLE));
        assert_eq!(plans[3].system, "a 1");
        // Seeds: distinct, and independent of the other roles.
        let mut seeds: Vec<u64> = plans.iter().map(|p| p.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), plans.len());
        let alone = plan_rollouts(&roles[1..], None, &chosen, &opts).unwrap();
        assert_eq!(alone.len(), 3);
        assert_eq!(alone[0], plans[6]);
        assert!(
            plan_rollouts(
                &[role("x", 1), role("x", 1)],
                Some(&default),
                &chosen,
                &opts
            )
            .is_err()
        );
        assert!(plan_rollouts(&[role(DEFAULT_ROLE, 1)], Some(&default), &chosen, &opts).is_err());
        assert!(plan_rollouts(&roles, Some(&role("a", 1)), &chosen, &opts).is_err());
        assert!(plan_rollouts(&roles, Some(&default), &[], &opts).is_err());
    }

    #[test]
    fn the_queue_keeps_a_session_on_its_prompt_and_hands_out_every_plan_once() {
        let opts = BuildOptions {
            prompts_per_role: 2,
            questions_per_role: 2,
            ..BuildOptions::quick()
        };
        let chosen = choose_questions(&qs(4), 2, 0).unwrap();
        // a/0: plans 0 1, a/1: 2 3, b/0: 4 5.
        let plans = plan_rollouts(&[role("a", 2), role("b", 1)], None, &chosen, &opts).unwrap();
        let q = PlanQueue::new(&plans);
        // Two sessions starting together take two prompts, not two halves of one.
        assert_eq!((q.take(None), q.take(None)), (Some(0), Some(2)));
        assert_eq!((q.take(Some(0)), q.take(Some(2))), (Some(1), Some(3)));
        // a/0 is done: the next prompt no session has started.
        assert_eq!(q.take(Some(1)), Some(4));
        // Every prompt is under way: the rest of b/0 is split off.
        assert_eq!(q.take(Some(3)), Some(5));
        assert_eq!(q.take(Some(4)), None);
        let q = PlanQueue::new(&plans);
        let mut got = vec![q.take(None).unwrap()];
        while let Some(i) = q.take(got.last().copied()) {
            got.push(i);
        }
        assert_eq!(
            got,
            (0..6).collect::<Vec<_>>(),
            "one session runs them in order"
        );
    }

    #[test]
    fn sessions_run_whole_prompts_and_split_the_last_ones() {
        let opts = BuildOptions {
            default_seeds: 4,
            ..BuildOptions::quick()
        };
        let chosen = choose_questions(&qs(4), 2, 0).unwrap();
        let roles: Vec<RoleSpec> = (0..20).map(|i| role(&format!("r{i}"), 1)).collect();
        let default = role(DEFAULT_ROLE, 2);
        // 20 roles x 2 questions, then the default's 2 prompts x 2 questions x 4 seeds.
        let plans = plan_rollouts(&roles, Some(&default), &chosen, &opts).unwrap();
        assert_eq!(plans.len(), 40 + 16);
        let q = PlanQueue::new(&plans);
        // 8 sessions finishing in turn, as a batch does.
        let mut runs: Vec<Vec<usize>> = (0..8).map(|_| vec![q.take(None).unwrap()]).collect();
        let mut open = true;
        while open {
            open = false;
            for run in runs.iter_mut() {
                if let Some(i) = q.take(run.last().copied()) {
                    run.push(i);
                    open = true;
                }
            }
        }
        let mut all: Vec<usize> = runs.concat();
        all.sort_unstable();
        assert_eq!(all, (0..plans.len()).collect::<Vec<_>>(), "each plan once");
        // How many times a session starts a prompt it has not cached: once per role (each
        // role's two questions on one session), and at most twice per default prompt plus the
        // splits of the end.
        let cold: usize = runs
            .iter()
            .map(|run| {
                1 + run
                    .windows(2)
                    .filter(|w| plans[w[0]].system != plans[w[1]].system)
                    .count()
            })
            .sum();
        assert!(cold <= 20 + 2 + 8, "{cold} cold starts: {runs:?}");
        for r in 0..20 {
            let owner = |i: usize| runs.iter().position(|run| run.contains(&i));
            assert_eq!(owner(2 * r), owner(2 * r + 1), "role {r} split");
        }
    }

    #[test]
    fn edits_map_one_to_one() {
        let e = engine_edits(&[
            LayerEdit {
                layer: 3,
                kind: EditKind::Add {
                    vector: vec![1.0, 2.0],
                },
            },
            LayerEdit {
                layer: 4,
                kind: EditKind::Clamp {
                    unit: vec![0.6, 0.8],
                    min: Some(1.5),
                    max: None,
                },
            },
        ]);
        assert_eq!(
            e[0],
            Edit {
                layer: 3,
                op: EditOp::Add {
                    vector: vec![1.0, 2.0]
                }
            }
        );
        assert_eq!(
            e[1],
            Edit {
                layer: 4,
                op: EditOp::Clamp {
                    unit: vec![0.6, 0.8],
                    min: Some(1.5),
                    max: None
                }
            }
        );
    }
}
