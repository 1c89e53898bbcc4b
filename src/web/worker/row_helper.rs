//! The browser's second core without wasm threads (which need a std built with atomics, out of
//! reach of this toolchain; BENCHMARKS.md): in a cross-origin isolated page the model worker
//! starts a helper worker, another instance of its own module holding its own copy of the model
//! file. For each large matmul (one token's, or a prompt's or a batch's tokens, in groups its
//! buffers hold) the helper computes the upper half of the rows while the model worker computes
//! the lower half ([`RowHelper`], `QMatrix::matmul`); they meet in a
//! `SharedArrayBuffer`, synchronised with `Atomics` (blocking waits are allowed in workers).
//! Both halves run the same kernels, so the results are bit-identical to one worker's.

use std::cell::Cell;
use std::sync::Arc;

use futures_util::future::{Either, select};
use gloo_timers::future::TimeoutFuture;
use js_sys::{
    Array, Atomics, Float32Array, Int32Array, Object, Reflect, SharedArrayBuffer, Uint8Array,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, Worker, WorkerOptions};

use crate::engine::quant::{QType, RowServer};
use crate::engine::threads::{RowHelper, RowJob};

/// Control words (i32) at the start of the shared buffer.
const STATE: u32 = 0;
const READY: u32 = 1;
/// The job: qtype, rows, cols, offset, first, end, tokens.
const JOB: u32 = 2;
const HEADER_BYTES: u32 = 64;
/// `STATE` values.
const IDLE: i32 = 0;
const WORK: i32 = 1;
const DONE: i32 = 2;
const FAILED: i32 = 3;
/// Largest input and output (floats) the buffer holds: for SmolLM2, 42 tokens of its widest input
/// (1536) and 42 tokens of the head's half (24,576 rows); a matmul over more tokens sends them in
/// groups of that size (4.3 MB shared in all).
const MAX_X: u32 = 64 * 1024;
const MAX_OUT: u32 = 1024 * 1024;
/// How long the model worker waits for a job before it gives the helper up for lost.
const TIMEOUT_MS: f64 = 10_000.0;
/// How long a helper may take to start and take the file, and how often that is checked.
const START_TIMEOUT_MS: u32 = 10_000;
const POLL_MS: u32 = 10;

/// The model worker's handle on its helper (dropped with the model: the helper is terminated).
pub struct HelperWorker {
    worker: Worker,
    ctl: Int32Array,
    x: Float32Array,
    out: Float32Array,
    lost: Cell<bool>,
}

// SAFETY: wasm32 without atomics has one thread; the engine only asks for Send + Sync because
// native row helpers may live on other threads.
unsafe impl Send for HelperWorker {}
unsafe impl Sync for HelperWorker {}

fn global(key: &str) -> JsValue {
    Reflect::get(&js_sys::global(), &key.into()).unwrap_or(JsValue::UNDEFINED)
}

