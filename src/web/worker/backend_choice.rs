//! Which backend runs the model in the browser: where the worker finds a hardware WebGPU
//! adapter whose device holds the model and runs a first token, the faster of WebGPU and the
//! CPU engine, measured at load and remembered per adapter and model (docs/ARCHITECTURE.md);
//! else the CPU engine (with a row helper on a second core where the page allows one). The
//! reason, with the measured speeds, is shown to the visitor.

use std::cell::RefCell;
use std::sync::Arc;

use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use serde::{Deserialize, Serialize};

use crate::engine::backend::BackendFactory;
use crate::engine::gpu::{GpuContext, GpuModel, GpuModelOptions};
use crate::engine::sampler::fnv1a;
use crate::engine::speed::{SpeedPlan, first_is_faster, measure_decode};
use crate::engine::threads::Threads;
use crate::engine::{Backend, CpuModel, Hooks, Model};
use crate::web::protocol::BackendPref;

use super::download::Downloads;
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

/// The one place the backend is chosen (the page's `?backend=` and the benchmark use it).
/// WebGPU is a candidate when the worker finds an adapter, gets a device whose limits hold the
/// model's buffers, builds every pipeline and runs a first token. Then `Auto` takes the faster
/// of it and the CPU engine: as measured on an earlier visit with this adapter and model (kept
/// in Cache Storage through `downloads`, keyed by what `requestAdapter` says of the adapter,
/// so that a remembered CPU choice opens no device), else measured now. `?backend=cpu` skips
/// the GPU; `?backend=gpu` takes it unmeasured; `?backend=measure` measures again, even a
/// software adapter.
pub async fn choose_backend(
    pref: BackendPref,
    model: &Model,
    model_sha256: &str,
    downloads: &Downloads<'_>,
) -> BackendChoice {
    if pref == BackendPref::Cpu {
        return cpu_choice(model, "asked for the CPU (?backend=cpu)".into()).await;
    }
    let adapter = probe_adapter().await;
    let key = adapter.as_ref().and_then(|a| {
        downloads
            .local_key(&format!(
                "axiscope-backend/{model_sha256}-{:016x}.json",
                a.key
            ))
            .ok()
    });
    let remembered = match (&key, pref) {
        (Some(k), BackendPref::Auto) => downloads
            .cached(k)
            .await
            .and_then(|b| serde_json::from_slice::<Measured>(&b).ok()),
        _ => None,
    };
    if let Some(m) = &remembered
        && !m.gpu_is_faster
    {
        return cpu_choice(model, m.reason(true)).await;
    }
    // A software WebGPU (SwiftShader, llvmpipe) runs the model far slower than the wasm CPU
    // engine (seconds per token against tens of tokens per second): not worth measuring.
    if pref == BackendPref::Auto
        && remembered.is_none()
        && let Some(a) = adapter.as_ref().filter(|a| a.software)
    {
        let why = format!(
            "the WebGPU adapter ({}) is a software renderer, slower than the CPU engine; ?backend=gpu uses it anyway",
            a.name
        );
        return cpu_choice(model, why).await;
    }
    let (ctx, mut first) = match open_gpu(model).await {
        Ok(opened) => opened,
        Err(why) => {
            let why = match pref {
                BackendPref::Gpu => format!("asked for WebGPU (?backend=gpu), but {why}"),
                _ => format!("no usable WebGPU: {why}"),
            };
            return cpu_choice(model, why).await;
        }
    };
    if pref == BackendPref::Gpu {
        return gpu_choice(ctx, first, "asked for WebGPU (?backend=gpu)".into());
    }
    if let Some(m) = remembered {
        return gpu_choice(ctx, first, m.reason(true));
    }
    match measure_both(model, &mut first).await {
        Ok(m) => {
            if let (Some(k), Ok(json)) = (&key, serde_json::to_vec(&m)) {
                downloads.store(k, &json, "").await;
            }
            let reason = m.reason(false);
            if m.gpu_is_faster {
                gpu_choice(ctx, first, reason)
            } else {
                cpu_choice(model, reason).await
            }
        }
        Err(why) => {
            let why = format!("WebGPU failed while its speed was measured: {why}");
            cpu_choice(model, why).await
        }
    }
}

