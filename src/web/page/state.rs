//! The page's state (leptos signals, provided as context) and how worker events change it.
//! Each reply has its own signals, so a streamed token touches one text node.
//!
//! Over 600 lines: the page's one state and the reducer of every worker event, kept
//! together so that each event's effect on every signal is read in one place.

use leptos::prelude::*;

use super::chart::megabytes;
use super::client;
use crate::web::catalog::Preset;
use crate::web::dom;
use crate::web::export::ExportTurn;
use crate::web::protocol::{
    BackendPref, Branch, BuildSize, BundleView, CapSettings, Event, Finish, GenSettings,
    ModelSource, ModelView, Request, RolePoint, SharedTurn, TurnPointView, TurnSettings,
};
use crate::web::share::{ShareState, VERSION};

/// The default model, served next to the page (the build links it into `dist/models/`).
pub const DEFAULT_MODEL_URL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the default model: a damaged download is never used or cached.
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The persona bundle for the default model (single-blob form, `axiscope build`).
pub const DEFAULT_BUNDLE_URL: &str = "bundles/smollm2-135m-instruct.axb";

/// `?embed=`: one view alone, for an iframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embed {
    Map,
    Drift,
    Cap,
}

#[derive(Clone, Copy)]
pub struct ReplyEntry {
    pub present: RwSignal<bool>,
    pub text: RwSignal<String>,
    pub streaming: RwSignal<bool>,
    pub finish: RwSignal<Option<Finish>>,
    /// "12 tokens, 9.1 tok/s".
    pub speed: RwSignal<Option<String>>,
    pub point: RwSignal<Option<TurnPointView>>,
}

impl ReplyEntry {
    fn new() -> Self {
        Self {
            present: RwSignal::new(false),
            text: RwSignal::new(String::new()),
            streaming: RwSignal::new(false),
            finish: RwSignal::new(None),
            speed: RwSignal::new(None),
            point: RwSignal::new(None),
        }
    }

    fn dispose(self) {
        self.present.dispose();
        self.text.dispose();
        self.streaming.dispose();
        self.finish.dispose();
        self.speed.dispose();
        self.point.dispose();
    }
}

/// One user turn and its replies (default, capped).
#[derive(Clone, Copy)]
pub struct TurnEntry {
    /// Unique for the page's lifetime, for keyed lists.
    pub key: u64,
    /// Position in the conversation (turns are only ever removed from the end).
    pub index: usize,
    pub user: StoredValue<String>,
    pub replies: [ReplyEntry; 2],
}

impl TurnEntry {
    pub fn reply(&self, b: Branch) -> ReplyEntry {
        self.replies[b.index()]
    }

    fn dispose(self) {
        self.user.dispose();
        self.replies.into_iter().for_each(ReplyEntry::dispose);
    }
}

/// A download or read in progress.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Which download: the model's or the bundle's.
    pub job: Job,
    pub what: String,
    pub loaded: u64,
    pub total: Option<u64>,
    pub from_cache: bool,
    pub started_ms: f64,
    pub now_ms: f64,
}

impl Progress {
    pub fn fraction(&self) -> Option<f64> {
        self.total
            .filter(|t| *t > 0)
            .map(|t| self.loaded as f64 / t as f64)
    }

