//! What the web worker's WebGPU path stands on, natively on lavapipe: sessions on one device
//! share the uploaded weights yet compute on their own caches; the async forward that the
//! browser uses gives what the blocking one gives; a destroyed device reports the loss and
//! fails later calls with a GPU error (the worker's cue to move to the CPU) instead of
//! hanging or panicking. Skipped, saying so, where there is no Vulkan adapter.
#![cfg(not(target_arch = "wasm32"))]

use crate::common;

use std::sync::Arc;

use axiscope::engine::gpu::{GpuContext, GpuModel, GpuModelOptions};
use axiscope::engine::{Backend, Error, Hooks};
use common::default_model;

fn opts() -> GpuModelOptions {
    GpuModelOptions {
        max_context: 64,
        max_chunk: 16,
        ..GpuModelOptions::default()
    }
}

/// A device of its own: one test destroys it.
fn fresh_gpu() -> Option<Arc<GpuContext>> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    if pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all())).is_empty() {
        eprintln!("SKIPPED gpu_fallback: no Vulkan/WebGPU adapter on this machine");
        return None;
    }
    Some(Arc::new(
        pollster::block_on(GpuContext::new()).expect("an adapter exists but cannot be opened"),
    ))
}

#[test]
fn sessions_share_weights_and_keep_their_own_caches() {
    let Some(ctx) = fresh_gpu() else { return };
    let m = default_model();
    let mut a = GpuModel::load_with(&m.gguf, ctx.clone(), opts()).unwrap();
    let mut b = GpuModel::load_with(&m.gguf, ctx.clone(), opts()).unwrap();
    let prompt = m.tokenizer.encode("The capital of France is").unwrap();
    let mut h = Hooks::none();
    // b holds another context in its cache first: a shared cache would change a's answer.
    Backend::forward(&mut b, &[1, 2, 3, 4, 5], 0, &mut h, false).unwrap();
    let la = Backend::forward(&mut a, &prompt, 0, &mut h, false).unwrap();
    b.truncate(0);
    let lb = pollster::block_on(Backend::forward_async(&mut b, &prompt, 0, &mut h, false)).unwrap();
    // Same weights, same arithmetic, same kernels: bit-identical.
    assert_eq!(la, lb);
    // The session loop's blocking twin (`now_or_err`) runs the GPU natively too.
    let mut s = axiscope::engine::Session::new(Box::new(a));
    let (l, ran) = s.prefill(&prompt, &mut h).unwrap();
    assert_eq!((l, ran), (la, prompt.len()));
}

#[test]
fn a_destroyed_device_says_so_and_fails_forward_calls() {
    let Some(ctx) = fresh_gpu() else { return };
    let m = default_model();
    let mut g = GpuModel::load_with(&m.gguf, ctx.clone(), opts()).unwrap();
    let mut h = Hooks::none();
    Backend::forward(&mut g, &[1, 2], 0, &mut h, false).unwrap();
    assert_eq!(ctx.lost(), None);
    ctx.destroy();
    let err = Backend::forward(&mut g, &[3], 2, &mut h, false).unwrap_err();
    assert!(matches!(err, Error::Gpu(_)), "{err}");
    assert!(
        ctx.lost().is_some_and(|why| why.starts_with("destroyed")),
        "{:?}",
        ctx.lost()
    );
}
