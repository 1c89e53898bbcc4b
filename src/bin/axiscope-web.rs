//! The web app's entry point. Trunk builds this binary for wasm32; natively it is an
//! empty main so that `cargo build`/`cargo test` on the host still compile every target.

#[cfg(target_arch = "wasm32")]
fn main() {
    axiscope::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
