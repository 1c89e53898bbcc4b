//! Linear layers `y = x · Wᵀ` over a quantized [`GpuMatrix`]: a fused dequantize +
//! matrix-vector kernel for decode (`matvec.wgsl`) and a tiled matrix-matrix kernel for
//! prefill (`matmul.wgsl`), both generic over the type's `load8` decoder and over where the
//! rows go ([`Output`]).

use super::context::{Kernel, need_tokens};
use super::elementwise::{act_name, act_wgsl, gated};
use super::{GpuContext, GpuMatrix, Result, Step, gpu_err};
use crate::engine::config::Activation;

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
    accumulate: u32,
    split1: u32,
    split2: u32,
    _pad: u32,
}

/// Which tokens of the step a [`Linear`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// Every token: `x [n_tok][cols] -> y [n_tok][rows]`.
    All,
    /// Only the step's last token: `x[n_tok - 1] -> y[0]` (the LM head during prefill).
    Last,
}

/// Where a [`Linear`] puts its rows (`linear_*.wgsl`, `matvec_*.wgsl`). The fused forms save
/// decode steps whole dispatches: one pass over the input for q, k and v, the gated MLP in
/// one kernel, the residual add inside the product.
#[derive(Clone, Copy)]
pub enum Output<'a> {
    /// `y = x · Wᵀ`, `[n_tok][rows]`.
    Set(&'a wgpu::Buffer),
    /// `y += x · Wᵀ`: the residual add joined to the product.
    Add(&'a wgpu::Buffer),
    /// `W` is q, k and v stacked ([`GpuMatrix::stack`]): its rows go to three buffers,
    /// split at `q_rows` and `q_rows + k_rows`.
    Qkv {
        q_rows: usize,
        k_rows: usize,
        q: &'a wgpu::Buffer,
        k: &'a wgpu::Buffer,
        v: &'a wgpu::Buffer,
    },
    /// `W` is gate and up interleaved four rows at a time ([`GpuMatrix::interleave4`]):
    /// `gate = act(x · Wgᵀ) * (x · Wuᵀ)`, `[n_tok][rows / 2]`. Decode does it in one kernel;
    /// prefill writes gate and up, then runs [`gated`].
    Gated {
        act: Activation,
        gate: &'a wgpu::Buffer,
        up: &'a wgpu::Buffer,
    },
}

/// What an [`Output`] changes in [`Linear::to`]: each kernel's WGSL before its body and its
/// pipeline name, its output bindings, the tokens those hold, and the activation prefill runs
/// after the product ([`Output::Gated`]).
struct Wiring<'a> {
    mm_out: &'static str,
    mm_kind: &'static str,
    mv_end: String,
    mv_kind: String,
    mm_bind: Vec<&'a wgpu::Buffer>,
    mv_bind: Vec<&'a wgpu::Buffer>,
    y_tok: u32,
    then: Option<(Activation, &'a wgpu::Buffer, &'a wgpu::Buffer)>,
}

/// The product for a step's token count, with the kernel suited to its size.
pub struct Linear {
    matvec: Kernel,
    /// Absent for [`Tokens::Last`], which always has one token.
    matmul: Option<Kernel>,
    /// Runs after `matmul` ([`Output::Gated`]: the activation the matrix-vector kernel fuses).
    then: Option<Kernel>,
    /// Bytes of the repacked matrix, read once per pass.
    weight_bytes: u64,
}

/// One pass of a forward step, in numbers (see `GpuModel::profile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub dispatches: u32,
    pub workgroups: u64,
    /// Bytes of weight matrices the products read (embedding rows not counted).
    pub weight_bytes: u64,
}

impl Profile {
    pub(crate) fn kernel(&mut self, k: &Kernel, n_tok: u32) {
        let [x, y, z] = k.grid(n_tok);
        let groups = x as u64 * y as u64 * z as u64;
        if groups > 0 {
            self.dispatches += 1;
            self.workgroups += groups;
        }
    }
}

impl Linear {
    /// `y = x · Wᵀ` into one buffer.
    pub fn new(
        ctx: &GpuContext,
        step: &Step,
        w: &GpuMatrix,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        tokens: Tokens,
    ) -> Result<Self> {
        Self::to(ctx, step, w, x, Output::Set(y), tokens)
    }

