//! The web app (wasm32 only): a leptos client-side app.
//!
//! For now this is the shell: a header, the model status (is the default model file
//! reachable, and how big is it) and WebGPU detection. The engine is wired in later.
//! Everything the page shows is rendered as text nodes, never as HTML.

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Where the default model is served, relative to the page (the build links it into `dist/`).
pub const DEFAULT_MODEL_URL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Mounts the app on `<body>`. Called once from the `axiscope-web` binary.
pub fn start() {
    // Panics become readable console messages instead of "unreachable executed".
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// What we know about the default model file on the server.
#[derive(Clone, Debug, PartialEq)]
enum ModelStatus {
    Checking,
    /// The server answered the HEAD request; `bytes` is its Content-Length, if it sent one.
    Reachable {
        bytes: Option<u64>,
    },
    Unreachable(String),
}

impl ModelStatus {
    /// A stable, machine-readable state for tests and styling.
    fn state(&self) -> &'static str {
        match self {
            ModelStatus::Checking => "checking",
            ModelStatus::Reachable { .. } => "reachable",
            ModelStatus::Unreachable(_) => "error",
        }
    }

    fn text(&self) -> String {
        match self {
            ModelStatus::Checking => format!("Model: checking {DEFAULT_MODEL_URL} …"),
            ModelStatus::Reachable { bytes: Some(n) } => format!(
                "Model: {DEFAULT_MODEL_URL} is reachable ({} bytes, {:.1} MiB); not loaded yet",
                group_thousands(*n),
                *n as f64 / (1024.0 * 1024.0)
            ),
            ModelStatus::Reachable { bytes: None } => {
                format!("Model: {DEFAULT_MODEL_URL} is reachable (size unknown); not loaded yet")
            }
            ModelStatus::Unreachable(why) => format!("Model: {DEFAULT_MODEL_URL} {why}"),
        }
    }
}

/// What `navigator.gpu.requestAdapter()` gave us.
#[derive(Clone, Debug, PartialEq)]
enum WebGpuStatus {
    Checking,
    Available(String),
    Unavailable(String),
}

impl WebGpuStatus {
    fn state(&self) -> &'static str {
        match self {
            WebGpuStatus::Checking => "checking",
            WebGpuStatus::Available(_) => "available",
            WebGpuStatus::Unavailable(_) => "unavailable",
        }
    }

    fn text(&self) -> String {
        match self {
            WebGpuStatus::Checking => "WebGPU: looking for an adapter …".to_owned(),
            WebGpuStatus::Available(info) => format!("WebGPU: adapter found: {info}"),
            WebGpuStatus::Unavailable(why) => {
                format!("WebGPU: not available ({why}); the model will run on the CPU")
            }
        }
    }
}

#[component]
fn App() -> impl IntoView {
    let (model, set_model) = signal(ModelStatus::Checking);
    let (gpu, set_gpu) = signal(WebGpuStatus::Checking);
    spawn_local(async move { set_model.set(check_model(DEFAULT_MODEL_URL).await) });
    spawn_local(async move { set_gpu.set(detect_webgpu().await) });

    view! {
        <header>
            <h1 data-testid="app-title">"axiscope"</h1>
            <p class="tagline">"See and steer a small chat model's persona: the Assistant Axis, live."</p>
        </header>
        <main>
            <section class="status" aria-label="status">
                <p data-testid="model-status" data-state=move || model.get().state()>
                    {move || model.get().text()}
                </p>
                <p data-testid="webgpu-status" data-state=move || gpu.get().state()>
                    {move || gpu.get().text()}
                </p>
            </section>
        </main>
    }
}

/// Sends a HEAD request for `url` and reports whether it is there and its size.
async fn check_model(url: &str) -> ModelStatus {
    match head_content_length(url).await {
        Ok(bytes) => ModelStatus::Reachable { bytes },
        Err(why) => ModelStatus::Unreachable(why),
    }
}

