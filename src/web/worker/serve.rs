//! The model worker (wasm32, a dedicated Web Worker): receives [`Request`]s from the page,
//! fetches models and bundles (with progress, through Cache Storage), and drives the
//! [`Host`]. Requests run one at a time in arrival order; a request can be cancelled through a
//! shared flag the page writes while the worker is busy (a worker running a synchronous
//! generation loop cannot receive messages).
//! Downloads live in `download.rs`, the backend choice in `backend_choice.rs`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use gloo_timers::future::TimeoutFuture;
use js_sys::{Atomics, Int32Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, File, MessageEvent};

use crate::engine::Model;
use crate::engine::gpu::GpuContext;
use crate::science::Bundle;

use super::backend_choice::{choose_backend, cpu_factory};
use super::download::{Downloads, Fetched, Requester, sha256_hex};
use super::host::{Host, HostError, short_model_name};
use crate::web::protocol::{
    AxisFormat, BackendPref, BuildSize, Event, Fault, ModelSource, ModelView, Request, decode,
    encode,
};

struct Worker {
    scope: DedicatedWorkerGlobalScope,
    host: RefCell<Host>,
    queue: RefCell<VecDeque<(Request, Option<File>)>>,
    running: Cell<bool>,
    /// `[0]` holds the highest request id the page cancelled (shared with the page).
    cancel: RefCell<Option<Int32Array>>,
    /// The WebGPU device the model runs on, if it does: watched for loss.
    gpu: RefCell<Option<Arc<GpuContext>>>,
    /// What the page was last told about the model (the backend line changes on a fallback).
    view: RefCell<Option<ModelView>>,
    /// [`Host::traces`] as JSON, refreshed after every request, for the debug hook (the host
    /// itself is borrowed while a request runs).
    traces: RefCell<String>,
}

/// Entry point of the `axiscope-worker` binary.
pub fn start() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let worker = Rc::new(Worker {
        scope: scope.clone(),
        host: RefCell::new(Host::new()),
        queue: RefCell::new(VecDeque::new()),
        running: Cell::new(false),
        cancel: RefCell::new(None),
        gpu: RefCell::new(None),
        view: RefCell::new(None),
        traces: RefCell::new("[]".into()),
    });
    install_debug_hooks(&worker);
    let w = worker.clone();
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| w.receive(ev));
    scope.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    onmessage.forget();
    let cache = scope.caches().is_ok();
    worker.emit(Event::Ready { cache });
}

impl Worker {
    fn emit(&self, event: Event) {
        let message = Object::new();
        let _ = Reflect::set(&message, &"json".into(), &encode(&event).into());
        // A file's bytes go beside the JSON, their buffer moved to the page rather than copied.
        // A page that went away cannot be told anything: ignore the failure.
        let _ = match &event {
            Event::File { bytes, .. } => {
                let buffer = Uint8Array::from(bytes.as_slice()).buffer();
                let _ = Reflect::set(&message, &"bytes".into(), &buffer);
                self.scope
                    .post_message_with_transfer(&message, &js_sys::Array::of1(&buffer))
            }
            _ => self.scope.post_message(&message),
        };
    }

