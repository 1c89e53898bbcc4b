//! Rollout activations, role and default vectors, the Assistant Axis and projections
//! (docs/method.md, "Vectors" and the `tau_l` of "Capping").
//!
//! Over 600 lines: the vectors, the axis and the projections share their layout and their
//! checks; more than half of the file is their tests.
//!
//! Layout convention: a "per-layer" vector is row-major `[n_layers][hidden]` `f32`, and
//! layer `l` means the residual stream at the output of decoder block `l` (the engine's
//! hook point `l`, Hugging Face `hidden_states[l + 1]`).

use std::collections::BTreeMap;

use super::stats::{self, RunningMean, pooled_sd, sd};
use super::{Error, Result};

/// Role name that marks the default (Assistant) condition's rollouts, as the reference data
/// set names it (`default.json` next to the role files).
pub const DEFAULT_ROLE: &str = "default";

/// The percentiles stored per layer for capping thresholds: 1, 2, ..., 99.
pub const PERCENTILE_STEPS: usize = 99;

/// Per-token residual activations as the engine records them: row-major
/// `[n_tokens][n_layers][hidden]`, where `n_layers` counts the *recorded* layers (a slot
/// index, not necessarily the model layer number).
#[derive(Clone, Copy, Debug)]
pub struct TokenActivations<'a> {
    data: &'a [f32],
    n_tokens: usize,
    n_layers: usize,
    hidden: usize,
}

impl<'a> TokenActivations<'a> {
    /// Checks that `data` holds exactly `n_layers * hidden` floats per token.
    pub fn new(data: &'a [f32], n_layers: usize, hidden: usize) -> Result<Self> {
        let per_token = n_layers * hidden;
        if per_token == 0 || !data.len().is_multiple_of(per_token) {
            return Err(Error::Invalid(format!(
                "token activations: {} floats is not a whole number of tokens of {n_layers} layers x {hidden}",
                data.len()
            )));
        }
        Ok(Self {
            data,
            n_tokens: data.len() / per_token,
            n_layers,
            hidden,
        })
    }

    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The residual vector of token `t` at recorded layer slot `slot`.
    pub fn get(&self, t: usize, slot: usize) -> &'a [f32] {
        let start = (t * self.n_layers + slot) * self.hidden;
        &self.data[start..start + self.hidden]
    }
}

/// One rollout's activation summary: the mean of the residual stream over the assistant
/// reply's content tokens, at every layer (docs/method.md, "Rollout activation").
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutActivation {
    /// Role name; [`DEFAULT_ROLE`] for the default condition.
    pub role: String,
    /// Which of the role's system prompts was used.
    pub prompt_index: u32,
    /// The question's `id` from the questions file.
    pub question_id: u32,
    /// Number of assistant content tokens averaged.
    pub n_tokens: u32,
    /// `[n_layers][hidden]`: mean over those tokens of the residual at each layer.
    pub per_layer: Vec<f32>,
    /// `[n_layers]`: mean over the same tokens of the residual's norm `|h|` (for `n_L`).
    pub mean_token_norm: Vec<f32>,
}

impl RolloutActivation {
    /// Averages the tokens where `include[t]` is true (the assistant reply's content tokens:
    /// not the header, not the end-of-turn token, never BOS). `acts` must hold every layer.
    pub fn from_tokens(
        role: &str,
        prompt_index: u32,
        question_id: u32,
        acts: &TokenActivations,
        include: &[bool],
    ) -> Result<Self> {
        if include.len() != acts.n_tokens() {
            return Err(Error::Invalid(format!(
                "rollout {role}/{prompt_index}/{question_id}: mask has {} entries for {} tokens",
                include.len(),
                acts.n_tokens()
            )));
        }
        let (n_layers, hidden) = (acts.n_layers(), acts.hidden());
        let mut mean = RunningMean::new(n_layers * hidden);
        let mut norms = RunningMean::new(n_layers);
        let mut token_norms = vec![0f32; n_layers];
        let mut n = 0u32;
        for t in (0..acts.n_tokens()).filter(|&t| include[t]) {
            let row = &acts.data[t * n_layers * hidden..(t + 1) * n_layers * hidden];
            mean.add(row);
            for (l, tn) in token_norms.iter_mut().enumerate() {
                *tn = stats::norm(acts.get(t, l)) as f32;
            }
            norms.add(&token_norms);
            n += 1;
        }
        match (mean.mean(), norms.mean()) {
            (Some(per_layer), Some(mean_token_norm)) => Ok(Self {
                role: role.to_string(),
                prompt_index,
                question_id,
                n_tokens: n,
                per_layer,
                mean_token_norm,
            }),
            _ => Err(Error::Invalid(format!(
                "rollout {role}/{prompt_index}/{question_id}: no assistant content tokens to average"
            ))),
        }
    }

