//! Edits of the residual stream for capping and steering (method.md, "Activation capping"
//! and "Steering"), as plain data the engine's hooks execute.
//!
//! - Capping at layer `l`: `h <- h + u_l * max(tau_l - h . u_l, 0)`, a floor on the *raw*
//!   projection `h . u_l`, with `tau_l` a percentile of the raw per-rollout projections
//!   ([`ProjectionStats::tau`]). It is a [`EditKind::Clamp`] with `min = tau_l`. The
//!   paper's recommended setting is the 75th percentile.
//! - Steering at layer `L`: `h <- h + alpha * n_L * u_L` at every position, with `n_L` the
//!   mean token norm at `L`. It is an [`EditKind::Add`].
//!
//! Layer bands are half-open ranges `start..end` of model layers (hook points).

use std::ops::Range;

use super::stats;
use super::vectors::{PersonaVectors, ProjectionStats};
use super::{Error, Result};

/// One edit at one hook point. The engine's hook type has exactly these two operations.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerEdit {
    pub layer: usize,
    pub kind: EditKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EditKind {
    /// `h += vector`.
    Add { vector: Vec<f32> },
    /// `p = h . unit; h += unit * (clamp(p, min, max) - p)`; `unit` has length 1.
    Clamp {
        unit: Vec<f32>,
        min: Option<f32>,
        max: Option<f32>,
    },
}

impl EditKind {
    /// Applies the edit to one residual vector: the reference arithmetic the engine's hooks
    /// must reproduce (dot product in `f64`). Panics if `h` has the wrong width.
    pub fn apply(&self, h: &mut [f32]) {
        match self {
            EditKind::Add { vector } => {
                assert_eq!(vector.len(), h.len(), "edit width mismatch");
                h.iter_mut().zip(vector).for_each(|(x, v)| *x += v);
            }
            EditKind::Clamp { unit, min, max } => {
                let p = stats::dot(h, unit);
                let mut target = p;
                if let Some(lo) = min {
                    target = target.max(*lo as f64);
                }
                if let Some(hi) = max {
                    target = target.min(*hi as f64);
                }
                let delta = target - p;
                if delta != 0.0 {
                    h.iter_mut()
                        .zip(unit)
                        .for_each(|(x, &u)| *x = (*x as f64 + u as f64 * delta) as f32);
                }
            }
        }
    }
}

fn check_band(pv: &PersonaVectors, layers: &Range<usize>) -> Result<()> {
    if layers.start >= layers.end || layers.end > pv.n_layers {
        return Err(Error::Invalid(format!(
            "layer band {}..{} is empty or outside 0..{}",
            layers.start, layers.end, pv.n_layers
        )));
    }
    Ok(())
}

/// The paper's activation cap: a floor at the raw-projection percentile `percentile`
/// (1..=99) at every layer of `layers`.
pub fn capping_edits(
    pv: &PersonaVectors,
    stats: &ProjectionStats,
    layers: Range<usize>,
    percentile: u8,
) -> Result<Vec<LayerEdit>> {
    clamp_edits(pv, stats, layers, Some(percentile), None)
}

/// A floor and/or a ceiling on the raw projection at percentiles (1..=99) of the
/// per-rollout projections, at every layer of `layers`. A ceiling alone is the inverse of
/// capping: it keeps the model from being too Assistant-like (for role-play).
pub fn clamp_edits(
    pv: &PersonaVectors,
    stats: &ProjectionStats,
    layers: Range<usize>,
    floor: Option<u8>,
    ceiling: Option<u8>,
) -> Result<Vec<LayerEdit>> {
    check_band(pv, &layers)?;
    if stats.n_layers != pv.n_layers {
        return Err(Error::Invalid(
            "clamp: projection stats and vectors have different layer counts".into(),
        ));
    }
    if floor.is_none() && ceiling.is_none() {
        return Err(Error::Invalid(
            "clamp: neither a floor nor a ceiling was given".into(),
        ));
    }
    if let (Some(lo), Some(hi)) = (floor, ceiling)
        && lo > hi
    {
        return Err(Error::Invalid(format!(
            "clamp: floor percentile {lo} above ceiling percentile {hi}"
        )));
    }
    let tau = |l: usize, q: Option<u8>| -> Result<Option<f32>> {
        q.map(|q| {
            stats
                .tau(l, q)
                .ok_or_else(|| Error::Invalid(format!("clamp: percentile {q} is not in 1..=99")))
        })
        .transpose()
    };
    layers
        .map(|l| {
            Ok(LayerEdit {
                layer: l,
                kind: EditKind::Clamp {
                    unit: pv.unit_at(l).to_vec(),
                    min: tau(l, floor)?,
                    max: tau(l, ceiling)?,
                },
            })
        })
        .collect()
}