    fn receive(self: &Rc<Self>, ev: MessageEvent) {
        let data = ev.data();
        // A model worker made this one its row helper: it serves matmul rows from now on.
        if let Ok(sab) = Reflect::get(&data, &"rowHelper".into())
            && let Ok(sab) = sab.dyn_into::<js_sys::SharedArrayBuffer>()
        {
            let file = Reflect::get(&data, &"file".into()).unwrap_or_default();
            super::row_helper::serve(&sab, Uint8Array::new(&file).to_vec());
        }
        if let Ok(flag) = Reflect::get(&data, &"cancel".into())
            && flag.is_object()
        {
            *self.cancel.borrow_mut() = Some(Int32Array::new(&flag));
        }
        let json = Reflect::get(&data, &"json".into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        let request = match decode::<Request>(&json) {
            Ok(r) => r,
            Err(message) => {
                self.emit(Event::Failed {
                    id: 0,
                    what: "message".into(),
                    message,
                    fault: Fault::Other,
                });
                return;
            }
        };
        let file = Reflect::get(&data, &"file".into())
            .ok()
            .and_then(|f| f.dyn_into::<File>().ok());
        self.queue.borrow_mut().push_back((request, file));
        if !self.running.replace(true) {
            let w = self.clone();
            spawn_local(async move {
                loop {
                    let next = w.queue.borrow_mut().pop_front();
                    let Some((request, file)) = next else { break };
                    w.handle(request, file).await;
                }
                w.running.set(false);
            });
        }
    }

    fn cancelled(&self, id: u32) -> bool {
        self.cancel
            .borrow()
            .as_ref()
            .and_then(|flag| Atomics::load(flag, 0).ok())
            .is_some_and(|c| c > 0 && c as u32 >= id)
    }

    /// Downloads for request `id`, with its progress events and its cancel.
    fn downloads(&self, id: u32) -> Downloads<'_> {
        Downloads { worker: self, id }
    }

    async fn handle(self: &Rc<Self>, request: Request, file: Option<File>) {
        let id = request.id();
        // A device lost while idle: move to the CPU before running anything on it.
        if let Some(why) = self.gpu.borrow().as_ref().and_then(|g| g.lost()) {
            self.fall_back(id, &format!("the WebGPU device was {why}"));
        }
        let (what, mut result) = self.run(request.clone(), file.clone()).await;
        if result.as_ref().is_err_and(HostError::is_gpu) {
            // A lost device fails the readback first and resolves its `lost` promise after a
            // round trip to the browser's GPU process: wait for it (up to a second), so that
            // the reason shown is the loss, not the failed readback.
            for _ in 0..20 {
                if self
                    .gpu
                    .borrow()
                    .as_ref()
                    .is_none_or(|g| g.lost().is_some())
                {
                    break;
                }
                TimeoutFuture::new(50).await;
            }
        }
        // A GPU failure part-way: the host took the turn back, so run the request again on
        // the CPU; the conversation so far is replayed from its text.
        if let Err(e) = &result
            && let Some(why) = self.gpu_fault(e)
            && self.fall_back(id, &why)
        {
            result = self.run(request, file).await.1;
        }
        if let Err(e) = result {
            self.emit(Event::Failed {
                id,
                what: what.into(),
                message: e.to_string(),
                fault: e.fault(),
            });
        }
        if let Ok(host) = self.host.try_borrow() {
            *self.traces.borrow_mut() =
                serde_json::to_string(host.traces()).unwrap_or_else(|_| "[]".into());
        }
        self.emit(Event::Memory {
            bytes: memory_bytes(),
        });
        self.emit(Event::Done { id });
    }

    /// Why a failed request is the GPU's fault (device lost, or an error the device raised),
    /// if the model runs on one.
    fn gpu_fault(&self, e: &HostError) -> Option<String> {
        let gpu = self.gpu.borrow();
        let ctx = gpu.as_ref()?;
        match ctx.lost() {
            Some(why) => Some(format!("the WebGPU device was {why}")),
            None => e.is_gpu().then(|| e.to_string()),
        }
    }

    /// Moves the model to the CPU engine after a GPU failure and tells the page (the backend
    /// line). Returns whether it did: false without a GPU or a model.
    fn fall_back(&self, id: u32, why: &str) -> bool {
        let Some(ctx) = self.gpu.borrow_mut().take() else {
            return false;
        };
        web_sys::console::warn_1(&format!("axiscope: {why}; moving to the CPU").into());
        // One thread: starting a helper needs this worker's event loop, and the page is
        // waiting for the conversation to come back.
        let switched = self.host.borrow_mut().switch_backend(cpu_factory(None));
        // The device is useless now; destroying it frees its memory at once.
        ctx.destroy();
        let backend = match switched {
            Ok(b) => b,
            Err(_) => return false,
        };
        let view = self.view.borrow_mut().as_mut().map(|v| {
            v.backend = backend;
            v.backend_reason = format!("{why}; moved to the CPU engine, the conversation was kept");
            v.clone()
        });
        if let Some(model) = view {
            self.emit(Event::ModelLoaded { id, model });
        }
        true
    }

