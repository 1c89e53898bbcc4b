//! The CPU engine keeps the backend contract (`tests/common/contract.rs`) bit for bit: every
//! (row, token) product runs the same operations whatever else runs with it, and attention
//! reads the same cached keys whether they were written in this call or an earlier one.

use crate::common;

use axiscope::engine::CpuModel;
use axiscope::engine::threads::Threads;
use common::contract::{Tolerance, keeps_the_contract};
use common::default_model;

use super::row_helper::LocalHelper;

#[test]
fn the_cpu_engine_keeps_the_backend_contract() {
    let m = default_model();
    keeps_the_contract(
        "cpu",
        &mut || Box::new(m.cpu_backend(2).unwrap()),
        Tolerance::EXACT,
    );
}

/// The browser's second core: one-token matmuls (each decoding step) shared with a helper.
#[test]
fn the_cpu_engine_with_the_row_helper_keeps_the_backend_contract() {
    let m = default_model();
    let helper = LocalHelper::new(m.gguf.bytes(), true, true);
    keeps_the_contract(
        "cpu + row helper",
        &mut || {
            Box::new(
                CpuModel::load_with(&m.gguf, Threads::new(1).with_helper(helper.clone())).unwrap(),
            )
        },
        Tolerance::EXACT,
    );
    assert!(
        *helper.jobs.lock().unwrap() > 0,
        "the helper was never asked"
    );
}
