//! The model worker's state and logic, free of any browser API so it runs (and is tested)
//! natively too: the loaded model, the persona bundle, the conversation in up to two
//! branches (default and capped), and the sessions whose KV caches carry it from turn to turn.
//!
//! Split by what it serves: this file holds the model, the bundle, the backend and the exports;
//! [`conversation`] the turns and their points; [`builds`] the map builds and placing a role;
//! [`track`] a session with its recorded residuals.
//!
//! Every session records the residual stream at the analysis layer for each position it runs
//! (`Track::log`), so a reply's place on the axis is the mean over its assistant content
//! tokens of rows already computed: measuring a reply costs one forward over the few tokens
//! that end the turn. A reply generated with edits (capping, steering) is measured by an
//! unsteered reader session instead (docs/method.md: otherwise the capped curve is flat at the cap).

use crate::engine::backend::BackendFactory;
use crate::engine::chat::Message;
use crate::engine::{Backend, Edit, Model};
pub use crate::science::data::short_model_name;
use crate::science::pipeline;
use crate::science::stats::{cosine, percentile};
use crate::science::{Bundle, DEFAULT_CAP_PERCENTILE, ModelFit, capping_edits, default_cap_band};

use crate::web::protocol::{
    Branch, BundleIntervals, BundleView, Fault, LayerView, ModelView, RolePoint,
};

mod builds;
mod conversation;
mod track;

use track::Track;

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
    /// What the page may act on.
    pub fn fault(&self) -> Fault {
        let engine = match self {
            HostError::Engine(e) => Some(e),
            HostError::Science(e) => e.engine(),
            HostError::Refused(_) => None,
        };
        if engine.is_some_and(crate::engine::Error::is_context_overflow) {
            Fault::ContextFull
        } else {
            Fault::Other
        }
    }

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
    ) -> Result<crate::web::protocol::BenchReport, HostError> {
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
        let model = self.model.as_ref()?;
        let c = &model.config;
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
            template_note: model.template.note().map(str::to_string),
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
        // The page places replies only with a bundle built for this very file (or one whose
        // file is unknown on a side); the CLI also takes another file of the same shape.
        let fit = b.model.fit(
            m.config.n_layers,
            m.config.hidden,
            self.model_sha256.as_deref(),
        );
        Some(matches!(fit, ModelFit::SameFile | ModelFit::SameShape))
    }

    pub fn bundle_view(&self) -> Option<BundleView> {
        let b = self.bundle.as_ref()?;
        let pv = &b.vectors;
        let layer = b.analysis_layer;
        let layers: Vec<LayerView> = (0..b.layer_pcas.len()).map(|l| layer_view(b, l)).collect();
        // The map at the analysis layer is that layer's view, with the roles named.
        let at = layers.get(layer)?.clone();
        let roles = pv
            .roles
            .iter()
            .enumerate()
            .map(|(r, name)| RolePoint {
                name: name.clone(),
                category: b.categories.get(r).cloned().unwrap_or_default(),
                pcs: at.role_pcs[r].clone(),
                projection: at.role_projections[r],
                spread: b.stats.condition_sd(Some(r as u32), layer),
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
        let band = |q| percentile(&default_projections, q).unwrap_or(at.default_projection);
        let fidelity = b.fidelity.as_ref();
        let held_out = fidelity
            .and_then(|f| f.held_out.as_ref())
            .filter(|h| h.layer == layer);
        Some(BundleView {
            model_name: b.model.name.clone(),
            model_sha256: b.model.sha256.clone(),
            n_layers: b.model.n_layers,
            analysis_layer: layer,
            roles,
            default_band: [band(10.0), band(90.0)],
            default_pcs: at.default_pcs,
            default_projection: at.default_projection,
            explained_variance_ratio: at.explained_variance_ratio,
            cos_pc_axis: at.cos_pc_axis,
            split_half_cos: at.split_half_cos,
            reply_sd: b.stats.reply_sd(layer),
            intervals: held_out.map(|h| BundleIntervals {
                level: h.level,
                cos_pc1_axis: h.cos_pc1_axis,
                default_pc1_rank: h.default_pc1_rank,
                split_half_cos: h.split_half_cos,
                held_out_cos: h.halves_cos_pc1_axis_interval,
            }),
            layer_rule: fidelity
                .and_then(|f| f.layer_choice.as_ref())
                .map(|c| c.rule.clone()),
            layers,
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

    /// The axis as a llama.cpp control vector (docs/method.md, "Steering").
    pub fn control_vector(&self) -> Result<Vec<u8>, HostError> {
        let b = self.bundle.as_ref().ok_or("no persona bundle is loaded")?;
        let hint = self.model.as_ref().map_or("llama".to_string(), |m| {
            format!("{:?}", m.config.architecture).to_lowercase()
        });
        Ok(crate::science::control_vector::axis_control_vector(
            &b.vectors, &hint,
        ))
    }

    /// Where residuals are read: the bundle's analysis layer, or the middle layer without one.
    fn analysis_layer(&self) -> Option<usize> {
        let m = self.model.as_ref()?;
        Some(
            self.usable_bundle()
                .map_or(m.config.n_layers / 2, |b| b.analysis_layer),
        )
    }

    fn new_track(&self, layers: Vec<usize>, edits: Vec<Edit>) -> Result<Track, HostError> {
        let (m, f) = (
            self.model.as_ref().ok_or("no model is loaded")?,
            self.factory.as_ref().ok_or("no backend")?,
        );
        // Beside an existing track where the backend can share its weights, so that the
        // branches' replies batch together (one pass per token for both).
        let beside = self
            .branches
            .iter()
            .flat_map(|b| [&b.writer, &b.reader])
            .flatten()
            .find_map(|t| t.session.backend.fork_sequence());
        let backend = match beside {
            Some(b) => b,
            None => f(m)?,
        };
        Ok(Track::new(backend, layers, m.config.hidden, edits))
    }

    /// Names `{model_name}` in the roles' prompts (the CLI takes it from the file name).
    pub fn set_model_name(&mut self, name: &str) {
        self.model_name = name.to_string();
    }
}

/// Persona space at `layer`, for the map's layer control.
fn layer_view(b: &Bundle, layer: usize) -> LayerView {
    let pv = &b.vectors;
    let pca = &b.layer_pcas[layer];
    let fidelity = b.fidelity.as_ref();
    LayerView {
        role_pcs: (0..pv.roles.len())
            .map(|r| pca.row_scores(r).to_vec())
            .collect(),
        role_projections: (0..pv.roles.len())
            .map(|r| pv.role_projection(r, layer))
            .collect(),
        default_pcs: b.layer_default_pcs[layer].clone(),
        default_projection: pv.default_projection(layer),
        explained_variance_ratio: pca.explained_variance_ratio.clone(),
        cos_pc_axis: (0..pca.n_components())
            .map(|i| cosine(pca.component(i), pv.unit_at(layer)) as f32)
            .collect(),
        split_half_cos: fidelity
            .and_then(|f| f.split_half.as_ref())
            .and_then(|s| s.cos_per_layer.get(layer).copied()),
        held_out_cos: fidelity
            .and_then(|f| f.held_out.as_ref())
            .and_then(|h| h.halves_cos_pc1_axis.get(layer).copied()),
    }
}
