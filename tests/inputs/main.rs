//! Hostile input: crafted and damaged GGUF files, bad data files and a cut model through the
//! CLI, each a one-line error and never a panic, a hang or an allocation the file only claims.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod data_errors;
mod gguf_robustness;
