//! The capping and steering options (`generate`, `project`), the engine edits they make from a
//! bundle, and reading a reply back without them.

use anyhow::{Context, Result, bail};
use axiscope::engine::chat::Message;
use axiscope::engine::{Edit, Model, Session};
use axiscope::science::pipeline;
use axiscope::science::{
    Bundle, DEFAULT_CAP_PERCENTILE, capping_edits, default_cap_band, steering_edits,
};
use clap::Args;
use serde_json::json;
use std::ops::Range;
use std::path::PathBuf;

use crate::common::{check_fits, read_bundle};

#[derive(Args, Clone, Default)]
pub struct EditArgs {
    /// Persona bundle: gives the axis for capping, steering and projections.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Cap: floor the projection at this percentile (1-99) of the rollouts' projections
    /// (default 75, the paper's).
    #[arg(long)]
    pub cap_percentile: Option<u8>,
    /// Cap band `A:B`: layers A to B-1, like a Python slice. Default: 70-90% of the depth,
    /// the paper's (21:27 for a 30-layer model). Either cap option turns capping on.
    #[arg(long)]
    pub cap_layers: Option<String>,
    /// Steering strength: adds ALPHA x (mean token norm) x unit axis; positive is toward the
    /// Assistant (the reference sweeps -0.5 .. 2).
    #[arg(long, allow_negative_numbers = true)]
    pub steer: Option<f32>,
    /// Layer to steer at (default: the bundle's analysis layer).
    #[arg(long)]
    pub steer_layer: Option<usize>,
}

fn parse_band(s: &str, n_layers: usize) -> Result<Range<usize>> {
    let (a, b) = s
        .split_once(':')
        .with_context(|| format!("--cap-layers {s:?}: expected A:B (layers A to B-1)"))?;
    let a: usize = a
        .trim()
        .parse()
        .with_context(|| format!("--cap-layers {s:?}: {a:?} is not a layer number"))?;
    let b: usize = b
        .trim()
        .parse()
        .with_context(|| format!("--cap-layers {s:?}: {b:?} is not a layer number"))?;
    if a >= b || b > n_layers {
        bail!("--cap-layers {s}: needs A < B <= {n_layers} (layers A to B-1)");
    }
    Ok(a..b)
}

/// The engine edits that `args` ask for, and a description of each for JSON output.
pub fn edits_from_args(
    args: &EditArgs,
    bundle: &Bundle,
) -> Result<(Vec<Edit>, Vec<serde_json::Value>)> {
    let pv = &bundle.vectors;
    let mut edits = Vec::new();
    let mut about = Vec::new();
    if args.cap_percentile.is_some() || args.cap_layers.is_some() {
        let band = match args.cap_layers.as_deref() {
            Some(band) => parse_band(band, pv.n_layers)?,
            None => default_cap_band(pv.n_layers),
        };
        let q = args.cap_percentile.unwrap_or(DEFAULT_CAP_PERCENTILE);
        for l in band.clone() {
            about.push(
                json!({"layer": l, "op": "cap", "percentile": q, "tau": bundle.stats.tau(l, q)}),
            );
        }
        edits.extend(capping_edits(pv, &bundle.stats, band, q)?);
    }
    if let Some(alpha) = args.steer {
        let l = args.steer_layer.unwrap_or(bundle.analysis_layer);
        if l >= pv.n_layers {
            bail!(
                "--steer-layer {l}: the bundle has layers 0..{}",
                pv.n_layers - 1
            );
        }
        about.push(json!({"layer": l, "op": "steer", "alpha": alpha, "norm": alpha * pv.mean_token_norm[l]}));
        edits.extend(steering_edits(pv, l..l + 1, alpha)?);
    } else if args.steer_layer.is_some() {
        bail!("--steer-layer needs --steer ALPHA");
    }
    Ok((pipeline::engine_edits(&edits), about))
}

impl EditArgs {
    pub fn any_edit(&self) -> bool {
        self.cap_percentile.is_some()
            || self.cap_layers.is_some()
            || self.steer.is_some()
            || self.steer_layer.is_some()
    }

    /// The bundle (when given) and the edits asked for.
    pub fn resolve(
        &self,
        model: &Model,
    ) -> Result<(Option<Bundle>, Vec<Edit>, Vec<serde_json::Value>)> {
        let Some(path) = &self.bundle else {
            if self.any_edit() {
                bail!("capping and steering need --bundle");
            }
            return Ok((None, Vec::new(), Vec::new()));
        };
        let b = read_bundle(path)?;
        check_fits(&b, model)?;
        let (edits, about) = edits_from_args(self, &b)?;
        Ok((Some(b), edits, about))
    }
}

/// Projection of the last (assistant) message of `messages` at `layer`, read by the model
/// without edits, on a fresh cache.
pub fn readback(
    model: &Model,
    session: &mut Session,
    messages: &[Message],
    b: &Bundle,
    layer: usize,
) -> Result<Option<f32>> {
    let turns =
        pipeline::project_conversation(model, session, messages, &b.vectors, layer, None, false)?;
    Ok(turns
        .last()
        .filter(|t| t.message + 1 == messages.len())
        .map(|t| t.projection))
}
