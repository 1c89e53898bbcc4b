//! [`GpuModel`]: the llama/qwen2 forward pass on the GPU kernels of this module, behind the
//! same [`Backend`](crate::engine::Backend) interface as the CPU engine, hooks included.
//!
//! Over 600 lines: one file per architecture's forward, as candle does: load, buffers, the
//! recorded ops and the hook points read top to bottom.
//!
//! Everything is built once at load: weights, activation buffers sized for `max_chunk`
//! tokens, a KV cache of `max_context` positions per layer, and every op bound to its
//! buffers. A forward call then only writes the token ids and the [`Step`] uniform,
//! records all ops of a chunk into one command encoder, submits it, and reads back one
//! staging buffer: the logits it needs and the residuals of the recorded layers.
//! Prompts longer than a chunk run chunk by chunk (one submit and readback each).
//!
//! Hooks: after the last residual add of block `L`, the edits for `L` run in order
//! (`add` Broadcast, `clamp_projection`) on the residual buffer itself, then, if `L` is
//! recorded, `copy_rows` puts the edited stream into a `[token][recorded layer][hidden]`
//! buffer, which is already the layout of [`Recording`](crate::engine::Recording). The
//! ops and the edit vectors they read are built when the hooks change (compared by
//! content), not per call.
//!
//! Async: [`GpuModel::forward_async`] is the one implementation (encode, submit, await
//! the readback). In the browser a readback resolves from a JS promise, so the web worker
//! awaits it; natively the `Backend` impl drives the same future with `pollster`.
//!
//! In the browser a WebGPU readback cannot be waited on, so there only the async API works
//! (`Backend::forward_async`, which the session, science and web host loops use; the
//! blocking `forward` refuses). Used directly, a web worker does:
//!
//! ```ignore
//! let model = Model::from_bytes(bytes)?;
//! // Err (no adapter, device creation failed) -> run CpuModel and show the reason.
//! let mut gpu = GpuModel::open(&model.gguf).await?;
//! let logits = gpu.forward_async(&prompt[start..], start, &mut hooks, false).await?;
//! // sample on the CPU (Sampler), then per token:
//! let logits = gpu.forward_async(&[next], pos, &mut hooks, false).await?;
//! gpu.truncate(len); // undo / regenerate: only the cached length moves
//! ```
//!
//! `config()`, `cached()`, `describe()` and `truncate()` are inherent methods too.
//!
//! Numerics: the GPU computes plain f32 (activations, KV cache, softmax) and matches an
//! f32 reference forward to ~5e-6 of the residual. The CPU engine quantizes activations
//! to 8 bits before each product and keeps an f16 cache, as llama.cpp does, which puts
//! it ~2 % (median, up to 7 %) away from f32 on SmolLM2, so the two engines' greedy
//! choices differ at near-ties. Copying that rounding on the GPU does not help: it is
//! chaotic (a 1e-7 change upstream flips 8-bit roundings in the blocks that hold
//! SmolLM2's huge residual dimensions), so only bit-identical arithmetic would agree.
//! tests/gpu/model.rs has the measurements.

use std::sync::Arc;

use super::attention::{AttentionShape, attention};
use super::elementwise::{AddMode, RowDest, add, copy_rows, gated, scale};
use super::embedding::embedding;
use super::hooks::clamp_projection;
use super::matmul::{Linear, Output, Profile, Tokens};
use super::norm::{head_rms_norm, rms_norm};
use super::rope::{RopeMode, rope, rope_store};
use super::{GpuContext, GpuError, GpuMatrix, Kernel, Step};
use crate::engine::config::{ModelConfig, RopeStyle};
use crate::engine::error::{Error, Result};
use crate::engine::gguf::GgufFile;
use crate::engine::hooks::{Edit, EditOp, Hooks};
use crate::engine::model::{softcap, vector};

impl From<GpuError> for Error {
    fn from(e: GpuError) -> Self {
        Error::Gpu(e.0)
    }
}

