//! The GPU backend keeps the backend contract (`tests/common/contract.rs`) on whatever adapter
//! wgpu finds (lavapipe in CI). Its runs of one prompt differ where the kernels differ: a
//! chunk of up to 4 tokens takes the matrix-vector path, larger ones the tiled matmul, and
//! their sums run in another order. Measured on lavapipe: at most 2.5e-6 of the logit range
//! and 1.3e-6 relative on the residuals (the run prints each clause's); the tolerances,
//! 1e-4 and 1e-5, leave room for other adapters' orders.

use crate::common;

use axiscope::engine::gpu::{GpuModel, GpuModelOptions};
use common::contract::{Tolerance, keeps_the_contract};
use common::default_model;

use super::model::gpu;

#[test]
fn the_gpu_backend_keeps_the_backend_contract() {
    let Some(ctx) = gpu() else { return };
    let m = default_model();
    // A short cache loads fast and makes "past the context" cheap to ask.
    let opts = GpuModelOptions {
        max_context: 128,
        ..GpuModelOptions::default()
    };
    keeps_the_contract(
        "gpu",
        &mut || Box::new(GpuModel::load_with(&m.gguf, ctx.clone(), opts).unwrap()),
        Tolerance {
            logits: 1e-4,
            residuals: 1e-5,
        },
    );
}
