//! The in-browser benchmark's run (`?bench&backend=cpu|gpu[&tokens=N][&map=SIZE]`): the same
//! measurement as `scripts/bench.sh` runs natively (BENCHMARKS.md), on whatever backend the
//! worker's normal load path chose, so a visitor measures their own machine.
//!
//! [`run`] on the loaded model: the standard 128-token prompt (`data/bench_prompt.json`,
//! rendered with the model's chat template, as the native capped runs do), then `tokens` greedy
//! tokens with no repetition penalty and no stop token (llama.cpp in the native harness ignores
//! end of turn too, so both always do the same number of steps). Optionally the same again
//! recording every layer, and capped at the paper's band, to measure what reading and editing
//! the residual stream cost. Each variant runs in a fresh session. With `&map=` the worker then
//! builds the persona map as the page's Build button does, and times it ([`MapBuild`]). The
//! page's side (parameters, the JSON shown) is `web::page::bench`.

use serde::Deserialize;

use crate::engine::backend::BackendFactory;
use crate::engine::chat::{Message, Role};
use crate::engine::{Edit, GenerateOptions, Hooks, Model, SamplerConfig, Session};
use crate::web::protocol::{BenchReport, BenchRun, Overhead};

/// The benchmark prompt, shared with the native harness (single source of truth).
const PROMPT_JSON: &str = include_str!("../../../data/bench_prompt.json");

#[derive(Deserialize)]
struct PromptFile {
    system: String,
    user: String,
    expected_tokens: usize,
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

#[cfg(test)]
mod tests {
    use super::*;

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
