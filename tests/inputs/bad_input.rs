//! Bad input never panics: each case gives a one-line error naming the problem and a non-zero
//! exit from the CLI. Crafted files are written with candle's GGUF writer (an independent
//! implementation of the format) or cut from the real model.

use crate::common;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::cli;
use std::path::PathBuf;

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("axiscope-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A GGUF file with the given metadata and tensors, written by candle.
fn gguf(metadata: &[(&str, Value)], tensors: &[(&str, QTensor)]) -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut cur, &md, &ts).unwrap();
    cur.into_inner()
}

fn tensor(dtype: GgmlDType, shape: (usize, usize)) -> QTensor {
    let t = Tensor::ones(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

fn assert_clean_error(args: &[&str], expect: &str) {
    let (ok, err) = cli(args);
    assert!(!ok, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?}: one line expected, got {err}"
    );
    assert!(
        err.contains(expect),
        "{args:?}: expected '{expect}' in: {err}"
    );
}

#[test]
fn not_a_gguf_file() {
    let p = tmp("notes.gguf", b"this is a text file, not a model at all");
    assert_clean_error(&["inspect", p.to_str().unwrap()], "not a GGUF file");
    let empty = tmp("empty.gguf", b"");
    assert_clean_error(&["inspect", empty.to_str().unwrap()], "not a GGUF file");
}

#[test]
fn missing_file() {
    assert_clean_error(
        &["inspect", "/nonexistent/model.gguf"],
        "cannot read /nonexistent/model.gguf",
    );
}

#[test]
fn truncated_model() {
    let bytes = common::model_bytes(&common::default_model_path());
    for cut in [100, 2_000_000, bytes.len() - 1000] {
        let p = tmp(&format!("cut{cut}.gguf"), &bytes[..cut]);
        let (ok, err) = cli(&["inspect", p.to_str().unwrap()]);
        assert!(
            !ok && !err.contains("panicked") && err.trim().lines().count() == 1,
            "cut at {cut}: {err}"
        );
        assert!(err.contains("damaged GGUF file"), "cut at {cut}: {err}");
    }
}

#[test]
fn unknown_architecture() {
    let f = gguf(
        &[("general.architecture", Value::String("mamba".into()))],
        &[("x", tensor(GgmlDType::F32, (2, 32)))],
    );
    let p = tmp("mamba.gguf", &f);
    assert_clean_error(
        &["inspect", p.to_str().unwrap()],
        "unsupported architecture 'mamba'",
    );
}

#[test]
fn unsupported_quant_type() {
    let f = gguf(
        &[("general.architecture", Value::String("llama".into()))],
        &[("blk.0.attn_q.weight", tensor(GgmlDType::Q2K, (4, 256)))],
    );
    let p = tmp("q2k.gguf", &f);
    assert_clean_error(
        &["inspect", p.to_str().unwrap()],
        "unsupported quantization Q2K in tensor 'blk.0.attn_q.weight'",
    );
}

#[test]
fn missing_metadata_and_tensors() {
    let f = gguf(
        &[("general.architecture", Value::String("llama".into()))],
        &[],
    );
    let p = tmp("bare.gguf", &f);
    assert_clean_error(
        &["inspect", p.to_str().unwrap()],
        "no metadata 'llama.block_count'",
    );
}

#[test]
fn prompt_longer_than_the_context() {
    let model = common::default_model_path();
    let long = "hello ".repeat(9000);
    assert_clean_error(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            &long,
            "--max-tokens",
            "1",
        ],
        "but the model's context holds 8192",
    );
}
