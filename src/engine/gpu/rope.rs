//! Rotary position embedding (`rope.wgsl`, and with the KV-cache store `rope_store.wgsl`;
//! both after `rope_common.wgsl`), llama.cpp's NORM and NEOX modes.

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
    /// `rope_store` only.
    n_kv_heads: u32,
    _pad: [u32; 3],
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

/// Refuses shapes and frequencies the kernels cannot turn; uploads the frequency table.
fn freqs(
    ctx: &GpuContext,
    n_heads: usize,
    head_dim: usize,
    n_rot: usize,
    theta: f32,
    factors: Option<&[f32]>,
) -> Result<wgpu::Buffer> {
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
    ctx.upload("rope inv_freq", &inv_freq(n_rot, theta, factors))
}

fn source(kernel: &str) -> String {
    format!("{}\n{kernel}", include_str!("rope_common.wgsl"))
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
    let freqs = freqs(ctx, n_heads, head_dim, n_rot, theta, factors)?;
    let max_tok = need_tokens("rope", "x", x, n_heads * head_dim)?;
    let p = ctx.uniform(
        "rope params",
        &Params {
            n_heads: n_heads as u32,
            head_dim: head_dim as u32,
            n_rot: n_rot as u32,
            neox: (mode == RopeMode::Neox) as u32,
            n_kv_heads: 0,
            _pad: [0; 3],
        },
    );
    let groups = ((n_heads * n_rot / 2) as u32).div_ceil(64);
    Ok(ctx.kernel(
        "rope",
        || source(include_str!("rope.wgsl")),
        &[&step.buffer, &p, &freqs, x],
        step,
        max_tok,
        move |n_tok| [groups, n_tok, 1],
    ))
}

/// The attention's inputs in one op (`rope_store.wgsl`): RoPE in place on `q
/// [n_tok][n_heads][head_dim]`, RoPE of `k [n_tok][n_kv_heads][head_dim]` into rows `pos0..`
/// of the cache `k_cache [ctx][n_kv_heads * head_dim]`, and `v` copied into `v_cache` there.
/// What [`rope`] twice and [`copy_rows`](super::elementwise::copy_rows) twice do, with every
/// dimension turned (`n_rot = head_dim`).
#[allow(clippy::too_many_arguments)]
pub fn rope_store(
    ctx: &GpuContext,
    step: &Step,
    (n_heads, n_kv_heads, head_dim): (usize, usize, usize),
    theta: f32,
    factors: Option<&[f32]>,
    mode: RopeMode,
    (q, k, v): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (k_cache, v_cache): (&wgpu::Buffer, &wgpu::Buffer),
) -> Result<Kernel> {
    let freqs = freqs(
        ctx,
        n_heads.min(n_kv_heads),
        head_dim,
        head_dim,
        theta,
        factors,
    )?;
    let kvd = n_kv_heads * head_dim;
    let max_tok = need_tokens("rope_store", "q", q, n_heads * head_dim)?
        .min(need_tokens("rope_store", "k", k, kvd)?)
        .min(need_tokens("rope_store", "v", v, kvd)?);
    let cache_rows = need_tokens("rope_store", "k_cache", k_cache, kvd)?.min(need_tokens(
        "rope_store",
        "v_cache",
        v_cache,
        kvd,
    )?);
    let p = ctx.uniform(
        "rope_store params",
        &Params {
            n_heads: n_heads as u32,
            head_dim: head_dim as u32,
            n_rot: head_dim as u32,
            neox: (mode == RopeMode::Neox) as u32,
            n_kv_heads: n_kv_heads as u32,
            _pad: [0; 3],
        },
    );
    let groups = (((n_heads + n_kv_heads) * head_dim / 2) as u32).div_ceil(64);
    Ok(ctx
        .kernel(
            "rope_store",
            || source(include_str!("rope_store.wgsl")),
            &[&step.buffer, &p, &freqs, q, k, v, k_cache, v_cache],
            step,
            max_tok,
            move |n_tok| [groups, n_tok, 1],
        )
        .with_max_end(cache_rows))
}
