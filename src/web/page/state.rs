//! The page's signals (provided as context): a mirror of the plain [`Page`] (`reducer.rs`, where
//! every command and worker event is decided), plus what the visitor sets with controls. Each
//! reply has its own signals, so a streamed token touches one text node.

use leptos::prelude::*;

use super::client;
use super::models::DEFAULT_MODEL;
use super::reducer::{
    BuildProgress, ChatError, Effect, Page, Progress, Reply, Turn, fit_band, fit_pcs,
};
use crate::web::catalog::Preset;
use crate::web::dom;
use crate::web::export::ExportTurn;
use crate::web::protocol::{
    AxisFormat, BackendPref, BenchReport, Branch, BuildSize, BundleView, CapSettings, Event,
    Finish, GenSettings, ModelSource, ModelView, Request, RolePoint, SharedTurn, TurnPointView,
    TurnSettings,
};
use crate::web::share::ShareState;

/// `?embed=`: one view alone, for an iframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embed {
    Map,
    Drift,
    Cap,
}

/// Sets `signal` to `value` only when it differs, so that nothing re-renders for nothing.
fn put<T: Clone + PartialEq + Send + Sync + 'static>(signal: RwSignal<T>, value: &T) {
    if signal.with_untracked(|v| v != value) {
        signal.set(value.clone());
    }
}

#[derive(Clone, Copy)]
pub struct ReplyEntry {
    pub present: RwSignal<bool>,
    pub text: RwSignal<String>,
    pub streaming: RwSignal<bool>,
    pub finish: RwSignal<Option<Finish>>,
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

