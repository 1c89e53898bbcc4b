//! The analysis layer, chosen on held-out questions, and intervals on the persona-space
//! figures (docs/method.md, "Choosing the layer" and "Uncertainty").
//!
//! Questions are the unit of every split and resample: all roles answer the same questions
//! and a question moves the role vectors and the default together, so the rollouts of one
//! question are not independent draws. The distinct question ids, sorted, are numbered
//! `i = 0, 1, ...`; half A holds even `i`, half B odd `i` (the split of
//! [`super::report::split_half`]); the quarters are A1 (`i % 4 == 0`), A2 (2), B1 (1),
//! B2 (3).
//!
//! - Held-out cos(PC1, axis) of two disjoint question sets X and Y:
//!   `½ [cos(PC1_X, axis_Y) + cos(PC1_Y, axis_X)]`, PC1 of each set oriented toward its
//!   own default.
//! - The layer: the one maximising the held-out cos of A1 and A2 (half A alone), among the
//!   layers from [`first_candidate`] (the first quarter is left out) to all but the last
//!   [`EXCLUDED_LAST_LAYERS`]. Half B never enters the choice, so the
//!   same figure on B1 and B2 at the chosen layer is an honest estimate.
//! - Intervals ([`LEVEL`]): cos(PC1, axis) and the default's PC1 rank by a percentile
//!   bootstrap over questions; split-half cos and the held-out cos of the halves by their
//!   spread over random half splits of the questions.

use serde::{Deserialize, Serialize};

use super::pca::Pca;
use super::stats::{self, SplitMix};
use super::vectors::RolloutActivation;
use super::{Error, Result};

/// The last layers feed the unembedding and mostly encode the next token, not the persona;
/// the choice leaves them out.
pub const EXCLUDED_LAST_LAYERS: usize = 3;

/// The first layer the choice considers: a quarter of the depth. Below it the residual
/// stream still mostly carries the input's words, so an axis there separates role-play
/// vocabulary from the Assistant's, not a persona the model represents (on SmolLM2-135M,
/// layer 0 scored highest on half A: docs/method.md, "Choosing the layer").
pub fn first_candidate(n_layers: usize) -> usize {
    n_layers / 4
}
/// Fewer questions leave quarters of one question: no choice then (the middle layer).
pub const MIN_CHOICE_QUESTIONS: usize = 4;
/// Two-sided coverage of every interval.
pub const LEVEL: f32 = 0.9;
pub const BOOTSTRAP_REPS: usize = 200;
pub const RANDOM_SPLITS: usize = 100;
/// Seeds the resampling, so a bundle's intervals are reproducible.
const RESAMPLE_SEED: u64 = 0x6865_6c64_2d6f_7574;

/// The rule that chose the analysis layer, the choice, and its score at every candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerChoice {
    pub rule: String,
    pub layer: usize,
    /// The question ids the choice saw (half A).
    pub questions: Vec<u32>,
    /// `[candidates]`: held-out cos(PC1, axis) of quarters A1 and A2, layers 0, 1, ...
    pub scores: Vec<f32>,
}

/// A figure and its interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f32,
    pub lo: f32,
    pub hi: f32,
}

/// Held-out figures at every layer and intervals at the analysis layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// `[n_layers]`: held-out cos(PC1, axis) of halves A and B.
    pub halves_cos_pc1_axis: Vec<f32>,
    /// `[n_layers]`: held-out cos(PC1, axis) of quarters B1 and B2 (what the choice
    /// maximised on A, measured where it did not look).
    pub half_b_cos_pc1_axis: Vec<f32>,
    /// The layer of the intervals.
    pub layer: usize,
    pub level: f32,
    pub bootstrap_reps: usize,
    pub random_splits: usize,
    /// Bootstrap over questions.
    pub cos_pc1_axis: Interval,
    /// Bootstrap over questions; 1 = beyond every role.
    pub default_pc1_rank: Interval,
    /// Value: halves A and B; interval: random half splits.
    pub split_half_cos: Interval,
    /// Value: halves A and B; interval: random half splits.
    pub halves_cos_pc1_axis_interval: Interval,
}