/// Decode speeds of both backends on this device and model, and which was faster.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Measured {
    gpu_tok_s: f64,
    cpu_tok_s: f64,
    gpu_is_faster: bool,
}

impl Measured {
    fn reason(&self, earlier: bool) -> String {
        let when = if earlier {
            "measured on an earlier visit"
        } else {
            "measured at load"
        };
        format!(
            "the faster here, {when}: WebGPU {} tok/s vs CPU {} tok/s (?backend=gpu or cpu forces one)",
            rate(self.gpu_tok_s),
            rate(self.cpu_tok_s)
        )
    }
}

/// A speed with two or three significant digits: "142", "31.5", "0.043".
fn rate(tok_s: f64) -> String {
    match tok_s {
        x if x >= 100.0 => format!("{x:.0}"),
        x if x >= 1.0 => format!("{x:.1}"),
        x => format!("{x:.3}"),
    }
}

/// Times decode steps of the GPU session `first` (warm: it ran a token at load) and of a CPU
/// session on one thread (a row helper, where the page would start one, is not counted: it
/// would only make the CPU faster than measured).
async fn measure_both(model: &Model, first: &mut GpuModel) -> Result<Measured, String> {
    let gpu = measure_decode(first, SpeedPlan::AT_LOAD)
        .await
        .map_err(|e| e.to_string())?;
    let mut cpu = CpuModel::load_with(&model.gguf, Threads::new(1)).map_err(|e| e.to_string())?;
    // One untimed step: the CPU's first touches the weights' pages.
    let _ = cpu.forward(&[0], 0, &mut Hooks::none(), false);
    let cpu = measure_decode(&mut cpu, SpeedPlan::AT_LOAD)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Measured {
        gpu_tok_s: gpu.tok_per_s(),
        cpu_tok_s: cpu.tok_per_s(),
        gpu_is_faster: first_is_faster(&gpu, &cpu),
    })
}

fn gpu_choice(ctx: Arc<GpuContext>, first: GpuModel, reason: String) -> BackendChoice {
    BackendChoice {
        factory: gpu_factory(ctx.clone(), first),
        reason,
        gpu: Some(ctx),
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

/// What `navigator.gpu.requestAdapter()` says of the adapter the GPU backend would open.
struct AdapterSeen {
    /// Vendor, architecture and description, for the visitor.
    name: String,
    /// The browser's fallback adapter, or a CPU rasteriser by name.
    software: bool,
    /// The adapter's identity as a short key: another GPU is measured again.
    key: u64,
}

impl AdapterSeen {
    /// From `GPUAdapterInfo`'s vendor, architecture, device and description.
    fn new(fields: &[String; 4], fallback: bool) -> Self {
        let [vendor, architecture, _, description] = fields;
        let name = [vendor, architecture, description]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" / ");
        let lower = name.to_lowercase();
        let by_name = ["swiftshader", "llvmpipe", "lavapipe", "software"]
            .iter()
            .any(|s| lower.contains(s));
        let key = fnv1a(fields.join("|").as_bytes());
        Self {
            name: if name.is_empty() {
                "fallback adapter".into()
            } else {
                name
            },
            software: fallback || by_name,
            key,
        }
    }
}

/// The adapter, asked for as `GpuContext::new` asks (high performance), without opening a
/// device; `None` where there is no `navigator.gpu` or no adapter.
async fn probe_adapter() -> Option<AdapterSeen> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let options = js_sys::Object::new();
    Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )
    .ok()?;
    let promise: js_sys::Promise = request.call1(&gpu, &options).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let info = Reflect::get(&adapter, &"info".into()).ok()?;
    let text = |key: &str| {
        Reflect::get(&info, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let fallback = Reflect::get(&info, &"isFallbackAdapter".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some(AdapterSeen::new(
        &["vendor", "architecture", "device", "description"].map(text),
        fallback,
    ))
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
