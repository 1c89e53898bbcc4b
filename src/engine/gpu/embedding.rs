//! Embedding row gather (`embedding.wgsl`), for any [`QType`](super::QType).

use super::context::{Kernel, need_tokens};
use super::{GpuContext, GpuMatrix, Result, Step, gpu_err};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    row_words: u32,
    _pad: u32,
}

/// `y[t] = table[tokens[t]]` as f32; `tokens` is a u32 buffer written per step
/// (ids must be checked against `table.rows` before upload).
pub fn embedding(
    ctx: &GpuContext,
    step: &Step,
    table: &GpuMatrix,
    tokens: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Kernel> {
    let (rows, cols) = (table.rows, table.cols);
    if rows > u32::MAX as usize / 2 || cols > u32::MAX as usize / 2 {
        return Err(gpu_err!("embedding: table {rows}x{cols} too large"));
    }
    let max_tok =
        need_tokens("embedding", "tokens", tokens, 1)?.min(need_tokens("embedding", "y", y, cols)?);
    let p = ctx.uniform(
        "embedding params",
        &Params {
            rows: rows as u32,
            cols: cols as u32,
            row_words: table.row_words() as u32,
            _pad: 0,
        },
    );
    let groups = (cols as u32).div_ceil(8).div_ceil(64);
    Ok(ctx.kernel(
        &format!("embedding/{}", table.qtype.name()),
        || table.qtype.shader(include_str!("embedding.wgsl")),
        &[&p, tokens, &table.buffer, y],
        step,
        max_tok,
        move |n_tok| [groups, n_tok, 1],
    ))
}
