//! A persistent pool of spinning worker threads for the native CPU engine (issue 18).
//!
//! A decode step runs ~200 matmuls of 50-200 µs each. rayon hands each one over by waking
//! sleeping workers, which costs about as much as a small matmul, so two threads reached only
//! 1.2x one. Here the workers spin on one atomic word between jobs (they sleep only after
//! [`SPIN`] without work), the calling thread computes too, and tasks are claimed from a
//! shared counter. A job never waits for a worker that has not joined it: the caller closes
//! the job when its tasks are done and waits only for workers inside it.
//!
//! The state word packs `epoch << 32 | CLOSED | workers inside`. A worker joins epoch `e` by
//! a compare-exchange that succeeds only while the word says `e` and not closed, so once the
//! caller has closed the job and seen no worker inside, none can enter it any more.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than the gaps inside a decode step
/// and between steps (sampling, a hook), short enough that an idle process stops burning cores.
const SPIN: Duration = Duration::from_millis(2);

const CLOSED: u64 = 1 << 31;
const INSIDE: u64 = CLOSED - 1;

/// The task function of the running job, its lifetime erased: it is only called between the
/// job's start and its close, and the caller waits for every worker inside before returning.
type Task = *const (dyn Fn(usize) + Sync);

struct Job {
    task: Task,
    tasks: usize,
}

struct Shared {
    state: AtomicU64,
    /// Written by the caller only while no worker can enter (closed, none inside).
    job: UnsafeCell<Job>,
    next: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    wake: (Mutex<()>, Condvar),
    quit: AtomicBool,
}

// The job cell is read only by workers inside an open job and written only when none is.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct SpinPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// One job at a time; a second caller computes its job alone instead of waiting.
    submit: Mutex<()>,
}

fn noop(_: usize) {}

impl SpinPool {
    /// A pool of `workers` threads besides the caller's.
    pub fn new(workers: usize) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(CLOSED),
            job: UnsafeCell::new(Job {
                task: &noop as &(dyn Fn(usize) + Sync) as Task,
                tasks: 0,
            }),
            next: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            wake: (Mutex::new(()), Condvar::new()),
            quit: AtomicBool::new(false),
        });
        let workers = (0..workers)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("axiscope-cpu-{}", i + 1))
                    .spawn(move || worker(&s))
                    .expect("spawning a CPU worker thread")
            })
            .collect();
        Self {
            shared,
            workers,
            submit: Mutex::new(()),
        }
    }

    /// Threads computing a job: the workers and the caller.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `task(i)` once for every `i < tasks`, on the caller's thread and the workers'.
    pub fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let guard = match self.submit.try_lock() {
            Ok(g) if tasks > 1 => g,
            _ => return (0..tasks).for_each(task),
        };
        let s = &*self.shared;
        // SAFETY: the lifetime is erased only for the duration of this call (see `Task`).
        let erased: Task = unsafe { std::mem::transmute(task) };
        // SAFETY: the previous job is closed with no worker inside (`finish` waited for that).
        unsafe {
            *s.job.get() = Job {
                task: erased,
                tasks,
            }
        };
        s.next.store(0, Ordering::Relaxed);
        let epoch = (s.state.load(Ordering::Relaxed) >> 32) + 1;
        s.state.store(epoch << 32, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.wake.0.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.1.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| claim(s, task)));
        // Close, then wait for the workers inside to finish their tasks.
        s.state.fetch_or(CLOSED, Ordering::AcqRel);
        while s.state.load(Ordering::Acquire) & INSIDE != 0 {
            std::hint::spin_loop();
        }
        drop(guard);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a CPU worker thread panicked in a task");
        }
    }
}

fn claim(s: &Shared, task: &(dyn Fn(usize) + Sync)) {
    // SAFETY: called inside an open job, so the cell holds this job.
    let tasks = unsafe { (*s.job.get()).tasks };
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        task(i);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0;
    loop {
        let Some(state) = wait_for_epoch(s, seen) else {
            return;
        };
        seen = state >> 32;
        if try_enter(s, state) {
            // SAFETY: inside an open job the cell holds it, and its task outlives the job.
            let task = unsafe { &*(*s.job.get()).task };
            if catch_unwind(AssertUnwindSafe(|| claim(s, task))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
            s.state.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Joins the job of `state`'s epoch if it is still open.
fn try_enter(s: &Shared, mut state: u64) -> bool {
    let epoch = state >> 32;
    loop {
        if state >> 32 != epoch || state & CLOSED != 0 {
            return false;
        }
        match s
            .state
            .compare_exchange_weak(state, state + 1, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(now) => state = now,
        }
    }
}

/// Spins, then sleeps, until the state shows an epoch after `seen`; `None` when the pool quits.
fn wait_for_epoch(s: &Shared, seen: u64) -> Option<u64> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let state = s.state.load(Ordering::Acquire);
        if s.quit.load(Ordering::Relaxed) {
            return None;
        }
        if state >> 32 != seen {
            return Some(state);
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
            break;
        }
    }
    let (lock, cv) = &s.wake;
    let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
    s.sleepers.fetch_add(1, Ordering::SeqCst);
    loop {
        let state = s.state.load(Ordering::SeqCst);
        if s.quit.load(Ordering::SeqCst) {
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        if state >> 32 != seen {
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            return Some(state);
        }
        g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.quit.store(true, Ordering::SeqCst);
        {
            let _l = s.wake.0.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.1.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_across_many_jobs() {
        let pool = SpinPool::new(3);
        for tasks in [0, 1, 2, 7, 64, 1000] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.run(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "{tasks}"
            );
        }
    }

    #[test]
    fn sleeping_workers_wake_for_the_next_job() {
        let pool = SpinPool::new(1);
        std::thread::sleep(SPIN * 5);
        let seen = Mutex::new(std::collections::HashSet::new());
        // Each of the two tasks waits until both threads have taken one, so the caller cannot
        // do both alone; a worker that never wakes fails the test after the deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        pool.run(2, &|_| {
            seen.lock().unwrap().insert(std::thread::current().id());
            while seen.lock().unwrap().len() < 2 && Instant::now() < deadline {
                std::thread::yield_now();
            }
        });
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn concurrent_callers_each_get_their_tasks_done() {
        let pool = SpinPool::new(2);
        let total = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..200 {
                        pool.run(16, &|i| {
                            total.fetch_add(i + 1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 200 * (16 * 17 / 2));
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_goes_on() {
        let pool = SpinPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(100, &|i| {
                if i == 57 {
                    panic!("task 57");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(10, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 10);
    }
}
