//! Messages between the page and the model worker, as JSON text (serde), so both sides share
//! one definition and the protocol can be tested natively. Big binary payloads (a picked
//! file, the cancel flag, a file for the visitor to save) travel beside the JSON in the same
//! `postMessage`: each message is an object whose `json` field holds the text.
//!
//! Over 600 lines: every message and every type a message carries (the map's views, the
//! benchmark's report), so that the page and the worker read one definition in one place.

use serde::{Deserialize, Serialize};

use crate::science::Interval;

/// Generation settings the visitor controls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenSettings {
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: usize,
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for GenSettings {
    /// What works for SmolLM2-135M (docs/method.md, "Rollouts"): sampling and a mild repetition penalty. Max tokens: long
    /// enough that replies end on the end-of-turn token, not mid-sentence. Measured natively
    /// with these settings (12 prompts incl. the presets' first turns, seeds 1-3): 31 of 36
    /// replies end within 320 tokens (27 within 256, 4 within the former 48), median 128.
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: 320,
            repeat_penalty: 1.1,
            seed: 1,
        }
    }
}

/// Activation capping (docs/method.md): a floor on the projection at a percentile of the
/// per-rollout projections, over the half-open layer band `start..end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapSettings {
    pub percentile: u8,
    pub start: usize,
    pub end: usize,
}

/// Everything that shapes one reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnSettings {
    /// The system prompt; empty means no system turn (the model's template may add its own).
    pub system: String,
    pub sampling: GenSettings,
    /// `Some` generates a second, capped reply beside the default one.
    pub cap: Option<CapSettings>,
    /// Additive steering strength `alpha` at the analysis layer (0 = off; > 0 toward the
    /// Assistant, < 0 away from it).
    pub steer: f32,
}

/// Which backend the visitor asked for (`?backend=`); `Auto` lets the worker decide (by speed
/// measured once per adapter and model), `Measure` makes it measure again, even a software
/// WebGPU adapter that `Auto` passes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendPref {
    Auto,
    Cpu,
    Gpu,
    Measure,
}

impl BackendPref {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "cpu" => Some(Self::Cpu),
            "gpu" => Some(Self::Gpu),
            "measure" => Some(Self::Measure),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Measure => "measure",
        }
    }
}

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// Fetched (and cached in Cache Storage); relative URLs resolve against the page.
    Url { url: String },
    /// A file the visitor picked or dropped; the `File` object travels beside the JSON.
    File { name: String, size: u64 },
}

/// The two conversations: the default one, and the capped one while capping is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Branch {
    Default,
    Capped,
}

impl Branch {
    pub fn index(self) -> usize {
        match self {
            Branch::Default => 0,
            Branch::Capped => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Branch::Default => "default",
            Branch::Capped => "capped",
        }
    }
}

/// A chat turn as the page stores and shares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedTurn {
    pub user: String,
    pub assistant: String,
    /// The capped reply, where capping was on for this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped: Option<String>,
}

/// Page -> worker. Every request carries an id; the worker's answers name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Loads a model; the previous one stays in use if this fails. `sha256` (lower-case hex)
    /// is checked when known, so a damaged download never reaches the cache.
    LoadModel {
        id: u32,
        source: ModelSource,
        sha256: Option<String>,
        backend: BackendPref,
    },
    /// Loads a persona bundle (single-blob form) from a URL.
    LoadBundle { id: u32, url: String },
    /// Appends a user turn and generates the reply (and the capped reply, if capping is on).
    Chat {
        id: u32,
        user: String,
        settings: TurnSettings,
    },
    /// Drops the last user turn and its replies.
    Undo { id: u32 },
    /// Forgets the conversation.
    Reset { id: u32 },
    /// Replaces the conversation with given turns (share links) and measures every reply
    /// by reading it through the unsteered model.
    Restore {
        id: u32,
        turns: Vec<SharedTurn>,
        settings: TurnSettings,
    },
    /// The axis for download: JSON (unit axis and mean token norm per layer), or a llama.cpp
    /// control vector (GGUF).
    ExportAxis { id: u32, format: AxisFormat },
    /// Builds the persona map for the loaded model in the browser.
    BuildBundle { id: u32, size: BuildSize },
    /// Places a role of the visitor's own on the map: its replies to the first `questions`
    /// shared questions, averaged like the bundle's rollouts.
    PlaceRole {
        id: u32,
        name: String,
        system: String,
        questions: usize,
    },
    /// Runs the benchmark (`?bench`, see `web::bench`) on the loaded model: `tokens` greedy
    /// tokens after the standard prompt, with `overheads` the recording and capping runs, and
    /// with `map` a timed build of the persona map at that size.
    Bench {
        id: u32,
        tokens: usize,
        overheads: bool,
        map: Option<BuildSize>,
    },
}