    /// Runs one request; returns what it was (for the error line) and how it went.
    // The host stays borrowed while a request awaits the GPU: requests run one at a time and
    // nothing else borrows it meanwhile (the debug hook reads `traces`, not the host).
    #[allow(clippy::await_holding_refcell_ref)]
    async fn run(
        self: &Rc<Self>,
        request: Request,
        file: Option<File>,
    ) -> (&'static str, Result<(), HostError>) {
        let id = request.id();
        match request {
            Request::LoadModel {
                source,
                sha256,
                backend,
                ..
            } => (
                "model",
                self.load_model(id, source, file, sha256, backend).await,
            ),
            Request::LoadBundle { url, .. } => ("bundle", self.load_bundle(id, &url).await),
            Request::Chat { user, settings, .. } => {
                let mut emit = |e| self.emit(e);
                (
                    "chat",
                    self.host
                        .borrow_mut()
                        .chat(id, &user, &settings, &|| self.cancelled(id), &mut emit)
                        .await,
                )
            }
            Request::Undo { .. } => {
                self.host.borrow_mut().undo();
                ("undo", Ok(()))
            }
            Request::Reset { .. } => {
                self.host.borrow_mut().reset();
                ("reset", Ok(()))
            }
            Request::Restore {
                turns, settings, ..
            } => {
                let mut emit = |e| self.emit(e);
                (
                    "restore",
                    self.host
                        .borrow_mut()
                        .restore(id, &turns, &settings, &mut emit)
                        .await,
                )
            }
            Request::PlaceRole {
                name,
                system,
                questions,
                ..
            } => {
                let mut emit = |e| self.emit(e);
                let cancelled = || self.cancelled(id);
                let n = questions.clamp(1, 16);
                (
                    "role",
                    self.host
                        .borrow_mut()
                        .place_role(id, &name, &system, n, &cancelled, &mut emit)
                        .await,
                )
            }
            Request::BuildBundle { size, .. } => ("build", self.build_bundle(id, size).await),
            Request::Bench {
                tokens,
                overheads,
                map,
                ..
            } => ("bench", self.bench(id, tokens, overheads, map).await),
            Request::ExportAxis { format, .. } => {
                let host = self.host.borrow();
                let file = match format {
                    AxisFormat::Json => host
                        .axis_json()
                        .map(|j| ("axiscope-axis.json", "application/json", j.into_bytes())),
                    AxisFormat::Bundle => host
                        .bundle_blob()
                        .map(|b| ("axiscope-persona.axb", "application/octet-stream", b)),
                    AxisFormat::ControlVector => host.control_vector().map(|b| {
                        (
                            "axiscope-axis.control-vector.gguf",
                            "application/octet-stream",
                            b,
                        )
                    }),
                };
                let sent = file.map(|(name, mime, bytes)| {
                    self.emit(Event::File {
                        id,
                        name: name.into(),
                        mime: mime.into(),
                        bytes,
                    })
                });
                ("axis", sent)
            }
        }
    }

