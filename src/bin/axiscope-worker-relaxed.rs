//! The model worker built with `--features relaxed-simd` (see index.html): the page starts it
//! instead of `axiscope-worker` where the browser validates relaxed-SIMD code.

fn main() {
    #[cfg(target_arch = "wasm32")]
    axiscope::web::worker::start();
}
