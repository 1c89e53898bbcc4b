//! The Assistant Axis method (Lu et al. 2026; our account in docs/method.md), as plain
//! arithmetic on `f32` vectors with `f64` accumulation. No backend, no UI: the engine hands
//! in activations, this module hands back vectors, numbers and edits.
//!
//! Layers are hook points: layer `l` is the residual stream at the output of decoder block
//! `l`. Per-layer arrays are row-major `[n_layers][hidden]`.
//!
//! | docs/method.md | here |
//! |---|---|
//! | rollout activation = mean residual over the reply's content tokens | [`RolloutActivation::from_tokens`] |
//! | role vector = mean of its rollouts; default vector = mean of default rollouts | [`PersonaVectors::from_rollouts`] |
//! | `mu_roles` = mean of role vectors; axis = default - `mu_roles`; `u = axis / ‖axis‖` | [`PersonaVectors::from_means`] |
//! | projection `p = (h - mu_roles) . u` | [`AxisAt::project`] (raw `h . u`: [`AxisAt::project_raw`]) |
//! | `n_L` = mean token norm at L | [`PersonaVectors::mean_token_norm`] (token-weighted) |
//! | `tau_l` = percentile of per-rollout projections, roles + default | [`ProjectionStats::tau`] (raw), [`ProjectionStats::percentile`] (centred) |
//! | persona space: PCA (no scaling) of centred role vectors, PC1 toward the default | [`persona_pca`], [`Pca::fit`] |
//! | drift: per assistant turn, projection of the turn's mean | [`drift_curve`]; per token: [`token_projections`] |
//! | capping `h <- h + u_l max(tau_l - h.u_l, 0)` over a band | [`capping_edits`] (floor), [`clamp_edits`] (floor/ceiling) |
//! | steering `h <- h + alpha n_L u` | [`steering_edits`] |
//! | the axis for llama.cpp: `direction.L = n_L u_L` in a control-vector GGUF | [`control_vector`] |
//! | the edits' arithmetic | [`EditKind::apply`] |
//! | cos(PC1, axis), explained variance, default's place, split-half stability | [`FidelityReport::compute`] |
//! | the analysis layer chosen on held-out questions; intervals | [`heldout`] |
//! | the default capping band and percentile, and how far the floor reaches | [`default_cap_band`], [`cap_reach`] |
//! | shipping all of it | [`Bundle`] (directory or single blob) |
//! | role, question and transcript files (reference formats) | [`data`] |
//! | rollouts, teacher forcing, conversations, edits on the engine | [`pipeline`] (the one file that uses engine types) |
//!
//! Percentiles use numpy's default linear interpolation ([`stats::percentiles`]).

pub mod bundle;
pub mod control_vector;
pub mod data;
pub mod drift;
pub mod heldout;
pub mod pca;
pub mod pipeline;
pub mod report;
pub mod stats;
pub mod steer;
pub mod vectors;

pub use bundle::{BuildSettings, Bundle, Manifest, ModelFit, ModelInfo, RoleInfo};
pub use drift::{TurnPoint, drift_curve, token_projections};
pub use heldout::{HeldOut, Interval, LayerChoice, QuestionSums};
pub use pca::{Pca, persona_pca};
pub use report::{FidelityReport, RoleDistance, SplitHalf, split_half};
pub use steer::{
    CapReach, DEFAULT_CAP_PERCENTILE, EditKind, LayerEdit, cap_reach, capping_edits, clamp_edits,
    default_cap_band, steering_edits,
};
pub use vectors::{
    AxisAt, DEFAULT_ROLE, PERCENTILE_STEPS, PersonaVectors, ProjectionStats, RolloutActivation,
    RolloutMeta, TokenActivations,
};

/// Errors from the science code: one line, saying what was wrong with which input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Inconsistent or unusable input (shapes, empty sets, non-finite values).
    #[error("{0}")]
    Invalid(String),
    /// A bundle that cannot be read, naming the file at fault.
    #[error("bundle: {file}: {msg}")]
    Bundle { file: String, msg: String },
    /// The engine failed under the science code; kept typed so that a GPU fault is told apart.
    #[error("{0}")]
    Engine(#[from] crate::engine::Error),
    /// The engine failed on one rollout of a build.
    #[error("rollout {role}/{prompt}/{question}: {source}")]
    Rollout {
        role: String,
        prompt: u32,
        question: u32,
        source: crate::engine::Error,
    },
}

impl Error {
    /// Whether the GPU failed underneath (see [`crate::engine::Error::is_gpu`]).
    pub fn is_gpu(&self) -> bool {
        self.engine().is_some_and(crate::engine::Error::is_gpu)
    }

    /// The engine's error underneath, if the engine failed.
    pub fn engine(&self) -> Option<&crate::engine::Error> {
        match self {
            Error::Engine(e) | Error::Rollout { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_fault_under_a_rollout_stays_one() {
        let gpu = crate::engine::Error::Gpu("device lost".into());
        let e = Error::Rollout {
            role: "pirate".into(),
            prompt: 0,
            question: 3,
            source: gpu,
        };
        assert!(e.is_gpu());
        assert_eq!(e.to_string(), "rollout pirate/0/3: GPU: device lost");
        assert!(!Error::Invalid("GPU: in a message".into()).is_gpu());
    }
}
