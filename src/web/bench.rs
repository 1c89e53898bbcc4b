//! The in-browser benchmark (`?bench&backend=cpu|gpu[&tokens=N][&map=SIZE]`): the same
//! measurement as `scripts/bench.sh` runs natively (BENCHMARKS.md), on whatever backend the
//! worker's normal load path chose, so a visitor measures their own machine.
//!
//! The worker runs [`run`] on the loaded model: the standard 128-token prompt
//! (`scripts/bench/prompt.json`, rendered with the model's chat template, as the native capped
//! runs do), then `tokens` greedy tokens with no repetition penalty and no stop token (llama.cpp
//! in the native harness ignores end of turn too, so both always do the same number of steps).
//! Optionally the same again recording every layer, and capped at the paper's band, to measure
//! what reading and editing the residual stream cost. Each variant runs in a fresh session.
//! With `&map=` the worker then builds the persona map as the page's Build button does, and
//! times it ([`MapBuild`]).

use serde::{Deserialize, Serialize};

use crate::engine::chat::{Message, Role};
use crate::engine::{Edit, GenerateOptions, Hooks, Model, SamplerConfig, Session};

use super::host::BackendFactory;
use super::protocol::BuildSize;

/// The benchmark prompt, shared with the native harness (single source of truth).
const PROMPT_JSON: &str = include_str!("../../scripts/bench/prompt.json");

/// Default and largest number of generated tokens (`&tokens=`).
pub const DEFAULT_TOKENS: usize = 64;
pub const MAX_TOKENS: usize = 1024;

#[derive(Deserialize)]
struct PromptFile {
    system: String,
    user: String,
    expected_tokens: usize,
}

/// One timed generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt tokens / time of the prompt's forward pass.
    pub prefill_tok_s: f64,
    /// (generated - 1) / time from the end of the prefill to the last token.
    pub decode_tok_s: f64,
    /// Time to first token with the model loaded: the prefill's forward pass.
    pub ttft_ms: f64,
    pub decode_ms: f64,
    /// The generated ids, to compare with the native engines' greedy tokens.
    pub tokens: Vec<u32>,
    /// Each generated token's text (empty while a UTF-8 character is incomplete), to compare
    /// with an engine that reports text pieces rather than ids (wllama).
    pub pieces: Vec<String>,
}

/// A variant of the plain run (recording all layers, capping) and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overhead {
    pub run: BenchRun,
    /// Decode time per token over the plain run's, minus one, in percent.
    pub decode_overhead_pct: f64,
    pub prefill_overhead_pct: f64,
    pub same_tokens: bool,
}

/// What the worker measures (the page adds load time, wasm sizes and the JS heap).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// "cpu (1 thread, simd128)", "webgpu (...)": the backend's own description.
    pub backend_detail: String,
    /// Whether the backend is the GPU's; `threads` is then 1.
    pub on_gpu: bool,
    pub threads: usize,
    pub run: BenchRun,
    pub record_all: Option<Overhead>,
    pub cap: Option<Overhead>,
    /// Why `cap` is missing, when it is.
    pub cap_note: Option<String>,
    /// The timed map build, when `&map=` asked for one.
    pub map_build: Option<MapBuild>,
    /// The worker's wasm linear memory after the runs (it never shrinks: its peak).
    pub wasm_memory_bytes: u64,
    /// The wasm modules the worker loaded, as the browser's resource timing saw them.
    pub wasm_files: Vec<WasmFile>,
}

/// A persona map built in the worker (`Host::bench_map`), and how long it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapBuild {
    pub size: BuildSize,
    /// Replies generated, empty ones included (the build's progress count).
    pub replies: usize,
    /// Replies the map is made of (empty ones are left out, as natively).
    pub rollouts: usize,
    pub roles: usize,
    /// From the build's start to the map's view (what the page draws) being ready.
    pub seconds: f64,
    pub replies_per_s: f64,
    /// cos(PC1, axis) at the analysis layer, as the map's stats line shows it.
    pub cos_pc1_axis: Option<f32>,
}

/// A wasm module that was fetched: its URL's last segment and size in bytes (as sent, and
/// after content decoding; equal when the server does not compress).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WasmFile {
    pub name: String,
    pub transfer_bytes: f64,
    pub decoded_bytes: f64,
}

