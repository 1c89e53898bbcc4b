//! The fidelity report: how well this model reproduces the paper's persona-space findings
//! (docs/method.md, "Persona space" and "Uncertainty").
//!
//! Definitions (all at the analysis layer unless "per layer"):
//! - `cos_pc1_axis`: cosine between PC1 (oriented so the default is positive) of the
//!   role-vector PCA and the Assistant Axis; the paper finds > 0.71 at the middle layer.
//! - `explained_variance_ratio`: PC1..PC3 shares of the role vectors' total variance.
//! - `default_pc1`, `default_pc1_rank`: the default vector's PC1 coordinate and its rank
//!   among the roles' coordinates (1 = above every role, i.e. at the positive extreme).
//! - nearest/farthest *by projection*: roles ordered by `|p_default - p_role|`, the gap
//!   between centred axis projections (a 1-D distance along the axis).
//! - nearest/farthest *in PC space*: roles ordered by the Euclidean distance between
//!   the role's and the default's coordinates on PC1..PC3 (fewer if fewer exist).
//! - split-half stability: the distinct question ids, sorted, are dealt alternately into
//!   halves A and B; an axis is built from each half's rollouts alone (roles present in
//!   both halves only) and the report gives cos(axis_A, axis_B) per layer.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::heldout::{HeldOut, Interval, LayerChoice};
use super::pca::persona_pca;
use super::stats;
use super::steer::CapReach;
use super::vectors::{PersonaVectors, RolloutActivation};
use super::{Error, Result};

