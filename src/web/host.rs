//! The model worker's state and logic, free of any browser API so it runs (and is tested)
//! natively too: the loaded model, the persona bundle, the conversation in up to two
//! branches (default and capped), and the sessions whose KV caches carry it from turn to turn.
//!
//! Every session records the residual stream at the analysis layer for each position it runs
//! (`Track::log`), so a reply's place on the axis is the mean over its assistant content
//! tokens of rows already computed: measuring a reply costs one forward over the few tokens
//! that end the turn. A reply generated with edits (capping, steering) is measured by an
//! unsteered reader session instead (docs/method.md: otherwise the capped curve is flat at the cap).

use crate::engine::chat::{Message, Rendered, Role, TokenKind};
use crate::engine::clock::now_ms;
use crate::engine::tokenizer::StreamDecoder;
use crate::engine::{
    Backend, Edit, GenerateOptions, Hooks, Model, SamplerConfig, Session, StopReason,
};
pub use crate::science::data::short_model_name;
use crate::science::data::Question;
use crate::science::pipeline::{self, BuildOptions, RolloutPlan};
use crate::science::stats::{cosine, percentile};
use crate::science::{
    BuildSettings, Bundle, DEFAULT_CAP_PERCENTILE, ModelInfo, RolloutActivation, capping_edits,
    default_cap_band, steering_edits,
};

use super::protocol::{
    Branch, BuildSize, BundleView, Event, Finish, ModelView, RolePoint, SharedTurn, TokenPoint,
    TurnPointView, TurnSettings,
};

/// Why a request to the host failed. Typed until the page shows it: the worker moves the model
/// to the CPU after a GPU fault, which it tells by this type, never by the message's text.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error(transparent)]
    Science(#[from] crate::science::Error),
    /// Everything the host says itself (no model loaded, no bundle, a bad setting...).
    #[error("{0}")]
    Refused(String),
}

impl HostError {
    /// Whether the GPU failed underneath.
    pub fn is_gpu(&self) -> bool {
        match self {
            HostError::Engine(e) => e.is_gpu(),
            HostError::Science(e) => e.is_gpu(),
            HostError::Refused(_) => false,
        }
    }
}

impl From<String> for HostError {
    fn from(s: String) -> Self {
        HostError::Refused(s)
    }
}

impl From<&str> for HostError {
    fn from(s: &str) -> Self {
        HostError::Refused(s.to_string())
    }
}

/// Makes a backend for the loaded model. The worker decides once which kind (CPU, WebGPU) and
/// hands the host this factory, so sessions created later (capped branch, readers) match.
pub type BackendFactory = Box<dyn Fn(&Model) -> crate::engine::Result<Box<dyn Backend>>>;

/// A session plus the residuals at the recorded layers (the analysis layer for a chat, every
/// layer when building a bundle) of every position in its KV cache.
struct Track {
    session: Session,
    hooks: Hooks,
    layers: Vec<usize>,
    hidden: usize,
    /// `[position][recorded layer][hidden]`, positions `0..session.tokens().len()`.
    log: Vec<f32>,
}