    /// "41.2 MB of 98.4 MB, 12.3 MB/s".
    pub fn text(&self) -> String {
        let secs = ((self.now_ms - self.started_ms) / 1000.0).max(1e-3);
        let speed = self.loaded as f64 / secs / 1e6;
        let of = self
            .total
            .map(|t| format!(" of {}", megabytes(t)))
            .unwrap_or_default();
        let source = if self.from_cache {
            "from the browser cache"
        } else {
            "downloading"
        };
        format!(
            "{}: {source}, {}{of}, {speed:.1} MB/s",
            self.what,
            megabytes(self.loaded)
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Model,
    Bundle,
    Chat { turn: usize },
    Restore,
    PlaceRole,
    Build,
    Bench,
    Other,
}

#[derive(Clone, Copy)]
pub struct AppState {
    pub embed: Option<Embed>,
    pub backend_pref: BackendPref,
    pub bundle_url: StoredValue<String>,
    pub worker_ready: RwSignal<bool>,
    pub worker_crashed: RwSignal<Option<String>>,
    pub model: RwSignal<Option<ModelView>>,
    pub model_loading: RwSignal<Option<String>>,
    pub model_error: RwSignal<Option<String>>,
    /// The source of the model in use, to load it again after a worker crash.
    pub model_source: RwSignal<Option<ModelSource>>,
    /// The source of the last load asked for, loaded or not: what "Try again" loads.
    pub model_attempt: RwSignal<Option<ModelSource>>,
    pub progress: RwSignal<Option<Progress>>,
    pub bundle: RwSignal<Option<BundleView>>,
    pub bundle_error: RwSignal<Option<String>>,
    pub turns: RwSignal<Vec<TurnEntry>>,
    /// Turns before this one were trimmed from the model's context when it was full: still
    /// shown and charted, but the worker's turn `i` is the page's turn `i + turn_offset`.
    pub turn_offset: RwSignal<usize>,
    next_key: StoredValue<u64>,
    /// Requests the worker has not finished.
    pub jobs: RwSignal<Vec<(u32, Job)>>,
    pub chat_error: RwSignal<Option<String>>,
    pub notice: RwSignal<Option<String>>,
    pub sampling: RwSignal<GenSettings>,
    pub system: RwSignal<String>,
    /// 0 = off, else the cap percentile.
    pub cap_percentile: RwSignal<u8>,
    pub cap_band: RwSignal<(usize, usize)>,
    pub steer: RwSignal<f32>,
    /// User turns of a running preset conversation, next first.
    pub preset_queue: RwSignal<Vec<String>>,
    pub token_view: RwSignal<bool>,
    pub map_pcs: RwSignal<(usize, usize)>,
    pub memory: RwSignal<Option<u64>>,
    /// Turns (user turn, branch) under the pointer on a chart.
    pub hover: RwSignal<Option<(usize, Branch)>>,
    pub share_link: RwSignal<Option<String>>,
    /// The guided tour's step (web::tour), while it runs.
    pub tour_step: RwSignal<Option<usize>>,
    /// Roles the visitor placed on the map, and the progress of the one being placed.
    pub custom_roles: RwSignal<Vec<RolePoint>>,
    pub role_progress: RwSignal<Option<(usize, usize, String)>>,
    pub role_error: RwSignal<Option<String>>,
    /// The last placed role and the bundle's roles nearest to it.
    pub role_nearest: RwSignal<Option<(String, Vec<String>)>>,
    /// An in-browser map build: (done, total, current role, started at ms).
    pub build_progress: RwSignal<Option<(usize, usize, String, f64)>>,
    pub build_error: RwSignal<Option<String>>,
    /// The benchmark's outcome (`?bench`).
    pub bench: RwSignal<Option<Result<crate::web::protocol::BenchReport, String>>>,
    /// Turns waiting for a model to be measured (from a share link).
    pub pending_restore: StoredValue<Option<Vec<SharedTurn>>>,
    pub first_token_mark: StoredValue<bool>,
    crashes: StoredValue<u32>,
}

pub fn use_app() -> AppState {
    use_context::<AppState>().expect("AppState is provided by App")
}

impl AppState {
    pub fn new(embed: Option<Embed>, backend_pref: BackendPref, bundle_url: String) -> Self {
        Self {
            embed,
            backend_pref,
            bundle_url: StoredValue::new(bundle_url),
            worker_ready: RwSignal::new(false),
            worker_crashed: RwSignal::new(None),
            model: RwSignal::new(None),
            model_loading: RwSignal::new(None),
            model_error: RwSignal::new(None),
            model_source: RwSignal::new(None),
            model_attempt: RwSignal::new(None),
            progress: RwSignal::new(None),
            bundle: RwSignal::new(None),
            bundle_error: RwSignal::new(None),
            turns: RwSignal::new(Vec::new()),
            turn_offset: RwSignal::new(0),
            next_key: StoredValue::new(0),
            jobs: RwSignal::new(Vec::new()),
            chat_error: RwSignal::new(None),
            notice: RwSignal::new(None),
            sampling: RwSignal::new(GenSettings::default()),
            system: RwSignal::new(String::new()),
            cap_percentile: RwSignal::new(0),
            // The default band of the default model's 30 layers; a bundle of another depth
            // resets it (Event::Bundle below).
            cap_band: RwSignal::new({
                let b = crate::science::default_cap_band(30);
                (b.start, b.end)
            }),
            steer: RwSignal::new(0.0),
            preset_queue: RwSignal::new(Vec::new()),
            token_view: RwSignal::new(false),
            map_pcs: RwSignal::new((0, 1)),
            memory: RwSignal::new(None),
            hover: RwSignal::new(None),
            share_link: RwSignal::new(None),
            tour_step: RwSignal::new(None),
            custom_roles: RwSignal::new(Vec::new()),
            role_progress: RwSignal::new(None),
            role_error: RwSignal::new(None),
            role_nearest: RwSignal::new(None),
            build_progress: RwSignal::new(None),
            build_error: RwSignal::new(None),
            bench: RwSignal::new(None),
            pending_restore: StoredValue::new(None),
            first_token_mark: StoredValue::new(false),
            crashes: StoredValue::new(0),
        }
    }

    pub fn busy(&self) -> bool {
        !self.jobs.with(|j| j.is_empty())
    }

    pub fn chatting(&self) -> bool {
        self.jobs.with(|j| {
            j.iter().any(|(_, job)| {
                matches!(
                    job,
                    Job::Chat { .. } | Job::Restore | Job::PlaceRole | Job::Build
                )
            })
        })
    }

    pub fn can_chat(&self) -> bool {
        self.model.with(|m| m.is_some()) && !self.busy()
    }

    pub fn settings(&self) -> TurnSettings {
        let pct = self.cap_percentile.get_untracked();
        let (start, end) = self.cap_band.get_untracked();
        TurnSettings {
            system: self.system.get_untracked(),
            sampling: self.sampling.get_untracked(),
            cap: (pct > 0).then_some(CapSettings {
                percentile: pct,
                start,
                end,
            }),
            steer: self.steer.get_untracked(),
        }
    }

    fn new_turn(&self, index: usize, user: String) -> TurnEntry {
        let key = self.next_key.get_value();
        self.next_key.set_value(key + 1);
        TurnEntry {
            key,
            index,
            user: StoredValue::new(user),
            replies: [ReplyEntry::new(), ReplyEntry::new()],
        }
    }

    fn request(
        &self,
        job: Job,
        make: impl FnOnce(u32) -> Request,
        file: Option<web_sys::File>,
    ) -> u32 {
        let id = client::send(make, file);
        if id != 0 {
            self.jobs.update(|j| j.push((id, job)));
        }
        id
    }

    pub fn load_model(&self, source: ModelSource, file: Option<web_sys::File>) {
        let (label, sha) = match &source {
            ModelSource::Url { url } => {
                let default =
                    dom::absolute_url(DEFAULT_MODEL_URL).ok().as_deref() == Some(url.as_str());
                (
                    url.rsplit('/').next().unwrap_or(url).to_string(),
                    default.then(|| DEFAULT_MODEL_SHA256.to_string()),
                )
            }
            ModelSource::File { name, .. } => (name.clone(), None),
        };
        self.model_loading.set(Some(label));
        self.model_error.set(None);
        // The model in use stays the source of record until the new one has loaded.
        self.model_attempt.set(Some(source.clone()));
        let backend = self.backend_pref;
        self.request(
            Job::Model,
            |id| Request::LoadModel {
                id,
                source,
                sha256: sha,
                backend,
            },
            file,
        );
    }

    /// Loads the last model asked for again (after a failed download).
    pub fn retry_model(&self) {
        if let Some(source @ ModelSource::Url { .. }) = self.model_attempt.get_untracked() {
            self.load_model(source, None);
        }
    }

    pub fn load_default_model(&self) {
        match dom::absolute_url(DEFAULT_MODEL_URL) {
            Ok(url) => self.load_model(ModelSource::Url { url }, None),
            Err(e) => self.model_error.set(Some(e)),
        }
    }

    pub fn load_bundle(&self) {
        match dom::absolute_url(&self.bundle_url.get_value()) {
            Ok(url) => {
                self.bundle_error.set(None);
                self.request(Job::Bundle, |id| Request::LoadBundle { id, url }, None);
            }
            Err(e) => self.bundle_error.set(Some(e)),
        }
    }

    /// Sends a user turn; the page shows it at once and the replies as they stream.
    pub fn send_chat(&self, user: String) {
        let user = user.trim().to_string();
        if user.is_empty() || !self.can_chat() {
            return;
        }
        self.chat_error.set(None);
        let turn = self.turns.with_untracked(|t| t.len());
        let entry = self.new_turn(turn, user.clone());
        self.turns.update(|t| t.push(entry));
        let settings = self.settings();
        self.first_token_mark.set_value(false);
        dom::mark("axiscope:send");
        self.request(
            Job::Chat { turn },
            |id| Request::Chat { id, user, settings },
            None,
        );
    }

    pub fn run_preset(&self, preset: &Preset) {
        if !self.can_chat() {
            return;
        }
        let mut turns = preset.user_turns.clone();
        if turns.is_empty() {
            return;
        }
        let first = turns.remove(0);
        self.preset_queue.set(turns);
        self.send_chat(first);
    }

    /// Places a role of the visitor's own: its replies to `questions` of the bundle's questions.
    pub fn place_role(&self, name: String, system: String, questions: usize) {
        if !self.can_chat() {
            return;
        }
        self.role_error.set(None);
        self.role_nearest.set(None);
        self.role_progress.set(Some((0, questions, String::new())));
        self.request(
            Job::PlaceRole,
            |id| Request::PlaceRole {
                id,
                name,
                system,
                questions,
            },
            None,
        );
    }

    /// Queues the benchmark behind whatever loads are queued (the worker runs in order).
    pub fn run_bench(&self, tokens: usize, overheads: bool, map: Option<BuildSize>) {
        self.bench.set(None);
        self.request(
            Job::Bench,
            |id| Request::Bench {
                id,
                tokens,
                overheads,
                map,
            },
            None,
        );
    }

    /// Builds the persona map for the loaded model in the worker.
    pub fn build_map(&self, size: BuildSize) {
        if !self.can_chat() {
            return;
        }
        self.build_error.set(None);
        self.build_progress
            .set(Some((0, 0, String::new(), dom::now_ms())));
        self.request(Job::Build, |id| Request::BuildBundle { id, size }, None);
    }

    /// Stops the running reply (and a running preset).
    pub fn stop(&self) {
        self.preset_queue.set(Vec::new());
        if let Some(max) = self
            .jobs
            .with_untracked(|j| j.iter().map(|(id, _)| *id).max())
        {
            client::cancel(max);
        }
    }

    pub fn undo(&self) {
        // Trimmed turns are no longer in the worker's conversation: nothing to take back there.
        if self.busy() || self.turns.with_untracked(|t| t.len()) <= self.turn_offset.get_untracked()
        {
            return;
        }
        if let Some(t) = self.turns.try_update(|t| t.pop()).flatten() {
            t.dispose();
            self.request(Job::Other, |id| Request::Undo { id }, None);
        }
    }

    pub fn reset(&self) {
        if self.busy() {
            return;
        }
        let old = self.turns.try_update(std::mem::take).unwrap_or_default();
        old.into_iter().for_each(TurnEntry::dispose);
        self.turn_offset.set(0);
        self.chat_error.set(None);
        self.request(Job::Other, |id| Request::Reset { id }, None);
    }

    /// True when the last message did not fit the model's context (the engine's
    /// `ContextOverflow`): the page then offers to trim the oldest turns or start over.
    pub fn context_full(&self) -> bool {
        self.chat_error.with(|e| {
            e.as_deref()
                .is_some_and(|e| e.contains("model's context holds"))
        })
    }

    /// Turns the model still sees (not trimmed).
    pub fn turns_in_context(&self) -> usize {
        self.turns.with(|t| t.len()) - self.turn_offset.get().min(self.turns.with(|t| t.len()))
    }

    /// Drops the oldest half (at least one) of the turns the model still sees from its
    /// context. The page keeps showing them and their drift points; the worker starts its
    /// conversation again from the turns kept and measures them anew.
    pub fn trim_oldest(&self) {
        let kept = self.turns_in_context();
        if self.busy() || kept == 0 {
            return;
        }
        let offset = self.turn_offset.get_untracked() + kept.div_ceil(2);
        self.turn_offset.set(offset);
        self.chat_error.set(None);
        let mut turns = self.shared_turns();
        self.send_restore(turns.split_off(offset));
    }

    /// Shows `turns` (from a share link) and has the worker measure them once a model is in.
    pub fn restore(&self, turns: Vec<SharedTurn>) {
        let entries: Vec<TurnEntry> = turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let e = self.new_turn(i, t.user.clone());
                e.replies[0].present.set(true);
                e.replies[0].text.set(t.assistant.clone());
                if let Some(c) = &t.capped {
                    e.replies[1].present.set(true);
                    e.replies[1].text.set(c.clone());
                }
                e
            })
            .collect();
        let old = self
            .turns
            .try_update(|t| std::mem::replace(t, entries))
            .unwrap_or_default();
        old.into_iter().for_each(TurnEntry::dispose);
        self.turn_offset.set(0);
        if self.model.with_untracked(|m| m.is_some()) {
            self.send_restore(turns);
        } else {
            self.pending_restore.set_value(Some(turns));
        }
    }

