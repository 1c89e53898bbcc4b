//! The page's room: the leptos app the visitor sees (wasm32), and the pure parts it draws with
//! (chart geometry, the bench page's parameters) and decides with (the [`reducer`]: the page's
//! state and how every command and worker event changes it; [`models`]: the model menu's
//! catalog), tested natively. It talks to the model
//! worker only through `web::protocol`.
//!
//! Components are named for what the visitor sees: [`model_loader`], [`chat`],
//! [`gen_settings`], [`drift_chart`], [`persona_map`] (with its [`layer_chart`]), [`cap_controls`], [`downloads`],
//! [`embed`], [`status`], [`tour`]; [`state`] mirrors the reducer into signals, [`client`] talks to the
//! worker, [`bench`] is the `?bench` page.

pub mod bench;
pub mod chart;
pub mod models;
pub mod reducer;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
pub mod cap_controls;
#[cfg(target_arch = "wasm32")]
pub mod chat;
#[cfg(target_arch = "wasm32")]
pub mod client;
#[cfg(target_arch = "wasm32")]
pub mod downloads;
#[cfg(target_arch = "wasm32")]
pub mod drift_chart;
#[cfg(target_arch = "wasm32")]
pub mod embed;
#[cfg(target_arch = "wasm32")]
pub mod gen_settings;
#[cfg(target_arch = "wasm32")]
pub mod layer_chart;
#[cfg(target_arch = "wasm32")]
pub mod model_loader;
#[cfg(target_arch = "wasm32")]
pub mod persona_map;
#[cfg(target_arch = "wasm32")]
pub mod state;
#[cfg(target_arch = "wasm32")]
pub mod status;
#[cfg(target_arch = "wasm32")]
pub mod tour;

#[cfg(target_arch = "wasm32")]
pub use app::start;
