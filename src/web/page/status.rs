//! The status line: which backend runs the model and why, WebGPU detection, the worker's
//! memory, and the page-wide notices.

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::chart::megabytes;
use super::state::use_app;
use crate::web::dom::js_error_text;

/// What `navigator.gpu.requestAdapter()` gave us.
#[derive(Clone, Debug, PartialEq)]
pub enum WebGpuStatus {
    Checking,
    Available(String),
    Unavailable(String),
}

impl WebGpuStatus {
    pub fn state(&self) -> &'static str {
        match self {
            WebGpuStatus::Checking => "checking",
            WebGpuStatus::Available(_) => "available",
            WebGpuStatus::Unavailable(_) => "unavailable",
        }
    }

    pub fn text(&self) -> String {
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
pub fn StatusBar() -> impl IntoView {
    let app = use_app();
    let (gpu, set_gpu) = signal(WebGpuStatus::Checking);
    spawn_local(async move { set_gpu.set(detect_webgpu().await) });
    let backend = move || match app.model.get() {
        Some(m) => format!(
            "Backend: {} ({}; asked: {})",
            m.backend,
            m.backend_reason,
            app.backend_pref.as_str()
        ),
        None => format!("Backend: none yet (asked: {})", app.backend_pref.as_str()),
    };
    // "webgpu" or "cpu" (the first word of the engine's description), for tests and styles.
    let backend_kind = move || {
        app.model.with(|m| {
            m.as_ref()
                .and_then(|m| m.backend.split_whitespace().next().map(str::to_string))
                .unwrap_or_default()
        })
    };
    let memory = move || match app.memory.get() {
        Some(b) => format!("Worker memory: {}", megabytes(b)),
        None => "Worker memory: –".to_string(),
    };
    view! {
        <section class="status" aria-label="status">
            <p data-testid="backend-status" data-backend=backend_kind>{backend}</p>
            <p data-testid="webgpu-status" data-state=move || gpu.get().state()>{move || gpu.get().text()}</p>
            <p data-testid="memory-status">{memory}</p>
            {move || app.worker_crashed.get().map(|why| view! {
                <p class="error" role="alert" data-testid="worker-crash">{format!("The model worker stopped ({why}); it was restarted and the conversation kept.")}</p>
            })}
            {move || app.notice.get().map(|n| view! { <p class="notice" role="status" data-testid="notice">{n}</p> })}
        </section>
    }
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
