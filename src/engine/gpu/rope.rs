//! Rotary position embedding (`rope.wgsl`), llama.cpp's NORM and NEOX modes.

use super::context::{Kernel, need_tokens};
use super::{GpuContext, Result, Step, gpu_err};

/// How the rotated pairs are formed (llama.cpp's `rope_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs `(x[2i], x[2i+1])`: the `llama` architecture.
    Norm,
    /// Halves `(x[i], x[i + n_rot/2])`: `qwen2` and other NEOX-style models.
    Neox,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    neox: u32,
}

/// `inv_freq[i] = theta^(-2i / n_rot) / factors[i]`, computed on the CPU in f64 so every
/// kernel reads one table. `factors` are Llama 3's rope scaling (`rope_freqs.weight`, one
/// divisor per pair), as llama.cpp divides each pair's angle by its factor.
pub fn inv_freq(n_rot: usize, theta: f32, factors: Option<&[f32]>) -> Vec<f32> {
    (0..n_rot / 2)
        .map(|i| {
            let f = factors.map_or(1.0, |f| f[i] as f64);
            ((theta as f64).powf(-2.0 * i as f64 / n_rot as f64) / f) as f32
        })
        .collect()
}

/// RoPE in place on `x [n_tok][n_heads][head_dim]` at positions `pos0..pos0 + n_tok`.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    ctx: &GpuContext,
    step: &Step,
    n_heads: usize,
    head_dim: usize,
    n_rot: usize,
    theta: f32,
    factors: Option<&[f32]>,
    mode: RopeMode,
    x: &wgpu::Buffer,
) -> Result<Kernel> {
    if n_heads == 0
        || n_rot == 0
        || !n_rot.is_multiple_of(2)
        || n_rot > head_dim
        || !theta.is_finite()
        || theta <= 0.0
        || factors
            .is_some_and(|f| f.len() != n_rot / 2 || f.iter().any(|&v| !v.is_finite() || v <= 0.0))
    {
        return Err(gpu_err!(
            "rope: bad shape (heads {n_heads}, head_dim {head_dim}, n_rot {n_rot}), theta {theta} or frequency factors"
        ));
    }
    let max_tok = need_tokens("rope", "x", x, n_heads * head_dim)?;
    let freqs = ctx.upload("rope inv_freq", &inv_freq(n_rot, theta, factors))?;
    let p = ctx.uniform(
        "rope params",
        &Params {
            n_heads: n_heads as u32,
            head_dim: head_dim as u32,
            n_rot: n_rot as u32,
            neox: (mode == RopeMode::Neox) as u32,
        },
    );
    let groups = ((n_heads * n_rot / 2) as u32).div_ceil(64);
    Ok(ctx.kernel(
        "rope",
        || include_str!("rope.wgsl").to_string(),
        &[&step.buffer, &p, &freqs, x],
        step,
        max_tok,
        move |n_tok| [groups, n_tok, 1],
    ))
}
