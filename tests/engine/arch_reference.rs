//! Each architecture the CPU engine runs, held to llama.cpp on a small random-weight model
//! (the checks: tests/common/arch.rs). The same tests run in the browser's wasm build
//! (scripts/test.sh), with the fixtures compiled in.

use crate::common;
use axiscope::engine::{Backend, Model};
use common::arch::{Tolerance, check_architecture, fixture, llama3_without_rope_factors};
// On wasm32 every `#[test]` below is a wasm-bindgen test.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Threads for the CPU engine: two where there are threads (the matmuls split across them must
/// not change a bit), one in a wasm test, which has no threads.
const THREADS: usize = if cfg!(target_arch = "wasm32") { 1 } else { 2 };

/// Largest |logit difference| allowed against llama.cpp, and the top-2 gap below which either
/// token may be the greedy pick. Both engines quantize activations to Q8_0 before each matmul
/// the same way, so logits are bit-exact (llama3 and qwen2 everywhere; qwen3 and gemma3, with
/// 32-wide heads, up to positions 20 and 24) until the two engines' different summation order
/// in an attention dot product flips one rounding, which moves one 8-bit activation block and
/// the logits by up to 0.16 (measured). Ignoring llama3's rope factors moves them by 1.03
/// (`llama3_fixture_detects_ignored_rope_freqs`); a missed norm, bias or scale by more.
const LOGIT_TOL: f32 = 0.25;

fn cpu(m: &Model) -> Box<dyn Backend> {
    Box::new(m.cpu_backend(THREADS).unwrap())
}

fn check_cpu(name: &str, arch: &str) {
    let tol = Tolerance {
        logits: LOGIT_TOL,
        near_tie: 0.0,
    };
    check_architecture(name, arch, "the CPU engine", &mut cpu, tol);
}

#[test]
fn llama3_with_rope_freqs_matches_llama_cpp() {
    let f = fixture("llama3");
    assert!(f.model.config.rope_freqs && !f.model.config.tied_embeddings);
    check_cpu("llama3", "llama");
}

#[test]
fn qwen2_matches_llama_cpp() {
    assert!(fixture("qwen2").model.config.qkv_bias);
    check_cpu("qwen2", "qwen2");
}

#[test]
fn qwen3_matches_llama_cpp() {
    let f = fixture("qwen3");
    // Heads 32 wide while hidden / heads is 16: the q/o shapes follow key_length.
    assert!(f.model.config.qk_norm && f.model.config.q_dim() != f.model.config.hidden);
    check_cpu("qwen3", "qwen3");
}

#[test]
fn gemma3_matches_llama_cpp() {
    let f = fixture("gemma3");
    let c = &f.model.config;
    // llama.cpp's default pattern: 5 local layers, then a global one; window 4 < the prompts.
    let w = c.sliding_window.as_ref().unwrap();
    assert_eq!(w.local, [true, true, true, true, true, false]);
    assert_eq!(
        (w.size, w.rope_theta, c.rope_theta),
        (4, 10_000.0, 1_000_000.0)
    );
    assert!(c.post_norms && c.qk_norm && c.embed_scale == Some(8.0));
    assert_eq!(c.final_logit_softcap, Some(20.0));
    check_cpu("gemma3", "gemma3");
}

/// The llama3 fixture can catch a missed rope scaling: with its factors overwritten by 1.0 the
/// logits move far beyond the tolerance (the bug of issue 16: the tensor was ignored).
#[test]
fn llama3_fixture_detects_ignored_rope_freqs() {
    let worst = llama3_without_rope_factors(&mut cpu);
    eprintln!("llama3 without its rope factors on the CPU engine: max |logit diff| {worst:.3}");
    assert!(worst > 4.0 * LOGIT_TOL, "only {worst}");
}
