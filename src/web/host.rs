//! The model worker's state and logic, free of any browser API so it runs (and is tested)
//! natively too: the loaded model, the persona bundle, the conversation in up to two
//! branches (default and capped), and the sessions whose KV caches carry it from turn to turn.
//!
//! Every session records the residual stream at the analysis layer for each position it runs
//! (`Track::log`), so a reply's place on the axis is the mean over its assistant content
//! tokens of rows already computed: measuring a reply costs one forward over the few tokens
//! that end the turn. A reply generated with edits (capping, steering) is measured by an
//! unsteered reader session instead (method.md: otherwise the capped curve is flat at the cap).

use crate::engine::chat::{Message, Rendered, Role, TokenKind};
use crate::engine::clock::now_ms;
use crate::engine::tokenizer::StreamDecoder;
use crate::engine::{
    Backend, Edit, EditOp, GenerateOptions, Hooks, Model, SamplerConfig, Session, StopReason,
};
use crate::science::stats::{cosine, percentile};
use crate::science::{Bundle, EditKind, LayerEdit, capping_edits, steering_edits};

use super::protocol::{
    Branch, BundleView, Event, Finish, ModelView, RolePoint, SharedTurn, TokenPoint, TurnPointView,
    TurnSettings,
};

/// Makes a backend for the loaded model. The worker decides once which kind (CPU, WebGPU) and
/// hands the host this factory, so sessions created later (capped branch, readers) match.
pub type BackendFactory = Box<dyn Fn(&Model) -> crate::engine::Result<Box<dyn Backend>>>;

/// A session plus the analysis-layer residual of every position in its KV cache.
struct Track {
    session: Session,
    hooks: Hooks,
    layer: usize,
    hidden: usize,
    /// `[position][hidden]`, positions `0..session.tokens().len()`.
    log: Vec<f32>,
}

