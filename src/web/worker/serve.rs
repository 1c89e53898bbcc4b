//! The model worker (wasm32, a dedicated Web Worker): receives [`Request`]s from the page,
//! fetches models and bundles (with progress, through Cache Storage), and drives the
//! [`Host`]. Requests run one at a time in arrival order; a request can be cancelled through a
//! shared flag the page writes while the worker is busy (a worker running a synchronous
//! generation loop cannot receive messages).
//!
//! Over 600 lines: the request loop, downloads with Cache Storage and the backend choice
//! share the worker's state; its split is open in issue 15.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Atomics, Int32Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    Cache, DedicatedWorkerGlobalScope, File, MessageEvent, ReadableStream,
    ReadableStreamDefaultReader, Response, ResponseInit,
};

use crate::engine::gpu::{GpuContext, GpuModel, GpuModelOptions};
use crate::engine::threads::Threads;
use crate::engine::{Backend, CpuModel, Hooks, Model};
use crate::science::Bundle;

use super::host::{Host, HostError, short_model_name};
use super::row_helper::HelperWorker;
use crate::engine::backend::BackendFactory;
use crate::web::dom::js_error_text;
use crate::web::protocol::{
    AxisFormat, BackendPref, BuildSize, Event, Fault, ModelSource, ModelView, Request, decode,
    encode,
};

/// Cache Storage bucket for models and bundles; bump the suffix when the entry format changes.
const CACHE_NAME: &str = "axiscope-v1";
const HEADER_BYTES: &str = "x-axiscope-bytes";
const HEADER_SHA: &str = "x-axiscope-sha256";

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

/// What came over the wire or from the cache.
struct Fetched {
    bytes: Vec<u8>,
    sha256: String,
    from_cache: bool,
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
                self.sleep_ms(50).await;
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