    pub fn is_default(&self) -> bool {
        self.role == DEFAULT_ROLE
    }

    fn check(&self, n_layers: usize, hidden: usize) -> Result<()> {
        let what = || {
            format!(
                "rollout {}/{}/{}",
                self.role, self.prompt_index, self.question_id
            )
        };
        if self.per_layer.len() != n_layers * hidden || self.mean_token_norm.len() != n_layers {
            return Err(Error::Invalid(format!(
                "{}: has {} activation floats and {} norms, expected {n_layers} x {hidden} and {n_layers}",
                what(),
                self.per_layer.len(),
                self.mean_token_norm.len()
            )));
        }
        if self.n_tokens == 0 {
            return Err(Error::Invalid(format!("{}: averages zero tokens", what())));
        }
        if !self
            .per_layer
            .iter()
            .chain(&self.mean_token_norm)
            .all(|v| v.is_finite())
        {
            return Err(Error::Invalid(format!(
                "{}: contains a non-finite value",
                what()
            )));
        }
        Ok(())
    }
}

/// Role vectors, the default vector and the Assistant Axis at every layer.
///
/// - `role_vectors[r]` = mean of role `r`'s rollout activations (each rollout weighs 1);
/// - `default_vector` = mean of the default rollouts;
/// - `mu_roles` = mean of the role vectors (each *role* weighs 1, however many rollouts);
/// - `axis` = `default_vector - mu_roles`, `unit` = `axis / |axis|` per layer: it points
///   toward the Assistant;
/// - `mean_token_norm[l]` = `n_L`, the mean of `|h|` over every content token of every
///   rollout (roles and default), i.e. token-weighted.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonaVectors {
    pub n_layers: usize,
    pub hidden: usize,
    /// Role names in order of first appearance in the rollouts (the default excluded).
    pub roles: Vec<String>,
    /// Rollouts averaged into each role vector.
    pub role_rollouts: Vec<u32>,
    /// Rollouts averaged into the default vector.
    pub default_rollouts: u32,
    /// `[n_roles][n_layers][hidden]`.
    pub role_vectors: Vec<f32>,
    /// `[n_layers][hidden]`.
    pub default_vector: Vec<f32>,
    /// `[n_layers][hidden]`.
    pub mu_roles: Vec<f32>,
    /// `[n_layers][hidden]`, unnormalised.
    pub axis: Vec<f32>,
    /// `[n_layers][hidden]`, unit length per layer.
    pub unit: Vec<f32>,
    /// `[n_layers]`.
    pub mean_token_norm: Vec<f32>,
}

/// The axis at one layer, for projecting: `p = (h - mu_roles) . u` (0 = the average role).
#[derive(Clone, Copy, Debug)]
pub struct AxisAt<'a> {
    pub mu_roles: &'a [f32],
    pub unit: &'a [f32],
}

impl AxisAt<'_> {
    /// Centred projection `(h - mu_roles) . u`, the coordinate shown on the drift chart.
    pub fn project(&self, h: &[f32]) -> f32 {
        (stats::dot(h, self.unit) - stats::dot(self.mu_roles, self.unit)) as f32
    }

    /// Raw projection `h . u`, the quantity the capping formula bounds.
    pub fn project_raw(&self, h: &[f32]) -> f32 {
        stats::dot(h, self.unit) as f32
    }

    /// `mu_roles . u`: raw projection = centred projection + this offset.
    pub fn offset(&self) -> f32 {
        stats::dot(self.mu_roles, self.unit) as f32
    }
}