    async fn load_model(
        &self,
        id: u32,
        source: ModelSource,
        file: Option<File>,
        sha256: Option<String>,
        pref: BackendPref,
    ) -> Result<(), HostError> {
        let t0 = js_sys::Date::now();
        let (fetched, url) = match &source {
            ModelSource::Url { url } => (
                self.downloads(id)
                    .fetch_cached(url, sha256.as_deref())
                    .await?,
                Some(url.clone()),
            ),
            ModelSource::File { name, .. } => {
                let file =
                    file.ok_or_else(|| format!("the file {name} did not reach the worker"))?;
                let bytes = self
                    .downloads(id)
                    .read_stream(&file.stream(), Some(file.size() as u64), false)
                    .await?;
                let sha = sha256_hex(&self.scope, &bytes).await?;
                (
                    Fetched {
                        bytes,
                        sha256: sha,
                        from_cache: false,
                    },
                    None,
                )
            }
        };
        let from_cache = fetched.from_cache;
        let size = fetched.bytes.len() as u64;
        // The engine's own one-line reasons: not GGUF, damaged, unsupported architecture...
        let model = Model::from_bytes(fetched.bytes).map_err(|e| e.to_string())?;
        let choice = choose_backend(pref, &model, &fetched.sha256, &self.downloads(id)).await;
        let sha = Some(fetched.sha256.clone());
        let backend = self
            .host
            .borrow_mut()
            .set_model(model, choice.factory, sha)?;
        *self.gpu.borrow_mut() = choice.gpu;
        let reason = choice.reason;
        // `{model_name}` in the roles' prompts, named from the file as the CLI does.
        let file_name = match &source {
            ModelSource::Url { url } => url.rsplit('/').next().unwrap_or_default().to_string(),
            ModelSource::File { name, .. } => name.clone(),
        };
        if let Some(name) = short_model_name(&file_name) {
            self.host.borrow_mut().set_model_name(&name);
        }
        if let (Some(url), false) = (url, from_cache) {
            // Only a file that parsed is cached, so the cache never holds a broken model.
            let bytes = self.host.borrow().model_bytes();
            if let Some(bytes) = bytes {
                self.downloads(id)
                    .store(&url, &bytes, &fetched.sha256)
                    .await;
            }
        }
        let view = self.host.borrow().model_view(
            size,
            backend,
            reason,
            from_cache,
            js_sys::Date::now() - t0,
        );
        self.view.borrow_mut().clone_from(&view);
        if let Some(model) = view {
            self.emit(Event::ModelLoaded { id, model });
        }
        // A map built in this browser for this very model, if the served bundle does not fit.
        if !self.host.borrow().bundle_fits_model()
            && let Ok(key) = built_bundle_key(&self.downloads(id), &fetched.sha256)
            && let Some(bytes) = self.downloads(id).cached(&key).await
            && let Ok(bundle) = Bundle::from_blob(&bytes)
        {
            self.host.borrow_mut().set_bundle(bundle);
        }
        self.after_change(id).await
    }

    /// Builds the map for the loaded model here, keeps it in Cache Storage under the model's
    /// hash (the next visit with this model finds it), and shows it.
    // The host stays borrowed while a request awaits the GPU: requests run one at a time and
    // nothing else borrows it meanwhile (the debug hook reads `traces`, not the host).
    #[allow(clippy::await_holding_refcell_ref)]
    async fn build_bundle(&self, id: u32, size: BuildSize) -> Result<(), HostError> {
        let mut emit = |e| self.emit(e);
        let bundle = self
            .host
            .borrow_mut()
            .build_bundle(id, size, &|| self.cancelled(id), &mut emit)
            .await?;
        if !bundle.model.sha256.is_empty()
            && let Ok(key) = built_bundle_key(&self.downloads(id), &bundle.model.sha256)
        {
            let blob = bundle.to_blob();
            self.downloads(id).store(&key, &blob, "").await;
        }
        self.after_change(id).await
    }