/// Additive steering `alpha * n_L * u_L` at every layer `L` of `layers` (usually one).
/// Positive `alpha` pushes toward the Assistant; the reference sweeps -0.5..2.
pub fn steering_edits(
    pv: &PersonaVectors,
    layers: Range<usize>,
    alpha: f32,
) -> Result<Vec<LayerEdit>> {
    check_band(pv, &layers)?;
    if !alpha.is_finite() {
        return Err(Error::Invalid(format!(
            "steering: alpha {alpha} is not finite"
        )));
    }
    Ok(layers
        .map(|l| {
            let scale = alpha as f64 * pv.mean_token_norm[l] as f64;
            LayerEdit {
                layer: l,
                kind: EditKind::Add {
                    vector: pv
                        .unit_at(l)
                        .iter()
                        .map(|&u| (scale * u as f64) as f32)
                        .collect(),
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::science::vectors::{DEFAULT_ROLE, RolloutActivation};

    /// 3 layers, hidden 4, a few rollouts with spread projections.
    fn fixture() -> (PersonaVectors, ProjectionStats) {
        let mut rs = Vec::new();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
        };
        for (role, shift) in [("a", -1.0f32), ("b", 0.0), (DEFAULT_ROLE, 2.0)] {
            for q in 0..5 {
                let per_layer: Vec<f32> = (0..12)
                    .map(|i| next() * 3.0 + if i % 4 == 0 { shift } else { 0.0 })
                    .collect();
                rs.push(RolloutActivation {
                    role: role.into(),
                    prompt_index: 0,
                    question_id: q,
                    n_tokens: 4,
                    per_layer,
                    mean_token_norm: vec![10.0, 20.0, 30.0],
                });
            }
        }
        let pv = PersonaVectors::from_rollouts(&rs, 3, 4).unwrap();
        let st = ProjectionStats::compute(&pv, &rs).unwrap();
        (pv, st)
    }

    #[test]
    fn capping_is_a_floor_on_the_raw_projection() {
        let (pv, st) = fixture();
        let edits = capping_edits(&pv, &st, 1..3, 75).unwrap();
        assert_eq!(
            edits.iter().map(|e| e.layer).collect::<Vec<_>>(),
            vec![1, 2]
        );
        for e in &edits {
            let u = pv.unit_at(e.layer);
            let tau = st.tau(e.layer, 75).unwrap();
            let EditKind::Clamp {
                min: Some(m),
                max: None,
                ..
            } = &e.kind
            else {
                panic!("not a floor")
            };
            assert_eq!(*m, tau);
            // Below the floor: lifted exactly onto it, only along u.
            let mut low: Vec<f32> = u.iter().map(|x| x * (tau - 5.0)).collect();
            low[0] += 0.3; // a component off the axis must survive
            let before = low.clone();
            let gap = tau as f64 - stats::dot(&before, u);
            assert!(gap > 4.0);
            e.kind.apply(&mut low);
            assert!(
                (stats::dot(&low, u) - tau as f64).abs() < 1e-5,
                "projection {}",
                stats::dot(&low, u)
            );
            let moved = stats::sub(&low, &before);
            assert!(
                (stats::cosine(&moved, u) - 1.0).abs() < 1e-6,
                "moved along u only"
            );
            assert!((stats::norm(&moved) - gap).abs() < 1e-5);
            // Above the floor: bit-identical.
            let mut high: Vec<f32> = u.iter().map(|x| x * (tau + 1.0)).collect();
            high[1] -= 0.2;
            let before = high.clone();
            e.kind.apply(&mut high);
            assert_eq!(high, before);
        }
    }

    #[test]
    fn ceiling_and_both() {
        let (pv, st) = fixture();
        let e = &clamp_edits(&pv, &st, 0..1, Some(10), Some(90)).unwrap()[0];
        let (lo, hi) = (st.tau(0, 10).unwrap(), st.tau(0, 90).unwrap());
        assert!(lo < hi);
        let u = pv.unit_at(0);
        let mut h: Vec<f32> = u.iter().map(|x| x * (hi + 3.0)).collect();
        e.kind.apply(&mut h);
        assert!((stats::dot(&h, u) - hi as f64).abs() < 1e-5);
        assert!(clamp_edits(&pv, &st, 0..1, Some(90), Some(10)).is_err());
        assert!(clamp_edits(&pv, &st, 0..1, None, None).is_err());
        assert!(clamp_edits(&pv, &st, 0..1, Some(0), None).is_err());
        assert!(clamp_edits(&pv, &st, 0..4, Some(50), None).is_err());
        assert!(clamp_edits(&pv, &st, 2..2, Some(50), None).is_err());
    }

    #[test]
    fn steering_adds_alpha_times_mean_norm_along_u() {
        let (pv, _) = fixture();
        let edits = steering_edits(&pv, 2..3, -0.5).unwrap();
        assert_eq!(edits.len(), 1);
        let EditKind::Add { vector } = &edits[0].kind else {
            panic!("not an add")
        };
        // |vector| = |alpha| * n_L = 0.5 * 30, pointing away from the Assistant.
        assert!((stats::norm(vector) - 15.0).abs() < 1e-5);
        assert!((stats::cosine(vector, pv.unit_at(2)) + 1.0).abs() < 1e-6);
        let mut h = vec![1.0, 2.0, 3.0, 4.0];
        let p0 = stats::dot(&h, pv.unit_at(2));
        edits[0].kind.apply(&mut h);
        assert!((stats::dot(&h, pv.unit_at(2)) - (p0 - 15.0)).abs() < 1e-5);
        assert!(steering_edits(&pv, 0..1, f32::NAN).is_err());
    }
}