impl Request {
    pub fn id(&self) -> u32 {
        match self {
            Request::LoadModel { id, .. }
            | Request::LoadBundle { id, .. }
            | Request::Chat { id, .. }
            | Request::Undo { id }
            | Request::Reset { id }
            | Request::Restore { id, .. }
            | Request::ExportAxis { id, .. }
            | Request::PlaceRole { id, .. }
            | Request::Bench { id, .. }
            | Request::BuildBundle { id, .. } => *id,
        }
    }
}

/// How big an in-browser bundle build is (see `catalog::BuildPlan::new`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildSize {
    /// 8 roles, one prompt and one question each, plus the default: a first look.
    Tiny,
    /// As `axiscope build --quick`.
    Quick,
    /// As `axiscope build` (the default bundle's settings).
    Standard,
}

impl BuildSize {
    /// The size by the name the page uses for it (the build's menu, `?bench&map=`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::Tiny),
            "quick" => Some(Self::Quick),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AxisFormat {
    Json,
    ControlVector,
    /// The whole persona bundle (single-blob form), e.g. one built in the browser.
    Bundle,
}

/// What the page shows about a loaded model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub name: String,
    pub architecture: String,
    pub n_layers: usize,
    pub hidden: usize,
    pub context: usize,
    pub bytes: u64,
    pub sha256: Option<String>,
    /// "cpu (1 thread, simd128+relaxed)", ...
    pub backend: String,
    /// Why this backend (e.g. "asked for the CPU", "the WebGPU backend is not built yet").
    pub backend_reason: String,
    pub from_cache: bool,
    pub load_ms: f64,
    /// How the model's chat template places the conversation, where a person should know
    /// (Qwen3's thinking switched off, Gemma's missing system role).
    pub template_note: Option<String>,
}

/// One role on the persona map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolePoint {
    pub name: String,
    pub category: String,
    /// Coordinates on every kept PC.
    pub pcs: Vec<f32>,
    /// Centred projection on the axis at the analysis layer.
    pub projection: f32,
    /// The standard deviation of its single replies' projections there: one reply in this
    /// role lands about this far from the point. `None` under two replies.
    pub spread: Option<f32>,
}

/// Persona space at one layer: the map's layer control shows it, the per-layer chart plots
/// its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerView {
    /// Each role's coordinates on this layer's PCs, in the order of [`BundleView::roles`].
    pub role_pcs: Vec<Vec<f32>>,
    /// Each role's centred projection on this layer's axis, in the same order.
    pub role_projections: Vec<f32>,
    pub default_pcs: Vec<f32>,
    pub default_projection: f32,
    pub explained_variance_ratio: Vec<f32>,
    /// cos(PC_i, axis) for every kept PC of this layer.
    pub cos_pc_axis: Vec<f32>,
    /// cos of the axes built from two halves of the questions.
    pub split_half_cos: Option<f32>,
    /// Held-out cos(PC1 of one half of the questions, axis of the other) (docs/method.md).
    pub held_out_cos: Option<f32>,
}

