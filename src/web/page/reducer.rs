//! The page's state as plain Rust, and how the visitor's commands and the worker's events
//! change it. No signals and no browser here: `cargo test` runs it (tests/web/page_state.rs).
//! `state.rs` mirrors a [`Page`] into leptos signals after every change and carries out the
//! [`Effect`]s it asks for (messages to the worker, performance marks, saved files).
//!
//! What the visitor sets with controls (sampling, system prompt, capping, the shown PCs) stays
//! in signals only: commands that need it take it as [`TurnSettings`].
//!
//! Over 600 lines: one state machine. Every command and every event reads and writes the
//! same jobs, turns and offsets; split, each half would need the other's private fields.

use super::chart::megabytes;
use crate::web::catalog::Preset;
use crate::web::export::ExportTurn;
use crate::web::protocol::{
    AxisFormat, BackendPref, BenchReport, Branch, BuildSize, BundleView, Event, Fault, Finish,
    ModelSource, ModelView, Request, RolePoint, SharedTurn, TurnPointView, TurnSettings,
};
use crate::web::share::{ShareState, VERSION};

use super::models::{CatalogModel, DEFAULT_MODEL};

/// The persona bundle for the default model (single-blob form, `axiscope build`).
pub const DEFAULT_BUNDLE_URL: &str = "bundles/smollm2-135m-instruct.axb";

/// One reply of a turn, as it streams and once it is measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    pub present: bool,
    pub text: String,
    pub streaming: bool,
    pub finish: Option<Finish>,
    /// "12 tokens, first after 0.3 s, 9.1 tok/s; ...".
    pub speed: Option<String>,
    pub point: Option<TurnPointView>,
}

/// One user turn and its replies (default, capped).
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// Unique for the page's lifetime, for keyed lists.
    pub key: u64,
    pub user: String,
    pub replies: [Reply; 2],
}

impl Turn {
    pub fn reply(&self, b: Branch) -> &Reply {
        &self.replies[b.index()]
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

/// What a request to the worker is for, so that its events land in the right place.
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

/// Why the last turn failed.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatError {
    pub message: String,
    /// The conversation no longer fits the model's context: the page offers to trim the
    /// oldest turns or start over.
    pub context_full: bool,
}

/// An in-browser map build under way.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildProgress {
    pub done: usize,
    pub total: usize,
    pub role: String,
    pub started_ms: f64,
}

