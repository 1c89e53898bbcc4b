//! `axiscope generate --record-layers` (the benchmark's recording-overhead switch): it must
//! record every token the model ran at every named layer, and reject bad layer lists cleanly.

use crate::common;
use std::process::Command;

fn generate(extra: &[&str]) -> std::process::Output {
    let model = common::default_model_path();
    Command::new(env!("CARGO_BIN_EXE_axiscope"))
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Name a colour.",
        ])
        .args([
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "--threads",
            "1",
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn records_every_token_that_ran_and_leaves_the_reply_unchanged() {
    let plain = json(&generate(&[]));
    assert_eq!(plain["recorded_layers"], 0);
    assert_eq!(plain["recorded_tokens"], 0);
    for (spec, layers) in [("all", 30), ("29,0,0", 2)] {
        let v = json(&generate(&["--record-layers", spec]));
        let ran =
            v["prompt_tokens"].as_u64().unwrap() + v["tokens"].as_array().unwrap().len() as u64 - 1;
        assert_eq!(v["recorded_layers"], layers, "{spec}");
        assert_eq!(v["recorded_tokens"].as_u64().unwrap(), ran, "{spec}");
        // Reading must not edit: the greedy reply is the same as without hooks.
        assert_eq!(v["tokens"], plain["tokens"], "{spec}");
    }
}

#[test]
fn bad_layer_lists_are_one_line_errors() {
    for (spec, expect) in [
        ("30", "out of range"),
        ("1,x", "not a layer index"),
        ("", "not a layer index"),
    ] {
        let out = generate(&["--record-layers", spec]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec:?} should fail");
        assert!(!err.contains("panicked"), "{spec:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{spec:?}: {err}");
        assert!(err.contains(expect), "{spec:?}: {err}");
    }
}
