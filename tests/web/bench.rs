//! The in-browser benchmark's measurement (`axiscope::web::worker::bench`, what `?bench` runs in the
//! worker) natively on the default model: the standard prompt renders to its 128 tokens, the
//! greedy tokens agree with llama.cpp's (recorded by the native harness, an independent
//! engine), and recording every layer leaves the tokens unchanged.

use crate::common;
use axiscope::engine::{Backend, Model};
use axiscope::web::worker::bench::prompt_ids;
use axiscope::web::worker::host::Host;
use common::*;
use pollster::block_on;

/// llama.cpp's greedy tokens for the benchmark prompt (scripts/bench.sh, 64 tokens).
fn llamacpp_tokens() -> Vec<u32> {
    let p = root().join("tests/e2e/bench/native_greedy.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).unwrap();
    ids(&v["llamacpp_native"])
}

#[test]
fn bench_prompt_is_128_tokens() {
    assert_eq!(prompt_ids(default_model()).unwrap().len(), 128);
}

#[test]
fn bench_runs_greedy_like_llamacpp_and_records_without_changing_tokens() {
    let model = Model::from_bytes(model_bytes(&default_model_path())).unwrap();
    let mut host = Host::new();
    host.set_model(
        model,
        Box::new(|m: &Model| Ok(Box::new(m.cpu_backend(1)?) as Box<dyn Backend>)),
        None,
    )
    .unwrap();
    // 10 tokens: the engines agree on the first 14 (BENCHMARKS.md), so no near-tie here.
    let r = block_on(host.bench(10, true)).unwrap();
    assert_eq!(
        r.backend_detail,
        format!("cpu (1 thread, {})", axiscope::engine::quant::kernels())
    );
    assert_eq!(r.threads, 1);
    assert_eq!(r.run.prompt_tokens, 128);
    assert_eq!(r.run.generated_tokens, 10);
    assert_eq!(r.run.tokens, llamacpp_tokens()[..10]);
    assert!(r.run.prefill_tok_s > 0.0 && r.run.decode_tok_s > 0.0 && r.run.ttft_ms > 0.0);
    let all = r.record_all.expect("record-all run");
    assert!(all.same_tokens, "recording changed the greedy tokens");
    assert_eq!(all.run.tokens, r.run.tokens);
    // No bundle loaded: no capped run, and the report says why.
    assert!(r.cap.is_none());
    assert!(r.cap_note.unwrap().contains("bundle"));
}

#[test]
fn bench_without_a_model_is_an_error() {
    assert!(block_on(Host::new().bench(8, false)).is_err());
}
