//! The CPU engine: held to llama.cpp (the default model and one small random-weight model per
//! architecture), batched decoding, its threads, the browser's row helper, the measured choice
//! of backend, and features it refuses to skip.
//! One test binary for the room (each binary links the whole engine; fewer build faster).
//! On wasm32 (headless Chromium, scripts/test.sh) it holds the architecture tests only: the
//! others read the default model from disk.

#[path = "../common/mod.rs"]
mod common;

mod arch_reference;
#[cfg(not(target_arch = "wasm32"))]
mod batch;
#[cfg(not(target_arch = "wasm32"))]
mod contract;
#[cfg(not(target_arch = "wasm32"))]
mod reference;
#[cfg(not(target_arch = "wasm32"))]
mod row_helper;
#[cfg(not(target_arch = "wasm32"))]
mod speed;
#[cfg(not(target_arch = "wasm32"))]
mod unapplied_features;
