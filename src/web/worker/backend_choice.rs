//! Which backend runs the model in the browser: WebGPU where the worker finds an adapter whose
//! device holds the model and runs a first token, else the CPU engine (with a row helper on a
//! second core where the page allows one), with the reason shown to the visitor.

use std::cell::RefCell;
use std::sync::Arc;

use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::engine::backend::BackendFactory;
use crate::engine::gpu::{GpuContext, GpuModel, GpuModelOptions};
use crate::engine::threads::Threads;
use crate::engine::{Backend, CpuModel, Hooks, Model};
use crate::web::protocol::BackendPref;

use super::row_helper::HelperWorker;

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
pub fn cpu_factory(helper: Option<Arc<HelperWorker>>) -> BackendFactory {
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