async fn head_content_length(url: &str) -> Result<Option<u64>, String> {
    let window = web_sys::window().ok_or("has no window to fetch from")?;
    let init = web_sys::RequestInit::new();
    init.set_method("HEAD");
    let response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| format!("could not be fetched: {}", js_error_text(&e)))?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| "fetch returned something that is not a Response".to_owned())?;
    if !response.ok() {
        return Err(format!(
            "is not reachable (HTTP {}); run scripts/fetch_model.sh and rebuild",
            response.status()
        ));
    }
    let length = response
        .headers()
        .get("content-length")
        .map_err(|e| format!("has unreadable headers: {}", js_error_text(&e)))?;
    // A missing or malformed Content-Length only means "size unknown", not an error.
    Ok(length.and_then(|s| s.trim().parse::<u64>().ok()))
}

/// Asks `navigator.gpu` for an adapter and describes it. Goes through `Reflect` because
/// web-sys' WebGPU bindings need the unstable-API cfg flag for the whole crate graph.
async fn detect_webgpu() -> WebGpuStatus {
    match request_adapter().await {
        Ok(info) => WebGpuStatus::Available(info),
        Err(why) => WebGpuStatus::Unavailable(why),
    }
}

async fn request_adapter() -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    let gpu = get(&window.navigator(), "gpu")?;
    if gpu.is_undefined() || gpu.is_null() {
        return Err(
            "this browser has no navigator.gpu; use Chrome or Edge 113+ over https or localhost"
                .to_owned(),
        );
    }
    let request: Function = get(&gpu, "requestAdapter")?
        .dyn_into()
        .map_err(|_| "navigator.gpu.requestAdapter is not a function".to_owned())?;
    let promise: Promise = request
        .call0(&gpu)
        .map_err(|e| format!("requestAdapter() threw: {}", js_error_text(&e)))?
        .dyn_into()
        .map_err(|_| "requestAdapter() did not return a promise".to_owned())?;
    let adapter = JsFuture::from(promise)
        .await
        .map_err(|e| format!("requestAdapter() failed: {}", js_error_text(&e)))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err(
            "requestAdapter() found no adapter: WebGPU is disabled or the GPU is blocklisted"
                .to_owned(),
        );
    }
    Ok(describe_adapter(&adapter))
}

/// "vendor / architecture (description), shader-f16: yes|no".
/// `GPUAdapter.info` exists since Chrome 127; older browsers just get "unnamed adapter".
fn describe_adapter(adapter: &JsValue) -> String {
    let info = get(adapter, "info").unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| {
        get(&info, name)
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    let mut name: Vec<String> = [field("vendor"), field("architecture")]
        .into_iter()
        .flatten()
        .collect();
    if name.is_empty() {
        name.push("unnamed adapter".to_owned());
    }
    let mut text = name.join(" / ");
    if let Some(description) = field("description") {
        text.push_str(&format!(" ({description})"));
    }
    let f16 = if has_feature(adapter, "shader-f16") {
        "yes"
    } else {
        "no"
    };
    text.push_str(&format!(", shader-f16: {f16}"));
    text
}

fn has_feature(adapter: &JsValue, feature: &str) -> bool {
    let features = get(adapter, "features").unwrap_or(JsValue::UNDEFINED);
    let has = get(&features, "has")
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok());
    has.and_then(|has| has.call1(&features, &JsValue::from_str(feature)).ok())
        .is_some_and(|v| v.is_truthy())
}

fn get(target: &JsValue, key: &str) -> Result<JsValue, String> {
    if target.is_undefined() || target.is_null() {
        return Ok(JsValue::UNDEFINED);
    }
    Reflect::get(target, &JsValue::from_str(key))
        .map_err(|e| format!("reading {key} threw: {}", js_error_text(&e)))
}

/// The message of a JS exception, or its debug form when it is not an Error.
fn js_error_text(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// 98362432 -> "98,362,432".
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