impl Track {
    fn new(backend: Box<dyn Backend>, layer: usize, hidden: usize, edits: Vec<Edit>) -> Self {
        let mut hooks = Hooks::recording(vec![layer]);
        hooks.edits = edits;
        Self {
            session: Session::new(backend),
            hooks,
            layer,
            hidden,
            log: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.session.reset();
        self.hooks.recording = Default::default();
        self.log.clear();
    }

    /// Moves what the last forward calls recorded (positions `start..`) into the log.
    fn absorb(&mut self, start: usize) {
        let rec = std::mem::take(&mut self.hooks.recording);
        self.log.truncate(start * self.hidden);
        self.log.extend_from_slice(&rec.data);
        // Rows and cached positions must agree, or no row can be trusted: start over.
        if self.log.len() != self.session.tokens().len() * self.hidden {
            self.reset();
        }
    }

    fn generate(
        &mut self,
        model: &Model,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32, &str) -> bool,
    ) -> crate::engine::Result<crate::engine::Generation> {
        match self
            .session
            .generate(&model.tokenizer, prompt, opts, &mut self.hooks, on_token)
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
    fn prefill(&mut self, ids: &[u32]) -> crate::engine::Result<()> {
        match self.session.prefill(ids, &mut self.hooks) {
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

    fn row(&self, pos: usize) -> &[f32] {
        &self.log[pos * self.hidden..(pos + 1) * self.hidden]
    }
}

#[derive(Default)]
struct BranchState {
    /// Alternating user and assistant messages, without the system prompt.
    messages: Vec<Message>,
    /// Per user turn: whether this branch generated the reply itself. The capped branch
    /// starts as a copy of the default one when capping is switched on; inherited replies
    /// are context, not capped replies, so they get no point of their own.
    own: Vec<bool>,
    /// The session that generates, with this branch's edits in its hooks.
    writer: Option<Track>,
    /// An unsteered session that reads this branch's replies back, when `writer` has edits.
    reader: Option<Track>,
}

impl BranchState {
    fn turns(&self) -> usize {
        self.own.len()
    }
}

pub struct Host {
    model: Option<Model>,
    factory: Option<BackendFactory>,
    model_sha256: Option<String>,
    bundle: Option<Bundle>,
    branches: [BranchState; 2],
    /// The capped branch exists only while capping is on.
    capped_active: bool,
    /// The system prompt of the conversation (the latest turn's).
    system: String,
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

fn to_engine(e: LayerEdit) -> Edit {
    let op = match e.kind {
        EditKind::Add { vector } => EditOp::Add { vector },
        EditKind::Clamp { unit, min, max } => EditOp::Clamp { unit, min, max },
    };
    Edit { layer: e.layer, op }
}

fn finish_of(s: StopReason) -> Finish {
    match s {
        StopReason::EndOfTurn => Finish::EndOfTurn,
        StopReason::MaxTokens => Finish::MaxTokens,
        StopReason::ContextFull => Finish::ContextFull,
        StopReason::Cancelled => Finish::Stopped,
    }
}

impl Host {
    pub fn new() -> Self {
        Self {
            model: None,
            factory: None,
            model_sha256: None,
            bundle: None,
            branches: Default::default(),
            capped_active: false,
            system: String::new(),
        }
    }

    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// Number of user turns in the conversation.
    pub fn turns(&self) -> usize {
        self.branches[0].turns()
    }

    /// Makes `model` the one in use and returns its backend's description. The conversation's
    /// text is kept; its sessions start afresh on the new model. On an error (the backend
    /// cannot hold the weights) the previous model stays.
    pub fn set_model(
        &mut self,
        model: Model,
        factory: BackendFactory,
        sha256: Option<String>,
    ) -> Result<String, String> {
        let backend = factory(&model).map_err(|e| e.to_string())?;
        let describe = backend.describe();
        let layer = self
            .bundle
            .as_ref()
            .map_or(model.config.n_layers / 2, |b| b.analysis_layer);
        let first = Track::new(backend, layer, model.config.hidden, Vec::new());
        for b in &mut self.branches {
            b.writer = None;
            b.reader = None;
        }
        self.branches[0].writer = Some(first);
        self.model = Some(model);
        self.factory = Some(factory);
        self.model_sha256 = sha256;
        Ok(describe)
    }

    /// The loaded model's file, shared with the engine (for caching it without a copy).
    pub fn model_bytes(&self) -> Option<std::sync::Arc<Vec<u8>>> {
        self.model.as_ref().map(|m| m.gguf.bytes().clone())
    }

    /// What the page shows about the loaded model.
    pub fn model_view(
        &self,
        bytes: u64,
        backend: String,
        backend_reason: String,
        from_cache: bool,
        load_ms: f64,
    ) -> Option<ModelView> {
        let c = &self.model.as_ref()?.config;
        Some(ModelView {
            name: c.name.clone(),
            architecture: format!("{:?}", c.architecture).to_lowercase(),
            n_layers: c.n_layers,
            hidden: c.hidden,
            context: c.context,
            bytes,
            sha256: self.model_sha256.clone(),
            backend,
            backend_reason,
            from_cache,
            load_ms,
        })
    }

    pub fn set_bundle(&mut self, bundle: Bundle) {
        self.bundle = Some(bundle);
    }

    /// The bundle, if it describes the loaded model (or no model is loaded yet).
    fn usable_bundle(&self) -> Option<&Bundle> {
        let b = self.bundle.as_ref()?;
        (self.bundle_matches() != Some(false)).then_some(b)
    }

    /// `None` without a model or bundle. Layers and width must agree; where both hashes are
    /// known they must be equal too.
    fn bundle_matches(&self) -> Option<bool> {
        let (m, b) = (self.model.as_ref()?, self.bundle.as_ref()?);
        let shape = b.model.n_layers == m.config.n_layers && b.model.hidden == m.config.hidden;
        let hash = match (&self.model_sha256, b.model.sha256.is_empty()) {
            (Some(h), false) => h.eq_ignore_ascii_case(&b.model.sha256),
            _ => true,
        };
        Some(shape && hash)
    }

    pub fn bundle_view(&self) -> Option<BundleView> {
        let b = self.bundle.as_ref()?;
        let pv = &b.vectors;
        let layer = b.analysis_layer;
        let roles = pv
            .roles
            .iter()
            .enumerate()
            .map(|(r, name)| RolePoint {
                name: name.clone(),
                category: b.categories.get(r).cloned().unwrap_or_default(),
                pcs: b.pca.row_scores(r).to_vec(),
                projection: pv.role_projection(r, layer),
            })
            .collect();
        let default_projections: Vec<f32> = b
            .stats
            .rollouts
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role.is_none())
            .map(|(i, _)| b.stats.projection(i, layer))
            .collect();
        let default_projection = pv.default_projection(layer);
        let band = |q| percentile(&default_projections, q).unwrap_or(default_projection);
        Some(BundleView {
            model_name: b.model.name.clone(),
            model_sha256: b.model.sha256.clone(),
            n_layers: b.model.n_layers,
            analysis_layer: layer,
            roles,
            default_pcs: b.default_pc.clone(),
            default_projection,
            default_band: [band(10.0), band(90.0)],
            explained_variance_ratio: b.pca.explained_variance_ratio.clone(),
            cos_pc_axis: (0..b.pca.n_components())
                .map(|i| cosine(b.pca.component(i), pv.unit_at(layer)) as f32)
                .collect(),
            split_half_cos: b.fidelity.as_ref().and_then(|f| f.split_half_cos()),
            n_rollouts: b.stats.rollouts.len(),
            matches_model: self.bundle_matches(),
        })
    }

    /// The unit axis at every layer, with what is needed to use it, as JSON.
    pub fn axis_json(&self) -> Result<String, String> {
        let b = self.bundle.as_ref().ok_or("no persona bundle is loaded")?;
        let pv = &b.vectors;
        let layers: Vec<serde_json::Value> = (0..pv.n_layers)
            .map(|l| {
                serde_json::json!({
                    "layer": l,
                    "mean_token_norm": pv.mean_token_norm[l],
                    "unit_axis": pv.unit_at(l),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "format": "axiscope-axis",
            "version": 1,
            "model": b.model,
            "analysis_layer": b.analysis_layer,
            "read_point": "residual stream at the output of decoder block L (Hugging Face hidden_states[L+1])",
            "direction": "toward the default Assistant",
            "layers": layers,
        });
        Ok(serde_json::to_string_pretty(&doc).expect("json values serialise"))
    }

    /// A llama.cpp control vector: `direction.L = n_L * u_L` (one mean token norm toward the
    /// Assistant) for every layer; llama.cpp scales it (`--control-vector-scaled`) and picks
    /// layers (`--control-vector-layer-range`).
    pub fn control_vector(&self) -> Result<Vec<u8>, String> {
        let b = self.bundle.as_ref().ok_or("no persona bundle is loaded")?;
        let pv = &b.vectors;
        let layers: Vec<(usize, Vec<f32>)> = (0..pv.n_layers)
            .map(|l| {
                (
                    l,
                    pv.unit_at(l)
                        .iter()
                        .map(|u| u * pv.mean_token_norm[l])
                        .collect(),
                )
            })
            .collect();
        let hint = self.model.as_ref().map_or("llama".to_string(), |m| {
            format!("{:?}", m.config.architecture).to_lowercase()
        });
        Ok(super::export::control_vector_gguf(&hint, &layers))
    }

    /// Where residuals are read: the bundle's analysis layer, or the middle layer without one.
    fn analysis_layer(&self) -> Option<usize> {
        let m = self.model.as_ref()?;
        Some(
            self.usable_bundle()
                .map_or(m.config.n_layers / 2, |b| b.analysis_layer),
        )
    }

    fn edits_for(&self, settings: &TurnSettings, capped: bool) -> Result<Vec<Edit>, String> {
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
            edits.extend(
                steering_edits(&b.vectors, l..l + 1, settings.steer).map_err(|e| e.to_string())?,
            );
        }
        if capped {
            let cap = settings.cap.as_ref().ok_or("capping is off")?;
            edits.extend(
                capping_edits(&b.vectors, &b.stats, cap.start..cap.end, cap.percentile)
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(edits.into_iter().map(to_engine).collect())
    }

    /// The generating track of `branch` with `edits`, made or rebuilt as needed: a cache
    /// computed under other edits (or another analysis layer) is stale.
    fn gen_track(&mut self, branch: usize, edits: Vec<Edit>) -> Result<(), String> {
        let layer = self.analysis_layer().ok_or("no model is loaded")?;
        let state = &self.branches[branch];
        let fresh = match &state.writer {
            Some(t) => t.hooks.edits != edits || t.layer != layer,
            None => true,
        };
        if fresh {
            let track = self.new_track(layer, edits)?;
            self.branches[branch].writer = Some(track);
        }
        Ok(())
    }

    fn new_track(&self, layer: usize, edits: Vec<Edit>) -> Result<Track, String> {
        let (m, f) = (
            self.model.as_ref().ok_or("no model is loaded")?,
            self.factory.as_ref().ok_or("no backend")?,
        );
        let backend = f(m).map_err(|e| e.to_string())?;
        Ok(Track::new(backend, layer, m.config.hidden, edits))
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
    pub fn chat(
        &mut self,
        id: u32,
        user: &str,
        settings: &TurnSettings,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
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
        let mut stopped = false;
        for (branch, edits) in plan.iter().cloned() {
            let result = if stopped {
                // Stop ends the whole turn: the capped reply stays empty.
                emit(Event::ReplyStart { id, branch, turn });
                emit(Event::ReplyDone {
                    id,
                    branch,
                    turn,
                    text: String::new(),
                    finish: Finish::Stopped,
                    n_tokens: 0,
                    prompt_tokens: 0,
                    prefilled: 0,
                    prefill_tok_s: 0.0,
                    decode_tok_s: 0.0,
                    ms_to_first_token: 0.0,
                });
                Ok(String::new())
            } else {
                self.generate_reply(id, branch, turn, edits, &settings.sampling, cancelled, emit)
            };
            match result {
                Ok(text) => {
                    stopped |= cancelled();
                    let b = &mut self.branches[branch.index()];
                    b.messages.push(Message::new(Role::Assistant, text));
                    b.own.push(true);
                }
                Err(e) => {
                    self.take_back_partial_turn(turn);
                    return Err(e);
                }
            }
        }
        for (branch, _) in &plan {
            let point = self.measure(*branch, turn)?;
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

    #[allow(clippy::too_many_arguments)]
    fn generate_reply(
        &mut self,
        id: u32,
        branch: Branch,
        turn: usize,
        edits: Vec<Edit>,
        sampling: &super::protocol::GenSettings,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<String, String> {
        self.gen_track(branch.index(), edits)?;
        let model = self.model.as_ref().ok_or("no model is loaded")?;
        let messages = self.with_system(&self.branches[branch.index()].messages);
        let prompt = model.render(&messages, true).map_err(|e| e.to_string())?;
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
        emit(Event::ReplyStart { id, branch, turn });
        let t0 = now_ms();
        let mut first: Option<f64> = None;
        let mut on_token = |_id: u32, piece: &str| {
            first.get_or_insert_with(|| now_ms() - t0);
            if !piece.is_empty() {
                emit(Event::Token {
                    id,
                    branch,
                    turn,
                    text: piece.to_string(),
                });
            }
            !cancelled()
        };
        let track = self.branches[branch.index()]
            .writer
            .as_mut()
            .expect("gen_track made it");
        let g = track
            .generate(model, &prompt.ids, &opts, &mut on_token)
            .map_err(|e| e.to_string())?;
        let n_content = g.tokens.iter().filter(|t| !opts.stop.contains(t)).count();
        emit(Event::ReplyDone {
            id,
            branch,
            turn,
            text: g.text.clone(),
            finish: finish_of(g.stop),
            n_tokens: n_content,
            prompt_tokens: g.prompt_tokens,
            prefilled: g.prefilled,
            prefill_tok_s: g.prefill_tok_s(),
            decode_tok_s: g.decode_tok_s(),
            ms_to_first_token: first.unwrap_or(0.0),
        });
        Ok(g.text)
    }

    /// Places reply `turn` of `branch` on the axis: the mean of its content tokens' residuals
    /// at the analysis layer, read from the generating session when it had no edits, else
    /// from the unsteered reader. `None` without a usable bundle or for an empty reply.
    fn measure(&mut self, branch: Branch, turn: usize) -> Result<Option<TurnPointView>, String> {
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
        let rendered = model.render(&messages, false).map_err(|e| e.to_string())?;
        let needs_new = {
            let slot = if edited {
                &self.branches[bi].reader
            } else {
                &self.branches[bi].writer
            };
            slot.as_ref().is_none_or(|t| t.layer != layer)
        };
        if needs_new {
            let track = self.new_track(layer, Vec::new())?;
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
        track.prefill(&rendered.ids).map_err(|e| e.to_string())?;
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

    /// Places a role given by its system prompt: for each question, a sampled reply (as the
    /// bundle's rollouts were made), then the mean residual of the reply's content tokens at
    /// the analysis layer; the role vector is the mean over questions (method.md), shown by
    /// its PCA coordinates and its projection. Runs in a session of its own, so the
    /// conversation's caches are untouched.
    #[allow(clippy::too_many_arguments)]
    pub fn place_role(
        &mut self,
        id: u32,
        name: &str,
        system: &str,
        questions: &[String],
        sampling: &super::protocol::GenSettings,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
        let layer = self
            .usable_bundle()
            .ok_or("placing a role needs the persona bundle of the loaded model")?
            .analysis_layer;
        if questions.is_empty() {
            return Err("no questions to ask".into());
        }
        let mut track = self.new_track(layer, Vec::new())?;
        let model = self.model.as_ref().ok_or("no model is loaded")?;
        let bundle = self.usable_bundle().expect("checked above");
        let mut sum = vec![0f64; model.config.hidden];
        let mut answered = 0usize;
        for (qi, q) in questions.iter().enumerate() {
            if cancelled() {
                return Err("placing the role was cancelled".into());
            }
            let mut messages = Vec::new();
            if !system.is_empty() {
                messages.push(Message::new(Role::System, system));
            }
            messages.push(Message::new(Role::User, q.clone()));
            let prompt = model.render(&messages, true).map_err(|e| e.to_string())?;
            let opts = GenerateOptions {
                max_tokens: sampling.max_tokens.max(1),
                sampler: SamplerConfig {
                    temperature: sampling.temperature.max(0.0),
                    top_p: sampling.top_p.clamp(0.01, 1.0),
                    repeat_penalty: sampling.repeat_penalty.max(1.0),
                    seed: sampling.seed.wrapping_add(qi as u64),
                    ..SamplerConfig::default()
                },
                stop: model.stop_tokens(),
            };
            let g = track
                .generate(model, &prompt.ids, &opts, &mut |_, _| !cancelled())
                .map_err(|e| e.to_string())?;
            messages.push(Message::new(Role::Assistant, g.text.clone()));
            let rendered = model.render(&messages, false).map_err(|e| e.to_string())?;
            track.prefill(&rendered.ids).map_err(|e| e.to_string())?;
            if let Some(mean) = content_mean(&track, &rendered, messages.len() - 1) {
                sum.iter_mut().zip(&mean).for_each(|(s, &m)| *s += m as f64);
                answered += 1;
            }
            emit(Event::RoleProgress {
                id,
                done: qi + 1,
                total: questions.len(),
                question: q.clone(),
                reply: g.text,
            });
        }
        if answered == 0 {
            return Err("the model gave only empty replies; try another prompt".into());
        }
        let role_vector: Vec<f32> = sum.iter().map(|s| (s / answered as f64) as f32).collect();
        let role = RolePoint {
            name: name.to_string(),
            category: "yours".into(),
            pcs: bundle.pca.project(&role_vector),
            projection: bundle.vectors.at(layer).project(&role_vector),
        };
        emit(Event::RolePlaced { id, role });
        Ok(())
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
    pub fn restore(
        &mut self,
        id: u32,
        turns: &[SharedTurn],
        settings: &TurnSettings,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
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
        self.remeasure(id, emit)
    }

    /// Measures every reply of the conversation again (after a model or bundle change).
    pub fn remeasure(&mut self, id: u32, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
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
                let point = self.measure(branch, turn)?;
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

/// Mean residual of the content tokens of message `message` (an assistant reply).
fn content_mean(track: &Track, rendered: &Rendered, message: usize) -> Option<Vec<f32>> {
    let positions: Vec<usize> = (0..rendered.ids.len())
        .filter(|&t| {
            rendered.messages[t] == Some(message)
                && rendered.kinds[t] == TokenKind::AssistantContent
        })
        .collect();
    if positions.is_empty() {
        return None;
    }
    let mut sum = vec![0f64; track.hidden];
    for &p in &positions {
        sum.iter_mut()
            .zip(track.row(p))
            .for_each(|(s, &x)| *s += x as f64);
    }
    Some(
        sum.iter()
            .map(|s| (s / positions.len() as f64) as f32)
            .collect(),
    )
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
    let mean = content_mean(track, rendered, message)?;
    let positions = (0..rendered.ids.len()).filter(|&t| {
        rendered.messages[t] == Some(message) && rendered.kinds[t] == TokenKind::AssistantContent
    });
    let mut decoder = StreamDecoder::default();
    let tokens = positions
        .map(|p| TokenPoint {
            text: decoder.push(&model.tokenizer, rendered.ids[p]),
            projection: axis.project(track.row(p)),
        })
        .collect();
    Some(TurnPointView {
        projection: axis.project(&mean),
        pcs: bundle.pca.project(&mean),
        tokens,
        read_back,
    })
}
