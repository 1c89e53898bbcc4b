//! Choosing a backend by measured decode speed (issue 18): the slower backend is never chosen
//! when it is slower by more than the measurement's noise, whichever order they are measured
//! in, and measuring leaves the backend as it found a new one (empty cache, same logits).

use crate::batch::Unbatched as Slowed;
use crate::common;
use axiscope::engine::backend::now_or_err;
use axiscope::engine::speed::{DecodeSpeed, SpeedPlan, first_is_faster, measure_decode};
use axiscope::engine::{Backend, Hooks};
use common::*;
use std::time::Duration;

const PLAN: SpeedPlan = SpeedPlan {
    min_steps: 5,
    max_steps: 8,
    budget_ms: 300.0,
};

fn measure(b: &mut dyn Backend) -> DecodeSpeed {
    now_or_err(measure_decode(b, PLAN)).unwrap()
}

#[test]
fn the_slowed_backend_is_never_chosen() {
    let m = default_model();
    let mut fast = m.cpu_backend(1).unwrap();
    let delay = Duration::from_millis(80);
    let mut slow = Slowed(m.cpu_backend(1).unwrap(), delay);
    for round in 0..2 {
        // Both orders: the first measured must not be favoured (a cold cache, a warm core).
        let (f, s) = if round == 0 {
            let f = measure(&mut fast);
            (f, measure(&mut slow))
        } else {
            let s = measure(&mut slow);
            (measure(&mut fast), s)
        };
        for d in [&f, &s] {
            assert!(
                (PLAN.min_steps..=PLAN.max_steps).contains(&d.step_ms.len()),
                "{d:?}"
            );
        }
        // The measurement sees the delay: the slowed median is longer by at least half of it
        // (on a loaded machine the two backends' own steps can differ by tens of ms: a CI run
        // sharing its 2 cores saw 22 ms against 12), and by more than the noise of either.
        let gap = s.median_ms() - f.median_ms();
        assert!(
            gap >= 80.0 * 0.5,
            "round {round}: gap {gap} ms, {f:?} {s:?}"
        );
        assert!(gap > f.noise_ms() + s.noise_ms(), "{f:?} {s:?}");
        assert!(first_is_faster(&f, &s) && !first_is_faster(&s, &f));
    }
}

#[test]
fn measuring_leaves_an_empty_cache_and_the_same_logits() {
    let m = default_model();
    let mut b = m.cpu_backend(1).unwrap();
    let d = measure(&mut b);
    assert!(d.step_ms.iter().all(|&t| t > 0.0), "{d:?}");
    assert_eq!(b.cached(), 0);
    let prompt = m.tokenizer.encode("Hello there").unwrap();
    let got = b.forward(&prompt, 0, &mut Hooks::none(), false).unwrap();
    let want = m
        .cpu_backend(1)
        .unwrap()
        .forward(&prompt, 0, &mut Hooks::none(), false)
        .unwrap();
    assert!(got == want);
}

#[test]
fn the_budget_ends_a_measurement_after_its_minimum() {
    let m = default_model();
    let mut slow = Slowed(m.cpu_backend(1).unwrap(), Duration::from_millis(30));
    // A budget one step overruns: exactly the minimum is timed.
    let plan = SpeedPlan {
        min_steps: 2,
        max_steps: 50,
        budget_ms: 1.0,
    };
    let d = now_or_err(measure_decode(&mut slow, plan)).unwrap();
    assert_eq!(d.step_ms.len(), 2);
    assert!(d.step_ms.iter().all(|&t| t >= 30.0), "{d:?}");
}
