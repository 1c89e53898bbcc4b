//! The web app: a leptos page (wasm32) and a Web Worker that runs the model, so the page never
//! freezes. The pure parts (the worker's logic, the message protocol, the embedded persona
//! data, chart geometry, share links and exports) compile on every target and are tested
//! natively; the browser glue is wasm32 only.
//!
//! Page components are named for what the visitor sees: [`model_loader`], [`chat`],
//! [`gen_settings`], [`drift_chart`], [`persona_map`], [`cap_controls`], [`downloads`], [`embed`],
//! [`status`], [`tour`]; [`state`] holds the page's signals, [`client`] talks to the worker,
//! [`worker`] is the worker itself.

pub mod bench;
pub mod catalog;
pub mod chart;
pub mod export;
pub mod host;
pub mod protocol;
pub mod share;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
pub mod cap_controls;
#[cfg(target_arch = "wasm32")]
pub mod chat;
#[cfg(target_arch = "wasm32")]
pub mod client;
#[cfg(target_arch = "wasm32")]
pub mod dom;
#[cfg(target_arch = "wasm32")]
pub mod downloads;
#[cfg(target_arch = "wasm32")]
pub mod drift_chart;
#[cfg(target_arch = "wasm32")]
pub mod embed;
#[cfg(target_arch = "wasm32")]
pub mod gen_settings;
#[cfg(target_arch = "wasm32")]
pub mod model_loader;
#[cfg(target_arch = "wasm32")]
pub mod persona_map;
#[cfg(target_arch = "wasm32")]
pub mod row_helper;
#[cfg(target_arch = "wasm32")]
pub mod state;
#[cfg(target_arch = "wasm32")]
pub mod status;
#[cfg(target_arch = "wasm32")]
pub mod tour;
#[cfg(target_arch = "wasm32")]
pub mod worker;

#[cfg(target_arch = "wasm32")]
pub use app::start;
