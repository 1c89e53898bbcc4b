//! The row helper (the browser's second core: a second worker computing part of each one-token
//! matmul from its own copy of the model file): sharing rows with it must change no bit of any
//! result, and a helper that refuses, fails or gets a job that does not fit the file must leave
//! the caller computing everything itself.

use crate::common;

use std::sync::{Arc, Mutex};

use axiscope::engine::quant::{QMatrix, QType};
use axiscope::engine::threads::{RowHelper, RowJob, Threads};
use axiscope::engine::{Backend, CpuModel, Hooks};
use common::default_model;

/// A helper in this process: serves each job at `start` from its own copy of the file, as the
/// browser's helper worker does, and hands the rows over at `finish`.
pub(crate) struct LocalHelper {
    file: Arc<Vec<u8>>,
    /// Whether `start` takes jobs, and whether `finish` delivers them.
    takes: bool,
    delivers: bool,
    done: Mutex<Option<Vec<f32>>>,
    pub(crate) jobs: Mutex<usize>,
}

impl LocalHelper {
    pub(crate) fn new(file: &[u8], takes: bool, delivers: bool) -> Arc<Self> {
        Arc::new(Self {
            file: Arc::new(file.to_vec()),
            takes,
            delivers,
            done: Mutex::new(None),
            jobs: Mutex::new(0),
        })
    }
}

impl RowHelper for LocalHelper {
    fn start(&self, job: &RowJob, x: &[f32]) -> bool {
        if !self.takes {
            return false;
        }
        let mut out = vec![f32::NAN; job.end - job.first];
        QMatrix::serve(&self.file, job, x, &mut out).unwrap();
        *self.done.lock().unwrap() = Some(out);
        *self.jobs.lock().unwrap() += 1;
        true
    }

    fn finish(&self, out: &mut [f32]) -> bool {
        let rows = self.done.lock().unwrap().take().unwrap();
        if self.delivers {
            out.copy_from_slice(&rows);
        }
        self.delivers
    }
}

/// A real layer matrix and the output head, shared or not, give the same bits.
#[test]
fn shared_matmuls_equal_unshared_ones() {
    let m = default_model();
    let file = m.gguf.bytes();
    let x: Vec<f32> = (0..576)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.02)
        .collect();
    for name in [
        "blk.3.ffn_gate.weight",
        "blk.3.attn_k.weight",
        "token_embd.weight",
    ] {
        let t = m.gguf.tensor(name).unwrap();
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let q = QMatrix::new(t.qtype, rows, cols, file.clone(), t.offset);
        let mut alone = vec![0f32; rows];
        q.matmul(&x, &mut alone, &Threads::new(1));
        for (takes, delivers) in [(true, true), (false, true), (true, false)] {
            let helper = LocalHelper::new(file, takes, delivers);
            let mut shared = vec![f32::NAN; rows];
            q.matmul(
                &x,
                &mut shared,
                &Threads::new(1).with_helper(helper.clone()),
            );
            let same = shared
                .iter()
                .zip(&alone)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name}: takes {takes} delivers {delivers}");
            // attn_k (192 x 576) is below the size worth a hand-over.
            let want_jobs = usize::from(takes && name != "blk.3.attn_k.weight");
            assert_eq!(*helper.jobs.lock().unwrap(), want_jobs, "{name}");
        }
    }
}

/// A whole forward pass with the helper gives the logits of one without, bit for bit.
#[test]
fn a_forward_pass_with_the_helper_is_the_same() {
    let m = default_model();
    let ids = m
        .tokenizer
        .encode("The Assistant Axis, measured in a browser.")
        .unwrap();
    let run = |threads: Threads| {
        let mut cpu = CpuModel::load_with(&m.gguf, threads).unwrap();
        let mut hooks = Hooks::default();
        let mut logits = cpu.forward(&ids, 0, &mut hooks, false).unwrap();
        logits.extend(
            cpu.forward(&[ids[0]], ids.len(), &mut hooks, false)
                .unwrap(),
        );
        logits
    };
    let helper = LocalHelper::new(m.gguf.bytes(), true, true);
    let with = run(Threads::new(1).with_helper(helper.clone()));
    let without = run(Threads::new(1));
    // The decode step shares gate, up and down of every layer and the output head, the prompt's
    // pass only its head (one row of logits); the attention matrices are below the size worth a
    // hand-over, and a many-token matmul is not shared.
    assert_eq!(*helper.jobs.lock().unwrap(), 3 * m.config.n_layers + 2);
    assert!(
        with.iter()
            .zip(&without)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// A job that does not match the file is refused with a reason.
#[test]
fn jobs_that_do_not_fit_the_file_are_errors() {
    let file = Arc::new(vec![0u8; 20 * 18 * 4]);
    let ok = RowJob {
        qtype: QType::Q4_1,
        rows: 4,
        cols: 576,
        offset: 0,
        first: 2,
        end: 4,
    };
    let x = vec![0.5f32; 576];
    assert!(QMatrix::serve(&file, &ok, &x, &mut [0.0; 2]).is_ok());
    for bad in [
        RowJob { offset: 8, ..ok },
        RowJob {
            rows: 5,
            end: 5,
            ..ok
        },
        RowJob { cols: 500, ..ok },
        RowJob {
            first: 3,
            end: 2,
            ..ok
        },
        RowJob {
            offset: usize::MAX,
            ..ok
        },
    ] {
        let out_len = bad.end.saturating_sub(bad.first);
        let err = QMatrix::serve(
            &file,
            &bad,
            &x[..bad.cols.min(576)],
            &mut vec![0.0; out_len],
        );
        assert!(err.unwrap_err().contains("does not fit"), "{bad:?}");
    }
}