    /// `x · Wᵀ` put where `out` says.
    pub fn to(
        ctx: &GpuContext,
        step: &Step,
        w: &GpuMatrix,
        x: &wgpu::Buffer,
        out: Output<'_>,
        tokens: Tokens,
    ) -> Result<Self> {
        let (rows, cols) = (w.rows, w.cols);
        if rows > u32::MAX as usize / 2 || cols > u32::MAX as usize / 2 {
            return Err(gpu_err!("linear: matrix {rows}x{cols} too large"));
        }
        let last_only = tokens == Tokens::Last;
        let x_tok = need_tokens("linear", "x", x, cols)?;
        let mut params = Params {
            rows: rows as u32,
            cols: cols as u32,
            row_words: w.row_words() as u32,
            last_only: last_only as u32,
            accumulate: 0,
            split1: 0,
            split2: 0,
            _pad: 0,
        };
        let store =
            |snippet: &'static str| format!("{snippet}\n{}", include_str!("matvec_store.wgsl"));
        let Wiring {
            mm_out,
            mm_kind,
            mv_end,
            mv_kind,
            mm_bind,
            mv_bind,
            y_tok,
            then,
        } = match out {
            Output::Set(y) | Output::Add(y) => {
                params.accumulate = matches!(out, Output::Add(_)) as u32;
                let out = include_str!("linear_out.wgsl");
                let tok = need_tokens("linear", "y", y, rows)?;
                Wiring {
                    mm_out: out,
                    mm_kind: "out",
                    mv_end: store(out),
                    mv_kind: "out".into(),
                    mm_bind: vec![y],
                    mv_bind: vec![y],
                    y_tok: tok,
                    then: None,
                }
            }
            Output::Qkv {
                q_rows,
                k_rows,
                q,
                k,
                v,
            } => {
                if last_only || q_rows == 0 || k_rows == 0 || q_rows + k_rows >= rows {
                    return Err(gpu_err!(
                        "linear: q/k/v split {q_rows}+{k_rows} of {rows} rows"
                    ));
                }
                params.split1 = q_rows as u32;
                params.split2 = (q_rows + k_rows) as u32;
                let tok = need_tokens("linear", "q", q, q_rows)?
                    .min(need_tokens("linear", "k", k, k_rows)?)
                    .min(need_tokens("linear", "v", v, rows - q_rows - k_rows)?);
                let out = include_str!("linear_qkv.wgsl");
                Wiring {
                    mm_out: out,
                    mm_kind: "qkv",
                    mv_end: store(out),
                    mv_kind: "qkv".into(),
                    mm_bind: vec![q, k, v],
                    mv_bind: vec![q, k, v],
                    y_tok: tok,
                    then: None,
                }
            }
            Output::Gated { act, gate, up } => {
                if last_only || !rows.is_multiple_of(8) {
                    return Err(gpu_err!(
                        "linear: a gated pair of {rows} rows is not whole blocks of 8"
                    ));
                }
                let tok = need_tokens("linear", "gate", gate, rows / 2)?.min(need_tokens(
                    "linear",
                    "up",
                    up,
                    rows / 2,
                )?);
                Wiring {
                    mm_out: include_str!("linear_pairs.wgsl"),
                    mm_kind: "pairs",
                    mv_end: format!("{}\n{}", act_wgsl(act), include_str!("matvec_gated.wgsl")),
                    mv_kind: format!("gated-{}", act_name(act)),
                    mm_bind: vec![gate, up],
                    mv_bind: vec![gate],
                    y_tok: tok,
                    then: Some((act, gate, up)),
                }
            }
        };
        let max_tok = if last_only { x_tok } else { x_tok.min(y_tok) };
        let qname = w.qtype.name();
        fn bind<'b>(
            head: [&'b wgpu::Buffer; 4],
            outs: &[&'b wgpu::Buffer],
        ) -> Vec<&'b wgpu::Buffer> {
            head.into_iter().chain(outs.iter().copied()).collect()
        }
        let matvec = {
            let p = ctx.uniform("matvec params", &params);
            let b = bind([&step.buffer, &p, &w.buffer, x], &mv_bind);
            let row_groups = (rows as u32).div_ceil(MATVEC_ROWS_PER_GROUP);
            ctx.kernel(
                &format!("matvec/{qname}/{mv_kind}"),
                || {
                    w.qtype
                        .shader(&format!("{mv_end}\n{}", include_str!("matvec.wgsl")))
                },
                &b,
                step,
                max_tok,
                move |n| [row_groups, 1, if last_only { 1 } else { n }],
            )
        };
        let (matmul, then) = if last_only {
            (None, None)
        } else {
            let p = ctx.uniform(
                "matmul params",
                &Params {
                    last_only: 0,
                    ..params
                },
            );
            let b = bind([&step.buffer, &p, &w.buffer, x], &mm_bind);
            let row_tiles = (rows as u32).div_ceil(MATMUL_TILE);
            let matmul = ctx.kernel(
                &format!("matmul/{qname}/{mm_kind}"),
                || {
                    w.qtype
                        .shader(&format!("{mm_out}\n{}", include_str!("matmul.wgsl")))
                },
                &b,
                step,
                max_tok,
                move |n| [row_tiles, n.div_ceil(MATMUL_TILE), 1],
            );
            let then = then
                .map(|(act, gate, up)| gated(ctx, step, act, rows / 2, gate, up))
                .transpose()?;
            (Some(matmul), then)
        };
        Ok(Self {
            matvec,
            matmul,
            then,
            weight_bytes: (w.rows * w.row_words() * 4) as u64,
        })
    }

    /// The matrix-matrix kernel serves this many tokens or more.
    fn uses_matmul(&self, n_tok: u32) -> bool {
        self.matmul.is_some() && n_tok > MATVEC_MAX_TOKENS
    }

    /// Adds what [`Linear::encode`] records for `n_tok` tokens to `p`.
    pub(crate) fn profile(&self, n_tok: u32, p: &mut Profile) {
        match (&self.matmul, &self.then) {
            (Some(mm), then) if self.uses_matmul(n_tok) => {
                p.kernel(mm, n_tok);
                if let Some(k) = then {
                    p.kernel(k, n_tok);
                }
            }
            _ => p.kernel(&self.matvec, n_tok),
        }
        p.weight_bytes += self.weight_bytes;
    }

    /// Record the product for the current step, with the kernel suited to its size.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        if self.uses_matmul(self.matvec.n_tok()) {
            self.encode_matmul(pass)
        } else {
            self.matvec.encode(pass)
        }
    }

    /// Force the matrix-vector kernel (tests and benchmarks).
    pub fn encode_matvec(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        self.matvec.encode(pass)
    }

    /// Force the matrix-matrix kernel (tests and benchmarks).
    pub fn encode_matmul(&self, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        match &self.matmul {
            Some(mm) => {
                mm.encode(pass)?;
                self.then.as_ref().map_or(Ok(()), |k| k.encode(pass))
            }
            None => Err(gpu_err!(
                "linear: a last-token-only layer has no matrix-matrix kernel"
            )),
        }
    }
}
