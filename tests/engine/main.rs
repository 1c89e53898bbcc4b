//! The CPU engine: held to llama.cpp (the default model and one small random-weight model per
//! architecture), batched decoding, the browser's row helper, and features it refuses to skip.
//! One test binary for the room (each binary links the whole engine; fewer build faster).

#[path = "../common/mod.rs"]
mod common;

mod arch_reference;
mod batch;
mod contract;
mod reference;
mod row_helper;
mod unapplied_features;