/// How many roles the nearest/farthest lists hold.
pub const LIST_LEN: usize = 5;
/// PCs used for the PC-space distance and the explained-variance list.
pub const PC_DIMS: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleDistance {
    pub role: String,
    pub distance: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitHalf {
    /// Distinct questions in halves A and B.
    pub questions: [usize; 2],
    /// Roles that had rollouts in both halves (the others were left out of both axes).
    pub roles_used: usize,
    /// `[n_layers]`: cos(axis_A, axis_B).
    pub cos_per_layer: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FidelityReport {
    pub analysis_layer: usize,
    pub n_layers: usize,
    pub n_roles: usize,
    pub role_rollouts: u32,
    pub default_rollouts: u32,
    pub cos_pc1_axis: f32,
    /// `[n_layers]`: cos(PC1, axis) with a PCA run at every layer.
    pub cos_pc1_axis_per_layer: Vec<f32>,
    /// PC1..PC3 (fewer if the roles span fewer dimensions).
    pub explained_variance_ratio: Vec<f32>,
    pub default_pc1: f32,
    pub default_pc1_rank: usize,
    /// Range of the roles' PC1 coordinates, to judge how extreme the default is.
    pub role_pc1_range: [f32; 2],
    /// Centred projection of the default on the axis (= |axis|).
    pub default_projection: f32,
    pub nearest_by_projection: Vec<RoleDistance>,
    pub farthest_by_projection: Vec<RoleDistance>,
    pub nearest_in_pc_space: Vec<RoleDistance>,
    pub farthest_in_pc_space: Vec<RoleDistance>,
    /// `None` when the rollouts were not given or cannot be split (fewer than 2 questions,
    /// or the default missing from a half).
    pub split_half: Option<SplitHalf>,
    /// How the analysis layer was chosen (docs/method.md, "Choosing the layer"); `None`:
    /// fixed by hand, or too few questions to choose.
    #[serde(default)]
    pub layer_choice: Option<LayerChoice>,
    /// Held-out figures per layer and intervals at the analysis layer (needs 4+ questions).
    #[serde(default)]
    pub held_out: Option<HeldOut>,
    /// How far the default capping floor reaches into the default's own reply tokens.
    #[serde(default)]
    pub default_cap: Option<CapReach>,
}

impl FidelityReport {
    /// Computes the report from the persona vectors; `rollouts` (the ones `pv` was built
    /// from) are needed only for split-half stability.
    pub fn compute(
        pv: &PersonaVectors,
        analysis_layer: usize,
        rollouts: Option<&[RolloutActivation]>,
    ) -> Result<Self> {
        if analysis_layer >= pv.n_layers {
            return Err(Error::Invalid(format!(
                "report: analysis layer {analysis_layer} out of range (n_layers {})",
                pv.n_layers
            )));
        }
        let mut cos_pc1_axis_per_layer = Vec::with_capacity(pv.n_layers);
        for l in 0..pv.n_layers {
            let (pca, _) = persona_pca(pv, l, 1)?;
            cos_pc1_axis_per_layer.push(stats::cosine(pca.component(0), pv.axis_raw_at(l)) as f32);
        }
        let (pca, default_pc) = persona_pca(pv, analysis_layer, PC_DIMS)?;
        let n_roles = pv.n_roles();
        let role_pc1: Vec<f32> = (0..n_roles).map(|r| pca.row_scores(r)[0]).collect();
        let default_pc1 = default_pc[0];
        let default_pc1_rank = 1 + role_pc1.iter().filter(|&&v| v > default_pc1).count();
        let role_pc1_range = [
            role_pc1.iter().copied().fold(f32::INFINITY, f32::min),
            role_pc1.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        ];

        let default_projection = pv.default_projection(analysis_layer);
        let by_projection: Vec<f32> = (0..n_roles)
            .map(|r| (default_projection - pv.role_projection(r, analysis_layer)).abs())
            .collect();
        let by_pc: Vec<f32> = (0..n_roles)
            .map(|r| {
                let d2: f64 = pca
                    .row_scores(r)
                    .iter()
                    .zip(&default_pc)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum();
                d2.sqrt() as f32
            })
            .collect();
        let (nearest_by_projection, farthest_by_projection) = extremes(&pv.roles, &by_projection);
        let (nearest_in_pc_space, farthest_in_pc_space) = extremes(&pv.roles, &by_pc);

        let split_half = match rollouts {
            Some(rs) => split_half(rs, pv.n_layers, pv.hidden)?,
            None => None,
        };
        Ok(Self {
            analysis_layer,
            n_layers: pv.n_layers,
            n_roles,
            role_rollouts: pv.role_rollouts.iter().sum(),
            default_rollouts: pv.default_rollouts,
            cos_pc1_axis: cos_pc1_axis_per_layer[analysis_layer],
            cos_pc1_axis_per_layer,
            explained_variance_ratio: pca.explained_variance_ratio.clone(),
            default_pc1,
            default_pc1_rank,
            role_pc1_range,
            default_projection,
            nearest_by_projection,
            farthest_by_projection,
            nearest_in_pc_space,
            farthest_in_pc_space,
            split_half,
            layer_choice: None,
            held_out: None,
            default_cap: None,
        })
    }

    /// Split-half cosine at the analysis layer, if available.
    pub fn split_half_cos(&self) -> Option<f32> {
        self.split_half
            .as_ref()
            .map(|s| s.cos_per_layer[self.analysis_layer])
    }
}

/// The `LIST_LEN` smallest and largest distances (ties keep role order).
fn extremes(roles: &[String], distance: &[f32]) -> (Vec<RoleDistance>, Vec<RoleDistance>) {
    let mut order: Vec<usize> = (0..roles.len()).collect();
    order.sort_by(|&a, &b| distance[a].total_cmp(&distance[b]));
    let item = |&i: &usize| RoleDistance {
        role: roles[i].clone(),
        distance: distance[i],
    };
    let nearest = order.iter().take(LIST_LEN).map(item).collect();
    let farthest = order.iter().rev().take(LIST_LEN).map(item).collect();
    (nearest, farthest)
}

/// Axes from disjoint halves of the questions; see the module doc. `Ok(None)` when the data
/// cannot be split.
pub fn split_half(
    rollouts: &[RolloutActivation],
    n_layers: usize,
    hidden: usize,
) -> Result<Option<SplitHalf>> {
    let mut questions: Vec<u32> = rollouts.iter().map(|r| r.question_id).collect();
    questions.sort_unstable();
    questions.dedup();
    if questions.len() < 2 {
        return Ok(None);
    }
    let in_a = |q: u32| {
        questions
            .binary_search(&q)
            .map(|i| i % 2 == 0)
            .unwrap_or(false)
    };
    let has = |role: &str, a: bool| {
        rollouts
            .iter()
            .any(|r| r.role == role && in_a(r.question_id) == a)
    };
    let mut roles: Vec<&str> = rollouts.iter().map(|r| r.role.as_str()).collect();
    roles.sort_unstable();
    roles.dedup();
    let both: Vec<&str> = roles
        .into_iter()
        .filter(|r| has(r, true) && has(r, false))
        .collect();
    if !both.contains(&super::vectors::DEFAULT_ROLE) || both.len() < 2 {
        return Ok(None);
    }
    let (in_a, both) = (&in_a, &both);
    let half = |a: bool| {
        rollouts
            .iter()
            .filter(move |r| in_a(r.question_id) == a && both.contains(&r.role.as_str()))
    };
    let pa = PersonaVectors::from_rollouts(half(true), n_layers, hidden)?;
    let pb = PersonaVectors::from_rollouts(half(false), n_layers, hidden)?;
    let cos_per_layer = (0..n_layers)
        .map(|l| stats::cosine(pa.axis_raw_at(l), pb.axis_raw_at(l)) as f32)
        .collect();
    Ok(Some(SplitHalf {
        questions: [questions.len().div_ceil(2), questions.len() / 2],
        roles_used: both.len() - 1,
        cos_per_layer,
    }))
}

impl fmt::Display for FidelityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |v: &f32| format!("{:.1}%", v * 100.0);
        let list = |items: &[RoleDistance]| {
            items
                .iter()
                .map(|d| format!("{} ({:.2})", d.role, d.distance))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "Fidelity at layer {} of {} ({} roles, {} role rollouts, {} default rollouts)",
            self.analysis_layer,
            self.n_layers,
            self.n_roles,
            self.role_rollouts,
            self.default_rollouts
        )?;
        let iv = |i: &Interval| format!("[{:.3}, {:.3}]", i.lo, i.hi);
        let level = self
            .held_out
            .as_ref()
            .map_or(String::new(), |h| format!("{:.0}% ", h.level * 100.0));
        match &self.layer_choice {
            Some(c) => writeln!(f, "  layer chosen: {} ({})", c.layer, c.rule)?,
            None => writeln!(f, "  layer fixed, not chosen on held-out questions")?,
        }
        writeln!(
            f,
            "  cos(PC1, axis)          {:.3}   {}(paper: > 0.71 at the middle layer)",
            self.cos_pc1_axis,
            self.held_out.as_ref().map_or(String::new(), |h| format!(
                "{level}interval {}, bootstrap over questions ",
                iv(&h.cos_pc1_axis)
            ))
        )?;
        if let Some(h) = &self.held_out {
            let l = self.analysis_layer;
            writeln!(
                f,
                "  held-out cos(PC1, axis) {:.3}   halves A|B, {level}range over {} random half splits {}",
                h.halves_cos_pc1_axis[l],
                h.random_splits,
                iv(&h.halves_cos_pc1_axis_interval)
            )?;
            writeln!(
                f,
                "  ... on half B alone     {:.3}   (quarters B1|B2: the questions the choice did not see)",
                h.half_b_cos_pc1_axis[l]
            )?;
        }
        let ev: Vec<String> = self
            .explained_variance_ratio
            .iter()
            .enumerate()
            .map(|(i, v)| format!("PC{} {}", i + 1, pct(v)))
            .collect();
        writeln!(f, "  explained variance      {}", ev.join("  "))?;
        writeln!(
            f,
            "  default on PC1          {:.3}, rank {} of {}{} (roles span {:.3} .. {:.3})",
            self.default_pc1,
            self.default_pc1_rank,
            self.n_roles + 1,
            self.held_out.as_ref().map_or(String::new(), |h| format!(
                ", {level}interval {:.0}..{:.0}",
                h.default_pc1_rank.lo, h.default_pc1_rank.hi
            )),
            self.role_pc1_range[0],
            self.role_pc1_range[1]
        )?;
        match &self.split_half {
            Some(s) => writeln!(
                f,
                "  split-half axis cos     {:.3}   (questions {} | {}, {} roles{}; aim > 0.85)",
                s.cos_per_layer[self.analysis_layer],
                s.questions[0],
                s.questions[1],
                s.roles_used,
                self.held_out.as_ref().map_or(String::new(), |h| format!(
                    "; {level}range over random half splits {}",
                    iv(&h.split_half_cos)
                ))
            )?,
            None => writeln!(
                f,
                "  split-half axis cos     n/a (needs 2+ questions, the default and a role in both halves)"
            )?,
        }
        writeln!(
            f,
            "  default projection      {:.3}",
            self.default_projection
        )?;
        writeln!(
            f,
            "  nearest, |gap| along the axis:  {}",
            list(&self.nearest_by_projection)
        )?;
        writeln!(
            f,
            "  farthest, |gap| along the axis: {}",
            list(&self.farthest_by_projection)
        )?;
        let dims = self.explained_variance_ratio.len();
        writeln!(
            f,
            "  nearest, distance on PC1-{dims}:    {}",
            list(&self.nearest_in_pc_space)
        )?;
        writeln!(
            f,
            "  farthest, distance on PC1-{dims}:   {}",
            list(&self.farthest_in_pc_space)
        )?;
        if let Some(c) = &self.default_cap {
            let per: Vec<String> = (c.band[0]..c.band[1])
                .zip(&c.edited_fraction)
                .map(|(l, v)| format!("{l}: {:.0}%", v * 100.0))
                .collect();
            writeln!(
                f,
                "  default cap (layers {}:{}, percentile {}) edits of the default's own {} reply tokens: {}",
                c.band[0],
                c.band[1],
                c.percentile,
                c.tokens,
                per.join(", ")
            )?;
        }
        writeln!(
            f,
            "  layer  cos(PC1,axis)  split-half  held-out A|B  held-out B  choice score (A)"
        )?;
        let cell = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        for l in 0..self.n_layers {
            let split = cell(self.split_half.as_ref().map(|s| s.cos_per_layer[l]));
            let halves = cell(self.held_out.as_ref().map(|h| h.halves_cos_pc1_axis[l]));
            let half_b = cell(self.held_out.as_ref().map(|h| h.half_b_cos_pc1_axis[l]));
            let score = cell(
                self.layer_choice
                    .as_ref()
                    .and_then(|c| c.scores.get(l).copied()),
            );
            let mark = if l == self.analysis_layer { " <" } else { "" };
            writeln!(
                f,
                "  {l:>5}  {:>13.3}  {split:>10}  {halves:>12}  {half_b:>10}  {score:>16}{mark}",
                self.cos_pc1_axis_per_layer[l]
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::science::vectors::DEFAULT_ROLE;

    pub(crate) use crate::science::stats::SplitMix as Rng;

    /// Synthetic persona data with a planted direction `w` (unit, random) at every layer:
    /// each role r has an "assistant-ness" a_r in [-1, 0.6]; the default has a = 1.5.
    /// rollout = base + 6 a w + role-specific offset (norm ~1.5) + per-rollout noise (norm ~2).
    /// Returns the rollouts and w (`[n_layers][hidden]`).
    pub(crate) fn planted(
        n_roles: usize,
        n_questions: u32,
        n_layers: usize,
        hidden: usize,
        seed: u64,
    ) -> (Vec<RolloutActivation>, Vec<f32>, Vec<String>) {
        let mut rng = Rng::new(seed);
        let width = n_layers * hidden;
        let gauss = |rng: &mut Rng, scale: f32| -> Vec<f32> {
            (0..width)
                .map(|_| rng.normal() * scale / (hidden as f32).sqrt())
                .collect()
        };
        let mut w = gauss(&mut rng, 1.0);
        for row in w.chunks_exact_mut(hidden) {
            let n = stats::norm(row) as f32;
            row.iter_mut().for_each(|x| *x /= n);
        }
        let base: Vec<f32> = gauss(&mut rng, 20.0).iter().map(|x| x + 0.5).collect();
        let mut names: Vec<String> = (0..n_roles).map(|r| format!("role{r:02}")).collect();
        names.push(DEFAULT_ROLE.to_string());
        let mut rollouts = Vec::new();
        for (r, name) in names.iter().enumerate() {
            let a = if r == n_roles {
                1.5
            } else {
                -1.0 + 1.6 * r as f32 / (n_roles - 1) as f32
            };
            let offset = gauss(&mut rng, 1.5);
            for q in 0..n_questions {
                for p in 0..2u32 {
                    let noise = gauss(&mut rng, 2.0);
                    let per_layer: Vec<f32> = (0..width)
                        .map(|i| base[i] + 6.0 * a * w[i] + offset[i] + noise[i])
                        .collect();
                    let norms = per_layer
                        .chunks_exact(hidden)
                        .map(|h| stats::norm(h) as f32 * 1.1)
                        .collect();
                    rollouts.push(RolloutActivation {
                        role: name.clone(),
                        prompt_index: p,
                        question_id: 100 + q,
                        n_tokens: 10 + q,
                        per_layer,
                        mean_token_norm: norms,
                    });
                }
            }
        }
        names.pop();
        (rollouts, w, names)
    }

    #[test]
    fn planted_axis_is_recovered_end_to_end() {
        let (n_roles, n_layers, hidden) = (24, 4, 96);
        let (rollouts, w, names) = planted(n_roles, 8, n_layers, hidden, 42);
        let pv = PersonaVectors::from_rollouts(&rollouts, n_layers, hidden).unwrap();
        assert_eq!(pv.roles, names);
        for l in 0..n_layers {
            let c = stats::cosine(pv.unit_at(l), &w[l * hidden..(l + 1) * hidden]);
            assert!(c > 0.95, "layer {l}: cos(axis, planted) = {c}");
        }
        let rep = FidelityReport::compute(&pv, 2, Some(&rollouts)).unwrap();
        println!("{rep}");
        // Planted variance along w dominates role offsets: PC1 ~ axis, explains most.
        assert!(rep.cos_pc1_axis > 0.9, "{}", rep.cos_pc1_axis);
        assert!(rep.cos_pc1_axis_per_layer.iter().all(|&c| c > 0.9));
        assert!(rep.explained_variance_ratio[0] > 0.5);
        assert_eq!(rep.explained_variance_ratio.len(), 3);
        assert!(
            rep.explained_variance_ratio
                .windows(2)
                .all(|p| p[0] >= p[1])
        );
        // The default (a = 1.5) is beyond every role (a <= 0.6) on PC1.
        assert_eq!(rep.default_pc1_rank, 1);
        assert!(rep.default_pc1 > rep.role_pc1_range[1]);
        // Nearest roles along the axis are the high-a ones (the last names), farthest the low-a.
        let near: Vec<&str> = rep
            .nearest_by_projection
            .iter()
            .map(|d| d.role.as_str())
            .collect();
        assert!(
            near.iter()
                .all(|n| names[n_roles - 8..].iter().any(|m| m == n)),
            "{near:?}"
        );
        let far: Vec<&str> = rep
            .farthest_by_projection
            .iter()
            .map(|d| d.role.as_str())
            .collect();
        assert!(
            far.iter().all(|n| names[..8].iter().any(|m| m == n)),
            "{far:?}"
        );
        assert_eq!(rep.nearest_by_projection.len(), LIST_LEN);
        assert!(rep.nearest_in_pc_space[0].distance <= rep.farthest_in_pc_space[0].distance);
        // Two halves see the same planted direction.
        let s = rep.split_half.as_ref().unwrap();
        assert_eq!(s.questions, [4, 4]);
        assert_eq!(s.roles_used, n_roles);
        assert!(rep.split_half_cos().unwrap() > 0.9, "{:?}", s.cos_per_layer);
        // JSON round trip and text rendering.
        let json = serde_json::to_string(&rep).unwrap();
        assert_eq!(serde_json::from_str::<FidelityReport>(&json).unwrap(), rep);
        let text = rep.to_string();
        assert!(text.contains("cos(PC1, axis)") && text.contains("split-half"));
        // Header, the layer's origin, 9 figures, the table's header and one row per layer.
        assert_eq!(text.lines().count(), 12 + n_layers);
        assert!(text.contains("layer fixed, not chosen"), "{text}");
    }

    #[test]
    fn no_planted_axis_gives_low_stability() {
        // Pure noise activations (same roles and questions, nothing planted): the default is
        // just another condition, the axis is noise and the halves disagree. This is what
        // the split-half check must catch.
        let (n_roles, n_layers, hidden) = (12, 2, 200);
        let (mut rollouts, _, _) = planted(n_roles, 6, n_layers, hidden, 7);
        let mut rng = Rng::new(99);
        for r in rollouts.iter_mut() {
            r.per_layer = (0..n_layers * hidden)
                .map(|_| rng.normal() * 2.0 / (hidden as f32).sqrt())
                .collect();
        }
        let pv = PersonaVectors::from_rollouts(&rollouts, n_layers, hidden).unwrap();
        let s = split_half(&rollouts, n_layers, hidden).unwrap().unwrap();
        assert!(
            s.cos_per_layer.iter().all(|c| c.abs() < 0.5),
            "{:?}",
            s.cos_per_layer
        );
        let rep = FidelityReport::compute(&pv, 0, None).unwrap();
        assert!(rep.split_half.is_none());
        assert!(rep.to_string().contains("n/a"));
    }

    #[test]
    fn split_half_needs_two_questions_and_default_in_both() {
        let (rollouts, _, _) = planted(3, 1, 1, 8, 1);
        assert!(split_half(&rollouts, 1, 8).unwrap().is_none());
        let (rollouts, _, _) = planted(3, 2, 1, 8, 1);
        // Drop the default's rollouts of one question: no default in half B.
        let cut: Vec<_> = rollouts
            .into_iter()
            .filter(|r| !(r.role == DEFAULT_ROLE && r.question_id == 101))
            .collect();
        assert!(split_half(&cut, 1, 8).unwrap().is_none());
    }

    #[test]
    fn analysis_layer_out_of_range_is_an_error() {
        let (rollouts, _, _) = planted(3, 2, 2, 8, 1);
        let pv = PersonaVectors::from_rollouts(&rollouts, 2, 8).unwrap();
        assert!(FidelityReport::compute(&pv, 2, None).is_err());
    }
}
