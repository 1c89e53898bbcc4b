//! Fuzzes the GGUF loader: any byte string must load or give a one-line error, never panic,
//! hang or allocate what the header merely claims. A file the loader accepts is also run one
//! token through the CPU backend, which reads every tensor the header described.
#![no_main]

use axiscope::engine::{Backend, Hooks, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Model::from_bytes(data.to_vec()) {
        Ok(model) => {
            if let Ok(mut backend) = model.cpu_backend(1) {
                let _ = backend.forward(&[0], 0, &mut Hooks::none(), false);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "bad error text: {msg:?}");
        }
    }
});
