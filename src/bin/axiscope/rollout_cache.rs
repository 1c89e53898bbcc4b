//! The build's `--rollouts-cache` file: every rollout of a plan (reply, activations), so that
//! a change of the analysis re-assembles a bundle in seconds from the same rollouts.

use anyhow::{Context, Result};
use axiscope::engine::StopReason;
use axiscope::science::pipeline::{RolloutOutput, RolloutPlan};
use std::path::Path;

/// One cached rollout's description; its floats follow it in the file.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedRollout {
    role: String,
    prompt_index: u32,
    question_id: u32,
    sample: u32,
    /// `None`: every reply was empty.
    reply: Option<CachedReply>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedReply {
    text: String,
    generated: usize,
    stop: StopReason,
    attempts: u32,
    /// Absent in caches from before replies were recorded while generated: all were re-read.
    #[serde(default = "yes")]
    reread: bool,
    n_tokens: u32,
    per_layer: usize,
    norms: usize,
    band_tokens: usize,
}

fn yes() -> bool {
    true
}

const CACHE_MAGIC: &[u8; 8] = b"AXROLLS1";

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
}

/// The rollout cache: magic, then per rollout a `u32` LE length, that many bytes of
/// [`CachedRollout`] JSON and its float arrays (f32 LE) in the order listed.
pub fn write_rollouts(
    path: &Path,
    plans: &[RolloutPlan],
    results: &[Option<RolloutOutput>],
) -> Result<()> {
    let mut out = CACHE_MAGIC.to_vec();
    for (p, r) in plans.iter().zip(results) {
        let head = CachedRollout {
            role: p.role.clone(),
            prompt_index: p.prompt_index,
            question_id: p.question_id,
            sample: p.sample,
            reply: r.as_ref().map(|o| CachedReply {
                text: o.reply.clone(),
                generated: o.generated,
                stop: o.stop,
                attempts: o.attempts,
                reread: o.reread,
                n_tokens: o.activation.n_tokens,
                per_layer: o.activation.per_layer.len(),
                norms: o.activation.mean_token_norm.len(),
                band_tokens: o.band_tokens.len(),
            }),
        };
        let json = serde_json::to_vec(&head)?;
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        if let Some(o) = r {
            put_f32s(&mut out, &o.activation.per_layer);
            put_f32s(&mut out, &o.activation.mean_token_norm);
            put_f32s(&mut out, &o.band_tokens);
        }
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// The rollouts of `plans` from a rollout cache, which may hold more (a smaller plan with
/// the same seed, e.g. fewer questions or default seeds, is a subset of a larger one: the
/// question choice is a prefix of one seeded shuffle and seeds depend only on a rollout's
/// identity).
pub fn read_rollouts(path: &Path, plans: &[RolloutPlan]) -> Result<Vec<Option<RolloutOutput>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = |msg: String| anyhow::anyhow!("rollout cache {}: {msg}", path.display());
    if !bytes.starts_with(CACHE_MAGIC) {
        return Err(bad("not a rollout cache".into()));
    }
    let mut r = ByteReader {
        bytes: &bytes,
        pos: CACHE_MAGIC.len(),
    };
    let mut cached = std::collections::HashMap::new();
    while r.pos < bytes.len() {
        let len = r.u32().ok_or_else(|| bad("truncated".into()))? as usize;
        let head: CachedRollout =
            serde_json::from_slice(r.take(len).ok_or_else(|| bad("truncated".into()))?)
                .map_err(|e| bad(format!("bad record: {e}")))?;
        let mut floats = |n: usize| r.f32s(n).ok_or_else(|| bad("truncated".into()));
        let key = (
            head.role.clone(),
            head.prompt_index,
            head.question_id,
            head.sample,
        );
        let out = match head.reply {
            None => None,
            Some(c) => Some(RolloutOutput {
                activation: axiscope::science::RolloutActivation {
                    role: head.role,
                    prompt_index: head.prompt_index,
                    question_id: head.question_id,
                    n_tokens: c.n_tokens,
                    per_layer: floats(c.per_layer)?,
                    mean_token_norm: floats(c.norms)?,
                },
                band_tokens: floats(c.band_tokens)?,
                reply: c.text,
                generated: c.generated,
                stop: c.stop,
                attempts: c.attempts,
                reread: c.reread,
            }),
        };
        cached.insert(key, out);
    }
    plans
        .iter()
        .map(|p| {
            cached
                .remove(&(p.role.clone(), p.prompt_index, p.question_id, p.sample))
                .ok_or_else(|| {
                    bad(format!(
                        "no rollout {}/{}/{}/{} (role/prompt/question/sample): written for another plan",
                        p.role, p.prompt_index, p.question_id, p.sample
                    ))
                })
        })
        .collect()
}

/// Reads a byte buffer front to back; `None` when it runs out.
struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn f32s(&mut self, n: usize) -> Option<Vec<f32>> {
        let b = self.take(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        )
    }
}