impl HelperWorker {
    /// Starts a helper with a copy of `file` where the page is cross-origin isolated (shared
    /// memory) and the machine has a second core, and waits until it holds the file; `None`
    /// otherwise, or if it does not get there within seconds.
    ///
    /// This worker must not block meanwhile: the browser starts a nested worker through its
    /// parent's thread, and a message posted before the helper's module listens would be lost,
    /// so the file goes out only after the helper's first message (its Ready event).
    pub async fn spawn(file: &[u8]) -> Option<Arc<Self>> {
        let scope: DedicatedWorkerGlobalScope = js_sys::global().dyn_into().ok()?;
        let cores = Reflect::get(&global("navigator"), &"hardwareConcurrency".into())
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(1.0);
        let asked = web_sys::UrlSearchParams::new_with_str(&scope.location().search())
            .ok()
            .and_then(|q| q.get("threads"));
        if !global("crossOriginIsolated").is_truthy() || !wanted(asked.as_deref(), cores) {
            return None;
        }
        let options = WorkerOptions::new();
        options.set_name("axiscope-rows");
        // This worker's own loader script: the helper runs the same module.
        let worker = Worker::new_with_options(&scope.location().href(), &options).ok()?;
        let helper = Self::new(worker);
        let listening = js_sys::Promise::new(&mut |resolve, _| {
            helper.worker.set_onmessage(Some(&resolve));
        });
        let started = within(listening, START_TIMEOUT_MS).await;
        helper.worker.set_onmessage(None);
        if !started {
            return None;
        }
        let copy = Uint8Array::new_with_length(file.len() as u32);
        copy.copy_from(file);
        let msg = Object::new();
        Reflect::set(&msg, &"rowHelper".into(), &helper.ctl.buffer()).ok()?;
        Reflect::set(&msg, &"file".into(), &copy.buffer()).ok()?;
        helper
            .worker
            .post_message_with_transfer(&msg, &Array::of1(&copy.buffer()))
            .ok()?;
        // It copies the file into its memory (a fraction of a second), then sets READY.
        for _ in 0..START_TIMEOUT_MS / POLL_MS {
            if Atomics::load(&helper.ctl, READY).is_ok_and(|r| r == 1) {
                return Some(Arc::new(helper));
            }
            TimeoutFuture::new(POLL_MS).await;
        }
        None
    }

    fn new(worker: Worker) -> Self {
        let sab = SharedArrayBuffer::new(HEADER_BYTES + 4 * (MAX_X + MAX_OUT));
        Self {
            worker,
            ctl: Int32Array::new_with_byte_offset_and_length(&sab, 0, HEADER_BYTES / 4),
            x: Float32Array::new_with_byte_offset_and_length(&sab, HEADER_BYTES, MAX_X),
            out: Float32Array::new_with_byte_offset_and_length(
                &sab,
                HEADER_BYTES + 4 * MAX_X,
                MAX_OUT,
            ),
            lost: Cell::new(false),
        }
    }
}

/// Whether to start a helper: `?threads=2` (passed on by the page) asks for one, `?threads=1`
/// refuses it; otherwise only with four cores or more. The helper spins on its core between
/// jobs, and on two cores, measured on the benchmark machine, it gained only 4-10 % decode speed
/// (BENCHMARKS.md), not worth a core a page keeps busy on a small machine.
fn wanted(asked: Option<&str>, cores: f64) -> bool {
    match asked {
        Some("2") => cores >= 2.0,
        Some("1") => false,
        _ => cores >= 4.0,
    }
}

/// Whether `promise` settles within `ms` (this worker's event loop runs meanwhile).
async fn within(promise: js_sys::Promise, ms: u32) -> bool {
    let settled = JsFuture::from(promise);
    matches!(
        select(settled, TimeoutFuture::new(ms)).await,
        Either::Left(_)
    )
}

impl Drop for HelperWorker {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

impl RowHelper for HelperWorker {
    fn capacity(&self) -> (usize, usize) {
        (MAX_X as usize, MAX_OUT as usize)
    }

    fn start(&self, job: &RowJob, x: &[f32]) -> bool {
        let ready = Atomics::load(&self.ctl, READY).is_ok_and(|r| r == 1);
        let (max_x, max_out) = self.capacity();
        if self.lost.get() || !ready || x.len() > max_x {
            return false;
        }
        if (job.end - job.first) * job.tokens > max_out {
            return false;
        }
        let code = QType::ALL.iter().position(|&q| q == job.qtype).unwrap_or(0);
        let words = [
            code, job.rows, job.cols, job.offset, job.first, job.end, job.tokens,
        ];
        for (i, w) in words.into_iter().enumerate() {
            self.ctl.set_index(JOB + i as u32, w as i32);
        }
        self.x.subarray(0, x.len() as u32).copy_from(x);
        // The store publishes the plain writes above to the helper (sequentially consistent).
        let _ = Atomics::store(&self.ctl, STATE, WORK);
        let _ = Atomics::notify(&self.ctl, STATE);
        true
    }

