//! Linear layers `y = x · Wᵀ` over a quantized [`GpuMatrix`]: a fused dequantize +
//! matrix-vector kernel for decode (`matvec.wgsl`) and a tiled matrix-matrix kernel for
//! prefill (`matmul.wgsl`), both generic over the type's `load8` decoder.

use super::context::{Kernel, need_tokens};
use super::{GpuContext, GpuMatrix, Result, Step, gpu_err};

/// Up to this many tokens the matrix-vector kernel (one pass over W per token) beats
/// the 64-token tiles of the matrix-matrix kernel, which would be mostly empty.
pub const MATVEC_MAX_TOKENS: u32 = 4;

const MATVEC_ROWS_PER_GROUP: u32 = 8;
const MATMUL_TILE: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    row_words: u32,
    last_only: u32,
}

/// Which tokens of the step a [`Linear`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// Every token: `x [n_tok][cols] -> y [n_tok][rows]`.
    All,
    /// Only the step's last token: `x[n_tok - 1] -> y[0]` (the LM head during prefill).
    Last,
}

/// `y = x · Wᵀ` bound to its buffers; picks matrix-vector or matrix-matrix by token count.
pub struct Linear {
    matvec: Kernel,
    /// Absent for [`Tokens::Last`], which always has one token.
    matmul: Option<Kernel>,
}

impl Linear {
    pub fn new(
        ctx: &GpuContext,
        step: &Step,
        w: &GpuMatrix,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        tokens: Tokens,
    ) -> Result<Self> {
        let (rows, cols) = (w.rows, w.cols);
        if rows > u32::MAX as usize / 2 || cols > u32::MAX as usize / 2 {
            return Err(gpu_err!("linear: matrix {rows}x{cols} too large"));
        }
        let x_tok = need_tokens("linear", "x", x, cols)?;
        let y_tok = need_tokens("linear", "y", y, rows)?;
        let last_only = tokens == Tokens::Last;
        let max_tok = if last_only { x_tok } else { x_tok.min(y_tok) };
        let params = Params {
            rows: rows as u32,
            cols: cols as u32,
            row_words: w.row_words() as u32,
            last_only: last_only as u32,
        };
        let qname = w.qtype.name();
        let matvec = {
            let p = ctx.uniform("matvec params", &params);
            let row_groups = (rows as u32).div_ceil(MATVEC_ROWS_PER_GROUP);
            ctx.kernel(
                &format!("matvec/{qname}"),
                || w.qtype.shader(include_str!("matvec.wgsl")),
                &[&step.buffer, &p, &w.buffer, x, y],
                step,
                max_tok,
                move |n| [row_groups, 1, if last_only { 1 } else { n }],
            )
        };
        let matmul = if last_only {
            None
        } else {
            let p = ctx.uniform(
                "matmul params",
                &Params {
                    last_only: 0,
                    ..params
                },
            );
            let row_tiles = (rows as u32).div_ceil(MATMUL_TILE);
            Some(ctx.kernel(
                &format!("matmul/{qname}"),
                || w.qtype.shader(include_str!("matmul.wgsl")),
                &[&step.buffer, &p, &w.buffer, x, y],
                step,
                max_tok,
                move |n| [row_tiles, n.div_ceil(MATMUL_TILE), 1],
            ))
        };
        Ok(Self { matvec, matmul })
    }

    /// Record the product for the current step, with the kernel suited to its size.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        match &self.matmul {
            Some(mm) if self.matvec.n_tok() > MATVEC_MAX_TOKENS => mm.encode(pass),
            _ => self.matvec.encode(pass),
        }
    }

    /// Force the matrix-vector kernel (tests and benchmarks).
    pub fn encode_matvec(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        self.matvec.encode(pass)
    }

    /// Force the matrix-matrix kernel (tests and benchmarks).
    pub fn encode_matmul(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        match &self.matmul {
            Some(mm) => mm.encode(pass),
            None => Err(gpu_err!(
                "linear: a last-token-only layer has no matrix-matrix kernel"
            )),
        }
    }
}
