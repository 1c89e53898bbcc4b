//! The row helper (the browser's second core: a second worker computing part of each large
//! matmul from its own copy of the model file): sharing rows with it must change no bit of any
//! result, whatever the tokens and however they are grouped into jobs, and a helper that
//! refuses, fails or gets a job that does not fit the file must leave the caller computing
//! everything itself.

use crate::common;

use std::sync::{Arc, Mutex};

use axiscope::engine::quant::{QMatrix, QType, RowServer, packed};
use axiscope::engine::threads::{RowHelper, RowJob, Threads};
use axiscope::engine::{Backend, CpuModel, Hooks};
use common::default_model;

/// A helper in this process: serves each job at `start` from its own copy of the file, as the
/// browser's helper worker does, and hands the rows over at `finish`.
pub(crate) struct LocalHelper {
    server: Mutex<RowServer>,
    /// Whether `start` takes jobs, and whether `finish` delivers them.
    takes: bool,
    delivers: bool,
    done: Mutex<Option<Vec<f32>>>,
    /// Its buffers' size, in floats of input and output.
    capacity: (usize, usize),
    pub(crate) jobs: Mutex<usize>,
}

impl LocalHelper {
    pub(crate) fn new(file: &[u8], takes: bool, delivers: bool) -> Arc<Self> {
        Self::with_capacity(file, takes, delivers, (64 * 1024, 1024 * 1024))
    }

    fn with_capacity(
        file: &[u8],
        takes: bool,
        delivers: bool,
        capacity: (usize, usize),
    ) -> Arc<Self> {
        Arc::new(Self {
            server: Mutex::new(RowServer::new(Arc::new(file.to_vec()))),
            takes,
            delivers,
            done: Mutex::new(None),
            capacity,
            jobs: Mutex::new(0),
        })
    }
}

impl RowHelper for LocalHelper {
    fn capacity(&self) -> (usize, usize) {
        self.capacity
    }

    fn start(&self, job: &RowJob, x: &[f32]) -> bool {
        if !self.takes {
            return false;
        }
        assert!(x.len() <= self.capacity.0, "{job:?}");
        assert!(
            (job.end - job.first) * job.tokens <= self.capacity.1,
            "{job:?}"
        );
        let mut out = vec![f32::NAN; (job.end - job.first) * job.tokens];
        self.server.lock().unwrap().serve(job, x, &mut out).unwrap();
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

/// A real layer matrix and the output head, shared or not, give the same bits, for one token
/// and for several (sent in groups the helper's buffers hold).
#[test]
fn shared_matmuls_equal_unshared_ones() {
    let m = default_model();
    let file = m.gguf.bytes();
    for (name, tokens, capacity, want) in [
        ("blk.3.ffn_gate.weight", 1, None, 1),
        // attn_k (192 x 576) is below the size worth a hand-over for one token...
        ("blk.3.attn_k.weight", 1, None, 0),
        // ... not for five.
        ("blk.3.attn_k.weight", 5, None, 1),
        ("token_embd.weight", 1, None, 1),
        ("blk.3.ffn_down.weight", 9, None, 1),
        // Buffers for 2 tokens of 1536 inputs: 9 tokens go as 2 + 2 + 2 + 2 + 1.
        ("blk.3.ffn_down.weight", 9, Some((2 * 1536, 1 << 20)), 5),
        // The head's half (24,576 rows) for 3 tokens of output: 3 + 3 + 1.
        ("token_embd.weight", 7, Some((1 << 16, 3 * 24_576)), 3),
    ] {
        let t = m.gguf.tensor(name).unwrap();
        let (rows, cols) = (t.shape[0], t.shape[1]);
        // As the CPU engine prepares it (and the helper too).
        let q = QMatrix::new(t.qtype, rows, cols, file.clone(), t.offset).packed_for_cpu();
        let x: Vec<f32> = (0..cols * tokens)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.02)
            .collect();
        let mut alone = vec![0f32; rows * tokens];
        q.matmul(&x, &mut alone, &Threads::new(1));
        for (takes, delivers) in [(true, true), (false, true), (true, false)] {
            let helper = match capacity {
                Some(c) => LocalHelper::with_capacity(file, takes, delivers, c),
                None => LocalHelper::new(file, takes, delivers),
            };
            let mut shared = vec![f32::NAN; rows * tokens];
            q.matmul(
                &x,
                &mut shared,
                &Threads::new(1).with_helper(helper.clone()),
            );
            let same = shared
                .iter()
                .zip(&alone)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name} x {tokens}: takes {takes} delivers {delivers}");
            let jobs = *helper.jobs.lock().unwrap();
            assert_eq!(jobs, if takes { want } else { 0 }, "{name} x {tokens}");
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
    // The prompt's pass (several tokens) shares all 7 matrices of every layer and its head (one
    // row of logits); the decode step gate, up and down of every layer and the head: its
    // attention matrices are below the size worth a hand-over for one token.
    assert!(ids.len() > 4, "{} tokens", ids.len());
    assert_eq!(*helper.jobs.lock().unwrap(), 10 * m.config.n_layers + 2);
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
        tokens: 1,
    };
    let x = vec![0.5f32; 576];
    let mut server = RowServer::new(file);
    assert!(server.serve(&ok, &x, &mut [0.0; 2]).is_ok());
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
        RowJob { tokens: 0, ..ok },
    ] {
        let out_len = bad.end.saturating_sub(bad.first);
        let err = server.serve(&bad, &x[..bad.cols.min(576)], &mut vec![0.0; out_len]);
        assert!(err.unwrap_err().contains("does not fit"), "{bad:?}");
    }
    // Packed rows (where this machine packs Q4_1) go in whole groups of eight.
    let mut server = RowServer::new(Arc::new(vec![0u8; 20 * 18 * 8]));
    let half = RowJob {
        rows: 8,
        first: 4,
        end: 8,
        ..ok
    };
    let split = server.serve(&half, &x, &mut [0.0; 4]);
    assert_eq!(split.is_err(), packed::available(), "{split:?}");
    let whole = RowJob { first: 0, ..half };
    assert!(server.serve(&whole, &x, &mut [0.0; 8]).is_ok());
}
