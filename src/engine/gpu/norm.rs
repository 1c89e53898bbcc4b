//! RMSNorm (`rms_norm.wgsl`).

use super::context::{Kernel, need_tokens};
use super::{GpuContext, Result, Step, gpu_err};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// `y[t] = x[t] / sqrt(mean(x[t]²) + eps) * weight` for rows of `n` values (`x` ≠ `y`).
pub fn rms_norm(
    ctx: &GpuContext,
    step: &Step,
    n: usize,
    eps: f32,
    weight: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Kernel> {
    head_rms_norm(ctx, step, 1, n, eps, weight, x, y)
}

/// RMSNorm of each of a token's `heads` rows of `n` values on its own, all with the same
/// `n` weights (the per-head q/k norms of qwen3 and gemma3; `heads` = 1 is [`rms_norm`]).
#[allow(clippy::too_many_arguments)]
pub fn head_rms_norm(
    ctx: &GpuContext,
    step: &Step,
    heads: usize,
    n: usize,
    eps: f32,
    weight: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Kernel> {
    if n == 0 || heads == 0 || n > u32::MAX as usize / 2 || !eps.is_finite() || eps < 0.0 {
        return Err(gpu_err!("rms_norm: bad size {heads} x {n} or eps {eps}"));
    }
    need_tokens("rms_norm", "weight", weight, n)?;
    let row = heads * n;
    let max_tok = need_tokens("rms_norm", "x", x, row)?.min(need_tokens("rms_norm", "y", y, row)?);
    let p = ctx.uniform(
        "rms_norm params",
        &Params {
            n: n as u32,
            eps,
            _pad: [0; 2],
        },
    );
    Ok(ctx.kernel(
        "rms_norm",
        || include_str!("rms_norm.wgsl").to_string(),
        &[&p, x, weight, y],
        step,
        max_tok,
        move |n_tok| [n_tok * heads as u32, 1, 1],
    ))
}
