//! Residual-stream hook edits. `Add { vector }` is [`super::elementwise::add`] with
//! [`AddMode::Broadcast`](super::elementwise::AddMode::Broadcast); recording a layer is
//! [`super::elementwise::copy_rows`] with
//! [`RowDest::Interleaved`](super::elementwise::RowDest::Interleaved). The projection
//! clamp needs a per-token dot product and has its own kernel (`clamp_projection.wgsl`).

use super::context::{Kernel, need_tokens};
use super::{GpuContext, Result, Step, gpu_err};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    has_min: u32,
    has_max: u32,
    _pad: u32,
    min_v: f32,
    max_v: f32,
    _pad1: [u32; 2],
}

/// `p = h[t]·unit; h[t] += unit * (clamp(p, min, max) - p)` for every token of
/// `h [n_tok][n]`; a `None` bound is not applied. `unit` is used as given (the caller
/// normalises it when it means a unit vector).
pub fn clamp_projection(
    ctx: &GpuContext,
    step: &Step,
    n: usize,
    min: Option<f32>,
    max: Option<f32>,
    unit: &wgpu::Buffer,
    h: &wgpu::Buffer,
) -> Result<Kernel> {
    if n == 0 || n > u32::MAX as usize / 2 {
        return Err(gpu_err!("clamp_projection: bad row length {n}"));
    }
    if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) {
        return Err(gpu_err!("clamp_projection: bounds must be finite"));
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(gpu_err!("clamp_projection: min {lo} > max {hi}"));
    }
    need_tokens("clamp_projection", "unit", unit, n)?;
    let max_tok = need_tokens("clamp_projection", "h", h, n)?;
    let p = ctx.uniform(
        "clamp_projection params",
        &Params {
            n: n as u32,
            has_min: min.is_some() as u32,
            has_max: max.is_some() as u32,
            _pad: 0,
            min_v: min.unwrap_or(0.0),
            max_v: max.unwrap_or(0.0),
            _pad1: [0; 2],
        },
    );
    Ok(ctx.kernel(
        "clamp_projection",
        || include_str!("clamp_projection.wgsl").to_string(),
        &[&p, unit, h],
        step,
        max_tok,
        |n_tok| [n_tok, 1, 1],
    ))
}