/// The bundle's intervals at the analysis layer (docs/method.md, "Uncertainty").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleIntervals {
    /// Coverage, e.g. 0.9.
    pub level: f32,
    /// Bootstrap over questions.
    pub cos_pc1_axis: Interval,
    /// The Assistant's rank on PC1 among the roles and itself (1 = beyond every role).
    pub default_pc1_rank: Interval,
    /// Over random half splits of the questions.
    pub split_half_cos: Interval,
    pub held_out_cos: Interval,
}

/// The persona space of one model, as the map and the drift chart need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleView {
    pub model_name: String,
    pub model_sha256: String,
    pub n_layers: usize,
    pub analysis_layer: usize,
    pub roles: Vec<RolePoint>,
    pub default_pcs: Vec<f32>,
    /// The default vector's centred projection (the default's level on the drift chart).
    pub default_projection: f32,
    /// 10th and 90th percentiles of the default rollouts' projections: "typical Assistant
    /// replies" on the drift chart.
    pub default_band: [f32; 2],
    pub explained_variance_ratio: Vec<f32>,
    /// cos(PC_i, axis) for every kept PC (PC1 first).
    pub cos_pc_axis: Vec<f32>,
    /// Split-half stability of the axis at the analysis layer, when the bundle has it.
    pub split_half_cos: Option<f32>,
    /// How far one reply's projection strays from its role's mean at the analysis layer
    /// (pooled standard deviation of the rollouts): the drift chart's points are this
    /// uncertain.
    pub reply_sd: Option<f32>,
    /// `None` for a bundle without held-out figures (fewer than 4 questions).
    pub intervals: Option<BundleIntervals>,
    /// How the analysis layer was chosen; `None`: set by hand.
    pub layer_rule: Option<String>,
    /// `[n_layers]`.
    pub layers: Vec<LayerView>,
    pub n_rollouts: usize,
    /// Whether the bundle describes the loaded model (same sha256, or same shape when the
    /// model's hash is unknown); `None` before a model is loaded.
    pub matches_model: Option<bool>,
}

impl BundleView {
    /// The map as it stands at `layer`: the roles, the default and the PCs of that layer's
    /// PCA, coloured by that layer's axis. `None` for a layer the bundle does not have.
    pub fn at_layer(&self, layer: usize) -> Option<BundleView> {
        if layer == self.analysis_layer {
            return Some(self.clone());
        }
        let l = self.layers.get(layer)?;
        let mut b = self.clone();
        for (r, role) in b.roles.iter_mut().enumerate() {
            role.pcs = l.role_pcs.get(r)?.clone();
            role.projection = *l.role_projections.get(r)?;
            // Measured at the analysis layer only.
            role.spread = None;
        }
        b.default_pcs = l.default_pcs.clone();
        b.default_projection = l.default_projection;
        b.explained_variance_ratio = l.explained_variance_ratio.clone();
        b.cos_pc_axis = l.cos_pc_axis.clone();
        b.split_half_cos = l.split_half_cos;
        Some(b)
    }
}

/// One token of a reply with its projection (the per-token view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenPoint {
    pub text: String,
    pub projection: f32,
}

/// Where one assistant reply lands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnPointView {
    pub projection: f32,
    pub pcs: Vec<f32>,
    pub tokens: Vec<TokenPoint>,
    /// True when the reply was generated with edits and read back by the unsteered model.
    pub read_back: bool,
}

/// Why a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    EndOfTurn,
    MaxTokens,
    ContextFull,
    Stopped,
}

impl Finish {
    /// As in the protocol's JSON (the page's `data-finish`, for tests).
    pub fn name(self) -> &'static str {
        match self {
            Finish::EndOfTurn => "end_of_turn",
            Finish::MaxTokens => "max_tokens",
            Finish::ContextFull => "context_full",
            Finish::Stopped => "stopped",
        }
    }
}

/// The kind of a failed request that the page acts on (its message is only shown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The conversation no longer fits the model's context: the page offers to trim it.
    ContextFull,
    #[default]
    Other,
}