impl PersonaVectors {
    /// Builds every vector from the rollouts; [`DEFAULT_ROLE`] rollouts form the default.
    /// Needs at least one role and one default rollout, all of shape `[n_layers][hidden]`.
    /// Takes references (a `&Vec`, a slice or a filtered iterator) so subsets need no copies:
    /// a rollout holds `n_layers * hidden` floats (69 KB for SmolLM2-135M).
    pub fn from_rollouts<'a>(
        rollouts: impl IntoIterator<Item = &'a RolloutActivation>,
        n_layers: usize,
        hidden: usize,
    ) -> Result<Self> {
        if n_layers == 0 || hidden == 0 {
            return Err(Error::Invalid(
                "persona vectors: n_layers and hidden must be positive".into(),
            ));
        }
        let width = n_layers * hidden;
        let mut roles: Vec<String> = Vec::new();
        let mut role_means: Vec<RunningMean> = Vec::new();
        let mut default_mean = RunningMean::new(width);
        let mut norm_mean = RunningMean::new(n_layers);
        for r in rollouts {
            r.check(n_layers, hidden)?;
            if r.is_default() {
                default_mean.add(&r.per_layer);
            } else {
                let i = match roles.iter().position(|n| n == &r.role) {
                    Some(i) => i,
                    None => {
                        roles.push(r.role.clone());
                        role_means.push(RunningMean::new(width));
                        roles.len() - 1
                    }
                };
                role_means[i].add(&r.per_layer);
            }
            norm_mean.add_weighted(&r.mean_token_norm, r.n_tokens as f64);
        }
        if roles.is_empty() {
            return Err(Error::Invalid(
                "persona vectors: no role rollouts (only the default)".into(),
            ));
        }
        let default_vector = default_mean.mean().ok_or_else(|| {
            Error::Invalid(format!(
                "persona vectors: no rollouts of role \"{DEFAULT_ROLE}\""
            ))
        })?;
        let role_rollouts = role_means.iter().map(|m| m.weight() as u32).collect();
        let role_vectors: Vec<f32> = role_means
            .iter()
            .flat_map(|m| m.mean().expect("role has a rollout"))
            .collect();
        let mean_token_norm = norm_mean.mean().expect("at least one rollout");
        Self::from_means(
            roles,
            role_rollouts,
            default_mean.weight() as u32,
            role_vectors,
            default_vector,
            mean_token_norm,
            n_layers,
            hidden,
        )
    }

    /// Builds the axis from already averaged vectors (e.g. a bundle's role vectors plus a
    /// user's own role): `role_vectors` is `[n_roles][n_layers][hidden]`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_means(
        roles: Vec<String>,
        role_rollouts: Vec<u32>,
        default_rollouts: u32,
        role_vectors: Vec<f32>,
        default_vector: Vec<f32>,
        mean_token_norm: Vec<f32>,
        n_layers: usize,
        hidden: usize,
    ) -> Result<Self> {
        let width = n_layers * hidden;
        let n_roles = roles.len();
        if n_roles == 0
            || width == 0
            || role_rollouts.len() != n_roles
            || role_vectors.len() != n_roles * width
            || default_vector.len() != width
            || mean_token_norm.len() != n_layers
        {
            return Err(Error::Invalid(format!(
                "persona vectors: inconsistent shapes ({n_roles} roles, {} role counts, {} role floats, \
                 {} default floats, {} norms for {n_layers} layers x {hidden})",
                role_rollouts.len(),
                role_vectors.len(),
                default_vector.len(),
                mean_token_norm.len()
            )));
        }
        let mu_roles =
            stats::mean_rows(role_vectors.chunks_exact(width), width).expect("n_roles > 0");
        let axis = stats::sub(&default_vector, &mu_roles);
        let mut unit = Vec::with_capacity(width);
        for (l, a) in axis.chunks_exact(hidden).enumerate() {
            let u = stats::normalized(a).ok_or_else(|| {
                Error::Invalid(format!(
                    "persona vectors: the axis at layer {l} is zero or not finite (default = mean of roles)"
                ))
            })?;
            unit.extend(u);
        }
        Ok(Self {
            n_layers,
            hidden,
            roles,
            role_rollouts,
            default_rollouts,
            role_vectors,
            default_vector,
            mu_roles,
            axis,
            unit,
            mean_token_norm,
        })
    }

    pub fn n_roles(&self) -> usize {
        self.roles.len()
    }

    /// Panics if `layer >= n_layers` (layers come from the model's own range, not from data).
    fn layer_range(&self, layer: usize) -> std::ops::Range<usize> {
        assert!(
            layer < self.n_layers,
            "layer {layer} out of range (n_layers {})",
            self.n_layers
        );
        layer * self.hidden..(layer + 1) * self.hidden
    }

    /// Role `r`'s vector at `layer`.
    pub fn role_vector(&self, r: usize, layer: usize) -> &[f32] {
        let base = r * self.n_layers * self.hidden;
        let range = self.layer_range(layer);
        &self.role_vectors[base + range.start..base + range.end]
    }

    /// The role vectors at `layer` as a row-major `[n_roles][hidden]` matrix.
    pub fn role_matrix(&self, layer: usize) -> Vec<f32> {
        (0..self.n_roles())
            .flat_map(|r| self.role_vector(r, layer).iter().copied())
            .collect()
    }

    pub fn default_at(&self, layer: usize) -> &[f32] {
        &self.default_vector[self.layer_range(layer)]
    }

    pub fn axis_raw_at(&self, layer: usize) -> &[f32] {
        &self.axis[self.layer_range(layer)]
    }

    pub fn unit_at(&self, layer: usize) -> &[f32] {
        &self.unit[self.layer_range(layer)]
    }

    /// The axis at `layer` (`mu_roles` and `u`), for projections.
    pub fn at(&self, layer: usize) -> AxisAt<'_> {
        let range = self.layer_range(layer);
        AxisAt {
            mu_roles: &self.mu_roles[range.clone()],
            unit: &self.unit[range],
        }
    }

    /// Centred projection of role `r`'s vector at `layer` (= the mean of its rollouts').
    pub fn role_projection(&self, r: usize, layer: usize) -> f32 {
        self.at(layer).project(self.role_vector(r, layer))
    }

    /// Centred projection of the default vector at `layer`; equals `|axis_l|`.
    pub fn default_projection(&self, layer: usize) -> f32 {
        self.at(layer).project(self.default_at(layer))
    }
}

