//! Greedy token pick on the GPU (`argmax.wgsl`): decode reads back one u32, not the logits.

use super::context::{Kernel, need_tokens};
use super::{GpuContext, Result, Step, gpu_err};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    last_row: u32,
    _pad: [u32; 2],
}

/// Index of the largest logit (first on ties, NaNs ignored, `u32::MAX` if all are NaN)
/// into `out[0]`. `last_row`: read row `n_tok - 1` of `[n_tok][vocab]` logits, else row 0
/// (logits computed for the last token only).
pub fn argmax(
    ctx: &GpuContext,
    step: &Step,
    vocab: usize,
    last_row: bool,
    logits: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel> {
    if vocab == 0 || vocab > u32::MAX as usize / 2 {
        return Err(gpu_err!("argmax: bad vocabulary size {vocab}"));
    }
    need_tokens("argmax", "out", out, 1)?;
    let rows = need_tokens("argmax", "logits", logits, vocab)?;
    let p = ctx.uniform(
        "argmax params",
        &Params {
            n: vocab as u32,
            last_row: last_row as u32,
            _pad: [0; 2],
        },
    );
    Ok(ctx.kernel(
        "argmax",
        || include_str!("argmax.wgsl").to_string(),
        &[&step.buffer, &p, logits, out],
        step,
        if last_row { rows } else { u32::MAX },
        |_| [1, 1, 1],
    ))
}