/// The rendered prompt's ids; an error when the model's tokenizer or template does not give
/// the 128 tokens the native harness checked (another model: the numbers would not compare).
pub fn prompt_ids(model: &Model) -> Result<Vec<u32>, String> {
    let p: PromptFile =
        serde_json::from_str(PROMPT_JSON).map_err(|e| format!("bench prompt: {e}"))?;
    let messages = [
        Message::new(Role::System, p.system),
        Message::new(Role::User, p.user),
    ];
    let ids = model
        .render(&messages, true)
        .map_err(|e| e.to_string())?
        .ids;
    if ids.len() != p.expected_tokens {
        return Err(format!(
            "the benchmark prompt is {} tokens with this model, not {}: the benchmark is defined for SmolLM2's vocabulary",
            ids.len(),
            p.expected_tokens
        ));
    }
    Ok(ids)
}

/// The number of generated tokens asked for by `&tokens=` (absent: the default).
pub fn parse_tokens(raw: Option<&str>) -> Result<usize, String> {
    match raw {
        None | Some("") => Ok(DEFAULT_TOKENS),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (2..=MAX_TOKENS).contains(&n) => Ok(n),
            _ => Err(format!(
                "tokens={s}: expected a whole number from 2 to {MAX_TOKENS}"
            )),
        },
    }
}

/// The map size asked for by `&map=` (absent, empty or "none": no map build).
pub fn parse_map(raw: Option<&str>) -> Result<Option<BuildSize>, String> {
    match raw {
        None | Some("" | "none") => Ok(None),
        Some(s) => BuildSize::parse(s)
            .map(Some)
            .ok_or_else(|| format!("map={s}: expected tiny, quick, standard or none")),
    }
}