/// Sizes fixed at load.
#[derive(Clone, Copy, Debug)]
pub struct GpuModelOptions {
    /// KV-cache positions kept on the GPU (capped at the model's context). The cache is
    /// f32, `2 * layers * kv_dim * 4` bytes per position: 46 KB for SmolLM2-135M, so the
    /// default 4096 positions take 189 MB where the model's full 8192 would take 377 MB.
    pub max_context: usize,
    /// Tokens per submitted chunk: activation buffers hold this many. Longer prompts run
    /// in several chunks.
    pub max_chunk: usize,
    /// Fused products (on by default): q, k and v in one pass, the gated MLP in one kernel
    /// when decoding, the residual adds inside the o and down products
    /// ([`Output`](super::matmul::Output)). Off, every op is its own dispatch: the
    /// reference the fused forward is tested against.
    pub fused: bool,
}

impl Default for GpuModelOptions {
    fn default() -> Self {
        Self {
            max_context: 4096,
            max_chunk: 256,
            fused: true,
        }
    }
}

/// One encoded op of the forward pass.
enum Op {
    Kernel(Kernel),
    Linear(Linear),
}

impl Op {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>) -> super::Result<()> {
        match self {
            Op::Kernel(k) => k.encode(pass),
            Op::Linear(l) => l.encode(pass),
        }
    }

    fn profile(&self, n_tok: u32, p: &mut Profile) {
        match self {
            Op::Kernel(k) => p.kernel(k, n_tok),
            Op::Linear(l) => l.profile(n_tok, p),
        }
    }
}

/// The LM head over every token of a chunk, for `all_logits` calls (built on first use:
/// its logits buffer is `rows * vocab` floats, 50 MB for SmolLM2 at 256 rows).
struct AllLogits {
    rows: usize,
    logits: wgpu::Buffer,
    head: Linear,
}

/// The hook ops for one content of `Hooks::{record, edits}`.
#[derive(Default)]
struct HookPlan {
    record: Vec<usize>,
    edits: Vec<Edit>,
    /// Per layer: edits in order, then the record copy.
    ops: Vec<Vec<Kernel>>,
    /// `[max_chunk][record.len()][hidden]`; absent when nothing is recorded.
    record_buf: Option<wgpu::Buffer>,
}

pub struct GpuModel {
    ctx: Arc<GpuContext>,
    /// The model's config, `context` lowered to the GPU cache length.
    cfg: ModelConfig,
    max_chunk: usize,
    step: Step,
    tokens: wgpu::Buffer,
    /// The residual stream `[max_chunk][hidden]`: hooks edit and record it in place.
    h: wgpu::Buffer,
    /// Normed residual: the input of every product that follows a norm, and of the LM head.
    a: wgpu::Buffer,
    embed: Kernel,
    /// gemma3: the embeddings times sqrt(hidden).
    embed_scale: Option<Kernel>,
    layers: Vec<Vec<Op>>,
    final_norm: Kernel,
    /// The LM head for the chunk's last token only.
    head_last: Linear,
    logits_last: wgpu::Buffer,
    /// Kept to build [`AllLogits`] on first use (tied models share `token_embd`).
    output: GpuMatrix,
    all: Option<AllLogits>,
    plan: HookPlan,
    /// `MAP_READ` staging buffer, grown to the largest readback so far.
    download: wgpu::Buffer,
    cached: usize,
}

