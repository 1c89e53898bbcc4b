//! Never silently wrong: a GGUF whose metadata or tensors change the computation in a way the
//! engine does not apply is refused with one line naming the key or tensor. Each case adds one
//! such item to the tiny model (which loads and runs without it).

use crate::common;
use axiscope::engine::Model;
use candle_core::quantized::gguf_file::Value;
use common::tiny::{ones, tiny_model, tiny_model_with};

fn md(k: &str, v: Value) -> Vec<(String, Value)> {
    vec![(k.to_string(), v)]
}

/// The load error of the tiny model with these additions, or a panic if it loads.
fn refusal(arch: &str, extra_md: Vec<(String, Value)>, tensor: Option<(&str, usize)>) -> String {
    let ts = tensor
        .map(|(name, len)| (name.to_string(), ones(len)))
        .into_iter()
        .collect();
    match Model::from_bytes(tiny_model_with(arch, extra_md, ts)) {
        Ok(_) => panic!("loaded, but should have been refused"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, what: &str) {
    assert_eq!(msg.lines().count(), 1, "one line expected: {msg}");
    assert!(msg.contains(what), "'{what}' not named in: {msg}");
}

#[test]
fn the_unmodified_tiny_model_loads() {
    // The control for every case below: each refusal comes from the one added item.
    let m = Model::from_bytes(tiny_model()).unwrap();
    m.cpu_backend(1).unwrap();
}

#[test]
fn metadata_the_engine_does_not_apply_is_refused() {
    let cases = [
        ("llama.rope.scaling.type", Value::String("linear".into())),
        ("llama.rope.scaling.factor", Value::F32(8.0)),
        (
            "llama.rope.scaling.original_context_length",
            Value::U32(8192),
        ),
        ("llama.rope.scaling.attn_factor", Value::F32(1.2)),
        ("llama.rope.freq_base_swa", Value::F32(10000.0)),
        ("llama.attn_logit_softcapping", Value::F32(50.0)),
        ("llama.final_logit_softcapping", Value::F32(30.0)),
        ("llama.attention.sliding_window", Value::U32(512)),
        ("llama.attention.sliding_window_pattern", Value::U32(6)),
        ("llama.attention.scale", Value::F32(0.125)),
        ("llama.embedding_scale", Value::F32(8.0)),
        ("llama.logit_scale", Value::F32(0.5)),
        ("llama.residual_scale", Value::F32(0.5)),
        ("llama.expert_count", Value::U32(8)),
        ("llama.expert_used_count", Value::U32(2)),
        ("llama.attention.clamp_kqv", Value::F32(8.0)),
        ("llama.use_parallel_residual", Value::Bool(true)),
    ];
    for (key, value) in cases {
        let msg = refusal("llama", md(key, value), None);
        assert_names(&msg, &format!("metadata '{key}'"));
        assert!(msg.contains("does not apply"), "{msg}");
    }
}

#[test]
fn head_shapes_the_engine_does_not_run_are_refused() {
    // Partial rotary embedding and values narrower than keys: hidden 64 / 4 heads = 16.
    for (key, v) in [
        ("llama.rope.dimension_count", 8),
        ("llama.attention.value_length", 32),
    ] {
        let msg = refusal("llama", md(key, Value::U32(v)), None);
        assert_names(&msg, &format!("metadata '{key}'"));
    }
    // The same keys agreeing with the head dimension are applied (real files carry them).
    let agree = vec![
        ("llama.rope.dimension_count".to_string(), Value::U32(16)),
        ("llama.attention.key_length".to_string(), Value::U32(16)),
        ("llama.attention.value_length".to_string(), Value::U32(16)),
        ("llama.vocab_size".to_string(), Value::U32(259)),
    ];
    Model::from_bytes(tiny_model_with("llama", agree, Vec::new())).unwrap();
}

#[test]
fn tensors_the_engine_does_not_read_are_refused() {
    let cases = [
        // rope_freqs is applied for llama only (llama.cpp reads it there).
        ("qwen2", "rope_freqs.weight", 8),
        ("llama", "rope_factors_long.weight", 8),
        ("llama", "blk.0.attn_q_norm.weight", 16),
        ("llama", "blk.1.attn_k_norm.weight", 16),
        ("llama", "blk.0.post_attention_norm.weight", 64),
        ("llama", "blk.0.post_ffw_norm.weight", 64),
        ("llama", "blk.0.attn_output.bias", 64),
        ("llama", "blk.0.ffn_down.bias", 64),
        ("llama", "blk.1.attn_q.bias", 64),
        ("llama", "blk.2.attn_norm.weight", 64),
        ("llama", "blk.01.attn_norm.weight", 64),
        ("llama", "blk.attn_norm.weight", 64),
        ("llama", "output.bias", 259),
        ("llama", "token_types.weight", 64),
        ("qwen3", "blk.0.attn_q.bias", 64),
    ];
    for (arch, name, len) in cases {
        let msg = refusal(arch, Vec::new(), Some((name, len)));
        assert_names(&msg, &format!("tensor '{name}'"));
    }
}

#[test]
fn unknown_architectures_and_tokenizers_are_refused() {
    for arch in ["gemma2", "gemma", "phi3", "mistral3"] {
        let msg = refusal(arch, Vec::new(), None);
        assert_names(&msg, &format!("unsupported architecture '{arch}'"));
    }
    for (model, pre) in [("bert", "default"), ("t5", "default"), ("gpt2", "tekken")] {
        let tok = vec![
            ("tokenizer.ggml.model".into(), Value::String(model.into())),
            ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ];
        let msg = refusal("llama", tok, None);
        let named = if model == "gpt2" { pre } else { model };
        assert_names(&msg, &format!("'{named}'"));
        assert!(msg.contains("not supported"), "{msg}");
    }
    // A SentencePiece-style vocabulary is read, but only with a score per piece.
    let spm = vec![("tokenizer.ggml.model".into(), Value::String("llama".into()))];
    assert_names(&refusal("llama", spm, None), "tokenizer.ggml.scores");
}

#[test]
fn the_cli_prints_the_refusal_on_one_line() {
    let bytes = tiny_model_with(
        "llama",
        md("llama.final_logit_softcapping", Value::F32(30.0)),
        Vec::new(),
    );
    let dir = std::env::temp_dir().join(format!("axiscope-unapplied-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("softcap.gguf");
    std::fs::write(&p, bytes).unwrap();
    let (ok, err) = common::cli(&["inspect", p.to_str().unwrap()]);
    assert!(!ok);
    assert_names(err.trim(), "metadata 'llama.final_logit_softcapping'");
}
