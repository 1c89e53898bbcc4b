//! The web app, in three rooms with one-way edges: `page -> protocol <- worker`.
//!
//! - [`page`]: the leptos page the visitor sees;
//! - [`worker`]: the dedicated Web Worker that runs the model, so the page never freezes;
//! - [`protocol`]: the messages between them, the only thing both speak.
//!
//! Beside the protocol, both use the data and helpers that belong to neither: [`catalog`]
//! (our roles, questions and preset conversations, compiled in), [`export`] (the files a
//! visitor downloads), [`share`] (share links) and `dom` (browser glue, wasm32). The page and
//! the worker never import each other (`tests/house_rules.rs` checks it).

pub mod catalog;
pub mod export;
pub mod page;
pub mod protocol;
pub mod share;
pub mod worker;

#[cfg(target_arch = "wasm32")]
pub mod dom;

#[cfg(target_arch = "wasm32")]
pub use page::start;
