//! The fused forward (q, k and v in one pass, RoPE and the KV-cache store in one kernel, the
//! gated MLP in one decode kernel, the residual add inside the o and down products;
//! `GpuModelOptions::fused`) against the
//! unfused forward, op by op its own dispatch, on SmolLM2-135M and every architecture's
//! fixture: a prompt (matrix-matrix kernels) and greedy decode steps (matrix-vector
//! kernels), with hooks.
//!
//! Tolerance: each fused kernel sums every row in the unfused kernel's order and applies the
//! same activation and add, so the forwards should agree to the bit; the shader compiler may
//! still contract or reorder a fused kernel's last operations differently, which 1e-6 of the
//! logits' largest magnitude (and of a recorded residual's norm) allows. Measured on
//! lavapipe: bit-identical.
#![cfg(not(target_arch = "wasm32"))]

use crate::common::arch::fixture;
use crate::common::{default_model, rel_err};
use crate::model::gpu;
use axiscope::engine::gpu::{GpuContext, GpuModel, GpuModelOptions};
use axiscope::engine::sampler::argmax;
use axiscope::engine::{Backend, Edit, EditOp, Hooks, Model};
use std::sync::Arc;

const TOL: f64 = 1e-6;

fn load(ctx: &Arc<GpuContext>, m: &Model, fused: bool) -> GpuModel {
    let opts = GpuModelOptions {
        max_context: 128,
        fused,
        ..GpuModelOptions::default()
    };
    GpuModel::load_with(&m.gguf, ctx.clone(), opts).expect("GPU model loads")
}

/// The prompt with all logits, then `steps` greedy tokens, every layer recorded and `edits`
/// applied: each call's logits and the recording.
fn run(gpu: &mut GpuModel, prompt: &[u32], steps: usize, edits: &[Edit]) -> (Vec<Vec<f32>>, Hooks) {
    let layers = (0..gpu.config().n_layers).collect();
    let mut hooks = Hooks::recording(layers);
    hooks.edits = edits.to_vec();
    let mut out = vec![gpu.forward(prompt, 0, &mut hooks, true).unwrap()];
    let vocab = gpu.config().vocab;
    for pos in prompt.len()..prompt.len() + steps {
        let last = out.last().unwrap();
        let next = argmax(&last[last.len() - vocab..]) as u32;
        out.push(gpu.forward(&[next], pos, &mut hooks, false).unwrap());
    }
    (out, hooks)
}

/// Runs both forwards and checks them against each other; returns the worst differences
/// (logits relative to their largest magnitude, recorded residuals relative to their norm).
fn compare(ctx: &Arc<GpuContext>, m: &Model, prompt: &[u32], edits: &[Edit]) -> (f64, f64) {
    let steps = 4;
    let (fused, hf) = run(&mut load(ctx, m, true), prompt, steps, edits);
    let (plain, hp) = run(&mut load(ctx, m, false), prompt, steps, edits);
    let mut worst_logit = 0f64;
    for (f, p) in fused.iter().zip(&plain) {
        let scale = p.iter().fold(0f32, |a, x| a.max(x.abs())) as f64;
        let diff = f.iter().zip(p).fold(0f32, |a, (x, y)| a.max((x - y).abs())) as f64;
        worst_logit = worst_logit.max(diff / scale);
    }
    let n = prompt.len() + steps;
    assert_eq!(hf.recording.n_tokens(), n);
    let mut worst_rec = 0f64;
    for t in 0..n {
        for l in 0..m.config.n_layers {
            let (a, b) = (
                hf.recording.get(t, l).unwrap(),
                hp.recording.get(t, l).unwrap(),
            );
            worst_rec = worst_rec.max(rel_err(a, b));
        }
    }
    assert!(
        worst_logit <= TOL,
        "logits differ by {worst_logit:.2e} of their scale"
    );
    assert!(
        worst_rec <= TOL,
        "recorded residuals differ by {worst_rec:.2e}"
    );
    (worst_logit, worst_rec)
}

#[test]
fn fused_products_match_the_unfused_forward_on_smollm2() {
    let Some(ctx) = gpu() else { return };
    let m = default_model();
    let d = m.config.hidden;
    let prompt = m
        .tokenizer
        .encode("The capital of France is a city that")
        .unwrap();
    assert!(
        prompt.len() > 4,
        "the prompt must take the matrix-matrix path"
    );
    let unit: Vec<f32> = {
        let v: Vec<f32> = (0..d).map(|i| ((i as f32 + 1.0) * 0.37).sin()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    };
    let edits = [
        Edit {
            layer: 6,
            op: EditOp::Add {
                vector: unit.iter().map(|x| 3.0 * x).collect(),
            },
        },
        Edit {
            layer: 12,
            op: EditOp::Clamp {
                unit,
                min: Some(1.0),
                max: None,
            },
        },
    ];
    let (l, r) = compare(&ctx, m, &prompt, &edits);
    eprintln!("SmolLM2 fused vs unfused: logits {l:.1e} of their scale, residuals {r:.1e}");
}

#[test]
fn fused_products_match_the_unfused_forward_on_every_architecture() {
    let Some(ctx) = gpu() else { return };
    for name in ["llama3", "qwen2", "qwen3", "gemma3"] {
        let f = fixture(name);
        let prompt = f
            .model
            .tokenizer
            .encode("Hello there, how are you today?")
            .unwrap();
        let (l, r) = compare(&ctx, &f.model, &prompt, &[]);
        eprintln!("{name} fused vs unfused: logits {l:.1e} of their scale, residuals {r:.1e}");
    }
}

/// A decode step of SmolLM2-135M: nine dispatches fewer per layer when fused (q, k, v: 3 to
/// 1; two ropes and two cache stores: 4 to 1; gate, up, activation: 3 to 1; two residual
/// adds into their products), the same weight bytes read. A fusion that silently fell back
/// would fail here.
#[test]
fn a_fused_decode_step_dispatches_nine_ops_fewer_per_layer() {
    let Some(ctx) = gpu() else { return };
    let m = default_model();
    let (fused, plain) = (
        load(&ctx, m, true).profile(1),
        load(&ctx, m, false).profile(1),
    );
    eprintln!("SmolLM2 decode step: fused {fused:?}, unfused {plain:?}");
    assert_eq!(
        plain.dispatches - fused.dispatches,
        9 * m.config.n_layers as u32
    );
    assert_eq!(plain.weight_bytes, fused.weight_bytes);
    assert!(fused.workgroups < plain.workgroups);
}