/// Which condition a rollout belongs to, its prompt and question, as stored in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutMeta {
    /// Index into [`PersonaVectors::roles`], or `None` for the default.
    pub role: Option<u32>,
    pub prompt_index: u32,
    pub question_id: u32,
    pub n_tokens: u32,
}

/// Per-rollout projections and their per-layer percentiles (the capping thresholds).
///
/// Two kinds of projection, which differ per layer by the constant `mu_roles_l . u_l`:
/// - *centred* `p = (h - mu_roles) . u`: what charts show (0 = the average role);
///   `projections` and `percentiles` hold these;
/// - *raw* `h . u`: what the capping formula `h <- h + u * max(tau - h.u, 0)` compares
///   against, so `tau_l` comes from `raw_percentiles`.
///
/// Percentiles are taken over all role *and* default rollouts at each layer, for
/// q = 1, 2, ..., 99, with numpy's linear rule ([`stats::percentiles`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionStats {
    pub n_layers: usize,
    pub rollouts: Vec<RolloutMeta>,
    /// `[n_rollouts][n_layers]`, centred.
    pub projections: Vec<f32>,
    /// `[n_layers][99]`: centred percentiles q = 1..=99.
    pub percentiles: Vec<f32>,
    /// `[n_layers][99]`: raw percentiles q = 1..=99 (`tau_l` candidates).
    pub raw_percentiles: Vec<f32>,
}

impl ProjectionStats {
    /// Projects every rollout at every layer onto `pv`'s axis and takes percentiles.
    /// Roles must be among `pv.roles` (or the default).
    pub fn compute(pv: &PersonaVectors, rollouts: &[RolloutActivation]) -> Result<Self> {
        if rollouts.is_empty() {
            return Err(Error::Invalid("projection stats: no rollouts".into()));
        }
        let n_layers = pv.n_layers;
        let mut metas = Vec::with_capacity(rollouts.len());
        let mut projections = Vec::with_capacity(rollouts.len() * n_layers);
        for r in rollouts {
            r.check(n_layers, pv.hidden)?;
            let role = if r.is_default() {
                None
            } else {
                let i = pv.roles.iter().position(|n| n == &r.role).ok_or_else(|| {
                    Error::Invalid(format!(
                        "projection stats: role \"{}\" has no role vector",
                        r.role
                    ))
                })?;
                Some(i as u32)
            };
            metas.push(RolloutMeta {
                role,
                prompt_index: r.prompt_index,
                question_id: r.question_id,
                n_tokens: r.n_tokens,
            });
            for l in 0..n_layers {
                projections.push(
                    pv.at(l)
                        .project(&r.per_layer[l * pv.hidden..(l + 1) * pv.hidden]),
                );
            }
        }
        Self::from_projections(pv, metas, projections)
    }