/// Worker -> page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The worker is listening; `cache` says whether Cache Storage is available to it.
    Ready {
        cache: bool,
    },
    /// Download or read progress of a model or bundle.
    Progress {
        id: u32,
        loaded: u64,
        total: Option<u64>,
        from_cache: bool,
    },
    ModelLoaded {
        id: u32,
        model: ModelView,
    },
    BundleLoaded {
        id: u32,
        bundle: BundleView,
    },
    /// A reply starts streaming in `branch` for user turn `turn` (0-based).
    ReplyStart {
        id: u32,
        branch: Branch,
        turn: usize,
    },
    Token {
        id: u32,
        branch: Branch,
        turn: usize,
        text: String,
    },
    ReplyDone {
        id: u32,
        branch: Branch,
        turn: usize,
        text: String,
        finish: Finish,
        n_tokens: usize,
        /// Tokens of the prompt, and how many of them ran (the rest came from the KV cache).
        prompt_tokens: usize,
        prefilled: usize,
        prefill_tok_s: f64,
        decode_tok_s: f64,
        ms_to_first_token: f64,
    },
    /// A reply's place on the axis (after the reply is done; `None` without a bundle).
    Measured {
        id: u32,
        branch: Branch,
        turn: usize,
        point: Option<TurnPointView>,
    },
    /// One more rollout done (a map build, or a role being placed).
    BuildProgress {
        id: u32,
        done: usize,
        total: usize,
        role: String,
        /// The reply just made (empty replies are skipped in the build).
        reply: String,
    },
    /// The visitor's role, placed.
    RolePlaced {
        id: u32,
        role: RolePoint,
        /// The bundle's roles nearest to it on the first three PCs.
        nearest: Vec<String>,
    },
    /// A file for the visitor to save. Its bytes are not in the JSON: they travel beside it in
    /// the same `postMessage` as a transferred `ArrayBuffer` (moved, not copied or encoded).
    File {
        id: u32,
        name: String,
        mime: String,
        #[serde(skip)]
        bytes: Vec<u8>,
    },
    /// The request finished (successfully or not); the worker takes the next one.
    Done {
        id: u32,
    },
    /// The request failed: one line for the visitor. `what` names the request kind
    /// ("model", "bundle", "chat", ...); `fault` is what the page may act on, never the text.
    Failed {
        id: u32,
        what: String,
        message: String,
        fault: Fault,
    },
    /// The benchmark's measurements (`Request::Bench`).
    BenchDone {
        id: u32,
        /// Boxed: the report is far bigger than the other events.
        report: Box<BenchReport>,
    },
    /// Linear memory of the worker's wasm instance, in bytes.
    Memory {
        bytes: u64,
    },
}

pub fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("protocol types always serialise")
}

pub fn decode<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, String> {
    serde_json::from_str(s).map_err(|e| format!("malformed message: {e}"))
}

// The benchmark's report (`?bench`): what the worker measures, sent to the page.

/// One timed generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt tokens / time of the prompt's forward pass.
    pub prefill_tok_s: f64,
    /// (generated - 1) / time from the end of the prefill to the last token.
    pub decode_tok_s: f64,
    /// Time to first token with the model loaded: the prefill's forward pass.
    pub ttft_ms: f64,
    pub decode_ms: f64,
    /// The generated ids, to compare with the native engines' greedy tokens.
    pub tokens: Vec<u32>,
    /// Each generated token's text (empty while a UTF-8 character is incomplete), to compare
    /// with an engine that reports text pieces rather than ids (wllama).
    pub pieces: Vec<String>,
}

/// A variant of the plain run (recording all layers, capping) and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overhead {
    pub run: BenchRun,
    /// Decode time per token over the plain run's, minus one, in percent.
    pub decode_overhead_pct: f64,
    pub prefill_overhead_pct: f64,
    pub same_tokens: bool,
}