    /// Resolves after `ms` milliseconds (the worker's event loop runs meanwhile).
    async fn sleep_ms(&self, ms: i32) {
        let scope = self.scope.clone();
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ = scope.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        });
        let _ = JsFuture::from(promise).await;
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
                self.fetch_cached(id, url, sha256.as_deref()).await?,
                Some(url.clone()),
            ),
            ModelSource::File { name, .. } => {
                let file =
                    file.ok_or_else(|| format!("the file {name} did not reach the worker"))?;
                let bytes = self
                    .read_stream(id, &file.stream(), Some(file.size() as u64), false)
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
        let choice = choose_backend(pref, &model).await;
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
                self.store(&url, &bytes, &fetched.sha256).await;
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
            && let Ok(key) = built_bundle_key(&self.scope, &fetched.sha256)
            && let Some(bytes) = self.cached(id, &key).await
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
            && let Ok(key) = built_bundle_key(&self.scope, &bundle.model.sha256)
        {
            let blob = bundle.to_blob();
            self.store(&key, &blob, "").await;
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

    /// The bytes of a complete Cache Storage entry, if there is one.
    async fn cached(&self, id: u32, key: &str) -> Option<Vec<u8>> {
        let cache = self.open_cache().await?;
        let response: Response = JsFuture::from(cache.match_with_str(key))
            .await
            .ok()?
            .dyn_into()
            .ok()?;
        let want: u64 = response.headers().get(HEADER_BYTES).ok()??.parse().ok()?;
        let bytes = self
            .read_stream(id, &response.body()?, Some(want), true)
            .await
            .ok()?;
        (bytes.len() as u64 == want).then_some(bytes)
    }

    async fn load_bundle(&self, id: u32, url: &str) -> Result<(), HostError> {
        // Network first, so a rebuilt bundle on the server is seen; the cache when offline.
        let fetched = match self.fetch_network(id, url, None).await {
            Ok(f) => f,
            Err(network) => match self.cached(id, url).await {
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
            self.store(url, &fetched.bytes, &fetched.sha256).await;
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

    async fn open_cache(&self) -> Option<Cache> {
        let storage = self.scope.caches().ok()?;
        JsFuture::from(storage.open(CACHE_NAME))
            .await
            .ok()?
            .dyn_into()
            .ok()
    }

    /// The bytes at `url`: from Cache Storage when a complete entry is there, else from the
    /// network (checked against Content-Length and `expected_sha256`).
    async fn fetch_cached(
        &self,
        id: u32,
        url: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Fetched, String> {
        if let Some(cache) = self.open_cache().await
            && let Ok(hit) = JsFuture::from(cache.match_with_str(url)).await
            && let Ok(response) = hit.dyn_into::<Response>()
        {
            let header = |name| response.headers().get(name).ok().flatten();
            let want: Option<u64> = header(HEADER_BYTES).and_then(|s| s.parse().ok());
            let sha = header(HEADER_SHA).unwrap_or_default();
            let sha_ok = expected_sha256.is_none_or(|e| e.eq_ignore_ascii_case(&sha));
            if let (Some(want), true) = (want, sha_ok)
                && let Some(body) = response.body()
                && let Ok(bytes) = self.read_stream(id, &body, Some(want), true).await
                && bytes.len() as u64 == want
            {
                return Ok(Fetched {
                    bytes,
                    sha256: sha,
                    from_cache: true,
                });
            }
            // An entry that does not check out is dropped and fetched again.
            let _ = JsFuture::from(cache.delete_with_str(url)).await;
        }
        self.fetch_network(id, url, expected_sha256).await
    }

    /// The bytes at `url` from the network, checked against Content-Length and
    /// `expected_sha256`.
    async fn fetch_network(
        &self,
        id: u32,
        url: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Fetched, String> {
        let response = JsFuture::from(self.scope.fetch_with_str(url))
            .await
            .map_err(|e| format!("download of {url} failed: {} (offline, or the host refuses cross-origin requests)", js_error_text(&e)))?;
        let response: Response = response
            .dyn_into()
            .map_err(|_| "fetch gave something that is not a Response".to_string())?;
        if !response.ok() {
            return Err(format!(
                "download of {url} failed: HTTP {} {}",
                response.status(),
                response.status_text()
            ));
        }
        let total = response
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let body = response
            .body()
            .ok_or_else(|| format!("{url} has an empty body"))?;
        let bytes = self.read_stream(id, &body, total, false).await?;
        if let Some(t) = total
            && bytes.len() as u64 != t
        {
            return Err(format!(
                "download of {url} was cut off: {} of {t} bytes arrived; try again",
                bytes.len()
            ));
        }
        let sha = sha256_hex(&self.scope, &bytes).await?;
        if let Some(e) = expected_sha256
            && !e.eq_ignore_ascii_case(&sha)
        {
            return Err(format!(
                "the file at {url} is damaged: sha256 {sha}, expected {e}; try again"
            ));
        }
        Ok(Fetched {
            bytes,
            sha256: sha,
            from_cache: false,
        })
    }

    /// Reads a byte stream into memory, reporting progress about 10 times a second and
    /// checking for cancellation between chunks.
    async fn read_stream(
        &self,
        id: u32,
        stream: &ReadableStream,
        total: Option<u64>,
        from_cache: bool,
    ) -> Result<Vec<u8>, String> {
        let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let result = self.read_chunks(id, &reader, total, from_cache).await;
        if result.is_err() {
            // Stop the transfer too: an abandoned body would keep downloading into a buffer.
            // On a broken stream the promise rejects with the error already reported: await
            // it, so it is not an unhandled rejection on the console.
            let _ = JsFuture::from(reader.cancel()).await;
        }
        result
    }

    async fn read_chunks(
        &self,
        id: u32,
        reader: &ReadableStreamDefaultReader,
        total: Option<u64>,
        from_cache: bool,
    ) -> Result<Vec<u8>, String> {
        let mut out: Vec<u8> = Vec::new();
        if let Some(t) = total {
            // A length beyond the 32-bit address space cannot be held at all.
            let n = usize::try_from(t).map_err(|_| out_of_memory(t))?;
            out.try_reserve_exact(n).map_err(|_| out_of_memory(t))?;
        }
        let progress = |loaded: usize| Event::Progress {
            id,
            loaded: loaded as u64,
            total,
            from_cache,
        };
        let mut last = 0.0;
        self.emit(progress(0));
        loop {
            if self.cancelled(id) {
                return Err("loading was cancelled".into());
            }
            let chunk = JsFuture::from(reader.read())
                .await
                .map_err(|e| format!("the download broke off: {}", js_error_text(&e)))?;
            if Reflect::get(&chunk, &"done".into())
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true)
            {
                break;
            }
            let value: Uint8Array = Reflect::get(&chunk, &"value".into())
                .map_err(|e| js_error_text(&e))?
                .dyn_into()
                .map_err(|_| "the stream gave something that is not bytes".to_string())?;
            let (old, n) = (out.len(), value.length() as usize);
            out.try_reserve(n)
                .map_err(|_| out_of_memory((old + n) as u64))?;
            out.resize(old + n, 0);
            value.copy_to(&mut out[old..]);
            let now = js_sys::Date::now();
            if now - last > 100.0 {
                last = now;
                self.emit(progress(out.len()));
            }
        }
        self.emit(progress(out.len()));
        Ok(out)
    }

    /// Puts `bytes` into Cache Storage under `url`. Failing to cache (quota, private mode)
    /// costs only the next visit's download, so it is reported in the console, not as an error.
    async fn store(&self, url: &str, bytes: &[u8], sha256: &str) {
        let Some(cache) = self.open_cache().await else {
            return;
        };
        let init = ResponseInit::new();
        let headers = web_sys::Headers::new().expect("Headers::new");
        let _ = headers.set("content-type", "application/octet-stream");
        let _ = headers.set(HEADER_BYTES, &bytes.len().to_string());
        let _ = headers.set(HEADER_SHA, sha256);
        init.set_headers(&headers);
        // SAFETY: the view is used only by the Response constructor, which copies the bytes
        // before returning; nothing allocates in wasm memory while the view exists.
        let response = unsafe {
            let view = Uint8Array::view(bytes);
            Response::new_with_opt_js_u8_array_and_init(Some(&view), &init)
        };
        let Ok(response) = response else { return };
        if let Err(e) = JsFuture::from(cache.put_with_str(url, &response)).await {
            web_sys::console::warn_1(
                &format!("axiscope: could not cache {url}: {}", js_error_text(&e)).into(),
            );
        }
    }
}

/// What runs the model: the factory the host makes its sessions with, why it was chosen
/// (shown to the user), and the WebGPU device when it is the GPU (watched for loss).
pub struct BackendChoice {
    pub factory: BackendFactory,
    pub reason: String,
    pub gpu: Option<Arc<GpuContext>>,
}

/// KV-cache positions of a WebGPU session in the browser (f32, 46 KB a position for
/// SmolLM2-135M): 2048 keeps the up to four sessions of a chat (writer and unsteered reader,
/// default and capped branch) at 377 MB of cache together. Longer chats end a reply with
/// "context full", as on the CPU at the model's own context.
const WEB_GPU_CONTEXT: usize = 2048;

/// The one place the backend is chosen (the page's `?backend=` and the benchmark use it):
/// WebGPU when the worker finds an adapter, gets a device whose limits hold the model's
/// buffers, builds every pipeline and runs a first token; otherwise the CPU engine, with the
/// reason. `?backend=cpu` skips the GPU; `?backend=gpu` says the GPU was asked for.
pub async fn choose_backend(pref: BackendPref, model: &Model) -> BackendChoice {
    if pref == BackendPref::Cpu {
        return cpu_choice(model, "asked for the CPU (?backend=cpu)".into()).await;
    }
    // A software WebGPU (SwiftShader, llvmpipe) runs the model far slower than the wasm CPU
    // engine (seconds per token against tens of tokens per second): only when asked for.
    if pref == BackendPref::Auto
        && let Some(name) = software_adapter().await
    {
        let why = format!(
            "the WebGPU adapter ({name}) is a software renderer, slower than the CPU engine; ?backend=gpu uses it anyway"
        );
        return cpu_choice(model, why).await;
    }
    match open_gpu(model).await {
        Ok((ctx, first)) => BackendChoice {
            factory: gpu_factory(ctx.clone(), first),
            reason: match pref {
                BackendPref::Gpu => "asked for WebGPU (?backend=gpu)".into(),
                _ => "WebGPU adapter found".into(),
            },
            gpu: Some(ctx),
        },
        Err(why) => {
            let why = match pref {
                BackendPref::Gpu => format!("asked for WebGPU (?backend=gpu), but {why}"),
                _ => format!("no usable WebGPU: {why}"),
            };
            cpu_choice(model, why).await
        }
    }
}

/// The CPU engine, with a row helper on the second core where the page allows one.
async fn cpu_choice(model: &Model, reason: String) -> BackendChoice {
    let helper = HelperWorker::spawn(model.gguf.bytes()).await;
    BackendChoice {
        factory: cpu_factory(helper),
        reason,
        gpu: None,
    }
}

/// CPU sessions on this worker's thread, all sharing `helper` if there is one.
fn cpu_factory(helper: Option<Arc<HelperWorker>>) -> BackendFactory {
    Box::new(move |m: &Model| {
        let threads = match &helper {
            Some(h) => Threads::new(1).with_helper(h.clone()),
            None => Threads::new(1),
        };
        Ok(Box::new(CpuModel::load_with(&m.gguf, threads)?) as Box<dyn Backend>)
    })
}

fn gpu_options() -> GpuModelOptions {
    GpuModelOptions {
        max_context: WEB_GPU_CONTEXT,
        ..GpuModelOptions::default()
    }
}

/// Sessions on `ctx`; the first is `first`, already built and tried. Later ones share its
/// weights (uploaded once per device) and own only their caches.
fn gpu_factory(ctx: Arc<GpuContext>, first: GpuModel) -> BackendFactory {
    let first = RefCell::new(Some(first));
    Box::new(move |m: &Model| {
        if let Some(g) = first.borrow_mut().take() {
            return Ok(Box::new(g) as Box<dyn Backend>);
        }
        let g = GpuModel::load_with(&m.gguf, ctx.clone(), gpu_options())?;
        Ok(Box::new(g) as Box<dyn Backend>)
    })
}

/// The adapter's name when `navigator.gpu` offers only a software one (the browser's fallback
/// adapter, or a CPU rasteriser by name); `None` for a hardware adapter or none at all.
async fn software_adapter() -> Option<String> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    let info = Reflect::get(&adapter, &"info".into()).ok()?;
    let text = |key: &str| {
        Reflect::get(&info, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let name = [text("vendor"), text("architecture"), text("description")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    let fallback = Reflect::get(&info, &"isFallbackAdapter".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let lower = name.to_lowercase();
    let by_name = ["swiftshader", "llvmpipe", "lavapipe", "software"]
        .iter()
        .any(|s| lower.contains(s));
    (fallback || by_name).then(|| {
        if name.is_empty() {
            "fallback adapter".into()
        } else {
            name
        }
    })
}

/// A WebGPU device holding `model`, and a first session on it that ran one token.
// `GpuModel` takes an `Arc` (natively shared across threads); a worker has one thread.
#[allow(clippy::arc_with_non_send_sync)]
async fn open_gpu(model: &Model) -> Result<(Arc<GpuContext>, GpuModel), String> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or_default();
    let gpu = Reflect::get(&navigator, &"gpu".into()).unwrap_or_default();
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no navigator.gpu in workers".into());
    }
    let ctx = Arc::new(GpuContext::new().await.map_err(|e| e.0)?);
    check_limits(&ctx, model)?;
    let mut first =
        GpuModel::load_with(&model.gguf, ctx.clone(), gpu_options()).map_err(|e| e.to_string())?;
    // In a browser, shader and pipeline errors arrive after the calls that caused them: one
    // token through the whole model brings them out here, not in the first reply.
    let logits = first
        .forward_async(&[0], 0, &mut Hooks::none(), false)
        .await
        .map_err(|e| e.to_string())?;
    if logits.len() != model.config.vocab || logits.iter().any(|x| !x.is_finite()) {
        return Err("the GPU's first forward pass gave no usable logits".into());
    }
    first.truncate(0);
    Ok((ctx, first))
}

/// Refuses a device whose per-buffer limit cannot hold a tensor of the model or a layer's KV
/// cache, before anything is allocated (`GpuModel::load_with` checks every buffer exactly
/// too, but only once some are allocated).
fn check_limits(ctx: &GpuContext, model: &Model) -> Result<(), String> {
    let max = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    let c = &model.config;
    let kv_cache = (WEB_GPU_CONTEXT.min(c.context) * c.kv_dim() * 4) as u64;
    let biggest = model
        .gguf
        .tensors
        .iter()
        .map(|(name, t)| (name.as_str(), t.len as u64))
        .chain([("KV cache of a layer", kv_cache)])
        .max_by_key(|(_, bytes)| *bytes);
    match biggest {
        Some((name, bytes)) if bytes > max => Err(format!(
            "the device allows {:.0} MB per buffer, {name} needs {:.0} MB",
            max as f64 / 1e6,
            bytes as f64 / 1e6
        )),
        _ => Ok(()),
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

fn out_of_memory(bytes: u64) -> String {
    format!(
        "not enough memory: the browser would not give the model worker {:.0} MB (a page can use at most 4 GB); close other tabs or pick a smaller model",
        bytes as f64 / 1e6
    )
}

async fn sha256_hex(scope: &DedicatedWorkerGlobalScope, bytes: &[u8]) -> Result<String, String> {
    let subtle = scope.crypto().map_err(|e| js_error_text(&e))?.subtle();
    // digest() copies the bytes before it returns its promise.
    let promise = subtle
        .digest_with_str_and_u8_array("SHA-256", bytes)
        .map_err(|e| js_error_text(&e))?;
    let digest = JsFuture::from(promise)
        .await
        .map_err(|e| format!("sha256 failed: {}", js_error_text(&e)))?;
    Ok(Uint8Array::new(&digest)
        .to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn memory_bytes() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as u64
}

/// Where a map built in this browser is cached: beside the app, named by the model's hash.
fn built_bundle_key(scope: &DedicatedWorkerGlobalScope, sha256: &str) -> Result<String, String> {
    let base = scope.location().href();
    web_sys::Url::new_with_base(&format!("axiscope-built/{sha256}.axb"), &base)
        .map(|u| u.href())
        .map_err(|e| js_error_text(&e))
}