    fn send_restore(&self, turns: Vec<SharedTurn>) {
        let settings = self.settings();
        self.request(
            Job::Restore,
            |id| Request::Restore {
                id,
                turns,
                settings,
            },
            None,
        );
    }

    /// The settings and the conversation, for a share link or an embed.
    pub fn share_state(&self) -> ShareState {
        let settings = self.settings();
        let model_url = match self.model_source.get_untracked() {
            Some(ModelSource::Url { url })
                if dom::absolute_url(DEFAULT_MODEL_URL).ok().as_deref() != Some(url.as_str()) =>
            {
                Some(url)
            }
            _ => None,
        };
        ShareState {
            v: VERSION,
            system: settings.system,
            sampling: settings.sampling,
            cap: settings.cap,
            steer: settings.steer,
            model_url,
            turns: self.shared_turns(),
        }
    }

    pub fn shared_turns(&self) -> Vec<SharedTurn> {
        self.turns.with_untracked(|turns| {
            turns
                .iter()
                .map(|t| SharedTurn {
                    user: t.user.get_value(),
                    assistant: t.replies[0].text.get_untracked(),
                    capped: t.replies[1]
                        .present
                        .get_untracked()
                        .then(|| t.replies[1].text.get_untracked()),
                })
                .collect()
        })
    }

