//! The web worker's logic natively on the default model: the session host (replies, branches,
//! projections) and the in-browser benchmark's measurement.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod host;
