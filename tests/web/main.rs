//! The web app's logic natively: the worker's session host on the default model (replies,
//! branches, projections), the in-browser benchmark's measurement, and the page's state
//! machine (commands and worker events, no browser).

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod host;
mod page_state;