/// Sums of rollout vectors per (role or default, question), so any weighting of the
/// questions (a half, a bootstrap draw) gives role vectors without touching the rollouts.
pub struct QuestionSums {
    n_layers: usize,
    hidden: usize,
    /// Number of roles; the default is group `n_roles`.
    n_roles: usize,
    /// Sorted distinct question ids.
    pub questions: Vec<u32>,
    /// `[groups][questions][n_layers * hidden]`.
    sums: Vec<f32>,
    /// `[groups][questions]`.
    counts: Vec<u32>,
}

/// Role vectors and the default at one layer, for one weighting of the questions.
struct LayerSet {
    hidden: usize,
    /// `[n][hidden]`, roles with rollouts under the weighting.
    roles: Vec<f32>,
    default: Vec<f32>,
}

impl LayerSet {
    fn n_roles(&self) -> usize {
        self.roles.len() / self.hidden
    }

    fn axis(&self) -> Vec<f32> {
        let mu = stats::mean_rows(self.roles.chunks_exact(self.hidden), self.hidden)
            .expect("at least two roles");
        stats::sub(&self.default, &mu)
    }

    /// PC1 (toward the default), the default's and the roles' PC1 coordinates.
    fn pc1(&self) -> Result<(Vec<f32>, f32, Vec<f32>)> {
        let n = self.n_roles();
        let mut pca = Pca::fit(&self.roles, n, self.hidden, 1)?;
        let mut d = pca.project(&self.default)[0];
        if d < 0.0 {
            pca.flip(0);
            d = -d;
        }
        let scores = (0..n).map(|r| pca.row_scores(r)[0]).collect();
        Ok((pca.component(0).to_vec(), d, scores))
    }
}

/// `½ [cos(PC1_x, axis_y) + cos(PC1_y, axis_x)]`.
fn held_out_cos(x: &LayerSet, y: &LayerSet) -> Result<f32> {
    let (px, _, _) = x.pc1()?;
    let (py, _, _) = y.pc1()?;
    Ok(((stats::cosine(&px, &y.axis()) + stats::cosine(&py, &x.axis())) / 2.0) as f32)
}

/// Percentiles `(1 - LEVEL)/2` and `(1 + LEVEL)/2` of `values`.
fn spread(value: f32, values: &[f32]) -> Interval {
    let tail = (1.0 - LEVEL as f64) / 2.0 * 100.0;
    match stats::percentiles(values, &[tail, 100.0 - tail]) {
        Some(p) => Interval {
            value,
            lo: p[0],
            hi: p[1],
        },
        None => Interval {
            value,
            lo: value,
            hi: value,
        },
    }
}