    fn finish(&self, out: &mut [f32]) -> bool {
        loop {
            match Atomics::load(&self.ctl, STATE) {
                Ok(DONE) => {
                    self.out.subarray(0, out.len() as u32).copy_to(out);
                    let _ = Atomics::store(&self.ctl, STATE, IDLE);
                    return true;
                }
                Ok(WORK) if spin_while(&self.ctl, WORK) => {}
                Ok(WORK) => {
                    let waited = Atomics::wait_with_timeout(&self.ctl, STATE, WORK, TIMEOUT_MS);
                    if waited.is_err() || waited.is_ok_and(|w| w == "timed-out") {
                        self.lost.set(true);
                        return false;
                    }
                }
                // FAILED (the job did not fit the helper's file) or anything unexpected.
                _ => {
                    let _ = Atomics::store(&self.ctl, STATE, IDLE);
                    return false;
                }
            }
        }
    }
}

/// Loads of the state word before a worker gives up spinning and sleeps (some milliseconds:
/// jobs follow each other within tens to hundreds of microseconds while decoding, and waking a
/// sleeping worker takes about as long as a job).
const SPINS: u32 = 500_000;

/// Spins while the state word holds `state`; true if it changed meanwhile.
fn spin_while(ctl: &Int32Array, state: i32) -> bool {
    (0..SPINS).any(|_| Atomics::load(ctl, STATE).is_ok_and(|s| s != state))
}

/// The helper worker's whole life, from the message that made it one: holds `file` and serves
/// jobs until the model worker terminates it (never returns).
pub fn serve(sab: &SharedArrayBuffer, file: Vec<u8>) {
    let mut server = RowServer::new(Arc::new(file));
    let ctl = Int32Array::new_with_byte_offset_and_length(sab, 0, HEADER_BYTES / 4);
    let xs = Float32Array::new_with_byte_offset_and_length(sab, HEADER_BYTES, MAX_X);
    let outs =
        Float32Array::new_with_byte_offset_and_length(sab, HEADER_BYTES + 4 * MAX_X, MAX_OUT);
    let _ = Atomics::store(&ctl, READY, 1);
    let (mut x, mut out) = (Vec::new(), Vec::new());
    loop {
        let state = Atomics::load(&ctl, STATE).unwrap_or(IDLE);
        if state != WORK {
            // Jobs follow each other within tens of microseconds while decoding, and waking a
            // sleeping worker takes about as long: spin a while before sleeping (the model
            // worker notifies when it sets WORK).
            if !spin_while(&ctl, state) {
                let _ = Atomics::wait(&ctl, STATE, state);
            }
            continue;
        }
        let w = |i: u32| ctl.get_index(JOB + i) as usize;
        let job = RowJob {
            qtype: QType::ALL[w(0).min(QType::ALL.len() - 1)],
            rows: w(1),
            cols: w(2),
            offset: w(3),
            first: w(4),
            end: w(5),
            tokens: w(6),
        };
        // Sizes clamped to the buffers: a job that does not fit is refused by `serve`.
        x.resize(job.cols.saturating_mul(job.tokens).min(MAX_X as usize), 0.0);
        xs.subarray(0, x.len() as u32).copy_to(&mut x);
        out.clear();
        out.resize(
            job.end
                .saturating_sub(job.first)
                .saturating_mul(job.tokens)
                .min(MAX_OUT as usize),
            0.0,
        );
        let served = server.serve(&job, &x, &mut out);
        if served.is_ok() {
            outs.subarray(0, out.len() as u32).copy_from(&out);
        }
        let state = match served {
            Ok(()) => DONE,
            Err(e) => {
                web_sys::console::error_1(&format!("axiscope row helper: {e}").into());
                FAILED
            }
        };
        let _ = Atomics::store(&ctl, STATE, state);
        let _ = Atomics::notify(&ctl, STATE);
    }
}