    pub fn export_turns(&self) -> Vec<ExportTurn> {
        self.turns.with_untracked(|turns| {
            turns
                .iter()
                .map(|t| ExportTurn {
                    user: t.user.get_value(),
                    replies: [Branch::Default, Branch::Capped]
                        .into_iter()
                        .filter(|b| t.reply(*b).present.get_untracked())
                        .map(|b| {
                            (
                                b,
                                t.reply(b).text.get_untracked(),
                                t.reply(b).point.get_untracked(),
                            )
                        })
                        .collect(),
                })
                .collect()
        })
    }

    /// The page's reply for the worker's `turn`.
    fn reply(&self, turn: usize, branch: Branch) -> Option<ReplyEntry> {
        let turn = turn + self.turn_offset.get_untracked();
        self.turns
            .with_untracked(|t| t.get(turn).map(|e| e.reply(branch)))
    }

    fn job(&self, id: u32) -> Option<Job> {
        self.jobs
            .with_untracked(|j| j.iter().find(|(i, _)| *i == id).map(|(_, job)| *job))
    }

    fn finish_job(&self, id: u32) -> Option<Job> {
        let job = self
            .jobs
            .with_untracked(|j| j.iter().find(|(i, _)| *i == id).map(|(_, job)| *job));
        self.jobs.update(|j| j.retain(|(i, _)| *i != id));
        job
    }

