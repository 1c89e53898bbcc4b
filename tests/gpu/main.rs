//! The GPU backend natively through wgpu (lavapipe in CI): kernels on the real weights, the
//! whole forward against the CPU engine, shared weights and a lost device. Each test skips,
//! saying so, where there is no Vulkan adapter.

#[path = "../common/mod.rs"]
mod common;

mod arch;
mod contract;
mod fallback;
mod fused;
mod model;
mod model_weights;