    /// Recomputes the percentiles from stored centred projections (`[n_rollouts][n_layers]`).
    pub fn from_projections(
        pv: &PersonaVectors,
        rollouts: Vec<RolloutMeta>,
        projections: Vec<f32>,
    ) -> Result<Self> {
        let n_layers = pv.n_layers;
        if rollouts.is_empty() || projections.len() != rollouts.len() * n_layers {
            return Err(Error::Invalid(format!(
                "projection stats: {} projections for {} rollouts x {n_layers} layers",
                projections.len(),
                rollouts.len()
            )));
        }
        let qs: Vec<f64> = (1..=PERCENTILE_STEPS).map(|q| q as f64).collect();
        let mut percentiles = Vec::with_capacity(n_layers * PERCENTILE_STEPS);
        let mut raw_percentiles = Vec::with_capacity(n_layers * PERCENTILE_STEPS);
        for l in 0..n_layers {
            let column: Vec<f32> = projections
                .iter()
                .skip(l)
                .step_by(n_layers)
                .copied()
                .collect();
            let p = stats::percentiles(&column, &qs).ok_or_else(|| {
                Error::Invalid(format!(
                    "projection stats: a projection at layer {l} is NaN"
                ))
            })?;
            // Percentiles commute with adding a constant, so raw = centred + mu.u exactly
            // up to rounding; computing it this way keeps the two tables consistent.
            let offset = pv.at(l).offset();
            raw_percentiles.extend(p.iter().map(|v| v + offset));
            percentiles.extend(p);
        }
        Ok(Self {
            n_layers,
            rollouts,
            projections,
            percentiles,
            raw_percentiles,
        })
    }

    /// Centred percentile `q` (1..=99) at `layer`.
    pub fn percentile(&self, layer: usize, q: u8) -> Option<f32> {
        Self::lookup(&self.percentiles, self.n_layers, layer, q)
    }

    /// Raw percentile `q` (1..=99) at `layer`: the capping threshold `tau_l`.
    pub fn tau(&self, layer: usize, q: u8) -> Option<f32> {
        Self::lookup(&self.raw_percentiles, self.n_layers, layer, q)
    }

    fn lookup(table: &[f32], n_layers: usize, layer: usize, q: u8) -> Option<f32> {
        if layer >= n_layers || q == 0 || q as usize > PERCENTILE_STEPS {
            return None;
        }
        Some(table[layer * PERCENTILE_STEPS + q as usize - 1])
    }

    /// Centred projection of rollout `i` at `layer`.
    pub fn projection(&self, i: usize, layer: usize) -> f32 {
        self.projections[i * self.n_layers + layer]
    }

    /// The spread of one reply's projection at `layer`: the pooled standard deviation of
    /// the rollouts' projections around their own role's (or the default's) mean. A single
    /// reply's projection is this uncertain; a role's mean of n rollouts is sqrt(n) times
    /// less. `None` when no role has two rollouts.
    pub fn reply_sd(&self, layer: usize) -> Option<f32> {
        let groups = self.by_condition(layer)?;
        pooled_sd(groups.values().map(Vec::as_slice)).map(|s| s as f32)
    }

    /// The spread of one condition's single rollouts at `layer` (a role's index, or `None`
    /// for the default): their standard deviation. `None` under two rollouts.
    pub fn condition_sd(&self, role: Option<u32>, layer: usize) -> Option<f32> {
        let groups = self.by_condition(layer)?;
        sd(groups.get(&role)?).map(|s| s as f32)
    }

