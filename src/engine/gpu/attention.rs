//! Causal grouped-query attention over a GPU-resident KV cache (`attention.wgsl`).

use super::context::{Kernel, need_tokens};
use super::{GpuContext, Result, Step, gpu_err};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    scale: f32,
    window: u32,
    _pad: [u32; 3],
}

/// The attention of one layer: its shape, score scale and reach.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// What scores are multiplied by: `1 / sqrt(head_dim)` when `None` (gemma3 gives its own).
    pub scale: Option<f32>,
    /// A local (sliding-window) layer's reach: each token sees its last `window` positions,
    /// itself included. `None`: every earlier position.
    pub window: Option<usize>,
}

/// `out = softmax(scale · q·kᵀ, causal, within the window) · v` for tokens at
/// `pos0..pos0 + n_tok`.
/// `q`/`out`: `[n_tok][n_head][head_dim]`; `k_cache`/`v_cache`: `[ctx][n_kv_head][head_dim]`,
/// already holding positions `0..pos0 + n_tok` (store them with
/// [`super::elementwise::copy_rows`] first). `encode` refuses `pos0 + n_tok > ctx`.
pub fn attention(
    ctx: &GpuContext,
    step: &Step,
    shape: AttentionShape,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Kernel> {
    let AttentionShape {
        n_head,
        n_kv_head,
        head_dim,
        scale,
        window,
    } = shape;
    let scale = scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
    if n_head == 0
        || n_kv_head == 0
        || n_head % n_kv_head != 0
        || head_dim == 0
        || head_dim > 256
        || !scale.is_finite()
        || window.is_some_and(|w| w == 0 || w > u32::MAX as usize)
    {
        return Err(gpu_err!(
            "attention: unsupported shape ({n_head} heads, {n_kv_head} KV heads, head_dim {head_dim}; head_dim <= 256), scale {scale} or window {window:?}"
        ));
    }
    let q_dim = n_head * head_dim;
    let kv_dim = n_kv_head * head_dim;
    let max_tok =
        need_tokens("attention", "q", q, q_dim)?.min(need_tokens("attention", "out", out, q_dim)?);
    let ctx_len = need_tokens("attention", "k_cache", k_cache, kv_dim)?.min(need_tokens(
        "attention",
        "v_cache",
        v_cache,
        kv_dim,
    )?);
    let p = ctx.uniform(
        "attention params",
        &Params {
            n_head: n_head as u32,
            n_kv_head: n_kv_head as u32,
            head_dim: head_dim as u32,
            scale,
            window: window.map_or(0, |w| w as u32),
            _pad: [0; 3],
        },
    );
    let heads = n_head as u32;
    Ok(ctx
        .kernel(
            "attention",
            || include_str!("attention.wgsl").to_string(),
            &[&step.buffer, &p, q, k_cache, v_cache, out],
            step,
            max_tok,
            move |n_tok| [heads, n_tok, 1],
        )
        .with_max_end(ctx_len))
}
