//! The model worker's room: everything that runs in the dedicated Web Worker, never in the page.
//! It talks to the page only through `web::protocol`.
//!
//! - [`host`]: the worker's state and logic (model, bundle, conversation branches, map builds,
//!   exports), free of browser APIs so `cargo test` runs it natively;
//! - [`bench`]: the in-browser benchmark's measurement (`?bench`);
//! - `serve` (wasm32): the request loop, the worker's state, the GPU fallback;
//! - `download` (wasm32): downloads with progress, checks and Cache Storage;
//! - `backend_choice` (wasm32): WebGPU or the CPU engine, and why;
//! - `row_helper` (wasm32): the second core's worker, sharing the matmuls.

#[cfg(target_arch = "wasm32")]
mod backend_choice;
pub mod bench;
#[cfg(target_arch = "wasm32")]
mod download;
pub mod host;
#[cfg(target_arch = "wasm32")]
pub mod row_helper;
#[cfg(target_arch = "wasm32")]
mod serve;

#[cfg(target_arch = "wasm32")]
pub use backend_choice::{BackendChoice, choose_backend};
#[cfg(target_arch = "wasm32")]
pub use serve::start;