/// What the worker measures (the page adds load time, wasm sizes and the JS heap).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// "cpu (1 thread, simd128)", "webgpu (...)": the backend's own description.
    pub backend_detail: String,
    /// Whether the backend is the GPU's; `threads` is then 1.
    pub on_gpu: bool,
    pub threads: usize,
    pub run: BenchRun,
    pub record_all: Option<Overhead>,
    pub cap: Option<Overhead>,
    /// Why `cap` is missing, when it is.
    pub cap_note: Option<String>,
    /// The timed map build, when `&map=` asked for one.
    pub map_build: Option<MapBuild>,
    /// The worker's wasm linear memory after the runs (it never shrinks: its peak).
    pub wasm_memory_bytes: u64,
    /// The wasm modules the worker loaded, as the browser's resource timing saw them.
    pub wasm_files: Vec<WasmFile>,
}

/// A persona map built in the worker (`Host::bench_map`), and how long it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapBuild {
    pub size: BuildSize,
    /// Replies generated, empty ones included (the build's progress count).
    pub replies: usize,
    /// Replies the map is made of (empty ones are left out, as natively).
    pub rollouts: usize,
    pub roles: usize,
    /// From the build's start to the map's view (what the page draws) being ready.
    pub seconds: f64,
    pub replies_per_s: f64,
    /// cos(PC1, axis) at the analysis layer, as the map's stats line shows it.
    pub cos_pc1_axis: Option<f32>,
}

/// A wasm module that was fetched: its URL's last segment and size in bytes (as sent, and
/// after content decoding; equal when the server does not compress).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WasmFile {
    pub name: String,
    pub transfer_bytes: f64,
    pub decoded_bytes: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_json() {
        let r = Request::Chat {
            id: 7,
            user: "Hi <b>".into(),
            settings: TurnSettings {
                system: String::new(),
                sampling: GenSettings::default(),
                cap: Some(CapSettings {
                    percentile: 75,
                    start: 10,
                    end: 20,
                }),
                steer: -0.25,
            },
        };
        let json = encode(&r);
        assert!(json.contains(r#""type":"chat""#), "{json}");
        assert_eq!(decode::<Request>(&json).unwrap(), r);
        assert_eq!(r.id(), 7);
    }

    #[test]
    fn a_files_bytes_stay_out_of_the_json() {
        let file = Event::File {
            id: 3,
            name: "a.axb".into(),
            mime: "application/octet-stream".into(),
            bytes: vec![7; 4096],
        };
        let json = encode(&file);
        assert!(json.len() < 200, "{json}");
        let Event::File { bytes, name, .. } = decode::<Event>(&json).unwrap() else {
            panic!("{json}")
        };
        assert_eq!((bytes.len(), name.as_str()), (0, "a.axb"));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(decode::<Request>("{").is_err());
        assert!(decode::<Request>(r#"{"type":"launch_missiles","id":1}"#).is_err());
        assert!(decode::<Event>(r#"{"type":"token","id":1}"#).is_err());
    }

    #[test]
    fn settings_fill_missing_fields_with_defaults() {
        let g: GenSettings = decode(r#"{"max_tokens": 8}"#).unwrap();
        assert_eq!(
            g,
            GenSettings {
                max_tokens: 8,
                ..GenSettings::default()
            }
        );
    }

    #[test]
    fn finish_names_are_the_json_ones() {
        for f in [
            Finish::EndOfTurn,
            Finish::MaxTokens,
            Finish::ContextFull,
            Finish::Stopped,
        ] {
            assert_eq!(encode(&f), format!("\"{}\"", f.name()));
        }
    }

    #[test]
    fn backend_pref_parses_only_known_values() {
        assert_eq!(BackendPref::parse("gpu"), Some(BackendPref::Gpu));
        assert_eq!(BackendPref::parse("cpu"), Some(BackendPref::Cpu));
        assert_eq!(BackendPref::parse("measure"), Some(BackendPref::Measure));
        assert_eq!(BackendPref::parse("GPU"), None);
        assert_eq!(BackendPref::parse("<script>"), None);
    }
}
