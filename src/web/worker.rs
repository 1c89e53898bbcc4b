//! The model worker (wasm32, a dedicated Web Worker): receives [`Request`]s from the page,
//! fetches models and bundles (with progress, through Cache Storage), and drives the
//! [`Host`]. Requests run one at a time in arrival order; a request can be cancelled through a
//! shared flag the page writes while the worker is busy (a worker running a synchronous
//! generation loop cannot receive messages).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Atomics, Int32Array, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    Cache, DedicatedWorkerGlobalScope, File, MessageEvent, ReadableStream,
    ReadableStreamDefaultReader, Response, ResponseInit,
};

use crate::engine::{Backend, Model};
use crate::science::Bundle;

use super::dom::js_error_text;
use super::host::{BackendFactory, Host, short_model_name};
use super::protocol::{
    AxisFormat, BackendPref, BuildSize, Event, ModelSource, Request, decode, encode,
};
use super::share::base64url_encode;

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
    });
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
        // A page that went away cannot be told anything: ignore the failure.
        let _ = self.scope.post_message(&JsValue::from_str(&encode(&event)));
    }

    fn receive(self: &Rc<Self>, ev: MessageEvent) {
        let data = ev.data();
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
        let (what, result) = match request {
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
                    self.host.borrow_mut().chat(
                        id,
                        &user,
                        &settings,
                        &|| self.cancelled(id),
                        &mut emit,
                    ),
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
                        .restore(id, &turns, &settings, &mut emit),
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
                        .place_role(id, &name, &system, n, &cancelled, &mut emit),
                )
            }
            Request::BuildBundle { size, .. } => ("build", self.build_bundle(id, size).await),
            Request::Bench {
                tokens, overheads, ..
            } => {
                let report = self.host.borrow().bench(tokens, overheads);
                let sent = report.map(|mut report| {
                    report.wasm_memory_bytes = memory_bytes();
                    report.wasm_files = super::bench::wasm_resources();
                    self.emit(Event::BenchDone {
                        id,
                        report: Box::new(report),
                    })
                });
                ("bench", sent)
            }
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
                        base64: base64url_encode(&bytes),
                    })
                });
                ("axis", sent)
            }
        };
        if let Err(message) = result {
            self.emit(Event::Failed {
                id,
                what: what.into(),
                message,
            });
        }
        self.emit(Event::Memory {
            bytes: memory_bytes(),
        });
        self.emit(Event::Done { id });
    }

    async fn load_model(
        &self,
        id: u32,
        source: ModelSource,
        file: Option<File>,
        sha256: Option<String>,
        pref: BackendPref,
    ) -> Result<(), String> {
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
        let (factory, reason) = choose_backend(pref);
        let sha = Some(fetched.sha256.clone());
        let backend = self.host.borrow_mut().set_model(model, factory, sha)?;
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
        self.after_change(id)
    }

    /// Builds the map for the loaded model here, keeps it in Cache Storage under the model's
    /// hash (the next visit with this model finds it), and shows it.
    async fn build_bundle(&self, id: u32, size: BuildSize) -> Result<(), String> {
        let mut emit = |e| self.emit(e);
        let bundle =
            self.host
                .borrow_mut()
                .build_bundle(id, size, &|| self.cancelled(id), &mut emit)?;
        if !bundle.model.sha256.is_empty()
            && let Ok(key) = built_bundle_key(&self.scope, &bundle.model.sha256)
        {
            let blob = bundle.to_blob();
            self.store(&key, &blob, "").await;
        }
        self.after_change(id)
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

    async fn load_bundle(&self, id: u32, url: &str) -> Result<(), String> {
        // Network first, so a rebuilt bundle on the server is seen; the cache when offline.
        let fetched = match self.fetch_network(id, url, None).await {
            Ok(f) => f,
            Err(network) => match self.cached(id, url).await {
                Some(bytes) => Fetched {
                    bytes,
                    sha256: String::new(),
                    from_cache: true,
                },
                None => return Err(network),
            },
        };
        let bundle = Bundle::from_blob(&fetched.bytes).map_err(|e| e.to_string())?;
        if !fetched.from_cache {
            self.store(url, &fetched.bytes, &fetched.sha256).await;
        }
        self.host.borrow_mut().set_bundle(bundle);
        self.after_change(id)
    }

    /// After a new model or bundle: the map's view (does the bundle fit the model?) and the
    /// conversation's points, measured again.
    fn after_change(&self, id: u32) -> Result<(), String> {
        if let Some(bundle) = self.host.borrow().bundle_view() {
            self.emit(Event::BundleLoaded { id, bundle });
        }
        let mut emit = |e| self.emit(e);
        self.host.borrow_mut().remeasure(id, &mut emit)
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

/// The one place the backend is chosen. Only the CPU engine exists in this build; the WebGPU
/// backend slots in here (adapter found -> GPU factory, otherwise the CPU with the reason).
fn choose_backend(pref: BackendPref) -> (BackendFactory, String) {
    let cpu: BackendFactory =
        Box::new(|m: &Model| Ok(Box::new(m.cpu_backend(1)?) as Box<dyn Backend>));
    let reason = match pref {
        BackendPref::Cpu => "asked for the CPU (?backend=cpu)",
        BackendPref::Gpu => {
            "asked for WebGPU (?backend=gpu), but this build has no WebGPU backend yet"
        }
        BackendPref::Auto => "the WebGPU backend is not in this build yet",
    };
    (cpu, reason.to_string())
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