async fn timed(
    model: &Model,
    factory: &BackendFactory,
    prompt: &[u32],
    tokens: usize,
    mut hooks: Hooks,
) -> Result<BenchRun, String> {
    let backend = factory(model).map_err(|e| e.to_string())?;
    let mut session = Session::new(backend);
    let opts = GenerateOptions {
        max_tokens: tokens,
        sampler: SamplerConfig::greedy(),
        stop: Vec::new(),
    };
    let mut pieces = Vec::with_capacity(tokens);
    let g = session
        .generate_async(
            &model.tokenizer,
            prompt,
            &opts,
            &mut hooks,
            &mut |_, piece| {
                pieces.push(piece.to_string());
                true
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(BenchRun {
        prompt_tokens: g.prefilled,
        generated_tokens: g.tokens.len(),
        prefill_tok_s: g.prefill_tok_s(),
        decode_tok_s: g.decode_tok_s(),
        ttft_ms: g.prefill_ms,
        decode_ms: g.decode_ms,
        tokens: g.tokens,
        pieces,
    })
}

fn overhead(base: &BenchRun, run: BenchRun) -> Overhead {
    let per_token = |r: &BenchRun| r.decode_ms / r.generated_tokens.saturating_sub(1).max(1) as f64;
    let pct = |a: f64, b: f64| if b > 0.0 { (a / b - 1.0) * 100.0 } else { 0.0 };
    Overhead {
        decode_overhead_pct: pct(per_token(&run), per_token(base)),
        prefill_overhead_pct: pct(run.ttft_ms, base.ttft_ms),
        same_tokens: run.tokens == base.tokens,
        run,
    }
}

/// Runs the benchmark: the plain run, then (with `overheads`) the same recording every layer
/// and, when `cap` edits are given, capped. `cap_note` says why there are none.
pub async fn run(
    model: &Model,
    factory: &BackendFactory,
    tokens: usize,
    overheads: bool,
    cap: Result<Vec<Edit>, String>,
) -> Result<BenchReport, String> {
    let prompt = prompt_ids(model)?;
    let mut probe = factory(model).map_err(|e| e.to_string())?;
    let backend_detail = probe.describe();
    let (on_gpu, threads) = probe.as_cpu().map_or((true, 1), |c| (false, c.threads()));
    drop(probe);
    let base = timed(model, factory, &prompt, tokens, Hooks::none()).await?;
    let (mut record_all, mut cap_run, mut cap_note) = (None, None, None);
    if overheads {
        let all = Hooks::recording((0..model.config.n_layers).collect());
        record_all = Some(overhead(
            &base,
            timed(model, factory, &prompt, tokens, all).await?,
        ));
        match cap {
            Ok(edits) => {
                let mut hooks = Hooks::none();
                hooks.edits = edits;
                cap_run = Some(overhead(
                    &base,
                    timed(model, factory, &prompt, tokens, hooks).await?,
                ));
            }
            Err(why) => cap_note = Some(why),
        }
    } else {
        cap_note = Some("overhead runs were switched off (&overhead=0)".into());
    }
    Ok(BenchReport {
        threads,
        on_gpu,
        backend_detail,
        run: base,
        record_all,
        cap: cap_run,
        cap_note,
        map_build: None,
        wasm_memory_bytes: 0,
        wasm_files: Vec::new(),
    })
}

/// The `.wasm` files this global (page or worker) fetched, from `performance`'s resource
/// entries (through `Reflect`: the same code runs in the page and the worker).
#[cfg(target_arch = "wasm32")]
pub fn wasm_resources() -> Vec<WasmFile> {
    use js_sys::{Array, Function, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let perf = get(&js_sys::global(), "performance");
    let Ok(by_type) = get(&perf, "getEntriesByType").dyn_into::<Function>() else {
        return Vec::new();
    };
    let Ok(entries) = by_type.call1(&perf, &"resource".into()) else {
        return Vec::new();
    };
    Array::from(&entries)
        .iter()
        .filter_map(|e| {
            let url = get(&e, "name").as_string()?;
            let path = url.split(['?', '#']).next()?;
            path.ends_with(".wasm").then(|| WasmFile {
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
                transfer_bytes: get(&e, "encodedBodySize").as_f64().unwrap_or(0.0),
                decoded_bytes: get(&e, "decodedBodySize").as_f64().unwrap_or(0.0),
            })
        })
        .collect()
}

/// The `?bench` page: queues the default model (through the app's normal load path, so the
/// worker picks the backend as for any visitor) and the benchmark, and shows the outcome as
/// JSON in `data-testid="bench-result"` (`data-state` "checking", then "ok" or "error").
#[cfg(target_arch = "wasm32")]
pub fn page(app: super::state::AppState, start_model: impl Fn()) -> leptos::prelude::AnyView {
    use super::dom;
    use leptos::prelude::*;
    use serde_json::json;

    let asked = parse_tokens(dom::query_param("tokens").as_deref())
        .and_then(|n| Ok((n, parse_map(dom::query_param("map").as_deref())?)));
    let overheads = dom::query_param("overhead").as_deref() != Some("0");
    match asked {
        Ok((n, map)) => {
            start_model();
            app.run_bench(n, overheads, map);
        }
        Err(e) => app.bench.set(Some(Err(e))),
    }
    // When the model arrived, in the page's clock (from navigation start): load as the
    // visitor waits for it, the worker's start and the wasm compile included.
    let model_ready_ms = StoredValue::new(None::<f64>);
    Effect::new(move |_| {
        if app.model.with(|m| m.is_some()) && model_ready_ms.get_value().is_none() {
            model_ready_ms.set_value(Some(dom::now_ms()));
        }
    });
    let outcome = move || {
        let r = app.bench.get()?;
        Some(match r {
            Ok(report) => ("ok", report_json(app, report, model_ready_ms.get_value())),
            Err(e) => {
                let why = app
                    .model_error
                    .get_untracked()
                    .map_or(e.clone(), |m| format!("{e} ({m})"));
                ("error", json!({ "error": why }))
            }
        })
    };
    let state = move || outcome().map_or("checking", |(s, _)| s);
    let text = move || {
        outcome().map_or_else(
            || "running...".to_string(),
            |(_, j)| serde_json::to_string_pretty(&j).unwrap_or_default(),
        )
    };
    let status = move || match (
        app.model.get(),
        app.model_error.get(),
        app.build_progress.get(),
    ) {
        (_, Some(e), _) => format!("model: {e}"),
        // The map build takes minutes: say how far it is.
        (Some(_), None, Some((done, total, ..))) if total > 0 => {
            format!("building the persona map: {done} of {total} replies")
        }
        (Some(m), None, _) => format!(
            "model loaded on {} ({}); benchmarking...",
            m.backend, m.backend_reason
        ),
        (None, None, _) => app
            .progress
            .get()
            .map_or("loading the model...".into(), |p| p.text()),
    };
    view! {
        <main class="bench">
            <h1>"axiscope benchmark"</h1>
            <p>"The standard 128-token prompt, then greedy decoding, in this browser. See BENCHMARKS.md."</p>
            <p data-testid="bench-status">{status}</p>
            <pre data-testid="bench-result" data-state=state>{text}</pre>
        </main>
    }
    .into_any()
}

/// The result as the page shows it: the worker's report plus what only the page knows.
#[cfg(target_arch = "wasm32")]
fn report_json(
    app: super::state::AppState,
    r: BenchReport,
    model_ready_ms: Option<f64>,
) -> serde_json::Value {
    use js_sys::Reflect;
    use leptos::prelude::*;
    use serde_json::json;
    let window = super::dom::window();
    let get = |o: &wasm_bindgen::JsValue, k: &str| {
        Reflect::get(o, &k.into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED)
    };
    // Chromium only (`performance.memory`); null elsewhere.
    let memory = get(&get(&window, "performance"), "memory");
    let heap = |k| get(&memory, k).as_f64();
    let model = app.model.get_untracked();
    let mut wasm = wasm_resources();
    wasm.extend(r.wasm_files.iter().cloned());
    let pct = |o: &Option<Overhead>| o.as_ref().map(|o| o.decode_overhead_pct);
    json!({
        "backend": if r.on_gpu { "gpu" } else { "cpu" },
        "backend_requested": app.backend_pref.as_str(),
        "backend_detail": r.backend_detail,
        "backend_reason": model.as_ref().map(|m| m.backend_reason.clone()),
        "threads": r.threads,
        "cross_origin_isolated": super::dom::cross_origin_isolated(),
        "hardware_concurrency": window.navigator().hardware_concurrency(),
        "user_agent": window.navigator().user_agent().ok(),
        "prompt_tokens": r.run.prompt_tokens,
        "generated_tokens": r.run.generated_tokens,
        "prefill_tok_s": r.run.prefill_tok_s,
        "decode_tok_s": r.run.decode_tok_s,
        "ttft_ms": r.run.ttft_ms,
        "model_load_ms": model.as_ref().map(|m| m.load_ms),
        "model_from_cache": model.as_ref().map(|m| m.from_cache),
        "page_to_model_ms": model_ready_ms,
        "record_all_decode_overhead_pct": pct(&r.record_all),
        "cap_decode_overhead_pct": pct(&r.cap),
        "cap_note": r.cap_note,
        "map_build": r.map_build,
        "js_heap_used_bytes": heap("usedJSHeapSize"),
        "js_heap_total_bytes": heap("totalJSHeapSize"),
        "worker_wasm_memory_bytes": r.wasm_memory_bytes,
        "wasm_files": wasm,
        "tokens": r.run.tokens,
        "pieces": r.run.pieces,
        "record_all": r.record_all,
        "cap": r.cap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parameter_is_checked() {
        assert_eq!(parse_tokens(None), Ok(DEFAULT_TOKENS));
        assert_eq!(parse_tokens(Some("8")), Ok(8));
        assert!(parse_tokens(Some("1")).is_err());
        assert!(parse_tokens(Some("-3")).is_err());
        assert!(parse_tokens(Some("99999")).is_err());
        assert!(parse_tokens(Some("8<script>")).is_err());
    }

    #[test]
    fn map_parameter_is_checked() {
        assert_eq!(parse_map(None), Ok(None));
        assert_eq!(parse_map(Some("")), Ok(None));
        assert_eq!(parse_map(Some("none")), Ok(None));
        assert_eq!(parse_map(Some("tiny")), Ok(Some(BuildSize::Tiny)));
        assert_eq!(parse_map(Some("quick")), Ok(Some(BuildSize::Quick)));
        assert_eq!(parse_map(Some("standard")), Ok(Some(BuildSize::Standard)));
        assert!(parse_map(Some("Quick")).unwrap_err().contains("map=Quick"));
        assert!(parse_map(Some("huge")).is_err());
    }

    #[test]
    fn overhead_is_per_decoded_token() {
        let base = BenchRun {
            prompt_tokens: 128,
            generated_tokens: 11,
            prefill_tok_s: 0.0,
            decode_tok_s: 0.0,
            ttft_ms: 100.0,
            decode_ms: 100.0,
            tokens: vec![1; 11],
            pieces: Vec::new(),
        };
        let slower = BenchRun {
            decode_ms: 110.0,
            ttft_ms: 105.0,
            tokens: vec![2; 11],
            ..base.clone()
        };
        let o = overhead(&base, slower);
        assert!((o.decode_overhead_pct - 10.0).abs() < 1e-9);
        assert!((o.prefill_overhead_pct - 5.0).abs() < 1e-9);
        assert!(!o.same_tokens);
    }
}