    /// Each condition's rollout projections at `layer`; `None` for a layer out of range.
    fn by_condition(&self, layer: usize) -> Option<BTreeMap<Option<u32>, Vec<f64>>> {
        if layer >= self.n_layers {
            return None;
        }
        let mut groups: BTreeMap<Option<u32>, Vec<f64>> = BTreeMap::new();
        for (i, m) in self.rollouts.iter().enumerate() {
            groups
                .entry(m.role)
                .or_default()
                .push(self.projection(i, layer) as f64);
        }
        Some(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_sd_pools_the_spread_within_each_role() {
        let meta = |role| RolloutMeta {
            role,
            prompt_index: 0,
            question_id: 0,
            n_tokens: 1,
        };
        // One layer; role 0: 1, 3 (ss 2); default: 10, 14, 12 (ss 8); role 1 alone.
        let st = ProjectionStats {
            n_layers: 1,
            rollouts: [Some(0), Some(0), None, None, None, Some(1)]
                .into_iter()
                .map(meta)
                .collect(),
            projections: vec![1.0, 3.0, 10.0, 14.0, 12.0, 50.0],
            percentiles: vec![],
            raw_percentiles: vec![],
        };
        let want = (10.0f64 / 3.0).sqrt() as f32;
        assert!((st.reply_sd(0).unwrap() - want).abs() < 1e-6);
        assert!(st.reply_sd(1).is_none());
        assert!((st.condition_sd(None, 0).unwrap() - 2.0).abs() < 1e-6);
        assert!((st.condition_sd(Some(0), 0).unwrap() - 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(
            st.condition_sd(Some(1), 0),
            None,
            "one rollout has no spread"
        );
    }

    fn rollout(
        role: &str,
        q: u32,
        n_tokens: u32,
        per_layer: Vec<f32>,
        norms: Vec<f32>,
    ) -> RolloutActivation {
        RolloutActivation {
            role: role.into(),
            prompt_index: 0,
            question_id: q,
            n_tokens,
            per_layer,
            mean_token_norm: norms,
        }
    }

    /// Two layers, hidden 2; hand-computed expectations.
    fn small() -> Vec<RolloutActivation> {
        vec![
            // role a: rollouts [1,0 | 0,0] and [3,0 | 0,2] -> mean [2,0 | 0,1]
            rollout("a", 1, 1, vec![1.0, 0.0, 0.0, 0.0], vec![1.0, 10.0]),
            rollout("a", 2, 3, vec![3.0, 0.0, 0.0, 2.0], vec![3.0, 20.0]),
            // role b: one rollout [0,2 | 0,-1] (weighs as much as a, though it has 1 rollout)
            rollout("b", 1, 2, vec![0.0, 2.0, 0.0, -1.0], vec![2.0, 30.0]),
            // default: [1,5 | 4,0] and [3,5 | 4,0] -> [2,5 | 4,0]
            rollout(
                DEFAULT_ROLE,
                1,
                2,
                vec![1.0, 5.0, 4.0, 0.0],
                vec![5.0, 40.0],
            ),
            rollout(
                DEFAULT_ROLE,
                2,
                2,
                vec![3.0, 5.0, 4.0, 0.0],
                vec![6.0, 50.0],
            ),
        ]
    }

    #[test]
    fn vectors_axis_and_projection_by_hand() {
        let pv = PersonaVectors::from_rollouts(&small(), 2, 2).unwrap();
        assert_eq!(pv.roles, vec!["a", "b"]);
        assert_eq!(pv.role_rollouts, vec![2, 1]);
        assert_eq!(pv.default_rollouts, 2);
        assert_eq!(
            pv.role_vectors,
            vec![2.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0, -1.0]
        );
        assert_eq!(pv.default_vector, vec![2.0, 5.0, 4.0, 0.0]);
        // mu_roles = ([2,0|0,1] + [0,2|0,-1]) / 2 = [1,1|0,0]
        assert_eq!(pv.mu_roles, vec![1.0, 1.0, 0.0, 0.0]);
        // axis = default - mu = [1,4|4,0]; |axis_0| = sqrt(17), |axis_1| = 4
        assert_eq!(pv.axis, vec![1.0, 4.0, 4.0, 0.0]);
        let s = 17f32.sqrt();
        for (g, w) in pv.unit.iter().zip([1.0 / s, 4.0 / s, 1.0, 0.0]) {
            assert!((g - w).abs() < 1e-7);
        }
        // n_L token-weighted: layer 0 (1*1 + 3*3 + 2*2 + 2*5 + 2*6) / 10 = 3.6
        assert!((pv.mean_token_norm[0] - 3.6).abs() < 1e-6);
        // layer 1: (1*10 + 3*20 + 2*30 + 2*40 + 2*50) / 10 = 31
        assert!((pv.mean_token_norm[1] - 31.0).abs() < 1e-5);
        // Default projects to |axis|; role a at layer 0: ([2,0]-[1,1]).[1,4]/sqrt17 = -3/sqrt17
        assert!((pv.default_projection(0) - s).abs() < 1e-6);
        assert!((pv.role_projection(0, 0) + 3.0 / s).abs() < 1e-6);
        // Raw = centred + mu.u: [1,1].[1,4]/sqrt17 = 5/sqrt17
        let ax = pv.at(0);
        assert!((ax.project_raw(&[2.0, 0.0]) - 2.0 / s).abs() < 1e-6);
        assert!((ax.offset() - 5.0 / s).abs() < 1e-6);
    }

    #[test]
    fn projection_stats_percentiles_raw_and_centred() {
        let rs = small();
        let pv = PersonaVectors::from_rollouts(&rs, 2, 2).unwrap();
        let st = ProjectionStats::compute(&pv, &rs).unwrap();
        assert_eq!(st.rollouts.len(), 5);
        assert_eq!(st.rollouts[2].role, Some(1));
        assert_eq!(st.rollouts[3].role, None);
        // Layer 1: u = [1,0], mu = [0,0] -> projections are the first coordinate: 0,0,0,4,4.
        let col: Vec<f32> = (0..5).map(|i| st.projection(i, 1)).collect();
        assert_eq!(col, vec![0.0, 0.0, 0.0, 4.0, 4.0]);
        // numpy: percentile([0,0,0,4,4], 75) = 4, 50 -> 0, 60 -> 0.64*... index 2.4 -> 1.6
        assert_eq!(st.percentile(1, 75), Some(4.0));
        assert_eq!(st.percentile(1, 50), Some(0.0));
        assert!((st.percentile(1, 60).unwrap() - 1.6).abs() < 1e-6);
        // Layer 0: raw = centred + 5/sqrt17.
        let s = 17f32.sqrt();
        for q in [1u8, 25, 75, 99] {
            let (c, r) = (st.percentile(0, q).unwrap(), st.tau(0, q).unwrap());
            assert!((r - c - 5.0 / s).abs() < 1e-6);
        }
        assert_eq!(st.tau(0, 0), None);
        assert_eq!(st.tau(0, 100), None);
        assert_eq!(st.tau(2, 50), None);
    }

    #[test]
    fn from_tokens_masks_and_norms() {
        // 3 tokens, 2 layers, hidden 2; token 1 is excluded (e.g. a header token).
        let data = [
            1.0, 0.0, 3.0, 4.0, // token 0
            100.0, 100.0, 100.0, 100.0, // token 1 (excluded)
            3.0, 0.0, -3.0, 4.0, // token 2
        ];
        let acts = TokenActivations::new(&data, 2, 2).unwrap();
        let r = RolloutActivation::from_tokens("x", 1, 7, &acts, &[true, false, true]).unwrap();
        assert_eq!(r.n_tokens, 2);
        assert_eq!(r.per_layer, vec![2.0, 0.0, 0.0, 4.0]);
        // Mean of norms, not norm of the mean: layer 1 has |[3,4]| = |[-3,4]| = 5, |mean| = 4.
        assert_eq!(r.mean_token_norm, vec![2.0, 5.0]);
        assert!(RolloutActivation::from_tokens("x", 1, 7, &acts, &[false; 3]).is_err());
        assert!(RolloutActivation::from_tokens("x", 1, 7, &acts, &[true; 2]).is_err());
        assert!(TokenActivations::new(&data[..11], 2, 2).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut rs = small();
        rs[0].per_layer.pop();
        assert!(PersonaVectors::from_rollouts(&rs, 2, 2).is_err());
        let only_roles: Vec<_> = small().into_iter().filter(|r| !r.is_default()).collect();
        let e = PersonaVectors::from_rollouts(&only_roles, 2, 2).unwrap_err();
        assert!(e.to_string().contains("default"), "{e}");
        let mut rs = small();
        rs[1].per_layer[0] = f32::NAN;
        assert!(PersonaVectors::from_rollouts(&rs, 2, 2).is_err());
        // Default equal to the mean of roles: no axis.
        let rs = vec![
            rollout("a", 1, 1, vec![1.0, 1.0], vec![1.0]),
            rollout(DEFAULT_ROLE, 1, 1, vec![1.0, 1.0], vec![1.0]),
        ];
        assert!(PersonaVectors::from_rollouts(&rs, 1, 2).is_err());
        // A rollout of an unknown role cannot be projected into stats.
        let pv = PersonaVectors::from_rollouts(&small(), 2, 2).unwrap();
        let stray = vec![rollout("zzz", 1, 1, vec![0.0; 4], vec![1.0, 1.0])];
        assert!(ProjectionStats::compute(&pv, &stray).is_err());
    }
}