    /// Applies one worker event.
    pub fn apply(&self, event: Event) {
        match event {
            Event::Ready { cache } => {
                self.worker_ready.set(true);
                if !cache {
                    self.notice.set(Some(
                        "Cache Storage is not available here (private window or an insecure origin): the model is downloaded on every visit.".into(),
                    ));
                }
            }
            Event::Progress {
                id,
                loaded,
                total,
                from_cache,
            } => {
                let job = self
                    .jobs
                    .with_untracked(|j| j.iter().find(|(i, _)| *i == id).map(|(_, job)| *job))
                    .unwrap_or(Job::Model);
                let what = match job {
                    Job::Bundle => "Persona bundle".to_string(),
                    _ => format!(
                        "Model {}",
                        self.model_loading.get_untracked().unwrap_or_default()
                    ),
                };
                let now = dom::now_ms();
                self.progress.update(|p| match p {
                    Some(p)
                        if p.what == what && p.from_cache == from_cache && loaded >= p.loaded =>
                    {
                        p.loaded = loaded;
                        p.total = total;
                        p.now_ms = now;
                    }
                    _ => {
                        *p = Some(Progress {
                            job,
                            what,
                            loaded,
                            total,
                            from_cache,
                            started_ms: now,
                            now_ms: now,
                        })
                    }
                });
            }
            Event::ModelLoaded { model, .. } => {
                self.model.set(Some(model));
                self.model_source.set(self.model_attempt.get_untracked());
                self.model_loading.set(None);
                self.model_error.set(None);
                self.progress.set(None);
                dom::mark("axiscope:model-ready");
                if let Some(turns) = self
                    .pending_restore
                    .try_update_value(|p| p.take())
                    .flatten()
                {
                    self.send_restore(turns);
                }
            }
            Event::BundleLoaded { bundle, .. } => {
                self.progress.update(|p| {
                    if p.as_ref().is_some_and(|p| p.job == Job::Bundle) {
                        *p = None;
                    }
                });
                let k = bundle.explained_variance_ratio.len();
                self.map_pcs.update(|(x, y)| {
                    if *x >= k || *y >= k {
                        (*x, *y) = (0, 1.min(k.saturating_sub(1)));
                    }
                });
                let n = bundle.n_layers;
                self.cap_band.update(|(s, e)| {
                    if *e > n || *s >= *e {
                        let b = crate::science::default_cap_band(n);
                        (*s, *e) = (b.start, b.end);
                    }
                });
                self.bundle.set(Some(bundle));
                self.bundle_error.set(None);
            }
            Event::ReplyStart { branch, turn, .. } => {
                if let Some(r) = self.reply(turn, branch) {
                    r.present.set(true);
                    r.text.set(String::new());
                    r.streaming.set(true);
                    r.point.set(None);
                }
            }
            Event::Token {
                branch, turn, text, ..
            } => {
                if !self.first_token_mark.get_value() {
                    self.first_token_mark.set_value(true);
                    dom::mark("axiscope:first-token");
                }
                if let Some(r) = self.reply(turn, branch) {
                    r.text.update(|t| t.push_str(&text));
                }
            }
            Event::ReplyDone {
                branch,
                turn,
                text,
                finish,
                n_tokens,
                prompt_tokens,
                prefilled,
                decode_tok_s,
                ms_to_first_token,
                ..
            } => {
                if let Some(r) = self.reply(turn, branch) {
                    r.text.set(text);
                    r.streaming.set(false);
                    r.finish.set(Some(finish));
                    r.speed.set(Some(format!(
                        "{n_tokens} tokens, first after {:.1} s, {decode_tok_s:.1} tok/s; prompt {prompt_tokens} tokens, {} from the cache",
                        ms_to_first_token / 1000.0,
                        prompt_tokens - prefilled
                    )));
                }
            }
            Event::Measured {
                branch,
                turn,
                point,
                ..
            } => {
                if let Some(r) = self.reply(turn, branch) {
                    r.point.set(point);
                }
            }
            Event::BuildProgress {
                id,
                done,
                total,
                role,
                reply,
            } => {
                if self.job(id) == Some(Job::PlaceRole) {
                    self.role_progress.set(Some((done, total, reply)));
                } else {
                    self.build_progress.update(|p| {
                        let started = p.as_ref().map_or_else(dom::now_ms, |p| p.3);
                        *p = Some((done, total, role, started));
                    });
                }
            }
            Event::RolePlaced { role, nearest, .. } => {
                self.role_progress.set(None);
                self.role_nearest.set(Some((role.name.clone(), nearest)));
                self.custom_roles.update(|r| r.push(role));
            }
            Event::File {
                name, mime, base64, ..
            } => {
                let saved = crate::web::share::base64url_decode(&base64)
                    .ok_or_else(|| "the worker sent a damaged file".to_string())
                    .and_then(|bytes| dom::download_bytes(&name, &mime, &bytes));
                if let Err(e) = saved {
                    self.notice.set(Some(format!("download failed: {e}")));
                }
            }
            Event::Failed { id, what, message } => match self
                .jobs
                .with_untracked(|j| j.iter().find(|(i, _)| *i == id).map(|(_, job)| *job))
            {
                Some(Job::Model) => {
                    self.model_loading.set(None);
                    self.progress.set(None);
                    self.model_error.set(Some(message));
                }
                Some(Job::Bundle) => {
                    self.progress.update(|p| {
                        if p.as_ref().is_some_and(|p| p.job == Job::Bundle) {
                            *p = None;
                        }
                    });
                    self.bundle_error.set(Some(message));
                }
                Some(Job::Build) => {
                    self.build_progress.set(None);
                    self.build_error.set(Some(message));
                }
                Some(Job::Bench) => self.bench.set(Some(Err(message))),
                Some(Job::PlaceRole) => {
                    self.role_progress.set(None);
                    self.role_error.set(Some(message));
                }
                Some(Job::Chat { turn }) => {
                    self.preset_queue.set(Vec::new());
                    // The worker took the turn back; so does the page.
                    if self.turns.with_untracked(|t| t.len() == turn + 1)
                        && let Some(t) = self.turns.try_update(|t| t.pop()).flatten()
                    {
                        t.dispose();
                    }
                    self.chat_error.set(Some(message));
                }
                _ => self.notice.set(Some(format!("{what}: {message}"))),
            },
            Event::BenchDone { report, .. } => self.bench.set(Some(Ok(*report))),
            Event::Memory { bytes } => self.memory.set(Some(bytes)),
            Event::Done { id } => {
                let job = self.finish_job(id);
                if job == Some(Job::Build) {
                    self.build_progress.set(None);
                }
                if matches!(job, Some(Job::Chat { .. }))
                    && self.chat_error.get_untracked().is_none()
                {
                    let next = self
                        .preset_queue
                        .try_update(|q| (!q.is_empty()).then(|| q.remove(0)))
                        .flatten();
                    if let Some(next) = next {
                        self.send_chat(next);
                    }
                }
            }
        }
    }