    fn mirror(&self, r: &Reply) {
        put(self.present, &r.present);
        put(self.text, &r.text);
        put(self.streaming, &r.streaming);
        put(self.finish, &r.finish);
        put(self.speed, &r.speed);
        put(self.point, &r.point);
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

#[derive(Clone, Copy)]
pub struct AppState {
    pub embed: Option<Embed>,
    pub backend_pref: BackendPref,
    /// As asked for (`?bundle=`, relative or not), for embed snippets.
    pub bundle_url: StoredValue<String>,
    /// The source of record; everything below down to `bench` mirrors it.
    page: StoredValue<Page>,
    /// Owns the turns' signals, so that they live as long as the page, whichever reactive
    /// context (an event handler, an effect) made the change that created them.
    owner: StoredValue<Owner>,
    pub worker_ready: RwSignal<bool>,
    pub worker_crashed: RwSignal<Option<String>>,
    pub model: RwSignal<Option<ModelView>>,
    pub model_loading: RwSignal<Option<String>>,
    pub model_error: RwSignal<Option<String>>,
    /// See [`Page::model_attempt`].
    pub model_attempt: RwSignal<Option<ModelSource>>,
    pub progress: RwSignal<Option<Progress>>,
    pub bundle: RwSignal<Option<BundleView>>,
    pub bundle_error: RwSignal<Option<String>>,
    pub turns: RwSignal<Vec<TurnEntry>>,
    /// See [`Page::turn_offset`].
    pub turn_offset: RwSignal<usize>,
    /// Whether the worker has requests to finish, and whether one of them generates.
    busy: RwSignal<bool>,
    chatting: RwSignal<bool>,
    /// [`Page::can_chat`] and [`Page::turns_in_context`], mirrored: the rules stay in `Page`.
    can_chat: RwSignal<bool>,
    turns_in_context: RwSignal<usize>,
    pub chat_error: RwSignal<Option<ChatError>>,
    /// User turns of a running preset conversation, next first.
    pub preset_queue: RwSignal<Vec<String>>,
    pub notice: RwSignal<Option<String>>,
    pub memory: RwSignal<Option<u64>>,
    pub custom_roles: RwSignal<Vec<RolePoint>>,
    pub role_progress: RwSignal<Option<(usize, usize, String)>>,
    pub role_error: RwSignal<Option<String>>,
    pub role_nearest: RwSignal<Option<(String, Vec<String>)>>,
    pub build_progress: RwSignal<Option<BuildProgress>>,
    pub build_error: RwSignal<Option<String>>,
    pub bench: RwSignal<Option<Result<BenchReport, String>>>,
    // What the visitor sets.
    pub sampling: RwSignal<GenSettings>,
    pub system: RwSignal<String>,
    /// 0 = off, else the cap percentile.
    pub cap_percentile: RwSignal<u8>,
    pub cap_band: RwSignal<(usize, usize)>,
    pub steer: RwSignal<f32>,
    pub token_view: RwSignal<bool>,
    pub map_pcs: RwSignal<(usize, usize)>,
    /// The map's layer; `None`: the bundle's analysis layer, where the conversation is measured.
    pub map_layer: RwSignal<Option<usize>>,
    /// Turns (user turn, branch) under the pointer on a chart.
    pub hover: RwSignal<Option<(usize, Branch)>>,
    pub share_link: RwSignal<Option<String>>,
    /// The guided tour's step (web::tour), while it runs.
    pub tour_step: RwSignal<Option<usize>>,
}

pub fn use_app() -> AppState {
    use_context::<AppState>().expect("AppState is provided by App")
}

impl AppState {
    pub fn new(embed: Option<Embed>, backend_pref: BackendPref, bundle_url: String) -> Self {
        let page = Page::new(
            backend_pref,
            dom::absolute_url(DEFAULT_MODEL.url),
            dom::absolute_url(&bundle_url),
        );
        Self {
            embed,
            backend_pref,
            bundle_url: StoredValue::new(bundle_url),
            page: StoredValue::new(page),
            owner: StoredValue::new(Owner::new()),
            worker_ready: RwSignal::new(false),
            worker_crashed: RwSignal::new(None),
            model: RwSignal::new(None),
            model_loading: RwSignal::new(None),
            model_error: RwSignal::new(None),
            model_attempt: RwSignal::new(None),
            progress: RwSignal::new(None),
            bundle: RwSignal::new(None),
            bundle_error: RwSignal::new(None),
            turns: RwSignal::new(Vec::new()),
            turn_offset: RwSignal::new(0),
            busy: RwSignal::new(false),
            chatting: RwSignal::new(false),
            can_chat: RwSignal::new(false),
            turns_in_context: RwSignal::new(0),
            chat_error: RwSignal::new(None),
            preset_queue: RwSignal::new(Vec::new()),
            notice: RwSignal::new(None),
            memory: RwSignal::new(None),
            custom_roles: RwSignal::new(Vec::new()),
            role_progress: RwSignal::new(None),
            role_error: RwSignal::new(None),
            role_nearest: RwSignal::new(None),
            build_progress: RwSignal::new(None),
            build_error: RwSignal::new(None),
            bench: RwSignal::new(None),
            sampling: RwSignal::new(GenSettings::default()),
            system: RwSignal::new(String::new()),
            cap_percentile: RwSignal::new(0),
            // The default band of the default model's 30 layers; a bundle of another depth
            // resets it (`apply`).
            cap_band: RwSignal::new({
                let b = crate::science::default_cap_band(30);
                (b.start, b.end)
            }),
            steer: RwSignal::new(0.0),
            token_view: RwSignal::new(false),
            map_pcs: RwSignal::new((0, 1)),
            map_layer: RwSignal::new(None),
            hover: RwSignal::new(None),
            share_link: RwSignal::new(None),
            tour_step: RwSignal::new(None),
        }
    }

    /// Changes the page with `f`, carries out what it asks for, and mirrors the result.
    pub fn update<R>(&self, f: impl FnOnce(&mut Page) -> R) -> R {
        self.update_with_file(None, f)
    }

    /// As [`Self::update`]; a model load in `f` sends `file` with its request.
    fn update_with_file<R>(
        &self,
        file: Option<web_sys::File>,
        f: impl FnOnce(&mut Page) -> R,
    ) -> R {
        let (out, effects) = self
            .page
            .try_update_value(|p| {
                let out = f(p);
                (out, p.take_effects())
            })
            .expect("the page's state lives as long as the page");
        let mut file = file;
        for effect in effects {
            match effect {
                Effect::Send(request) => {
                    let id = request.id();
                    let file = matches!(request, Request::LoadModel { .. })
                        .then(|| file.take())
                        .flatten();
                    if !client::send(request, file) {
                        self.page.update_value(|p| p.drop_job(id));
                    }
                }
                Effect::Cancel(id) => {
                    client::cancel(id);
                }
                Effect::Mark(name) => dom::mark(name),
                Effect::Save { name, mime, bytes } => {
                    let saved = if bytes.is_empty() {
                        Err("the worker sent an empty file".to_string())
                    } else {
                        dom::download_bytes(&name, &mime, &bytes)
                    };
                    if let Err(e) = saved {
                        self.page
                            .update_value(|p| p.notice = Some(format!("download failed: {e}")));
                    }
                }
            }
        }
        self.page.with_value(|p| self.mirror(p));
        out
    }

    fn mirror(&self, p: &Page) {
        put(self.worker_ready, &p.worker_ready);
        put(self.worker_crashed, &p.worker_crashed);
        put(self.model, &p.model);
        put(self.model_loading, &p.model_loading);
        put(self.model_error, &p.model_error);
        put(self.model_attempt, &p.model_attempt);
        put(self.progress, &p.progress);
        put(self.bundle, &p.bundle);
        put(self.bundle_error, &p.bundle_error);
        self.mirror_turns(&p.turns);
        put(self.turn_offset, &p.turn_offset);
        put(self.busy, &p.busy());
        put(self.chatting, &p.chatting());
        put(self.can_chat, &p.can_chat());
        put(self.turns_in_context, &p.turns_in_context());
        put(self.chat_error, &p.chat_error);
        put(self.preset_queue, &p.preset_queue);
        put(self.notice, &p.notice);
        put(self.memory, &p.memory);
        put(self.custom_roles, &p.custom_roles);
        put(self.role_progress, &p.role_progress);
        put(self.role_error, &p.role_error);
        put(self.role_nearest, &p.role_nearest);
        put(self.build_progress, &p.build_progress);
        put(self.build_error, &p.build_error);
        put(self.bench, &p.bench);
    }

    /// Entries are kept while their keys match (turns only ever change at the end).
    fn mirror_turns(&self, turns: &[Turn]) {
        let entries = self.turns.get_untracked();
        let kept = entries
            .iter()
            .zip(turns)
            .take_while(|(e, t)| e.key == t.key)
            .count();
        if kept < entries.len() || kept < turns.len() {
            let owner = self.owner.get_value();
            let mut new = entries[..kept].to_vec();
            new.extend(turns[kept..].iter().enumerate().map(|(i, t)| {
                owner.with(|| TurnEntry {
                    key: t.key,
                    index: kept + i,
                    user: StoredValue::new(t.user.clone()),
                    replies: [ReplyEntry::new(), ReplyEntry::new()],
                })
            }));
            self.turns.set(new);
            entries[kept..].iter().for_each(|e| e.dispose());
        }
        self.turns.with_untracked(|entries| {
            for (e, t) in entries.iter().zip(turns) {
                e.replies
                    .iter()
                    .zip(&t.replies)
                    .for_each(|(e, r)| e.mirror(r));
            }
        });
    }

    pub fn busy(&self) -> bool {
        self.busy.get()
    }

    pub fn chatting(&self) -> bool {
        self.chatting.get()
    }

    pub fn can_chat(&self) -> bool {
        self.can_chat.get()
    }

    /// The map's layer: the one picked, or the bundle's analysis layer.
    pub fn shown_layer(&self) -> Option<usize> {
        self.map_layer
            .get()
            .or_else(|| self.bundle.with(|b| b.as_ref().map(|b| b.analysis_layer)))
    }

    /// Shows the map at `layer`; the analysis layer is stored as `None`, so that "picked" and
    /// "back at the chosen layer" are one state.
    pub fn show_layer(&self, layer: Option<usize>) {
        let chosen = self
            .bundle
            .with_untracked(|b| b.as_ref().map(|b| b.analysis_layer));
        self.map_layer.set(layer.filter(|&l| Some(l) != chosen));
    }

    /// The conversation no longer fits the model's context.
    pub fn context_full(&self) -> bool {
        self.chat_error
            .with(|e| e.as_ref().is_some_and(|e| e.context_full))
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

    /// Applies one worker event.
    pub fn apply(&self, event: Event) {
        if let Event::BundleLoaded { bundle, .. } = &event {
            let k = bundle.explained_variance_ratio.len();
            self.map_pcs.update(|pcs| *pcs = fit_pcs(*pcs, k));
            self.cap_band
                .update(|band| *band = fit_band(*band, bundle.n_layers));
            self.map_layer.set(None);
        }
        let now = dom::now_ms();
        self.update(|p| p.apply(event, now, || self.settings()));
    }

    pub fn load_model(&self, source: ModelSource, file: Option<web_sys::File>) {
        self.update_with_file(file, |p| p.load_model(source));
    }

    pub fn retry_model(&self) {
        self.update(Page::retry_model);
    }

    pub fn load_default_model(&self) {
        self.update(Page::load_default_model);
    }

    pub fn load_catalog_model(&self, id: &str) {
        let device = dom::device_memory_gib();
        self.update(|p| p.load_catalog_model(id, device));
    }

    pub fn load_bundle(&self) {
        self.update(Page::load_bundle);
    }

    pub fn send_chat(&self, user: String) {
        let settings = self.settings();
        self.update(|p| p.send_chat(&user, settings));
    }

    pub fn run_preset(&self, preset: &Preset) {
        let settings = self.settings();
        self.update(|p| p.run_preset(preset, settings));
    }

    pub fn place_role(&self, name: String, system: String, questions: usize) {
        self.update(|p| p.place_role(name, system, questions));
    }

    pub fn run_bench(&self, tokens: usize, overheads: bool, map: Option<BuildSize>) {
        self.update(|p| p.run_bench(tokens, overheads, map));
    }

    pub fn build_map(&self, size: BuildSize) {
        let now = dom::now_ms();
        self.update(|p| p.build_map(size, now));
    }

    pub fn export_axis(&self, format: AxisFormat) {
        self.update(|p| p.export_axis(format));
    }

    pub fn stop(&self) {
        self.update(Page::stop);
    }

    pub fn undo(&self) {
        self.update(Page::undo);
    }

    pub fn reset(&self) {
        self.update(Page::reset);
    }

    /// Turns the model still sees (not trimmed).
    pub fn turns_in_context(&self) -> usize {
        self.turns_in_context.get()
    }

    pub fn trim_oldest(&self) {
        let settings = self.settings();
        self.update(|p| p.trim_oldest(settings));
    }

    /// Shows `turns` (from a share link) and has the worker measure them once a model is in.
    pub fn restore(&self, turns: Vec<SharedTurn>) {
        let settings = self.settings();
        self.update(|p| p.restore(turns, settings));
    }

    pub fn notify(&self, message: String) {
        self.update(|p| p.notice = Some(message));
    }

    /// The settings and the conversation, for a share link or an embed.
    pub fn share_state(&self) -> ShareState {
        let settings = self.settings();
        self.page.with_value(|p| p.share_state(settings))
    }

    pub fn export_turns(&self) -> Vec<ExportTurn> {
        self.page.with_value(Page::export_turns)
    }

    /// The worker died (out of memory, a bug): start a new one and pick up where it was.
    pub fn recover(&self, why: String) {
        client::stop();
        let state = *self;
        let started = client::start(move |e| state.apply(e), move |why| state.recover(why));
        self.update(|p| p.recover(why, started));
    }
}
