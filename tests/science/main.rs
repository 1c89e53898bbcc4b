//! The method on the real model: rollouts, a whole bundle build through the CLI, capping and
//! steering on the residual stream, and the CLI's layer recording.

#[path = "../common/mod.rs"]
mod common;

mod pipeline;
mod record_layers_cli;
