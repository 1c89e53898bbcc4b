//! Edits of the residual stream for capping and steering (docs/method.md, "Capping"
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

/// The capping percentile everyone uses by default (the paper's, docs/method.md "Capping").
pub const DEFAULT_CAP_PERCENTILE: u8 = 75;

/// The default capping band for a model of `n_layers` layers: 70-90% of the depth, the
/// paper's (it caps 12-20% of the layers there: 46:54 of Qwen3-32B's 64, 56:72 of
/// Llama-3.3-70B's 80); 21..27 for SmolLM2-135M's 30. One definition for the CLI, the page,
/// the bench and the reproduce script (docs/method.md, "Capping").
pub fn default_cap_band(n_layers: usize) -> Range<usize> {
    let end = (n_layers * 9).div_ceil(10).max(1);
    let start = ((n_layers * 7).div_ceil(10)).min(end - 1);
    start..end
}

/// How far a capping floor reaches into the default Assistant's own replies: at each layer
/// of the band, the fraction of the default rollouts' content tokens whose raw projection
/// lies below the floor `tau_l` (those the cap would move).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CapReach {
    /// Layers `band[0]..band[1]`.
    pub band: [usize; 2],
    pub percentile: u8,
    /// Default reply tokens counted.
    pub tokens: usize,
    /// `[band length]`.
    pub edited_fraction: Vec<f32>,
}

/// [`CapReach`] from the default's token residuals at the band's layers,
/// `[tokens][band length][hidden]` (all default rollouts' tokens concatenated); `None`
/// without tokens.
pub fn cap_reach(
    pv: &PersonaVectors,
    stats: &ProjectionStats,
    band: Range<usize>,
    percentile: u8,
    tokens: &[f32],
) -> Result<Option<CapReach>> {
    check_band(pv, &band)?;
    let width = band.len() * pv.hidden;
    if !tokens.len().is_multiple_of(width) {
        return Err(Error::Invalid(format!(
            "cap reach: {} floats are not whole tokens of {} layers x {}",
            tokens.len(),
            band.len(),
            pv.hidden
        )));
    }
    let n = tokens.len() / width;
    if n == 0 {
        return Ok(None);
    }
    let mut edited_fraction = Vec::with_capacity(band.len());
    for (i, l) in band.clone().enumerate() {
        let tau = stats.tau(l, percentile).ok_or_else(|| {
            Error::Invalid(format!(
                "cap reach: no percentile {percentile} at layer {l}"
            ))
        })?;
        let axis = pv.at(l);
        let below = tokens
            .chunks_exact(width)
            .filter(|t| axis.project_raw(&t[i * pv.hidden..(i + 1) * pv.hidden]) < tau)
            .count();
        edited_fraction.push(below as f32 / n as f32);
    }
    Ok(Some(CapReach {
        band: [band.start, band.end],
        percentile,
        tokens: n,
        edited_fraction,
    }))
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

    #[test]
    fn cap_reach_counts_the_default_tokens_below_the_floor() {
        let (pv, st) = fixture();
        // Tokens at tau + d along u at each band layer: d < 0 lies below the floor.
        let ds = [[-1.0f32, 0.5], [0.2, -0.3], [-0.1, -2.0], [3.0, -1.0]];
        let mut tokens = Vec::new();
        for d in &ds {
            for (i, l) in (1..3).enumerate() {
                let tau = st.tau(l, 75).unwrap();
                tokens.extend(pv.unit_at(l).iter().map(|u| u * (tau + d[i])));
            }
        }
        let r = cap_reach(&pv, &st, 1..3, 75, &tokens).unwrap().unwrap();
        assert_eq!((r.band, r.percentile, r.tokens), ([1, 3], 75, 4));
        assert_eq!(r.edited_fraction, vec![0.5, 0.75]);
        assert!(cap_reach(&pv, &st, 1..3, 75, &[]).unwrap().is_none());
        assert!(cap_reach(&pv, &st, 1..3, 75, &tokens[1..]).is_err());
        assert!(cap_reach(&pv, &st, 1..9, 75, &tokens).is_err());
    }

    #[test]
    fn default_band_is_70_to_90_percent_of_the_depth() {
        assert_eq!(default_cap_band(30), 21..27);
        assert_eq!(default_cap_band(64), 45..58);
        assert_eq!(default_cap_band(80), 56..72);
        for n in 1..200 {
            let b = default_cap_band(n);
            assert!(b.start < b.end && b.end <= n, "{n}: {b:?}");
        }
    }

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
