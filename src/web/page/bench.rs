//! The `?bench` page: asks the worker for the benchmark (`web::worker::bench`) through the
//! app's normal load path and shows the report, with what only the page knows, as JSON.

use crate::web::protocol::BuildSize;
#[cfg(target_arch = "wasm32")]
use crate::web::protocol::{BenchReport, Overhead};

/// Default and largest number of generated tokens (`&tokens=`).
pub const DEFAULT_TOKENS: usize = 64;
pub const MAX_TOKENS: usize = 1024;

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

/// The `?bench` page: queues the default model (through the app's normal load path, so the
/// worker picks the backend as for any visitor) and the benchmark, and shows the outcome as
/// JSON in `data-testid="bench-result"` (`data-state` "checking", then "ok" or "error").
#[cfg(target_arch = "wasm32")]
pub fn page(app: super::state::AppState, start_model: impl Fn()) -> leptos::prelude::AnyView {
    use crate::web::dom;
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
        Err(e) => app.update(|p| p.bench = Some(Err(e))),
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
        (Some(_), None, Some(b)) if b.total > 0 => {
            format!(
                "building the persona map: {} of {} replies",
                b.done, b.total
            )
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
    let window = crate::web::dom::window();
    let get = |o: &wasm_bindgen::JsValue, k: &str| {
        Reflect::get(o, &k.into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED)
    };
    // Chromium only (`performance.memory`); null elsewhere.
    let memory = get(&get(&window, "performance"), "memory");
    let heap = |k| get(&memory, k).as_f64();
    let model = app.model.get_untracked();
    let mut wasm = crate::web::dom::wasm_resources();
    wasm.extend(r.wasm_files.iter().cloned());
    let pct = |o: &Option<Overhead>| o.as_ref().map(|o| o.decode_overhead_pct);
    json!({
        "backend": if r.on_gpu { "gpu" } else { "cpu" },
        "backend_requested": app.backend_pref.as_str(),
        "backend_detail": r.backend_detail,
        "backend_reason": model.as_ref().map(|m| m.backend_reason.clone()),
        "threads": r.threads,
        "cross_origin_isolated": crate::web::dom::cross_origin_isolated(),
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
}