impl Track {
    fn new(backend: Box<dyn Backend>, layers: Vec<usize>, hidden: usize, edits: Vec<Edit>) -> Self {
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

    fn reset(&mut self) {
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

    async fn generate(
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
    async fn prefill(&mut self, ids: &[u32]) -> crate::engine::Result<()> {
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
    fn row(&self, pos: usize) -> &[f32] {
        let start = pos * self.width();
        &self.log[start..start + self.hidden]
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
    /// What `{model_name}` in a role's prompt becomes.
    model_name: String,
    /// The latest replies' tokens and best logits (debugging backends: where two engines
    /// part ways and how close that call was), newest last.
    traces: Vec<ReplyTrace>,
}

/// How many replies [`Host::traces`] keeps.
const TRACES_KEPT: usize = 8;

/// One generated reply, token by token.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReplyTrace {
    pub branch: Branch,
    pub turn: usize,
    pub backend: String,
    /// Generated ids, the stop token included when there was one.
    pub tokens: Vec<u32>,
    /// Per token, the best logits before sampling.
    pub top: Vec<crate::engine::generate::TopLogits>,
    /// Prompt tokens run (not from the cache), and speeds as the reply's line shows them.
    pub prefilled: usize,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
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
            model_name: String::new(),
            traces: Vec::new(),
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
    ) -> Result<String, HostError> {
        let backend = factory(&model)?;
        let describe = backend.describe();
        let layer = self
            .bundle
            .as_ref()
            .map_or(model.config.n_layers / 2, |b| b.analysis_layer);
        self.model_name = model.config.name.clone();
        self.install(backend, vec![layer], model.config.hidden);
        self.model = Some(model);
        self.factory = Some(factory);
        self.model_sha256 = sha256;
        Ok(describe)
    }

    /// The in-browser benchmark (`web::bench`) on the loaded model and the worker's backend,
    /// capped with the default band and percentile ([`default_cap_band`]: 70-90 % of the depth, 75)
    /// when a bundle for this model is loaded.
    pub async fn bench(
        &self,
        tokens: usize,
        overheads: bool,
    ) -> Result<super::bench::BenchReport, HostError> {
        let (model, factory) = (
            self.model.as_ref().ok_or("no model is loaded")?,
            self.factory.as_ref().ok_or("no backend")?,
        );
        let band = default_cap_band(model.config.n_layers);
        let cap = match self.usable_bundle() {
            Some(b) => capping_edits(&b.vectors, &b.stats, band, DEFAULT_CAP_PERCENTILE)
                .map(|e| pipeline::engine_edits(&e))
                .map_err(HostError::from),
            None => {
                Err("no persona bundle for this model is loaded, so nothing to cap with".into())
            }
        };
        let cap = cap.map_err(|e| e.to_string());
        Ok(super::bench::run(model, factory, tokens, overheads, cap).await?)
    }

    /// Moves the loaded model to another backend (the GPU was lost) and returns its
    /// description. The conversation's text stays; the new sessions have empty caches, so
    /// the next turn runs the whole conversation again on the new backend.
    pub fn switch_backend(&mut self, factory: BackendFactory) -> Result<String, HostError> {
        let layer = self.analysis_layer().ok_or("no model is loaded")?;
        let m = self.model.as_ref().ok_or("no model is loaded")?;
        let backend = factory(m)?;
        let describe = backend.describe();
        let hidden = m.config.hidden;
        self.install(backend, vec![layer], hidden);
        self.factory = Some(factory);
        Ok(describe)
    }

    /// Drops every session (their caches belong to the old backend) and starts the default
    /// branch's writer on `backend`.
    fn install(&mut self, backend: Box<dyn Backend>, layers: Vec<usize>, hidden: usize) {
        for b in &mut self.branches {
            b.writer = None;
            b.reader = None;
        }
        self.branches[0].writer = Some(Track::new(backend, layers, hidden, Vec::new()));
    }

    /// The latest replies, token by token (see [`ReplyTrace`]).
    pub fn traces(&self) -> &[ReplyTrace] {
        &self.traces
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
            // The readable name (from the file, as `{model_name}`), not the GGUF's
            // general.name, which is often a training run's ("Smollm2 135M 8k Lc100K Mix1 Ep2").
            name: self.model_name.clone(),
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

    /// Whether a bundle is loaded and describes the loaded model.
    pub fn bundle_fits_model(&self) -> bool {
        self.bundle_matches() == Some(true)
    }

    /// The bundle in use, as a single blob (for download).
    pub fn bundle_blob(&self) -> Result<Vec<u8>, HostError> {
        self.bundle
            .as_ref()
            .map(Bundle::to_blob)
            .ok_or_else(|| "no persona bundle is loaded".into())
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
                pcs: b.pca().row_scores(r).to_vec(),
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
            default_pcs: b.default_pc().to_vec(),
            default_projection,
            default_band: [band(10.0), band(90.0)],
            explained_variance_ratio: b.pca().explained_variance_ratio.clone(),
            cos_pc_axis: (0..b.pca().n_components())
                .map(|i| cosine(b.pca().component(i), pv.unit_at(layer)) as f32)
                .collect(),
            split_half_cos: b.fidelity.as_ref().and_then(|f| f.split_half_cos()),
            n_rollouts: b.stats.rollouts.len(),
            matches_model: self.bundle_matches(),
        })
    }

    /// The unit axis at every layer, with what is needed to use it, as JSON.
    pub fn axis_json(&self) -> Result<String, HostError> {
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
    pub fn control_vector(&self) -> Result<Vec<u8>, HostError> {
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
            edits.extend(
                steering_edits(&b.vectors, l..l + 1, settings.steer)?,
            );
        }
        if capped {
            let cap = settings.cap.as_ref().ok_or("capping is off")?;
            edits.extend(
                capping_edits(&b.vectors, &b.stats, cap.start..cap.end, cap.percentile)
                    ?,
            );
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

    fn new_track(&self, layers: Vec<usize>, edits: Vec<Edit>) -> Result<Track, HostError> {
        let (m, f) = (
            self.model.as_ref().ok_or("no model is loaded")?,
            self.factory.as_ref().ok_or("no backend")?,
        );
        let backend = f(m)?;
        Ok(Track::new(backend, layers, m.config.hidden, edits))
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
                    .await
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

    #[allow(clippy::too_many_arguments)]
    async fn generate_reply(
        &mut self,
        id: u32,
        branch: Branch,
        turn: usize,
        edits: Vec<Edit>,
        sampling: &super::protocol::GenSettings,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<String, HostError> {
        self.gen_track(branch.index(), edits)?;
        let model = self.model.as_ref().ok_or("no model is loaded")?;
        let messages = self.with_system(&self.branches[branch.index()].messages);
        let prompt = model.render(&messages, true)?;
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
            .await
            ?;
        let n_content = g.tokens.iter().filter(|t| !opts.stop.contains(t)).count();
        if self.traces.len() == TRACES_KEPT {
            self.traces.remove(0);
        }
        self.traces.push(ReplyTrace {
            branch,
            turn,
            backend: track.session.backend.describe(),
            tokens: g.tokens.clone(),
            top: g.top.clone(),
            prefilled: g.prefilled,
            prefill_tok_s: g.prefill_tok_s(),
            decode_tok_s: g.decode_tok_s(),
        });
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
        track
            .prefill(&rendered.ids)
            .await
            ?;
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

    /// Places a role given by its system prompt on the map, as the bundle's roles were built:
    /// its replies to `n_questions` of the bundle's questions (science::pipeline rollouts with
    /// the bundle's sampling), averaged (docs/method.md), shown by their PCA coordinates and
    /// projection. Runs in a session of its own, so the conversation's caches are untouched.
    #[allow(clippy::too_many_arguments)]
    pub async fn place_role(
        &mut self,
        id: u32,
        name: &str,
        system: &str,
        n_questions: usize,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), HostError> {
        let bundle = self
            .usable_bundle()
            .ok_or("placing a role needs the persona bundle of the loaded model")?;
        let opts = options_of(&bundle.settings, n_questions);
        let questions = bundle_questions(bundle, n_questions)?;
        let plans: Vec<RolloutPlan> = questions
            .iter()
            .map(|q| RolloutPlan {
                role: name.to_string(),
                prompt_index: 0,
                system: system.to_string(),
                question_id: q.id,
                question: q.text.clone(),
                sample: 0,
                seed: pipeline::rollout_seed(opts.seed, name, 0, q.id, 0),
            })
            .collect();
        let rollouts = self
            .run_rollouts(id, &plans, &opts, cancelled, emit)
            .await?;
        let bundle = self.usable_bundle().expect("checked above");
        if rollouts.is_empty() {
            return Err("the model gave only empty replies; try another prompt".into());
        }
        let placed = pipeline::place_role(bundle, &rollouts, bundle.analysis_layer)
            ?;
        let role = RolePoint {
            name: name.to_string(),
            category: "yours".into(),
            pcs: placed.pc,
            projection: placed.projection,
        };
        emit(Event::RolePlaced {
            id,
            role,
            nearest: placed.nearest,
        });
        Ok(())
    }

    /// Builds a persona bundle for the loaded model in the worker with the science pipeline
    /// `axiscope build` runs natively (same roles, question choice, seeds and sampling), at
    /// one of the page's sizes. Makes it the bundle in use and returns it.
    pub async fn build_bundle(
        &mut self,
        id: u32,
        size: BuildSize,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Bundle, HostError> {
        let model = self.model.as_ref().ok_or("no model is loaded")?;
        let plan = super::catalog::BuildPlan::new(size, &self.model_name);
        let (questions, plans) = (plan.questions()?, plan.rollouts()?);
        let default_prompts = plan.default.as_ref().map_or(0, |d| d.prompts.len());
        let opts = &plan.opts;
        let (template, config) = (model.template.name(), model.config.clone());
        let rollouts = self
            .run_rollouts(id, &plans, &opts, cancelled, emit)
            .await?;
        let mut extra = std::collections::BTreeMap::new();
        extra.insert(
            "judge".into(),
            serde_json::json!("none: every rollout is kept (no judge model)"),
        );
        extra.insert("model_name".into(), serde_json::json!(self.model_name));
        extra.insert("chat_template".into(), serde_json::json!(template));
        extra.insert(
            "question_ids".into(),
            serde_json::json!(questions.iter().map(|q| q.id).collect::<Vec<_>>()),
        );
        extra.insert(
            "default_prompts".into(),
            serde_json::json!(default_prompts),
        );
        extra.insert(
            "skipped_empty_rollouts".into(),
            serde_json::json!(plans.len() - rollouts.len()),
        );
        extra.insert(
            "tool".into(),
            serde_json::json!(format!("axiscope {} (web app)", env!("CARGO_PKG_VERSION"))),
        );
        let info = ModelInfo {
            name: config.name.clone(),
            sha256: self.model_sha256.clone().unwrap_or_default(),
            n_layers: config.n_layers,
            hidden: config.hidden,
        };
        let bundle = pipeline::assemble_bundle(
            info,
            None,
            &plan.roles,
            opts.settings(&questions, extra),
            &rollouts,
            &[],
        )
        ?;
        self.set_bundle(bundle.clone());
        Ok(bundle)
    }

    /// The benchmark's map build (`?bench&map=`): [`Host::build_bundle`], the path the page's
    /// Build button takes, timed up to the map's view. Cache Storage is the worker's, so a
    /// timed build neither reads nor writes a cached map.
    pub async fn bench_map(
        &mut self,
        id: u32,
        size: BuildSize,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<super::bench::MapBuild, HostError> {
        let t0 = now_ms();
        let mut replies = 0;
        self.build_bundle(id, size, cancelled, &mut |e| {
            if let Event::BuildProgress { done, .. } = &e {
                replies = *done;
            }
            emit(e);
        })
        .await?;
        let view = self.bundle_view().ok_or("the built map has no view")?;
        let seconds = (now_ms() - t0) / 1000.0;
        Ok(super::bench::MapBuild {
            size,
            replies,
            rollouts: view.n_rollouts,
            roles: view.roles.len(),
            seconds,
            replies_per_s: replies as f64 / seconds,
            cos_pc1_axis: view.cos_pc_axis.first().copied(),
        })
    }

    /// Runs rollouts in a fresh session, reporting each reply; empty replies are left out
    /// (as natively). Cancellation is checked between rollouts (each takes seconds).
    async fn run_rollouts(
        &self,
        id: u32,
        plans: &[RolloutPlan],
        opts: &BuildOptions,
        cancelled: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Vec<RolloutActivation>, HostError> {
        let (model, factory) = (
            self.model.as_ref().ok_or("no model is loaded")?,
            self.factory.as_ref().ok_or("no backend")?,
        );
        let mut session = Session::new(factory(model)?);
        let mut out = Vec::with_capacity(plans.len());
        for (k, plan) in plans.iter().enumerate() {
            if cancelled() {
                return Err("cancelled".into());
            }
            let done = pipeline::run_rollout_async(model, &mut session, plan, opts)
                .await
                ?;
            let reply = done.as_ref().map(|o| o.reply.clone()).unwrap_or_default();
            out.extend(done.map(|o| o.activation));
            emit(Event::BuildProgress {
                id,
                done: k + 1,
                total: plans.len(),
                role: plan.role.clone(),
                reply,
            });
        }
        Ok(out)
    }

    /// Names `{model_name}` in the roles' prompts (the CLI takes it from the file name).
    pub fn set_model_name(&mut self, name: &str) {
        self.model_name = name.to_string();
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
    pub async fn remeasure(&mut self, id: u32, emit: &mut dyn FnMut(Event)) -> Result<(), HostError> {
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

/// Rollouts of `n` questions sampled as the bundle's were.
fn options_of(s: &BuildSettings, n: usize) -> BuildOptions {
    let d = BuildOptions::quick();
    let pos = |v: f32, fallback: f32| if v > 0.0 { v } else { fallback };
    BuildOptions {
        prompts_per_role: 1,
        questions_per_role: n.max(1),
        default_seeds: 1,
        max_tokens: if s.max_new_tokens > 0 {
            s.max_new_tokens as usize
        } else {
            d.max_tokens
        },
        temperature: s.temperature.max(0.0),
        top_p: pos(s.top_p, d.top_p).min(1.0),
        repeat_penalty: pos(s.repetition_penalty, d.repeat_penalty),
        seed: s.seed,
    }
}

/// The first `n` of the questions the bundle's roles answered (its manifest names them), or
/// else a seeded choice from ours.
fn bundle_questions(b: &Bundle, n: usize) -> Result<Vec<Question>, HostError> {
    let all = super::catalog::questions();
    let listed: Vec<Question> = b
        .settings
        .extra
        .get("question_ids")
        .and_then(|v| v.as_array())
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_u64())
                .filter_map(|id| all.iter().find(|q| q.id as u64 == id).cloned())
                .collect()
        })
        .unwrap_or_default();
    if listed.len() >= n {
        return Ok(listed.into_iter().take(n).collect());
    }
    pipeline::choose_questions(&all, n.min(all.len()), b.settings.seed).map_err(HostError::from)
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
        pcs: bundle.pca().project(&mean),
        tokens,
        read_back,
    })
}
