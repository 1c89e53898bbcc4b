//! Which backend decodes faster on this machine, measured rather than assumed (issue 18): a
//! WebGPU adapter that is dispatch-bound, integrated or emulated can be slower than the CPU
//! engine, and choosing by the adapter's kind would then pick the slower one without a word.

use super::clock::now_ms;
use super::{Backend, Hooks, Result};

/// How long one backend is timed: steps until `budget_ms` is spent, at least `min_steps` and
/// at most `max_steps`.
#[derive(Clone, Copy, Debug)]
pub struct SpeedPlan {
    pub min_steps: usize,
    pub max_steps: usize,
    pub budget_ms: f64,
}

impl SpeedPlan {
    /// At load in the browser: about a second per backend where a step takes under ~60 ms,
    /// one step where a single step takes longer than the budget (a software adapter).
    pub const AT_LOAD: SpeedPlan = SpeedPlan {
        min_steps: 1,
        max_steps: 16,
        budget_ms: 1000.0,
    };
}

/// The timed decode steps of one backend, in milliseconds, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeSpeed {
    pub step_ms: Vec<f64>,
}

impl DecodeSpeed {
    pub fn median_ms(&self) -> f64 {
        quantile(&self.step_ms, 0.5)
    }

    pub fn tok_per_s(&self) -> f64 {
        1000.0 / self.median_ms()
    }

    /// The measurement's noise: half the interquartile range of the steps (0 for one step).
    pub fn noise_ms(&self) -> f64 {
        (quantile(&self.step_ms, 0.75) - quantile(&self.step_ms, 0.25)) / 2.0
    }
}

/// Linear-interpolated quantile of `v` (not empty).
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let x = q * (s.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (x - lo as f64)
}

/// Times greedy decode steps from an empty cache (token 0 first, then each step's argmax) and
/// empties the cache again. The first step is timed like the others: the caller warms a
/// backend up first where that matters (the browser's GPU runs a first token at load anyway).
pub async fn measure_decode(backend: &mut dyn Backend, plan: SpeedPlan) -> Result<DecodeSpeed> {
    backend.truncate(0);
    let (start, mut token) = (now_ms(), 0u32);
    let mut step_ms = Vec::with_capacity(plan.max_steps);
    let limit = plan.max_steps.min(backend.config().context).max(1);
    while step_ms.len() < limit {
        let t0 = now_ms();
        let pos = step_ms.len();
        let logits = backend
            .forward_async(&[token], pos, &mut Hooks::none(), false)
            .await;
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                backend.truncate(0);
                return Err(e);
            }
        };
        step_ms.push(now_ms() - t0);
        token = argmax(&logits);
        if step_ms.len() >= plan.min_steps && now_ms() - start >= plan.budget_ms {
            break;
        }
    }
    backend.truncate(0);
    Ok(DecodeSpeed { step_ms })
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Whether `a` is the faster of two measured backends: the shorter median step. The median
/// is what a visitor's reply feels; a backend slower by more than the noise is never chosen.
pub fn first_is_faster(a: &DecodeSpeed, b: &DecodeSpeed) -> bool {
    a.median_ms() <= b.median_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_and_noise_is_half_the_iqr() {
        let s = DecodeSpeed {
            step_ms: vec![4.0, 1.0, 3.0, 2.0, 100.0],
        };
        assert_eq!(s.median_ms(), 3.0);
        assert_eq!(s.tok_per_s(), 1000.0 / 3.0);
        assert_eq!(s.noise_ms(), (4.0 - 2.0) / 2.0);
        let one = DecodeSpeed { step_ms: vec![7.0] };
        assert_eq!((one.median_ms(), one.noise_ms()), (7.0, 0.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.5), 1.5);
    }
}
