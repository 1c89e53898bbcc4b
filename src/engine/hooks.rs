//! Hook points: the residual stream at the output of each decoder block. A caller names the
//! layers to record and the edits to apply; both backends honour the same contract (see
//! docs/ARCHITECTURE.md). With nothing recorded and no edits, a hook point costs one check.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EditOp {
    /// `h += vector` (steering).
    Add { vector: Vec<f32> },
    /// `p = h . unit; h += unit * (clamp(p, min, max) - p)`. `min` alone is the paper's cap.
    Clamp {
        unit: Vec<f32>,
        min: Option<f32>,
        max: Option<f32>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    pub layer: usize,
    pub op: EditOp,
}

impl EditOp {
    /// Applies the edit to one token's residual vector.
    pub fn apply(&self, h: &mut [f32]) {
        match self {
            EditOp::Add { vector } => h.iter_mut().zip(vector).for_each(|(x, v)| *x += v),
            EditOp::Clamp { unit, min, max } => {
                let p: f32 = h.iter().zip(unit).map(|(a, b)| a * b).sum();
                let mut target = p;
                if let Some(lo) = min {
                    target = target.max(*lo);
                }
                if let Some(hi) = max {
                    target = target.min(*hi);
                }
                let delta = target - p;
                if delta != 0.0 {
                    h.iter_mut().zip(unit).for_each(|(x, u)| *x += u * delta);
                }
            }
        }
    }
}

/// Recorded residuals, `[token][recorded layer][hidden]`, appended across forward calls.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub layers: Vec<usize>,
    pub hidden: usize,
    pub data: Vec<f32>,
}

impl Recording {
    pub fn n_tokens(&self) -> usize {
        if self.layers.is_empty() || self.hidden == 0 {
            0
        } else {
            self.data.len() / (self.layers.len() * self.hidden)
        }
    }

    /// The residual of token `t` at recorded layer `layer`, if that layer is recorded.
    pub fn get(&self, t: usize, layer: usize) -> Option<&[f32]> {
        let li = self.layers.iter().position(|&l| l == layer)?;
        let start = (t * self.layers.len() + li) * self.hidden;
        self.data.get(start..start + self.hidden)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Layers to record, ascending.
    pub record: Vec<usize>,
    pub edits: Vec<Edit>,
    pub recording: Recording,
    /// This forward call's recorded layers, in `record` order, until `end_forward`.
    pending: Vec<Vec<f32>>,
}

impl Hooks {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn recording(layers: Vec<usize>) -> Self {
        Self {
            record: layers,
            ..Self::default()
        }
    }

    /// What a backend can honour on a model of `n_layers` layers of width `hidden`: recorded
    /// layers strictly ascending and in the model; edits at its layers, with vectors of its
    /// width and clamp bounds finite and not crossed. Every backend refuses the rest alike
    /// ([`crate::engine::ModelConfig::check_forward`]), before anything runs.
    pub fn check(&self, n_layers: usize, hidden: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.record.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!(
                "recorded layers {:?} are not strictly ascending",
                self.record
            ));
        }
        if let Some(&l) = self.record.iter().find(|&&l| l >= n_layers) {
            return bad(format!("cannot record layer {l}: the model has {n_layers}"));
        }
        for e in &self.edits {
            if e.layer >= n_layers {
                return bad(format!(
                    "an edit at layer {}: the model has {n_layers}",
                    e.layer
                ));
            }
            match &e.op {
                EditOp::Add { vector } if vector.len() != hidden => {
                    return bad(format!(
                        "a steering vector of {} values, the residual has {hidden}",
                        vector.len()
                    ));
                }
                EditOp::Clamp { unit, .. } if unit.len() != hidden => {
                    return bad(format!(
                        "a capping direction of {} values, the residual has {hidden}",
                        unit.len()
                    ));
                }
                EditOp::Clamp { min, max, .. } => {
                    if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) {
                        return bad("capping bounds must be finite".into());
                    }
                    if let (Some(lo), Some(hi)) = (min, max)
                        && lo > hi
                    {
                        return bad(format!("a capping floor {lo} above its ceiling {hi}"));
                    }
                }
                EditOp::Add { .. } => {}
            }
        }
        Ok(())
    }

    /// Hook point `layer` for the tokens in `x` (`[n_tok][hidden]`): edits in order, then record.
    pub fn at_layer(&mut self, layer: usize, x: &mut [f32], hidden: usize) {
        for e in self.edits.iter().filter(|e| e.layer == layer) {
            x.chunks_exact_mut(hidden).for_each(|h| e.op.apply(h));
        }
        if self.record.contains(&layer) {
            self.pending.push(x.to_vec());
        }
    }

    /// Appends this forward call's recordings to `recording`, token-major.
    pub fn end_forward(&mut self, n_tok: usize, hidden: usize) {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return;
        }
        let recording = self.recording_for(hidden);
        recording.data.reserve(n_tok * pending.len() * hidden);
        for t in 0..n_tok {
            for buf in &pending {
                recording
                    .data
                    .extend_from_slice(&buf[t * hidden..(t + 1) * hidden]);
            }
        }
    }

    /// Appends residuals already laid out `[token][recorded layer][hidden]` (a backend that
    /// records on the device reads them back in this order).
    pub fn append_recorded(&mut self, data: &[f32], hidden: usize) {
        self.recording_for(hidden).data.extend_from_slice(data);
    }

    /// The recording to append to, restarted when the recorded layers or width changed.
    fn recording_for(&mut self, hidden: usize) -> &mut Recording {
        if self.recording.layers != self.record || self.recording.hidden != hidden {
            self.recording = Recording {
                layers: self.record.clone(),
                hidden,
                data: Vec::new(),
            };
        }
        &mut self.recording
    }
}
