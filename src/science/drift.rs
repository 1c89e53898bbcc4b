//! Drift along the axis over a conversation (docs/method.md, "Drift").
//!
//! One point per assistant turn: the turn's mean activation over its *content* tokens
//! (never the role header or end-of-turn token, never BOS), projected as
//! `p = (mean_h - mu_roles) . u` at the analysis layer. The engine knows each token's kind;
//! the caller turns it into `turn_of_token[t] = Some(k)` for the content tokens of the k-th
//! assistant turn and `None` for everything else.
//!
//! Projections depend on topic as well as persona (user turns about code also project
//! high); whoever shows these numbers should say so.

use super::stats::RunningMean;
use super::vectors::{AxisAt, TokenActivations};
use super::{Error, Result};

/// One assistant turn's summary at one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnPoint {
    /// Assistant turn index (as given in `turn_of_token`).
    pub turn: usize,
    /// Content tokens averaged.
    pub n_tokens: usize,
    /// `[hidden]`: mean residual over those tokens (e.g. to place the turn on the PCA map).
    pub mean: Vec<f32>,
    /// Centred projection of `mean` on the axis.
    pub projection: f32,
}

/// Per-turn means and projections at recorded layer slot `slot`, in increasing turn order;
/// turns with no content token (an empty reply) are left out.
pub fn drift_curve(
    acts: &TokenActivations,
    slot: usize,
    turn_of_token: &[Option<usize>],
    axis: AxisAt,
) -> Result<Vec<TurnPoint>> {
    check(acts, slot, axis)?;
    if turn_of_token.len() != acts.n_tokens() {
        return Err(Error::Invalid(format!(
            "drift: {} turn labels for {} tokens",
            turn_of_token.len(),
            acts.n_tokens()
        )));
    }
    let n_turns = turn_of_token
        .iter()
        .flatten()
        .map(|&k| k + 1)
        .max()
        .unwrap_or(0);
    let mut means = vec![RunningMean::new(acts.hidden()); n_turns];
    for (t, turn) in turn_of_token.iter().enumerate() {
        if let Some(k) = *turn {
            means[k].add(acts.get(t, slot));
        }
    }
    Ok(means
        .into_iter()
        .enumerate()
        .filter_map(|(turn, m)| {
            let n_tokens = m.weight() as usize;
            m.mean().map(|mean| TurnPoint {
                turn,
                n_tokens,
                projection: axis.project(&mean),
                mean,
            })
        })
        .collect())
}

/// Centred projection of every token at recorded layer slot `slot` (for the per-token view;
/// the caller decides which token kinds to show: BOS and control tokens are outliers).
pub fn token_projections(acts: &TokenActivations, slot: usize, axis: AxisAt) -> Result<Vec<f32>> {
    check(acts, slot, axis)?;
    Ok((0..acts.n_tokens())
        .map(|t| axis.project(acts.get(t, slot)))
        .collect())
}

fn check(acts: &TokenActivations, slot: usize, axis: AxisAt) -> Result<()> {
    if slot >= acts.n_layers() {
        return Err(Error::Invalid(format!(
            "drift: layer slot {slot} not recorded ({} slots)",
            acts.n_layers()
        )));
    }
    if axis.unit.len() != acts.hidden() || axis.mu_roles.len() != acts.hidden() {
        return Err(Error::Invalid(format!(
            "drift: axis of width {} for activations of width {}",
            axis.unit.len(),
            acts.hidden()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_means_skip_non_content_tokens() {
        // 2 recorded slots, hidden 2; the axis is x with mu = (1, 0).
        let mu = [1.0, 0.0];
        let u = [1.0, 0.0];
        let axis = AxisAt {
            mu_roles: &mu,
            unit: &u,
        };
        #[rustfmt::skip]
        let data = [
            50.0, 0.0,  0.0, 0.0,   // 0: user/header token (huge, must not count)
            2.0, 1.0,   0.0, 0.0,   // 1: turn 0 content
            4.0, 3.0,   0.0, 0.0,   // 2: turn 0 content
            -9.0, 0.0,  0.0, 0.0,   // 3: end of turn
            -1.0, 0.0,  5.0, 5.0,   // 4: turn 2 content (turn 1 empty)
        ];
        let acts = TokenActivations::new(&data, 2, 2).unwrap();
        let labels = [None, Some(0), Some(0), None, Some(2)];
        let pts = drift_curve(&acts, 0, &labels, axis).unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!((pts[0].turn, pts[0].n_tokens), (0, 2));
        assert_eq!(pts[0].mean, vec![3.0, 2.0]);
        assert_eq!(pts[0].projection, 2.0); // (3 - 1) * 1
        assert_eq!((pts[1].turn, pts[1].projection), (2, -2.0));
        let per_token = token_projections(&acts, 0, axis).unwrap();
        assert_eq!(per_token, vec![49.0, 1.0, 3.0, -10.0, -2.0]);
        // The second slot is independent.
        assert_eq!(
            drift_curve(&acts, 1, &labels, axis).unwrap()[1].projection,
            4.0
        );
    }

    #[test]
    fn mismatches_are_errors() {
        let data = [0.0f32; 8];
        let acts = TokenActivations::new(&data, 2, 2).unwrap();
        let (mu, u) = ([0.0, 0.0], [1.0, 0.0]);
        let axis = AxisAt {
            mu_roles: &mu,
            unit: &u,
        };
        assert!(drift_curve(&acts, 0, &[None], axis).is_err());
        assert!(drift_curve(&acts, 2, &[None, None], axis).is_err());
        let short = [1.0];
        assert!(
            token_projections(
                &acts,
                0,
                AxisAt {
                    mu_roles: &short,
                    unit: &short
                }
            )
            .is_err()
        );
    }
}
