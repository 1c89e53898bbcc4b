//! The model worker's room: everything that runs in the dedicated Web Worker, never in the page.
//! It talks to the page only through `web::protocol`.
//!
//! - [`host`]: the worker's state and logic (model, bundle, conversation branches, map builds,
//!   exports), free of browser APIs so `cargo test` runs it natively;
//! - [`bench`]: the in-browser benchmark's measurement (`?bench`);
//! - `serve` (wasm32): the request loop, downloads and Cache Storage, the backend choice;
//! - `row_helper` (wasm32): the second core's worker, sharing the matmuls.

pub mod bench;
pub mod host;
#[cfg(target_arch = "wasm32")]
pub mod row_helper;
#[cfg(target_arch = "wasm32")]
mod serve;

#[cfg(target_arch = "wasm32")]
pub use serve::{BackendChoice, choose_backend, start};
