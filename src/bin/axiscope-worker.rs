//! The model worker's entry point: Trunk builds this binary for wasm32 as a Web Worker
//! (`data-type="worker"` in index.html); natively it is an empty main so that host builds
//! still compile every target.

#[cfg(target_arch = "wasm32")]
fn main() {
    axiscope::web::worker::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