/// Uploads a weight matrix, checking its shape against the config.
fn matrix(
    ctx: &GpuContext,
    f: &GgufFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<GpuMatrix> {
    let t = f.matrix(name, rows, cols)?;
    Ok(ctx.shared_matrix(f.bytes(), name, || {
        GpuMatrix::upload(ctx, name, t.qtype, rows, cols, f.tensor_bytes(t))
    })?)
}

/// Several same-type matrices of one width uploaded as one (q, k and v stacked, or gate and
/// up interleaved), shape-checked as [`matrix`] does; `None` when their types differ (a
/// Q4_K_M file often keeps v in Q6_K), so the caller keeps them apart.
fn joined(
    ctx: &GpuContext,
    f: &GgufFile,
    names: &[(&str, usize)],
    cols: usize,
    interleave: bool,
) -> Result<Option<GpuMatrix>> {
    let mut parts = Vec::with_capacity(names.len());
    for &(name, rows) in names {
        let t = f.matrix(name, rows, cols)?;
        parts.push((t.qtype, rows, f.tensor_bytes(t)));
    }
    let qtype = parts[0].0;
    if parts.iter().any(|p| p.0 != qtype) {
        return Ok(None);
    }
    let label = names.iter().map(|n| n.0).collect::<Vec<_>>().join("+");
    let m = ctx.shared_matrix(f.bytes(), &label, || match (interleave, &parts[..]) {
        (true, [(_, rows, a), (_, _, b)]) => {
            GpuMatrix::interleave4(ctx, &label, qtype, *rows, cols, a, b)
        }
        _ => {
            let rows: Vec<(usize, &[u8])> = parts.iter().map(|p| (p.1, p.2)).collect();
            GpuMatrix::stack(ctx, &label, qtype, cols, &rows)
        }
    })?;
    Ok(Some(m))
}

fn staging(ctx: &GpuContext, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("forward readback"),
        size: bytes.max(16).div_ceil(16) * 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

impl GpuModel {
    /// Loads the model onto `ctx`'s device with the default sizes.
    pub fn load(f: &GgufFile, ctx: Arc<GpuContext>) -> Result<Self> {
        Self::load_with(f, ctx, GpuModelOptions::default())
    }

    /// Opens the default adapter and loads the model onto it. Fails with a one-line reason
    /// (e.g. "GPU: no WebGPU/Vulkan adapter available (...)") when there is none.
    // wasm32's wgpu handles are not Send; there is one thread there, and natively the Arc is shared.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn open(f: &GgufFile) -> Result<Self> {
        let ctx = GpuContext::new().await?;
        Self::load(f, Arc::new(ctx))
    }

    pub fn load_with(f: &GgufFile, ctx: Arc<GpuContext>, opts: GpuModelOptions) -> Result<Self> {
        let mut cfg = ModelConfig::from_gguf(f)?;
        if opts.max_context == 0 || opts.max_chunk == 0 {
            return Err(Error::Invalid(
                "GPU cache length and chunk size must be positive".into(),
            ));
        }
        cfg.context = cfg.context.min(opts.max_context);
        let max_chunk = opts.max_chunk.min(cfg.context);
        let c = &cfg;
        let (d, qd, kvd, ffn) = (c.hidden, c.q_dim(), c.kv_dim(), c.ffn);
        let cx: &GpuContext = &ctx;
        let step = Step::new(cx);
        let st = &step;
        let buf = |label: &str, per_tok: usize| cx.storage(label, max_chunk * per_tok);
        let tokens = buf("tokens", 1)?;
        let h = buf("h", d)?;
        let a = buf("a", d)?;
        let q = buf("q", qd)?;
        let k = buf("k", kvd)?;
        let v = buf("v", kvd)?;
        // qwen3 and gemma3 normalize each head of q and k before rope: into these (a kernel
        // may not read and write one buffer), which rope, the cache and attention then use.
        let qk_normed = if c.qk_norm {
            Some((buf("q normed", qd)?, buf("k normed", kvd)?))
        } else {
            None
        };
        let att = buf("att", qd)?;
        let t = buf("t", d)?;
        let gate = buf("gate", ffn)?;
        let up = buf("up", ffn)?;
        let rope_mode = match c.rope_style {
            RopeStyle::Norm => RopeMode::Norm,
            RopeStyle::Neox => RopeMode::Neox,
        };
        let hd = c.head_dim;
        let rope_factors = if c.rope_freqs {
            Some(vector(f, "rope_freqs.weight", hd / 2)?)
        } else {
            None
        };
        let ff = rope_factors.as_deref();

        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let n = |s: &str| format!("blk.{l}.{s}");
            let norm_w =
                |name: &str| -> Result<wgpu::Buffer> { Ok(cx.upload(name, &vector(f, name, d)?)?) };
            let lin = |name: &str, rows, cols, x: &wgpu::Buffer, y: &wgpu::Buffer| -> Result<Op> {
                let w = matrix(cx, f, name, rows, cols)?;
                Ok(Op::Linear(Linear::new(cx, st, &w, x, y, Tokens::All)?))
            };
            let kc = cx.storage(&n("k_cache"), c.context * kvd)?;
            let vc = cx.storage(&n("v_cache"), c.context * kvd)?;
            let attn_norm = norm_w(&n("attn_norm.weight"))?;
            // A sub-layer's output `t` joins the residual stream, through gemma3's post-norm
            // (into `a`, free by then) where the model has one.
            let post_norms = if c.post_norms {
                Some([
                    norm_w(&n("post_attention_norm.weight"))?,
                    norm_w(&n("post_ffw_norm.weight"))?,
                ])
            } else {
                None
            };
            // The o and down products (`post_norms[i]`): `h += x · Wᵀ`, as one op when fused.
            let into_residual = |name: &str, cols: usize, x: &wgpu::Buffer, i: usize| {
                let w = matrix(cx, f, name, d, cols)?;
                let product = |out| -> Result<Op> {
                    Ok(Op::Linear(Linear::to(cx, st, &w, x, out, Tokens::All)?))
                };
                Ok::<_, Error>(match &post_norms {
                    Some(nw) => vec![
                        product(Output::Set(&t))?,
                        Op::Kernel(rms_norm(cx, st, d, c.rms_eps, &nw[i], &t, &a)?),
                        Op::Kernel(add(cx, st, d, AddMode::PerToken, &h, &a)?),
                    ],
                    None if opts.fused => vec![product(Output::Add(&h))?],
                    None => vec![
                        product(Output::Set(&t))?,
                        Op::Kernel(add(cx, st, d, AddMode::PerToken, &h, &t)?),
                    ],
                })
            };
            let shape = AttentionShape {
                n_head: c.n_heads,
                n_kv_head: c.n_kv_heads,
                head_dim: hd,
                scale: c.query_scale,
                window: c.window_at(l),
            };
            let theta = c.rope_theta_at(l);
            let mut ops = vec![Op::Kernel(rms_norm(
                cx, st, d, c.rms_eps, &attn_norm, &h, &a,
            )?)];
            let qkv = [
                (n("attn_q.weight"), qd),
                (n("attn_k.weight"), kvd),
                (n("attn_v.weight"), kvd),
            ];
            let stacked = if opts.fused {
                let names: Vec<(&str, usize)> = qkv.iter().map(|(s, r)| (s.as_str(), *r)).collect();
                joined(cx, f, &names, d, false)?
            } else {
                None
            };
            match stacked {
                Some(w) => {
                    let out = Output::Qkv {
                        q_rows: qd,
                        k_rows: kvd,
                        q: &q,
                        k: &k,
                        v: &v,
                    };
                    ops.push(Op::Linear(Linear::to(cx, st, &w, &a, out, Tokens::All)?));
                }
                None => {
                    for ((name, rows), y) in qkv.iter().zip([&q, &k, &v]) {
                        ops.push(lin(name, *rows, d, &a, y)?);
                    }
                }
            }
            if c.qkv_bias {
                for (name, len, y) in [
                    ("attn_q.bias", qd, &q),
                    ("attn_k.bias", kvd, &k),
                    ("attn_v.bias", kvd, &v),
                ] {
                    let bias = cx.upload(&n(name), &vector(f, &n(name), len)?)?;
                    ops.push(Op::Kernel(add(cx, st, len, AddMode::Broadcast, y, &bias)?));
                }
            }
            let (q, k) = match &qk_normed {
                Some((qn, kn)) => {
                    for (name, heads, x, y) in [
                        ("attn_q_norm", c.n_heads, &q, qn),
                        ("attn_k_norm", c.n_kv_heads, &k, kn),
                    ] {
                        let w = cx.upload(name, &vector(f, &n(&format!("{name}.weight")), hd)?)?;
                        ops.push(Op::Kernel(head_rms_norm(
                            cx, st, heads, hd, c.rms_eps, &w, x, y,
                        )?));
                    }
                    (qn, kn)
                }
                None => (&q, &k),
            };
            let ffn_norm = norm_w(&n("ffn_norm.weight"))?;
            if opts.fused {
                let heads = (c.n_heads, c.n_kv_heads, hd);
                ops.push(Op::Kernel(rope_store(
                    cx,
                    st,
                    heads,
                    theta,
                    ff,
                    rope_mode,
                    (q, k, &v),
                    (&kc, &vc),
                )?));
            } else {
                ops.extend([
                    Op::Kernel(rope(cx, st, c.n_heads, hd, hd, theta, ff, rope_mode, q)?),
                    Op::Kernel(rope(cx, st, c.n_kv_heads, hd, hd, theta, ff, rope_mode, k)?),
                    Op::Kernel(copy_rows(cx, st, kvd, RowDest::AtPosition, k, &kc)?),
                    Op::Kernel(copy_rows(cx, st, kvd, RowDest::AtPosition, &v, &vc)?),
                ]);
            }
            ops.push(Op::Kernel(attention(cx, st, shape, q, &kc, &vc, &att)?));
            ops.extend(into_residual(&n("attn_output.weight"), qd, &att, 0)?);
            ops.push(Op::Kernel(rms_norm(
                cx, st, d, c.rms_eps, &ffn_norm, &h, &a,
            )?));
            let (gate_name, up_name) = (n("ffn_gate.weight"), n("ffn_up.weight"));
            let pair = if opts.fused && ffn.is_multiple_of(4) {
                joined(cx, f, &[(&gate_name, ffn), (&up_name, ffn)], d, true)?
            } else {
                None
            };
            match pair {
                Some(w) => {
                    let out = Output::Gated {
                        act: c.activation,
                        gate: &gate,
                        up: &up,
                    };
                    ops.push(Op::Linear(Linear::to(cx, st, &w, &a, out, Tokens::All)?));
                }
                None => ops.extend([
                    lin(&gate_name, ffn, d, &a, &gate)?,
                    lin(&up_name, ffn, d, &a, &up)?,
                    Op::Kernel(gated(cx, st, c.activation, ffn, &gate, &up)?),
                ]),
            }
            ops.extend(into_residual(&n("ffn_down.weight"), ffn, &gate, 1)?);
            layers.push(ops);
        }

        let embed_m = matrix(cx, f, "token_embd.weight", c.vocab, d)?;
        let embed = embedding(cx, st, &embed_m, &tokens, &h)?;
        let embed_scale = c.embed_scale.map(|s| scale(cx, st, d, s, &h)).transpose()?;
        let output = if c.tied_embeddings {
            embed_m
        } else {
            matrix(cx, f, "output.weight", c.vocab, d)?
        };
        let out_norm = cx.upload("output_norm", &vector(f, "output_norm.weight", d)?)?;
        let final_norm = rms_norm(cx, st, d, c.rms_eps, &out_norm, &h, &a)?;
        let logits_last = cx.storage("logits", c.vocab)?;
        let head_last = Linear::new(cx, st, &output, &a, &logits_last, Tokens::Last)?;
        let download = staging(cx, c.vocab as u64 * 4);
        // Shader and binding errors of the whole build surface here, not at the first call.
        cx.take_error()?;
        Ok(Self {
            cfg,
            max_chunk,
            step,
            tokens,
            h,
            a,
            embed,
            embed_scale,
            layers,
            final_norm,
            head_last,
            logits_last,
            output,
            all: None,
            plan: HookPlan::default(),
            download,
            cached: 0,
            ctx,
        })
    }

    /// The model's config; `context` is the GPU cache length.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Forgets cached positions from `len` on: only the length moves, later calls
    /// overwrite the cache rows.
    pub fn truncate(&mut self, len: usize) {
        self.cached = self.cached.min(len);
    }

    pub fn cached(&self) -> usize {
        self.cached
    }

    pub fn describe(&self) -> String {
        // Browsers may hide the adapter's description (privacy): never show "webgpu ()".
        match self.ctx.info.name.trim() {
            "" => "webgpu (unnamed adapter)".to_string(),
            name => format!("webgpu ({name})"),
        }
    }

    /// What one forward step of `n_tok` tokens that returns the last token's logits records:
    /// dispatches, workgroups and bytes of weight matrices read, with the hooks of the last
    /// call (device-independent figures of a decode step, BENCHMARKS.md).
    pub fn profile(&self, n_tok: u32) -> Profile {
        let mut p = Profile::default();
        p.kernel(&self.embed, n_tok);
        if let Some(k) = &self.embed_scale {
            p.kernel(k, n_tok);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            for op in layer {
                op.profile(n_tok, &mut p);
            }
            for k in self.plan.ops.get(l).into_iter().flatten() {
                p.kernel(k, n_tok);
            }
        }
        p.kernel(&self.final_norm, n_tok);
        self.head_last.profile(n_tok, &mut p);
        p
    }

    /// Rebuilds the hook ops when `hooks.record` or `hooks.edits` differ from the last
    /// call's (`check_forward` has refused what the kernels cannot honour).
    fn prepare_hooks(&mut self, hooks: &Hooks) -> Result<()> {
        if self.plan.record == hooks.record
            && self.plan.edits == hooks.edits
            && !self.plan.ops.is_empty()
        {
            return Ok(());
        }
        let (d, n_layers) = (self.cfg.hidden, self.cfg.n_layers);
        let ctx: &GpuContext = &self.ctx;
        let mut ops: Vec<Vec<Kernel>> = (0..n_layers).map(|_| Vec::new()).collect();
        for e in &hooks.edits {
            let kernel = match &e.op {
                EditOp::Add { vector } => {
                    let vb = ctx.upload("steering vector", vector)?;
                    add(ctx, &self.step, d, AddMode::Broadcast, &self.h, &vb)?
                }
                EditOp::Clamp { unit, min, max } => {
                    let ub = ctx.upload("capping direction", unit)?;
                    clamp_projection(ctx, &self.step, d, *min, *max, &ub, &self.h)
                        .map_err(|e| Error::Invalid(e.0))?
                }
            };
            ops[e.layer].push(kernel);
        }
        let record_buf = if hooks.record.is_empty() {
            None
        } else {
            let stride = hooks.record.len();
            let buf = ctx.storage("recorded residuals", self.max_chunk * stride * d)?;
            for (slot, &l) in hooks.record.iter().enumerate() {
                ops[l].push(copy_rows(
                    ctx,
                    &self.step,
                    d,
                    RowDest::Interleaved { slot, stride },
                    &self.h,
                    &buf,
                )?);
            }
            Some(buf)
        };
        ctx.take_error()?;
        self.plan = HookPlan {
            record: hooks.record.clone(),
            edits: hooks.edits.clone(),
            ops,
            record_buf,
        };
        Ok(())
    }

    /// Builds the all-token LM head: as many rows as fit one storage binding, at most a chunk.
    fn prepare_all_logits(&mut self) -> Result<()> {
        if self.all.is_some() {
            return Ok(());
        }
        let ctx: &GpuContext = &self.ctx;
        let max = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        let rows = ((max / (self.cfg.vocab as u64 * 4)) as usize).min(self.max_chunk);
        if rows == 0 {
            return Err(Error::Gpu(
                "the logits of one token exceed the device's buffer limit".into(),
            ));
        }
        let logits = ctx.storage("all logits", rows * self.cfg.vocab)?;
        let head = Linear::new(ctx, &self.step, &self.output, &self.a, &logits, Tokens::All)?;
        ctx.take_error()?;
        self.all = Some(AllLogits { rows, logits, head });
        Ok(())
    }

    /// The forward pass (see [`Backend::forward`](crate::engine::Backend::forward)):
    /// runs `tokens` at positions `pos..pos + n` on top of the cached `0..pos`, applies and
    /// records `hooks`, and returns the last token's logits, or every token's with
    /// `all_logits`. Natively this blocks in `device.poll`; in the browser it yields to
    /// the event loop while the GPU works.
    pub async fn forward_async(
        &mut self,
        tokens: &[u32],
        pos: usize,
        hooks: &mut Hooks,
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        let (d, vocab, n) = (self.cfg.hidden, self.cfg.vocab, tokens.len());
        self.cfg.check_forward(tokens, pos, self.cached, hooks)?;
        self.prepare_hooks(hooks)?;
        let chunk = if all_logits {
            self.prepare_all_logits()?;
            self.all.as_ref().map_or(self.max_chunk, |a| a.rows)
        } else {
            self.max_chunk
        };
        self.truncate(pos);
        let n_rec = self.plan.record.len();
        let mut logits = Vec::with_capacity(if all_logits { n * vocab } else { vocab });
        let mut recorded = Vec::with_capacity(n * n_rec * d);
        for (i, part) in tokens.chunks(chunk).enumerate() {
            let p = pos + i * chunk;
            let last = p + part.len() == pos + n;
            let rows = match (all_logits, last) {
                (true, _) => part.len(),
                (false, true) => 1,
                (false, false) => 0,
            };
            let bytes = self.run_chunk(part, p, rows, all_logits).await?;
            let (l, r) = bytes.split_at(rows * vocab * 4);
            logits.extend(bytemuck::pod_collect_to_vec::<u8, f32>(l));
            recorded.extend(bytemuck::pod_collect_to_vec::<u8, f32>(r));
            self.cached = p + part.len();
        }
        if n_rec > 0 {
            hooks.append_recorded(&recorded, d);
        }
        if let Some(cap) = self.cfg.final_logit_softcap {
            // On the read-back logits, as the CPU engine does: argmax is unchanged by it.
            softcap(&mut logits, cap);
        }
        Ok(logits)
    }

    /// Encodes, submits and reads back one chunk: `logit_rows` rows of logits (0, the last
    /// token's, or every token's with `all`), then the recorded residuals.
    async fn run_chunk(
        &mut self,
        part: &[u32],
        pos: usize,
        logit_rows: usize,
        all: bool,
    ) -> Result<Vec<u8>> {
        let ctx: &GpuContext = &self.ctx;
        let (d, vocab, n) = (self.cfg.hidden, self.cfg.vocab, part.len());
        ctx.write(&self.tokens, part)?;
        self.step.set(ctx, n as u32, pos as u32);
        let logit_bytes = (logit_rows * vocab * 4) as u64;
        let record_bytes = (n * self.plan.record.len() * d * 4) as u64;
        let total = logit_bytes + record_bytes;
        if self.download.size() < total {
            self.download = staging(ctx, total);
        }
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            self.embed.encode(&mut pass)?;
            if let Some(k) = &self.embed_scale {
                k.encode(&mut pass)?;
            }
            for (layer, hook_ops) in self.layers.iter().zip(&self.plan.ops) {
                for op in layer {
                    op.encode(&mut pass)?;
                }
                for k in hook_ops {
                    k.encode(&mut pass)?;
                }
            }
            if logit_rows > 0 {
                self.final_norm.encode(&mut pass)?;
                match (&self.all, all) {
                    (Some(a), true) => a.head.encode(&mut pass)?,
                    _ => self.head_last.encode(&mut pass)?,
                }
            }
        }
        if logit_rows > 0 {
            let src = match (&self.all, all) {
                (Some(a), true) => &a.logits,
                _ => &self.logits_last,
            };
            encoder.copy_buffer_to_buffer(src, 0, &self.download, 0, logit_bytes);
        }
        if let Some(rb) = &self.plan.record_buf
            && record_bytes > 0
        {
            encoder.copy_buffer_to_buffer(rb, 0, &self.download, logit_bytes, record_bytes);
        }
        ctx.queue.submit([encoder.finish()]);
        Ok(ctx.read_staging(&self.download, total).await?)
    }
}

/// Natively `forward` blocks in `device.poll` and the async twin is the trait's default (a
/// finished future). In a browser a readback can only be awaited, so `forward` refuses and
/// `forward_async` is the real one.
impl crate::engine::Backend for GpuModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        hooks: &mut Hooks,
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        #[cfg(not(target_arch = "wasm32"))]
        return pollster::block_on(GpuModel::forward_async(
            self, tokens, pos, hooks, all_logits,
        ));
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (tokens, pos, hooks, all_logits);
            Err(Error::Gpu(
                "WebGPU in a browser cannot block on a readback: use forward_async".into(),
            ))
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn forward_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        pos: usize,
        hooks: &'a mut Hooks,
        all_logits: bool,
    ) -> crate::engine::backend::LocalFuture<'a, Result<Vec<f32>>> {
        Box::pin(GpuModel::forward_async(
            self, tokens, pos, hooks, all_logits,
        ))
    }

    fn truncate(&mut self, len: usize) {
        GpuModel::truncate(self, len)
    }

    fn cached(&self) -> usize {
        self.cached
    }

    fn describe(&self) -> String {
        GpuModel::describe(self)
    }
}