    /// The benchmark (`web::bench`), then with `map` the map build timed, kept out of Cache
    /// Storage (unlike [`Self::build_bundle`]'s) so the next run builds it again.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn bench(
        &self,
        id: u32,
        tokens: usize,
        overheads: bool,
        map: Option<BuildSize>,
    ) -> Result<(), HostError> {
        let mut report = self.host.borrow().bench(tokens, overheads).await?;
        if let Some(size) = map {
            let mut emit = |e| self.emit(e);
            let build = self
                .host
                .borrow_mut()
                .bench_map(id, size, &|| self.cancelled(id), &mut emit)
                .await?;
            report.map_build = Some(build);
        }
        report.wasm_memory_bytes = memory_bytes();
        report.wasm_files = crate::web::dom::wasm_resources();
        self.emit(Event::BenchDone {
            id,
            report: Box::new(report),
        });
        Ok(())
    }

    async fn load_bundle(&self, id: u32, url: &str) -> Result<(), HostError> {
        // Network first, so a rebuilt bundle on the server is seen; the cache when offline.
        let fetched = match self.downloads(id).fetch_network(url, None).await {
            Ok(f) => f,
            Err(network) => match self.downloads(id).cached(url).await {
                Some(bytes) => Fetched {
                    bytes,
                    sha256: String::new(),
                    from_cache: true,
                },
                None => return Err(network.into()),
            },
        };
        let bundle = Bundle::from_blob(&fetched.bytes)?;
        if !fetched.from_cache {
            self.downloads(id)
                .store(url, &fetched.bytes, &fetched.sha256)
                .await;
        }
        self.host.borrow_mut().set_bundle(bundle);
        self.after_change(id).await
    }

    /// After a new model or bundle: the map's view (does the bundle fit the model?) and the
    /// conversation's points, measured again.
    // The host stays borrowed while a request awaits the GPU: requests run one at a time and
    // nothing else borrows it meanwhile (the debug hook reads `traces`, not the host).
    #[allow(clippy::await_holding_refcell_ref)]
    async fn after_change(&self, id: u32) -> Result<(), HostError> {
        if let Some(bundle) = self.host.borrow().bundle_view() {
            self.emit(Event::BundleLoaded { id, bundle });
        }
        let mut emit = |e| self.emit(e);
        self.host.borrow_mut().remeasure(id, &mut emit).await
    }
}

impl Requester for Worker {
    fn scope(&self) -> &DedicatedWorkerGlobalScope {
        &self.scope
    }

    fn emit(&self, event: Event) {
        Worker::emit(self, event)
    }

    fn cancelled(&self, id: u32) -> bool {
        Worker::cancelled(self, id)
    }
}

/// `self.__axiscope_debug` in the worker, for browser tests and bug reports (documented in
/// docs/ARCHITECTURE.md): `loseGpu()` destroys the WebGPU device as a driver reset would
/// (true if there was one), `traces()` gives the latest replies' tokens and top-2 logits as
/// JSON. Neither changes anything else.
fn install_debug_hooks(worker: &Rc<Worker>) {
    let hooks = Object::new();
    let w = Rc::downgrade(worker);
    let lose = Closure::<dyn Fn() -> bool>::new(move || {
        let ctx = w.upgrade().and_then(|w| w.gpu.borrow().clone());
        ctx.map(|g| g.destroy()).is_some()
    });
    let w = Rc::downgrade(worker);
    let traces = Closure::<dyn Fn() -> String>::new(move || {
        w.upgrade()
            .map(|w| w.traces.borrow().clone())
            .unwrap_or_default()
    });
    let _ = Reflect::set(&hooks, &"loseGpu".into(), lose.as_ref());
    let _ = Reflect::set(&hooks, &"traces".into(), traces.as_ref());
    // They live as long as the worker.
    lose.forget();
    traces.forget();
    let _ = Reflect::set(&js_sys::global(), &"__axiscope_debug".into(), &hooks);
}

fn memory_bytes() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as u64
}

/// Where a map built in this browser is cached: beside the app, named by the model's hash.
fn built_bundle_key(downloads: &Downloads<'_>, sha256: &str) -> Result<String, String> {
    downloads.local_key(&format!("axiscope-built/{sha256}.axb"))
}