    /// The worker died (out of memory, a bug): start a new one, load the same model and
    /// bundle again, and measure the conversation so far; nothing the visitor typed is lost.
    pub fn recover(&self, why: String) {
        client::stop();
        // A model that kills the worker every time it loads must not loop: twice is enough.
        let crashes = self.crashes.get_value() + 1;
        self.crashes.set_value(crashes);
        self.jobs.set(Vec::new());
        self.preset_queue.set(Vec::new());
        self.turns.update(|turns| {
            for t in turns.iter() {
                for r in t.replies {
                    r.streaming.set(false);
                }
            }
        });
        self.worker_crashed.set(Some(why));
        self.worker_ready.set(false);
        self.model.set(None);
        let state = *self;
        if let Err(e) = client::start(move |e| state.apply(e), move |why| state.recover(why)) {
            self.worker_crashed
                .set(Some(format!("could not restart the model worker: {e}")));
            return;
        }
        self.load_bundle();
        if crashes > 2 {
            self.model_error.set(Some(format!(
                "the model worker stopped {crashes} times; reload the page to try again"
            )));
            return;
        }
        // Only the turns still in the model's context go back to the new worker.
        let turns = self
            .shared_turns()
            .split_off(self.turn_offset.get_untracked());
        match self.model_source.get_untracked() {
            Some(source @ ModelSource::Url { .. }) => {
                if !turns.is_empty() {
                    self.pending_restore.set_value(Some(turns));
                }
                self.load_model(source, None);
            }
            Some(ModelSource::File { name, .. }) => {
                if !turns.is_empty() {
                    self.pending_restore.set_value(Some(turns));
                }
                self.model_error.set(Some(format!(
                    "{name} was a local file: pick it again to go on"
                )));
            }
            None => {}
        }
    }
}