/// Something the page must do outside its state; `state.rs` carries these out in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Post this request to the worker (its job is already in [`Page::jobs`]).
    Send(Request),
    /// Cancel every request up to and including this id.
    Cancel(u32),
    /// A performance mark: the bench page and the browser tests time with them.
    Mark(&'static str),
    /// A file from the worker for the visitor to save.
    Save {
        name: String,
        mime: String,
        bytes: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct Page {
    pub backend_pref: BackendPref,
    /// The default model's and the bundle's absolute URLs (or why they could not be made).
    default_model_url: Result<String, String>,
    page_bundle_url: Result<String, String>,
    /// The bundle in use: the page's, or one the model menu loaded with its model.
    bundle_url: Result<String, String>,
    /// The bundle to load once the model the menu asked for is in (so a failed download
    /// leaves the map of the model in use alone).
    pending_bundle: Option<Result<String, String>>,
    pub worker_ready: bool,
    pub worker_crashed: Option<String>,
    pub model: Option<ModelView>,
    pub model_loading: Option<String>,
    pub model_error: Option<String>,
    /// The source of the model in use, to load it again after a worker crash.
    pub model_source: Option<ModelSource>,
    /// The source of the last load asked for, loaded or not: what "Try again" loads.
    pub model_attempt: Option<ModelSource>,
    pub progress: Option<Progress>,
    pub bundle: Option<BundleView>,
    pub bundle_error: Option<String>,
    pub turns: Vec<Turn>,
    /// Turns before this one were trimmed from the model's context when it was full: still
    /// shown and charted, but the worker's turn `i` is the page's turn `i + turn_offset`.
    pub turn_offset: usize,
    next_key: u64,
    next_id: u32,
    /// Requests the worker has not finished.
    pub jobs: Vec<(u32, Job)>,
    pub chat_error: Option<ChatError>,
    pub notice: Option<String>,
    /// User turns of a running preset conversation, next first.
    pub preset_queue: Vec<String>,
    /// Linear memory of the worker, in bytes.
    pub memory: Option<u64>,
    /// Roles the visitor placed on the map, and the progress of the one being placed:
    /// (done, total, the reply so far).
    pub custom_roles: Vec<RolePoint>,
    pub role_progress: Option<(usize, usize, String)>,
    pub role_error: Option<String>,
    /// The last placed role and the bundle's roles nearest to it.
    pub role_nearest: Option<(String, Vec<String>)>,
    pub build_progress: Option<BuildProgress>,
    pub build_error: Option<String>,
    /// The benchmark's outcome (`?bench`).
    pub bench: Option<Result<BenchReport, String>>,
    /// Turns waiting for a model to be measured (from a share link, or after a crash).
    pending_restore: Option<Vec<SharedTurn>>,
    first_token_marked: bool,
    crashes: u32,
    effects: Vec<Effect>,
}

impl Page {
    pub fn new(
        backend_pref: BackendPref,
        default_model_url: Result<String, String>,
        bundle_url: Result<String, String>,
    ) -> Self {
        Self {
            backend_pref,
            default_model_url,
            page_bundle_url: bundle_url.clone(),
            bundle_url,
            pending_bundle: None,
            worker_ready: false,
            worker_crashed: None,
            model: None,
            model_loading: None,
            model_error: None,
            model_source: None,
            model_attempt: None,
            progress: None,
            bundle: None,
            bundle_error: None,
            turns: Vec::new(),
            turn_offset: 0,
            next_key: 0,
            next_id: 1,
            jobs: Vec::new(),
            chat_error: None,
            notice: None,
            preset_queue: Vec::new(),
            memory: None,
            custom_roles: Vec::new(),
            role_progress: None,
            role_error: None,
            role_nearest: None,
            build_progress: None,
            build_error: None,
            bench: None,
            pending_restore: None,
            first_token_marked: false,
            crashes: 0,
            effects: Vec::new(),
        }
    }

    /// What the page must do since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Whether the model is generating (a reply, a restore, a role, a build).
    pub fn chatting(&self) -> bool {
        self.jobs.iter().any(|(_, job)| {
            matches!(
                job,
                Job::Chat { .. } | Job::Restore | Job::PlaceRole | Job::Build
            )
        })
    }

    pub fn can_chat(&self) -> bool {
        self.model.is_some() && !self.busy()
    }

    /// Turns the model still sees (not trimmed).
    pub fn turns_in_context(&self) -> usize {
        self.turns.len() - self.turn_offset.min(self.turns.len())
    }

    fn request(&mut self, job: Job, make: impl FnOnce(u32) -> Request) {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs.push((id, job));
        self.effects.push(Effect::Send(make(id)));
    }

    /// Forgets the request `id`: it finished, or it never reached a worker (none is running).
    pub fn drop_job(&mut self, id: u32) {
        self.jobs.retain(|(i, _)| *i != id);
    }

    fn job(&self, id: u32) -> Option<Job> {
        self.jobs
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, job)| *job)
    }

    pub fn load_model(&mut self, source: ModelSource) {
        let (label, sha256) = match &source {
            ModelSource::Url { url } => {
                // A damaged download of a model whose bytes we know is never used or cached.
                let known = if self.default_model_url.as_ref().ok() == Some(url) {
                    Some(&DEFAULT_MODEL)
                } else {
                    CatalogModel::by_url(url)
                };
                (
                    url.rsplit('/').next().unwrap_or(url).to_string(),
                    known.and_then(|m| m.sha256).map(str::to_string),
                )
            }
            ModelSource::File { name, .. } => (name.clone(), None),
        };
        self.model_loading = Some(label);
        self.model_error = None;
        self.pending_bundle = None;
        // The model in use stays the source of record until the new one has loaded.
        self.model_attempt = Some(source.clone());
        let backend = self.backend_pref;
        self.request(Job::Model, |id| Request::LoadModel {
            id,
            source,
            sha256,
            backend,
        });
    }

    pub fn load_default_model(&mut self) {
        match self.default_model_url.clone() {
            Ok(url) => self.load_model(ModelSource::Url { url }),
            Err(e) => self.model_error = Some(e),
        }
    }

    /// Loads a model of the menu, unless the device reports too little memory for it
    /// (`device_gib`: the browser's `navigator.deviceMemory`); the model in use then stays.
    pub fn load_catalog_model(&mut self, id: &str, device_gib: Option<f64>) {
        let Some(m) = CatalogModel::by_id(id) else {
            self.model_error = Some(format!("There is no model '{id}' in the menu."));
            return;
        };
        if let Err(why) = m.fits(device_gib) {
            self.model_error = Some(why);
            // Nothing to try again: the same device would refuse it again.
            self.model_attempt = None;
        } else if m.id == DEFAULT_MODEL.id {
            self.load_default_model();
            self.pending_bundle = Some(self.page_bundle_url.clone());
        } else {
            self.load_model(ModelSource::Url { url: m.url.into() });
            // Relative to the page; the worker, served beside it, resolves it the same way.
            self.pending_bundle = m.bundle.map(|b| Ok(b.into()));
        }
    }

    /// Loads `url` as the bundle in use, unless it already is.
    fn switch_bundle(&mut self, url: Result<String, String>) {
        if url != self.bundle_url {
            self.bundle_url = url;
            self.load_bundle();
        }
    }

    /// Loads the last model asked for again (after a failed download).
    pub fn retry_model(&mut self) {
        if let Some(source @ ModelSource::Url { .. }) = self.model_attempt.clone() {
            let bundle = self.pending_bundle.take();
            self.load_model(source);
            self.pending_bundle = bundle;
        }
    }

    pub fn load_bundle(&mut self) {
        match self.bundle_url.clone() {
            Ok(url) => {
                self.bundle_error = None;
                self.request(Job::Bundle, |id| Request::LoadBundle { id, url });
            }
            Err(e) => self.bundle_error = Some(e),
        }
    }

    /// Sends a user turn; the page shows it at once and the replies as they stream.
    pub fn send_chat(&mut self, user: &str, settings: TurnSettings) {
        let user = user.trim().to_string();
        if user.is_empty() || !self.can_chat() {
            return;
        }
        self.chat_error = None;
        let turn = self.turns.len();
        self.push_turn(user.clone());
        self.first_token_marked = false;
        self.effects.push(Effect::Mark("axiscope:send"));
        self.request(Job::Chat { turn }, |id| Request::Chat {
            id,
            user,
            settings,
        });
    }

    fn push_turn(&mut self, user: String) -> &mut Turn {
        self.next_key += 1;
        self.turns.push(Turn {
            key: self.next_key,
            user,
            replies: Default::default(),
        });
        self.turns.last_mut().expect("just pushed")
    }

    /// Runs a preset conversation: its first turn now, the others as each one finishes.
    pub fn run_preset(&mut self, preset: &Preset, settings: TurnSettings) {
        let Some((first, rest)) = preset.user_turns.split_first() else {
            return;
        };
        if !self.can_chat() {
            return;
        }
        self.preset_queue = rest.to_vec();
        self.send_chat(first, settings);
    }

    /// Places a role of the visitor's own: its replies to `questions` of the bundle's questions.
    pub fn place_role(&mut self, name: String, system: String, questions: usize) {
        if !self.can_chat() {
            return;
        }
        self.role_error = None;
        self.role_nearest = None;
        self.role_progress = Some((0, questions, String::new()));
        self.request(Job::PlaceRole, |id| Request::PlaceRole {
            id,
            name,
            system,
            questions,
        });
    }

    /// Queues the benchmark behind whatever loads are queued (the worker runs in order).
    pub fn run_bench(&mut self, tokens: usize, overheads: bool, map: Option<BuildSize>) {
        self.bench = None;
        self.request(Job::Bench, |id| Request::Bench {
            id,
            tokens,
            overheads,
            map,
        });
    }

    /// Builds the persona map for the loaded model in the worker.
    pub fn build_map(&mut self, size: BuildSize, now_ms: f64) {
        if !self.can_chat() {
            return;
        }
        self.build_error = None;
        self.build_progress = Some(BuildProgress {
            done: 0,
            total: 0,
            role: String::new(),
            started_ms: now_ms,
        });
        self.request(Job::Build, |id| Request::BuildBundle { id, size });
    }

    /// Asks the worker for the axis as a file (it comes back as [`Effect::Save`]).
    pub fn export_axis(&mut self, format: AxisFormat) {
        self.request(Job::Other, |id| Request::ExportAxis { id, format });
    }

    /// Stops the running reply (and a running preset).
    pub fn stop(&mut self) {
        self.preset_queue.clear();
        if let Some(max) = self.jobs.iter().map(|(id, _)| *id).max() {
            self.effects.push(Effect::Cancel(max));
        }
    }

    pub fn undo(&mut self) {
        // Trimmed turns are no longer in the worker's conversation: nothing to take back there.
        if self.busy() || self.turns.len() <= self.turn_offset {
            return;
        }
        self.turns.pop();
        self.request(Job::Other, |id| Request::Undo { id });
    }

    pub fn reset(&mut self) {
        if self.busy() {
            return;
        }
        self.turns.clear();
        self.turn_offset = 0;
        self.chat_error = None;
        self.request(Job::Other, |id| Request::Reset { id });
    }

    /// Drops the oldest half (at least one) of the turns the model still sees from its
    /// context. The page keeps showing them and their drift points; the worker starts its
    /// conversation again from the turns kept and measures them anew.
    pub fn trim_oldest(&mut self, settings: TurnSettings) {
        let kept = self.turns_in_context();
        if self.busy() || kept == 0 {
            return;
        }
        self.turn_offset += kept.div_ceil(2);
        self.chat_error = None;
        let turns = self.turns_from(self.turn_offset);
        self.send_restore(turns, settings);
    }

    /// Shows `turns` (from a share link) and has the worker measure them once a model is in.
    pub fn restore(&mut self, turns: Vec<SharedTurn>, settings: TurnSettings) {
        self.turns.clear();
        for t in &turns {
            let entry = self.push_turn(t.user.clone());
            entry.replies[0].present = true;
            entry.replies[0].text = t.assistant.clone();
            if let Some(c) = &t.capped {
                entry.replies[1].present = true;
                entry.replies[1].text = c.clone();
            }
        }
        self.turn_offset = 0;
        if self.model.is_some() {
            self.send_restore(turns, settings);
        } else {
            self.pending_restore = Some(turns);
        }
    }

    fn send_restore(&mut self, turns: Vec<SharedTurn>, settings: TurnSettings) {
        self.request(Job::Restore, |id| Request::Restore {
            id,
            turns,
            settings,
        });
    }

    /// The settings and the conversation, for a share link or an embed.
    pub fn share_state(&self, settings: TurnSettings) -> ShareState {
        let model_url = match &self.model_source {
            Some(ModelSource::Url { url }) if self.default_model_url.as_ref().ok() != Some(url) => {
                Some(url.clone())
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
            turns: self.turns_from(0),
        }
    }

    /// The turns from `first` on, as a share link and the worker's restore carry them.
    pub fn turns_from(&self, first: usize) -> Vec<SharedTurn> {
        self.turns
            .iter()
            .skip(first)
            .map(|t| SharedTurn {
                user: t.user.clone(),
                assistant: t.replies[0].text.clone(),
                capped: t.replies[1].present.then(|| t.replies[1].text.clone()),
            })
            .collect()
    }

    pub fn export_turns(&self) -> Vec<ExportTurn> {
        self.turns
            .iter()
            .map(|t| ExportTurn {
                user: t.user.clone(),
                replies: [Branch::Default, Branch::Capped]
                    .into_iter()
                    .filter(|b| t.reply(*b).present)
                    .map(|b| (b, t.reply(b).text.clone(), t.reply(b).point.clone()))
                    .collect(),
            })
            .collect()
    }

    /// The page's reply for the worker's `turn`.
    fn reply(&mut self, turn: usize, branch: Branch) -> Option<&mut Reply> {
        let turn = turn + self.turn_offset;
        self.turns
            .get_mut(turn)
            .map(|t| &mut t.replies[branch.index()])
    }

    fn clear_progress(&mut self, job: Job) {
        if self.progress.as_ref().is_some_and(|p| p.job == job) {
            self.progress = None;
        }
    }

    /// Applies one worker event. `settings` is asked for only when the event sends a turn (the
    /// next one of a preset, or turns waiting for a model).
    pub fn apply(&mut self, event: Event, now_ms: f64, settings: impl FnOnce() -> TurnSettings) {
        match event {
            Event::Ready { cache } => {
                self.worker_ready = true;
                if !cache {
                    self.notice = Some(
                        "Cache Storage is not available here (private window or an insecure origin): the model is downloaded on every visit.".into(),
                    );
                }
            }
            Event::Progress {
                id,
                loaded,
                total,
                from_cache,
            } => {
                let job = self.job(id).unwrap_or(Job::Model);
                let what = match job {
                    Job::Bundle => "Persona bundle".to_string(),
                    _ => format!(
                        "Model {}",
                        self.model_loading.as_deref().unwrap_or_default()
                    ),
                };
                match &mut self.progress {
                    Some(p)
                        if p.what == what && p.from_cache == from_cache && loaded >= p.loaded =>
                    {
                        p.loaded = loaded;
                        p.total = total;
                        p.now_ms = now_ms;
                    }
                    p => {
                        *p = Some(Progress {
                            job,
                            what,
                            loaded,
                            total,
                            from_cache,
                            started_ms: now_ms,
                            now_ms,
                        })
                    }
                }
            }
            Event::ModelLoaded { model, .. } => {
                self.model = Some(model);
                self.model_source = self.model_attempt.clone();
                self.model_loading = None;
                self.model_error = None;
                self.progress = None;
                self.effects.push(Effect::Mark("axiscope:model-ready"));
                if let Some(url) = self.pending_bundle.take() {
                    self.switch_bundle(url);
                }
                if let Some(turns) = self.pending_restore.take() {
                    self.send_restore(turns, settings());
                }
            }
            Event::BundleLoaded { bundle, .. } => {
                self.clear_progress(Job::Bundle);
                self.bundle = Some(bundle);
                self.bundle_error = None;
            }
            Event::ReplyStart { branch, turn, .. } => {
                if let Some(r) = self.reply(turn, branch) {
                    r.present = true;
                    r.text.clear();
                    r.streaming = true;
                    r.point = None;
                }
            }
            Event::Token {
                branch, turn, text, ..
            } => {
                if !self.first_token_marked {
                    self.first_token_marked = true;
                    self.effects.push(Effect::Mark("axiscope:first-token"));
                }
                if let Some(r) = self.reply(turn, branch) {
                    r.text.push_str(&text);
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
                    r.text = text;
                    r.streaming = false;
                    r.finish = Some(finish);
                    r.speed = Some(format!(
                        "{n_tokens} tokens, first after {:.1} s, {decode_tok_s:.1} tok/s; prompt {prompt_tokens} tokens, {} from the cache",
                        ms_to_first_token / 1000.0,
                        prompt_tokens - prefilled
                    ));
                }
            }
            Event::Measured {
                branch,
                turn,
                point,
                ..
            } => {
                if let Some(r) = self.reply(turn, branch) {
                    r.point = point;
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
                    self.role_progress = Some((done, total, reply));
                } else {
                    let started_ms = self
                        .build_progress
                        .as_ref()
                        .map_or(now_ms, |p| p.started_ms);
                    self.build_progress = Some(BuildProgress {
                        done,
                        total,
                        role,
                        started_ms,
                    });
                }
            }
            Event::RolePlaced { role, nearest, .. } => {
                self.role_progress = None;
                self.role_nearest = Some((role.name.clone(), nearest));
                self.custom_roles.push(role);
            }
            Event::File {
                name, mime, bytes, ..
            } => self.effects.push(Effect::Save { name, mime, bytes }),
            Event::Failed {
                id,
                what,
                message,
                fault,
            } => self.fail(id, what, message, fault),
            Event::BenchDone { report, .. } => self.bench = Some(Ok(*report)),
            Event::Memory { bytes } => self.memory = Some(bytes),
            Event::Done { id } => {
                let job = self.job(id);
                self.drop_job(id);
                match job {
                    Some(Job::Build) => self.build_progress = None,
                    Some(Job::Chat { .. })
                        if self.chat_error.is_none() && !self.preset_queue.is_empty() =>
                    {
                        let next = self.preset_queue.remove(0);
                        self.send_chat(&next, settings());
                    }
                    _ => {}
                }
            }
        }
    }

    /// A request failed: its message goes where the visitor looks for that request.
    fn fail(&mut self, id: u32, what: String, message: String, fault: Fault) {
        match self.job(id) {
            Some(Job::Model) => {
                self.model_loading = None;
                self.progress = None;
                self.model_error = Some(message);
            }
            Some(Job::Bundle) => {
                self.clear_progress(Job::Bundle);
                self.bundle_error = Some(message);
            }
            Some(Job::Build) => {
                self.build_progress = None;
                self.build_error = Some(message);
            }
            Some(Job::Bench) => self.bench = Some(Err(message)),
            Some(Job::PlaceRole) => {
                self.role_progress = None;
                self.role_error = Some(message);
            }
            Some(Job::Chat { turn }) => {
                self.preset_queue.clear();
                // The worker took the turn back; so does the page.
                if self.turns.len() == turn + 1 {
                    self.turns.pop();
                }
                self.chat_error = Some(ChatError {
                    message,
                    context_full: fault == Fault::ContextFull,
                });
            }
            _ => self.notice = Some(format!("{what}: {message}")),
        }
    }

    /// The worker died (out of memory, a bug) and `started` says whether a new one could be
    /// started: load the same model and bundle again and measure the conversation so far;
    /// nothing the visitor typed is lost.
    pub fn recover(&mut self, why: String, started: Result<(), String>) {
        self.crashes += 1;
        self.jobs.clear();
        self.preset_queue.clear();
        for t in &mut self.turns {
            t.replies.iter_mut().for_each(|r| r.streaming = false);
        }
        self.worker_crashed = Some(why);
        self.worker_ready = false;
        self.model = None;
        if let Err(e) = started {
            self.worker_crashed = Some(format!("could not restart the model worker: {e}"));
            return;
        }
        self.load_bundle();
        // A model that kills the worker every time it loads must not loop: twice is enough.
        if self.crashes > 2 {
            self.model_error = Some(format!(
                "the model worker stopped {} times; reload the page to try again",
                self.crashes
            ));
            return;
        }
        // Only the turns still in the model's context go back to the new worker, once the
        // model is in (`Event::ModelLoaded`).
        let turns = self.turns_from(self.turn_offset);
        let Some(source) = self.model_source.clone() else {
            return;
        };
        if !turns.is_empty() {
            self.pending_restore = Some(turns);
        }
        match source {
            ModelSource::Url { .. } => self.load_model(source),
            ModelSource::File { name, .. } => {
                self.model_error = Some(format!("{name} was a local file: pick it again to go on"))
            }
        }
    }
}

/// The capping band kept when a bundle of `n_layers` arrives, or the default band where the
/// one shown does not fit it.
pub fn fit_band((start, end): (usize, usize), n_layers: usize) -> (usize, usize) {
    if end > n_layers || start >= end {
        let b = crate::science::default_cap_band(n_layers);
        (b.start, b.end)
    } else {
        (start, end)
    }
}

/// The map's two shown dimensions kept when a bundle with `k` PCs arrives (`k` itself is the
/// axis), or the first two (with one PC: it and the axis).
pub fn fit_pcs((x, y): (usize, usize), k: usize) -> (usize, usize) {
    if x > k || y > k {
        (0, 1.min(k))
    } else {
        (x, y)
    }
}