/// A bootstrap over `n_units` resampled with replacement: `stat` gets each unit's
/// multiplicity in the draw and returns the figures (`None`: not computable for this draw,
/// skipped). Returns every draw's figures.
pub fn bootstrap<T>(
    n_units: usize,
    reps: usize,
    rng: &mut SplitMix,
    mut stat: impl FnMut(&[f64]) -> Result<Option<T>>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(reps);
    let mut w = vec![0f64; n_units];
    for _ in 0..reps {
        w.iter_mut().for_each(|x| *x = 0.0);
        for _ in 0..n_units {
            w[rng.below(n_units)] += 1.0;
        }
        if let Some(v) = stat(&w)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// The percentile interval of [`bootstrap`] draws around `value`.
pub fn bootstrap_interval(value: f32, draws: &[f32]) -> Interval {
    spread(value, draws)
}

impl QuestionSums {
    pub fn new(rollouts: &[RolloutActivation], n_layers: usize, hidden: usize) -> Result<Self> {
        let width = n_layers * hidden;
        let mut roles: Vec<&str> = Vec::new();
        for r in rollouts.iter().filter(|r| !r.is_default()) {
            if !roles.contains(&r.role.as_str()) {
                roles.push(r.role.as_str());
            }
        }
        let mut questions: Vec<u32> = rollouts.iter().map(|r| r.question_id).collect();
        questions.sort_unstable();
        questions.dedup();
        let (n_roles, n_q) = (roles.len(), questions.len());
        let mut sums = vec![0f32; (n_roles + 1) * n_q * width];
        let mut counts = vec![0u32; (n_roles + 1) * n_q];
        for r in rollouts {
            if r.per_layer.len() != width {
                return Err(Error::Invalid(format!(
                    "held-out figures: rollout of {} floats, expected {n_layers} x {hidden}",
                    r.per_layer.len()
                )));
            }
            let g = if r.is_default() {
                n_roles
            } else {
                roles.iter().position(|n| *n == r.role).expect("listed")
            };
            let q = questions.binary_search(&r.question_id).expect("listed");
            let cell = g * n_q + q;
            counts[cell] += 1;
            sums[cell * width..(cell + 1) * width]
                .iter_mut()
                .zip(&r.per_layer)
                .for_each(|(s, x)| *s += x);
        }
        Ok(Self {
            n_layers,
            hidden,
            n_roles,
            questions,
            sums,
            counts,
        })
    }

    /// The mean of a group's rollouts at `layer`, question `q` weighted by `w[q]`; `None`
    /// when the group has no weighted rollout.
    fn group_mean(&self, g: usize, layer: usize, w: &[f64]) -> Option<Vec<f32>> {
        let (n_q, h) = (self.questions.len(), self.hidden);
        let width = self.n_layers * h;
        let mut acc = vec![0f64; h];
        let mut n = 0f64;
        for (q, &wq) in w.iter().enumerate().filter(|(_, w)| **w > 0.0) {
            let cell = g * n_q + q;
            if self.counts[cell] == 0 {
                continue;
            }
            n += wq * self.counts[cell] as f64;
            let s = &self.sums[cell * width + layer * h..cell * width + (layer + 1) * h];
            acc.iter_mut()
                .zip(s)
                .for_each(|(a, &x)| *a += wq * x as f64);
        }
        (n > 0.0).then(|| acc.iter().map(|a| (a / n) as f32).collect())
    }

    /// Role vectors and default at `layer` under question weights `w`; `None` without the
    /// default or with fewer than two roles.
    fn set(&self, layer: usize, w: &[f64]) -> Option<LayerSet> {
        let default = self.group_mean(self.n_roles, layer, w)?;
        let roles: Vec<f32> = (0..self.n_roles)
            .filter_map(|g| self.group_mean(g, layer, w))
            .flatten()
            .collect();
        (roles.len() >= 2 * self.hidden).then_some(LayerSet {
            hidden: self.hidden,
            roles,
            default,
        })
    }

    /// Weight 1 for the questions whose index `i` passes `keep`.
    fn weights(&self, keep: impl Fn(usize) -> bool) -> Vec<f64> {
        (0..self.questions.len())
            .map(|i| if keep(i) { 1.0 } else { 0.0 })
            .collect()
    }

    fn held_out_between(&self, layer: usize, x: &[f64], y: &[f64]) -> Result<Option<f32>> {
        match (self.set(layer, x), self.set(layer, y)) {
            (Some(x), Some(y)) => held_out_cos(&x, &y).map(Some),
            _ => Ok(None),
        }
    }

    /// Chooses the analysis layer on half A (see the module doc); `None` with fewer than
    /// [`MIN_CHOICE_QUESTIONS`] questions or a quarter without the default.
    pub fn choose_layer(&self) -> Result<Option<LayerChoice>> {
        if self.questions.len() < MIN_CHOICE_QUESTIONS {
            return Ok(None);
        }
        let candidates = if self.n_layers > EXCLUDED_LAST_LAYERS {
            self.n_layers - EXCLUDED_LAST_LAYERS
        } else {
            self.n_layers
        };
        let first = first_candidate(self.n_layers).min(candidates - 1);
        let (a1, a2) = (self.weights(|i| i % 4 == 0), self.weights(|i| i % 4 == 2));
        // Every layer up to the last ones is scored (the report shows them all); the choice
        // is among `first..candidates`.
        let mut scores = Vec::with_capacity(candidates);
        for l in 0..candidates {
            match self.held_out_between(l, &a1, &a2)? {
                Some(s) => scores.push(s),
                None => return Ok(None),
            }
        }
        let layer = (first..candidates)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
            .expect("at least one layer");
        Ok(Some(LayerChoice {
            rule: format!(
                "highest held-out cos(PC1, axis) between question quarters A1 and A2 (half A: \
                 every other question), layers {first}..{candidates} (the first quarter and \
                 the last {} left out)",
                self.n_layers - candidates
            ),
            layer,
            questions: (0..self.questions.len())
                .filter(|i| i % 2 == 0)
                .map(|i| self.questions[i])
                .collect(),
            scores,
        }))
    }

    /// Held-out figures per layer and intervals at `layer`; `None` with fewer than
    /// [`MIN_CHOICE_QUESTIONS`] questions or a half without the default.
    pub fn held_out(&self, layer: usize) -> Result<Option<HeldOut>> {
        let n_q = self.questions.len();
        if n_q < MIN_CHOICE_QUESTIONS || layer >= self.n_layers {
            return Ok(None);
        }
        let (a, b) = (self.weights(|i| i % 2 == 0), self.weights(|i| i % 2 == 1));
        let (b1, b2) = (self.weights(|i| i % 4 == 1), self.weights(|i| i % 4 == 3));
        let mut halves = Vec::with_capacity(self.n_layers);
        let mut half_b = Vec::with_capacity(self.n_layers);
        for l in 0..self.n_layers {
            match (
                self.held_out_between(l, &a, &b)?,
                self.held_out_between(l, &b1, &b2)?,
            ) {
                (Some(h), Some(hb)) => {
                    halves.push(h);
                    half_b.push(hb);
                }
                _ => return Ok(None),
            }
        }
        let all = vec![1.0; n_q];
        let full = self
            .set(layer, &all)
            .expect("the halves had a default and roles");
        let cos_rank = |s: &LayerSet| -> Result<(f32, f32)> {
            let (pc1, d, scores) = s.pc1()?;
            let rank = 1 + scores.iter().filter(|&&v| v > d).count();
            Ok((stats::cosine(&pc1, &s.axis()) as f32, rank as f32))
        };
        let (cos, rank) = cos_rank(&full)?;
        let mut rng = SplitMix::new(RESAMPLE_SEED);
        let draws = bootstrap(n_q, BOOTSTRAP_REPS, &mut rng, |w| {
            self.set(layer, w).map(|s| cos_rank(&s)).transpose()
        })?;
        let cos_draws: Vec<f32> = draws.iter().map(|d| d.0).collect();
        let rank_draws: Vec<f32> = draws.iter().map(|d| d.1).collect();
        let split_cos = |x: &[f64], y: &[f64]| -> Option<f32> {
            let (x, y) = (self.set(layer, x)?, self.set(layer, y)?);
            Some(stats::cosine(&x.axis(), &y.axis()) as f32)
        };
        let (mut split_draws, mut halves_draws) = (Vec::new(), Vec::new());
        let mut order: Vec<usize> = (0..n_q).collect();
        for _ in 0..RANDOM_SPLITS {
            for i in (1..n_q).rev() {
                order.swap(i, rng.below(i + 1));
            }
            let mut x = vec![0.0; n_q];
            order[..n_q.div_ceil(2)].iter().for_each(|&q| x[q] = 1.0);
            let y: Vec<f64> = x.iter().map(|v| 1.0 - v).collect();
            if let Some(c) = split_cos(&x, &y) {
                split_draws.push(c);
            }
            if let Some(h) = self.held_out_between(layer, &x, &y)? {
                halves_draws.push(h);
            }
        }
        let split_value = split_cos(&a, &b).expect("the halves had a default and roles");
        Ok(Some(HeldOut {
            layer,
            level: LEVEL,
            bootstrap_reps: BOOTSTRAP_REPS,
            random_splits: RANDOM_SPLITS,
            cos_pc1_axis: bootstrap_interval(cos, &cos_draws),
            default_pc1_rank: bootstrap_interval(rank, &rank_draws),
            split_half_cos: spread(split_value, &split_draws),
            halves_cos_pc1_axis_interval: spread(halves[layer], &halves_draws),
            halves_cos_pc1_axis: halves,
            half_b_cos_pc1_axis: half_b,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::science::vectors::DEFAULT_ROLE;

    /// `n_roles` roles and the default answer `n_q` questions (2 rollouts each) over
    /// `n_roles` roles and the default answer `n_q` questions (2 rollouts each) over
    /// `n_layers` layers (12 roles in the tests: 5 is coprime to 12). At layer `good` the
    /// roles spread along the default's direction `w` (so PC1 is the axis); at every other
    /// layer they spread more widely along a direction `v` orthogonal to it (PC1 is then not
    /// the axis), with the default's offset weaker; `loud` gets the persona structure 3x
    /// stronger than `good` (to check that the last layers are left out).
    fn layered(
        n_roles: usize,
        n_q: u32,
        n_layers: usize,
        good: usize,
        loud: Option<usize>,
        seed: u64,
    ) -> Vec<RolloutActivation> {
        let hidden = 24;
        let mut rng = SplitMix::new(seed);
        let mut out = Vec::new();
        let unit = |i: usize| (0..hidden).map(move |j| if j == i { 1.0f32 } else { 0.0 });
        let w: Vec<f32> = unit(0).collect();
        let v: Vec<f32> = unit(1).collect();
        let q_effect: Vec<Vec<f32>> = (0..n_q)
            .map(|_| (0..n_layers * hidden).map(|_| rng.normal() * 0.3).collect())
            .collect();
        for r in 0..=n_roles {
            let is_default = r == n_roles;
            let a = if is_default {
                2.0
            } else {
                -1.0 + 2.0 * r as f32 / (n_roles - 1) as f32
            };
            // The roles' spread along v is a permutation of their a's: mean 0, so v stays out
            // of the axis.
            let b = if is_default {
                0.0
            } else {
                3.0 * (-1.0 + 2.0 * ((r * 5) % n_roles) as f32 / (n_roles - 1) as f32)
            };
            for q in 0..n_q {
                for p in 0..2 {
                    let mut per_layer = Vec::with_capacity(n_layers * hidden);
                    for l in 0..n_layers {
                        let (sa, sb) = match l {
                            _ if Some(l) == loud => (3.0, 0.0),
                            _ if l == good => (1.0, 0.0),
                            _ => (0.3, 1.0),
                        };
                        for j in 0..hidden {
                            let x = sa * a * w[j]
                                + sb * b * v[j]
                                + q_effect[q as usize][l * hidden + j]
                                + rng.normal() * 0.5;
                            per_layer.push(x);
                        }
                    }
                    out.push(RolloutActivation {
                        role: if is_default {
                            DEFAULT_ROLE.to_string()
                        } else {
                            format!("r{r}")
                        },
                        prompt_index: p,
                        question_id: 10 + q,
                        n_tokens: 5,
                        per_layer,
                        mean_token_norm: vec![1.0; n_layers],
                    });
                }
            }
        }
        out
    }

    #[test]
    fn the_layer_with_the_planted_structure_is_chosen_and_the_last_left_out() {
        // 9 layers: candidates 2..6.
        for (good, seed) in [(2, 1), (5, 2)] {
            let rs = layered(12, 8, 9, good, Some(8), seed);
            let sums = QuestionSums::new(&rs, 9, 24).unwrap();
            let c = sums.choose_layer().unwrap().unwrap();
            assert_eq!(c.layer, good, "{:?}", c.scores);
            assert_eq!(c.scores.len(), 9 - EXCLUDED_LAST_LAYERS);
            assert_eq!(c.questions, vec![10, 12, 14, 16]);
            let others = (0..c.scores.len()).filter(|&l| l != good);
            assert!(c.scores[good] > 0.6, "{:?}", c.scores);
            assert!(
                others.map(|l| c.scores[l]).all(|s| s < 0.4),
                "{:?}",
                c.scores
            );
            let h = sums.held_out(c.layer).unwrap().unwrap();
            assert!(h.half_b_cos_pc1_axis[good] > 0.6, "{h:?}");
            assert!(h.halves_cos_pc1_axis[(good + 1) % 6] < 0.5, "{h:?}");
            assert!(h.cos_pc1_axis.lo > 0.6 && h.cos_pc1_axis.hi <= 1.0, "{h:?}");
            assert_eq!(h.default_pc1_rank.value, 1.0);
        }
        // Planted in the first quarter: scored, never chosen.
        let rs = layered(12, 8, 9, 0, Some(8), 3);
        let sums = QuestionSums::new(&rs, 9, 24).unwrap();
        let c = sums.choose_layer().unwrap().unwrap();
        assert!(c.scores[0] > 0.6, "{:?}", c.scores);
        assert!(c.layer >= first_candidate(9), "{:?}", c.scores);
        // Too few questions: no choice.
        let rs = layered(6, 3, 5, 1, None, 4);
        assert!(
            QuestionSums::new(&rs, 5, 24)
                .unwrap()
                .choose_layer()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bootstrap_intervals_cover_a_known_mean_at_the_stated_rate() {
        // 300 samples of 16 units from N(0.7, 1); the 90% percentile interval of the mean
        // should hold 0.7 about 90% of the time (a percentile bootstrap with 16 units runs
        // a little under: ~87%).
        let mut data_rng = SplitMix::new(11);
        let mut rng = SplitMix::new(12);
        let mut covered = 0;
        let trials = 300;
        for _ in 0..trials {
            let x: Vec<f64> = (0..16).map(|_| 0.7 + data_rng.normal() as f64).collect();
            let mean = |w: &[f64]| {
                let s: f64 = w.iter().zip(&x).map(|(w, x)| w * x).sum();
                (s / w.iter().sum::<f64>()) as f32
            };
            let value = mean(&[1.0; 16]);
            let draws = bootstrap(16, 400, &mut rng, |w| Ok(Some(mean(w)))).unwrap();
            let i = bootstrap_interval(value, &draws);
            if i.lo <= 0.7 && 0.7 <= i.hi {
                covered += 1;
            }
        }
        let rate = covered as f64 / trials as f64;
        assert!((0.82..=0.95).contains(&rate), "coverage {rate}");
    }

    #[test]
    fn intervals_bracket_their_values_and_tell_a_good_layer_from_a_bad_one() {
        let rs = layered(12, 8, 3, 1, None, 100);
        let h = QuestionSums::new(&rs, 3, 24)
            .unwrap()
            .held_out(1)
            .unwrap()
            .unwrap();
        for i in [
            h.cos_pc1_axis,
            h.split_half_cos,
            h.halves_cos_pc1_axis_interval,
        ] {
            // Percentile intervals need not hold the estimate: a bootstrap draw repeats
            // questions, which adds noise and pulls a cosine down (docs/method.md).
            assert!(i.lo <= i.hi && i.lo > 0.6 && i.hi <= 1.0, "{h:?}");
        }
        // At a layer where PC1 is not the axis, cos(PC1, axis) is small and so is its interval.
        let h0 = QuestionSums::new(&rs, 3, 24)
            .unwrap()
            .held_out(0)
            .unwrap()
            .unwrap();
        assert!(h0.cos_pc1_axis.hi.abs() < 0.5, "{h0:?}");
    }
}
