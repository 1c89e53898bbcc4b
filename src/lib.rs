//! axiscope: read and steer a small chat model's residual stream, natively or in the browser.
//!
//! - [`engine`]: GGUF loading, tokenizer, chat template, the model forward with hooks,
//!   sampling. No UI code.
//! - [`science`]: the Assistant Axis method (role vectors, axis, PCA, drift, capping).
//!   No backend detail.
//! - [`web`]: the leptos app and its model worker (browser glue wasm32 only).
pub mod engine;
pub mod science;
pub mod web;
