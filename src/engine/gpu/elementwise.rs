//! Element-wise ops: SiLU and GELU gates (`gated.wgsl` after `silu.wgsl` or `gelu.wgsl`), a scale
//! (`scale.wgsl`), adds (`add.wgsl`), strided row copies (`copy_rows.wgsl`). All are laid
//! out `[n_tok][n]` and dispatched `(n / 256, n_tok)`.

use super::context::{Kernel, need_tokens};
use super::{GpuContext, Result, Step, gpu_err};
use crate::engine::config::Activation;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params4 {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
}

fn check_n(op: &str, n: usize) -> Result<u32> {
    if n == 0 || n > u32::MAX as usize / 2 {
        return Err(gpu_err!("{op}: bad row length {n}"));
    }
    Ok(n as u32)
}

/// The activation's WGSL (`fn act`): SiLU, or GELU's tanh form rounded through f16 as ggml's
/// CPU table does (gemma3).
pub(crate) fn act_wgsl(act: Activation) -> &'static str {
    match act {
        Activation::Silu => include_str!("silu.wgsl"),
        Activation::GeluTanh => include_str!("gelu.wgsl"),
    }
}

pub(crate) fn act_name(act: Activation) -> &'static str {
    match act {
        Activation::Silu => "silu",
        Activation::GeluTanh => "gelu",
    }
}

/// The gated MLP's activation, in place on `gate` (`[n_tok][n]`, as `up`):
/// `gate = act(gate) * up` ([`act_wgsl`]).
pub fn gated(
    ctx: &GpuContext,
    step: &Step,
    act: Activation,
    n: usize,
    gate: &wgpu::Buffer,
    up: &wgpu::Buffer,
) -> Result<Kernel> {
    let op = format!("gated-{}", act_name(act));
    let op = op.as_str();
    let n32 = check_n(op, n)?;
    let max_tok = need_tokens(op, "gate", gate, n)?.min(need_tokens(op, "up", up, n)?);
    let p = ctx.uniform(
        op,
        &Params4 {
            a: n32,
            b: 0,
            c: 0,
            d: 0,
        },
    );
    Ok(ctx.kernel(
        op,
        || format!("{}\n{}", act_wgsl(act), include_str!("gated.wgsl")),
        &[&p, gate, up],
        step,
        max_tok,
        move |n_tok| [n32.div_ceil(256), n_tok, 1],
    ))
}

/// `x *= s`, in place on `x [n_tok][n]` (gemma3's embedding scale).
pub fn scale(ctx: &GpuContext, step: &Step, n: usize, s: f32, x: &wgpu::Buffer) -> Result<Kernel> {
    let n32 = check_n("scale", n)?;
    if !s.is_finite() {
        return Err(gpu_err!("scale: factor {s}"));
    }
    let max_tok = need_tokens("scale", "x", x, n)?;
    let p = ctx.uniform(
        "scale params",
        &Params4 {
            a: n32,
            b: s.to_bits(),
            c: 0,
            d: 0,
        },
    );
    Ok(ctx.kernel(
        "scale",
        || include_str!("scale.wgsl").to_string(),
        &[&p, x],
        step,
        max_tok,
        move |n_tok| [n32.div_ceil(256), n_tok, 1],
    ))
}

/// How [`add`] indexes `v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddMode {
    /// `h[t][i] += v[t][i]`: the residual connection.
    PerToken,
    /// `h[t][i] += v[i]`: a bias, or the hook edit `Add { vector }` on every token.
    Broadcast,
}

/// `h += v`, in place on `h [n_tok][n]`.
pub fn add(
    ctx: &GpuContext,
    step: &Step,
    n: usize,
    mode: AddMode,
    h: &wgpu::Buffer,
    v: &wgpu::Buffer,
) -> Result<Kernel> {
    let n32 = check_n("add", n)?;
    let mut max_tok = need_tokens("add", "h", h, n)?;
    let v_tok = need_tokens("add", "v", v, n)?;
    if mode == AddMode::PerToken {
        max_tok = max_tok.min(v_tok);
    }
    let broadcast = (mode == AddMode::Broadcast) as u32;
    let p = ctx.uniform(
        "add params",
        &Params4 {
            a: n32,
            b: broadcast,
            c: 0,
            d: 0,
        },
    );
    Ok(ctx.kernel(
        "add",
        || include_str!("add.wgsl").to_string(),
        &[&p, h, v],
        step,
        max_tok,
        move |n_tok| [n32.div_ceil(256), n_tok, 1],
    ))
}

/// Where [`copy_rows`] puts token `t`'s row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowDest {
    /// Row `pos0 + t` of a `[ctx][n]` cache (K/V store); `encode` refuses
    /// `pos0 + n_tok > ctx`.
    AtPosition,
    /// `dst[(t * stride + slot) * n ..]`: slot `slot` of `stride` rows per token (a
    /// `[token][recorded layer][hidden]` record buffer).
    Interleaved { slot: usize, stride: usize },
}

/// Copy `src [n_tok][n]` into `dst` rows as `dest` says.
pub fn copy_rows(
    ctx: &GpuContext,
    step: &Step,
    n: usize,
    dest: RowDest,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Kernel> {
    let n32 = check_n("copy_rows", n)?;
    let src_tok = need_tokens("copy_rows", "src", src, n)?;
    let dst_rows = need_tokens("copy_rows", "dst", dst, n)?;
    let (dst_stride, dst_offset, at_pos, max_tok, max_end) = match dest {
        RowDest::AtPosition => (n, 0, 1, src_tok, dst_rows),
        RowDest::Interleaved { slot, stride } => {
            if slot >= stride {
                return Err(gpu_err!("copy_rows: slot {slot} of {stride}"));
            }
            let per_tok = dst_rows / stride as u32;
            (n * stride, n * slot, 0, src_tok.min(per_tok), u32::MAX)
        }
    };
    if dst_stride > u32::MAX as usize / 2 {
        return Err(gpu_err!("copy_rows: stride too large"));
    }
    let p = ctx.uniform(
        "copy_rows params",
        &Params4 {
            a: n32,
            b: dst_stride as u32,
            c: dst_offset as u32,
            d: at_pos,
        },
    );
    Ok(ctx
        .kernel(
            "copy_rows",
            || include_str!("copy_rows.wgsl").to_string(),
            &[&step.buffer, &p, src, dst],
            step,
            max_tok,
            move |n_tok| [n32.div_ceil(256), n_tok, 1],
        )
        .with_max_end(max_end))
}
