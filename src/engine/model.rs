//! The llama-family forward pass on the CPU (llama: SmolLM2, Llama 3; qwen2: Qwen2.5; qwen3;
//! gemma3, with its extra norms, GELU, sliding windows and soft-cap as small steps), written
//! out plainly so every hook point is ours. Numerics follow llama.cpp's CPU path where it
//! matters for agreement: activations quantized before each matmul (see `quant`), an f16 KV
//! cache, queries and attention weights rounded to f16 before their products with it, RMSNorm
//! summed in f64, RoPE angles advanced by repeated multiplication.
//!
//! Over 600 lines: one file per forward, as candle does: weights, KV cache, the batched
//! pass and every block step read top to bottom, with nothing to look up elsewhere.

use super::config::{Activation, ModelConfig, RopeStyle};
use super::error::{Error, Result};
use super::gguf::GgufFile;
use super::hooks::Hooks;
use super::quant::float::{max_of, round_f16};
use super::quant::{QMatrix, QType};
use super::threads::Threads;
use std::sync::Arc;

struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    bias: Option<[Vec<f32>; 3]>,
    /// Per-head RMSNorm weights for q and k (qwen3).
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: QMatrix,
    /// Gemma: RMSNorm weights for the attention output and the MLP output.
    post_norms: Option<[Vec<f32>; 2]>,
    ffn_norm: Vec<f32>,
    w_gate: QMatrix,
    w_up: QMatrix,
    w_down: QMatrix,
}

/// The weights and the threads that compute with them, shared by every sequence forked from
/// one load (see [`CpuModel::fork`]).
struct Weights {
    cfg: ModelConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    output: QMatrix,
    /// Llama 3.x rope scaling: each rotated pair's frequency is divided by its factor.
    rope_freqs: Option<Vec<f32>>,
    threads: Threads,
}

/// One sequence's cache: per layer, keys and values rounded to f16 as llama.cpp stores them by
/// default, but kept as f32 so attention reads them without converting. Values are `[pos][kv_dim]`;
/// keys go in blocks of [`KEY_BLOCK`] positions, each `[kv_dim][KEY_BLOCK]`, so that attention
/// scores a block's keys in vector lanes, one key per lane (see [`block_dots`]).
struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    cached: usize,
}

/// Positions per block of the key cache.
const KEY_BLOCK: usize = 8;

/// Stores the keys of positions `pos..` (`keys`: `[n][kv_dim]`, rounded to f16) in a layer's
/// key cache of blocks (see [`KvCache`]).
fn store_keys(cache: &mut Vec<f32>, keys: &[f32], pos: usize, kv_dim: usize) {
    let n = keys.len() / kv_dim;
    let blocks = (pos + n).div_ceil(KEY_BLOCK);
    cache.resize(blocks * kv_dim * KEY_BLOCK, 0.0);
    for (i, key) in keys.chunks_exact(kv_dim).enumerate() {
        let (b, lane) = ((pos + i) / KEY_BLOCK, (pos + i) % KEY_BLOCK);
        let block = &mut cache[b * kv_dim * KEY_BLOCK..][..kv_dim * KEY_BLOCK];
        for (j, &x) in key.iter().enumerate() {
            block[j * KEY_BLOCK + lane] = round_f16(x);
        }
    }
}

impl KvCache {
    fn new(n_layers: usize) -> Self {
        Self {
            k: vec![Vec::new(); n_layers],
            v: vec![Vec::new(); n_layers],
            cached: 0,
        }
    }
}

/// One sequence on the CPU: shared weights, its own KV cache. Several sequences forked from one
/// load run together through [`crate::engine::backend::forward_batch`].
pub struct CpuModel {
    w: Arc<Weights>,
    cache: KvCache,
}

/// One sequence's forward call in a batched CPU pass: what `forward` takes.
pub(crate) struct CpuStep<'a> {
    pub model: &'a mut CpuModel,
    pub tokens: &'a [u32],
    pub pos: usize,
    pub hooks: &'a mut Hooks,
    pub all_logits: bool,
}

/// One sequence's rows in a pass: `n` tokens from position `pos`, with its cache and hooks.
struct Seq<'a> {
    cache: &'a mut KvCache,
    pos: usize,
    n: usize,
    hooks: &'a mut Hooks,
}

/// Loads a weight matrix for the CPU engine, checking its shape against the config.
pub(crate) fn matrix(f: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
    let t = f.matrix(name, rows, cols)?;
    Ok(QMatrix::new(t.qtype, rows, cols, f.bytes().clone(), t.offset).packed_for_cpu())
}

/// Loads a small f32 vector (norm weights, biases), from F32 or F16 storage.
pub(crate) fn vector(f: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
    let t = f.tensor(name)?;
    if t.shape != [len] || !matches!(t.qtype, QType::F32 | QType::F16) {
        return Err(Error::BadShape {
            name: name.into(),
            got: t.shape.clone(),
            expected: vec![len],
        });
    }
    let mut out = vec![0f32; len];
    t.qtype.dequantize_row(f.tensor_bytes(t), &mut out);
    Ok(out)
}

impl CpuModel {
    pub fn load(f: &GgufFile, threads: usize) -> Result<Self> {
        Self::load_with(f, Threads::new(threads))
    }

    /// As [`CpuModel::load`], computing on `threads` (which may bring a row helper).
    pub fn load_with(f: &GgufFile, threads: Threads) -> Result<Self> {
        let cfg = ModelConfig::from_gguf(f)?;
        let (d, qd, kv, ffn) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn);
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let n = |s: &str| format!("blk.{l}.{s}");
            let bias = if cfg.qkv_bias {
                Some([
                    vector(f, &n("attn_q.bias"), qd)?,
                    vector(f, &n("attn_k.bias"), kv)?,
                    vector(f, &n("attn_v.bias"), kv)?,
                ])
            } else {
                None
            };
            let qk_norm = if cfg.qk_norm {
                Some([
                    vector(f, &n("attn_q_norm.weight"), cfg.head_dim)?,
                    vector(f, &n("attn_k_norm.weight"), cfg.head_dim)?,
                ])
            } else {
                None
            };
            let post_norms = if cfg.post_norms {
                Some([
                    vector(f, &n("post_attention_norm.weight"), d)?,
                    vector(f, &n("post_ffw_norm.weight"), d)?,
                ])
            } else {
                None
            };
            layers.push(Layer {
                post_norms,
                attn_norm: vector(f, &n("attn_norm.weight"), d)?,
                wq: matrix(f, &n("attn_q.weight"), qd, d)?,
                wk: matrix(f, &n("attn_k.weight"), kv, d)?,
                wv: matrix(f, &n("attn_v.weight"), kv, d)?,
                bias,
                qk_norm,
                wo: matrix(f, &n("attn_output.weight"), d, qd)?,
                ffn_norm: vector(f, &n("ffn_norm.weight"), d)?,
                w_gate: matrix(f, &n("ffn_gate.weight"), ffn, d)?,
                w_up: matrix(f, &n("ffn_up.weight"), ffn, d)?,
                w_down: matrix(f, &n("ffn_down.weight"), d, ffn)?,
            });
        }
        let embed = matrix(f, "token_embd.weight", cfg.vocab, d)?;
        let output = if cfg.tied_embeddings {
            embed.clone()
        } else {
            matrix(f, "output.weight", cfg.vocab, d)?
        };
        let rope_freqs = if cfg.rope_freqs {
            Some(vector(f, "rope_freqs.weight", cfg.head_dim / 2)?)
        } else {
            None
        };
        Ok(Self {
            cache: KvCache::new(cfg.n_layers),
            w: Arc::new(Weights {
                out_norm: vector(f, "output_norm.weight", d)?,
                rope_freqs,
                threads,
                embed,
                layers,
                output,
                cfg,
            }),
        })
    }

    /// Another sequence on the same weights and threads, with an empty cache: nothing but the
    /// cache is allocated, so a batch of B sequences holds one copy of the model.
    pub fn fork(&self) -> Self {
        Self {
            w: self.w.clone(),
            cache: KvCache::new(self.w.cfg.n_layers),
        }
    }

    pub fn threads(&self) -> usize {
        self.w.threads.count()
    }
}

/// `y = (x * 1/sqrt(mean(x^2) + eps)) * w`, row by row, the sum in f64 as ggml does.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, yr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let sum: f64 = xr.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((y, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *y = (xv * scale) * wv;
        }
    }
}

/// RMSNorm of each `w.len()`-wide row of `x` in place (a head for qwen3's q/k norm).
fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let mut out = vec![0f32; x.len()];
    rms_norm(x, w, eps, &mut out);
    x.copy_from_slice(&out);
}

/// Rotates each head of `x` (`[n_heads][head_dim]`) for absolute position `pos`. Pair `i`'s
/// angle is divided by `freq_factors[i]` when given (Llama 3.x scaling, as llama.cpp does).
pub(crate) fn rope(
    x: &mut [f32],
    head_dim: usize,
    pos: usize,
    theta_base: f32,
    style: RopeStyle,
    freq_factors: Option<&[f32]>,
) {
    let half = head_dim / 2;
    let theta_scale = theta_base.powf(-2.0 / head_dim as f32);
    let mut cs = Vec::with_capacity(half);
    let mut theta = pos as f32;
    for i in 0..half {
        let t = theta / freq_factors.map_or(1.0, |f| f[i]);
        cs.push((t.cos(), t.sin()));
        theta *= theta_scale;
    }
    for h in x.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let (a, b) = match style {
                RopeStyle::Norm => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + half),
            };
            let (x0, x1) = (h[a], h[b]);
            h[a] = x0 * c - x1 * s;
            h[b] = x0 * s + x1 * c;
        }
    }
}

/// Gemma's final logit soft-cap, `cap * tanh(logit / cap)` in ggml's order (scale by 1/cap,
/// tanh, scale by cap); the GPU backend applies it to its read-back logits.
pub(crate) fn softcap(logits: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    logits.iter_mut().for_each(|v| *v = (*v * inv).tanh() * cap);
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

fn silu_mul(g: &mut [f32], u: &[f32]) {
    g.iter_mut()
        .zip(u)
        .for_each(|(a, &b)| *a = *a / (1.0 + exp(-*a)) * b);
}

/// `e^x` in the forward pass: the platform's natively (the committed bundles were built with
/// it), the portable one in the browser, where Rust's libm (fdlibm's, a division per call) took
/// 7 % of a map build for SiLU and attention (BENCHMARKS.md).
#[inline(always)]
fn exp(x: f32) -> f32 {
    #[cfg(target_arch = "wasm32")]
    return crate::engine::exp::exp_f32(x);
    #[cfg(not(target_arch = "wasm32"))]
    x.exp()
}

/// `g = gelu(g) * u` with GELU's tanh form, as ggml's CPU computes it: the input rounded to
/// f16 and its GELU rounded to f16 (ggml reads a table of them), except beyond +-10.
fn gelu_mul(g: &mut [f32], u: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    let gelu = |x: f32| 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh());
    for (a, &b) in g.iter_mut().zip(u) {
        let x = *a;
        let y = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            round_f16(gelu(round_f16(x)))
        };
        *a = y * b;
    }
}

/// The gated MLP's activation, in place on the gate: `g = act(g) * u`.
fn activate(act: Activation, g: &mut [f32], u: &[f32]) {
    match act {
        Activation::Silu => silu_mul(g, u),
        Activation::GeluTanh => gelu_mul(g, u),
    }
}

/// Gemma's post-norm: RMSNorm of a sub-layer's output before it joins the residual stream.
fn post_norm(y: &mut [f32], w: Option<&[f32]>, eps: f32) {
    if let Some(w) = w {
        rms_norm_in_place(y, w, eps);
    }
}

impl Weights {
    /// Token embeddings, `[n][hidden]`.
    pub fn embed(&self, tokens: &[u32]) -> Vec<f32> {
        let d = self.cfg.hidden;
        let mut x = vec![0f32; tokens.len() * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            self.embed.dequantize_row(t as usize, row);
        }
        if let Some(s) = self.cfg.embed_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        x
    }

    /// Runs decoder blocks `layers` over the residual stream `x` (`[n][hidden]`): the rows of
    /// `seqs` one after another, each sequence's tokens at its positions `pos..`, appending to
    /// its own KV cache, with its own hooks after each block. Every matmul runs over all rows
    /// at once (each weight row is read once for the whole batch); rope, the cache and
    /// attention are per sequence. A row's arithmetic does not depend on the other rows, so a
    /// sequence gets the same bits alone or in a batch.
    fn run_blocks(&self, x: &mut [f32], seqs: &mut [Seq<'_>], layers: std::ops::Range<usize>) {
        let c = &self.cfg;
        let (d, qd, kvd, n) = (c.hidden, c.q_dim(), c.kv_dim(), x.len() / c.hidden);
        debug_assert_eq!(n, seqs.iter().map(|s| s.n).sum::<usize>());
        let pos: Vec<usize> = seqs.iter().flat_map(|s| s.pos..s.pos + s.n).collect();
        let mut xn = vec![0f32; n * d];
        let (mut q, mut k, mut v) = (vec![0f32; n * qd], vec![0f32; n * kvd], vec![0f32; n * kvd]);
        let mut att = vec![0f32; n * qd];
        let mut proj = vec![0f32; n * d];
        let (mut g, mut u) = (vec![0f32; n * c.ffn], vec![0f32; n * c.ffn]);
        for l in layers {
            let layer = &self.layers[l];
            rms_norm(x, &layer.attn_norm, c.rms_eps, &mut xn);
            layer.wq.matmul(&xn, &mut q, &self.threads);
            layer.wk.matmul(&xn, &mut k, &self.threads);
            layer.wv.matmul(&xn, &mut v, &self.threads);
            if let Some([bq, bk, bv]) = &layer.bias {
                q.chunks_exact_mut(qd).for_each(|r| add_in_place(r, bq));
                k.chunks_exact_mut(kvd).for_each(|r| add_in_place(r, bk));
                v.chunks_exact_mut(kvd).for_each(|r| add_in_place(r, bv));
            }
            if let Some([qn, kn]) = &layer.qk_norm {
                rms_norm_in_place(&mut q, qn, c.rms_eps);
                rms_norm_in_place(&mut k, kn, c.rms_eps);
            }
            let (ff, theta) = (self.rope_freqs.as_deref(), c.rope_theta_at(l));
            for (i, (qi, ki)) in q
                .chunks_exact_mut(qd)
                .zip(k.chunks_exact_mut(kvd))
                .enumerate()
            {
                rope(qi, c.head_dim, pos[i], theta, c.rope_style, ff);
                rope(ki, c.head_dim, pos[i], theta, c.rope_style, ff);
            }
            if let Some(s) = c.query_scale {
                q.iter_mut().for_each(|v| *v *= s);
            }
            let mut r = 0;
            for s in seqs.iter_mut() {
                let (kv_rows, rows) = (r * kvd..(r + s.n) * kvd, r * qd..(r + s.n) * qd);
                store_keys(&mut s.cache.k[l], &k[kv_rows.clone()], s.pos, kvd);
                s.cache.v[l].extend(v[kv_rows].iter().map(|&a| round_f16(a)));
                self.attention(s.cache, l, &q[rows.clone()], s.pos, s.n, &mut att[rows]);
                r += s.n;
            }
            let post = layer.post_norms.as_ref();
            layer.wo.matmul(&att, &mut proj, &self.threads);
            post_norm(&mut proj, post.map(|p| p[0].as_slice()), c.rms_eps);
            add_in_place(x, &proj);
            rms_norm(x, &layer.ffn_norm, c.rms_eps, &mut xn);
            layer.w_gate.matmul(&xn, &mut g, &self.threads);
            layer.w_up.matmul(&xn, &mut u, &self.threads);
            activate(c.activation, &mut g, &u);
            layer.w_down.matmul(&g, &mut proj, &self.threads);
            post_norm(&mut proj, post.map(|p| p[1].as_slice()), c.rms_eps);
            add_in_place(x, &proj);
            let mut rest = &mut x[..];
            for s in seqs.iter_mut() {
                let (mine, after) = rest.split_at_mut(s.n * d);
                s.hooks.at_layer(l, mine, d);
                rest = after;
            }
        }
    }

    /// Final norm and output matrix: logits for each residual row of `x`.
    pub fn head(&self, x: &[f32]) -> Vec<f32> {
        let c = &self.cfg;
        let mut normed = vec![0f32; x.len()];
        rms_norm(x, &self.out_norm, c.rms_eps, &mut normed);
        let mut logits = vec![0f32; x.len() / c.hidden * c.vocab];
        self.output.matmul(&normed, &mut logits, &self.threads);
        if let Some(cap) = c.final_logit_softcap {
            softcap(&mut logits, cap);
        }
        logits
    }

    /// Causal attention for `n` new tokens whose keys/values are already in the cache.
    fn attention(
        &self,
        cache: &KvCache,
        l: usize,
        q: &[f32],
        pos: usize,
        n: usize,
        out: &mut [f32],
    ) {
        let c = &self.cfg;
        let hd = c.head_dim;
        // With a query scale the queries were scaled already (see `run_blocks`).
        let scale = match c.query_scale {
            Some(_) => 1.0,
            None => 1.0 / (hd as f32).sqrt(),
        };
        let heads = Heads {
            hd,
            kvd: c.kv_dim(),
            n_heads: c.n_heads,
            group: c.n_heads / c.n_kv_heads,
            scale,
            window: c.window_at(l),
            keys: &cache.k[l],
            values: &cache.v[l],
            q,
            pos,
        };
        debug_assert_eq!(out.len(), n * c.n_heads * hd);
        // One task per (token, head): each writes its own head_dim outputs, computed the same
        // way on any thread.
        self.threads
            .for_each_chunk(out, hd, |start, acc| heads.attend(start, acc));
    }
}

/// What attention's (token, head) tasks share: one layer's cache and the new tokens' queries.
struct Heads<'a> {
    hd: usize,
    kvd: usize,
    n_heads: usize,
    /// Query heads per key/value head.
    group: usize,
    scale: f32,
    window: Option<usize>,
    keys: &'a [f32],
    values: &'a [f32],
    q: &'a [f32],
    /// The first new token's position.
    pos: usize,
}

impl Heads<'_> {
    /// The task whose outputs start at `start` (of `[token][head][head_dim]`) into `acc`.
    fn attend(&self, start: usize, acc: &mut [f32]) {
        // Natively the crate targets plain x86-64 (SSE2): with AVX2 the same loops run in
        // 256-bit lanes (key blocks of eight in one register, values in eights). The same
        // operations in the same order per element (no fused multiply-add), so the same bits.
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.attend_avx2(start, acc) };
        }
        self.attend_here(start, acc)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn attend_avx2(&self, start: usize, acc: &mut [f32]) {
        self.attend_here(start, acc)
    }

    #[inline(always)]
    fn attend_here(&self, start: usize, acc: &mut [f32]) {
        let (hd, kvd) = (self.hd, self.kvd);
        let (i, h) = (start / hd / self.n_heads, start / hd % self.n_heads);
        // Keys `first..pos + i + 1`: all earlier positions, or a local layer's window.
        let first = self
            .window
            .map_or(0, |w| (self.pos + i + 1).saturating_sub(w));
        let len = self.pos + i + 1 - first;
        let kvh = h / self.group;
        let q16: Vec<f32> = self.q[start..][..hd]
            .iter()
            .map(|&b| round_f16(b))
            .collect();
        let mut scores = vec![0f32; len];
        let block = |b: usize| &self.keys[(b * kvd + kvh * hd) * KEY_BLOCK..][..hd * KEY_BLOCK];
        let mut put = |b: usize, d: &[f32; KEY_BLOCK]| {
            // The block's lanes inside the keys attended to (a window or the cache's end
            // may cut the first and last block).
            for (lane, &d) in d.iter().enumerate() {
                if let Some(s) = (b * KEY_BLOCK + lane)
                    .checked_sub(first)
                    .and_then(|j| scores.get_mut(j))
                {
                    *s = d;
                }
            }
        };
        let (mut b, end) = (first / KEY_BLOCK, (first + len).div_ceil(KEY_BLOCK));
        while b + 4 <= end {
            let d = block_dots(&q16, [b, b + 1, b + 2, b + 3].map(block));
            (0..4).for_each(|k| put(b + k, &d[k]));
            b += 4;
        }
        for b in b..end {
            put(b, &block_dots(&q16, [block(b)])[0]);
        }
        let mut max = f32::NEG_INFINITY;
        for s in &mut scores {
            *s *= self.scale;
            max = max_of(max, *s);
        }
        let mut sum = 0f64;
        for s in &mut scores {
            *s = exp(*s - max);
            sum += *s as f64;
        }
        let inv = (1.0 / sum) as f32;
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (j, &s) in scores.iter().enumerate() {
            let p = round_f16(s * inv);
            let v = &self.values[(first + j) * kvd + kvh * hd..][..hd];
            acc.iter_mut().zip(v).for_each(|(a, b)| *a += p * b);
        }
    }
}

/// `q` dotted with each of N key blocks' [`KEY_BLOCK`] keys (each block `[head_dim][KEY_BLOCK]`,
/// one key per lane). Each key's sum runs over the elements in order from -0.0, as
/// `Iterator::sum` of the products would (so a zero sum keeps its sign). The keys are
/// independent, so a block's proceed side by side in vector lanes, and several blocks' chains
/// of additions interleave instead of each waiting on the last addition's latency.
#[inline(always)]
fn block_dots<const N: usize>(q: &[f32], blocks: [&[f32]; N]) -> [[f32; KEY_BLOCK]; N] {
    assert!(blocks.iter().all(|b| b.len() == q.len() * KEY_BLOCK));
    let mut d = [[-0.0f32; KEY_BLOCK]; N];
    for (e, &qe) in q.iter().enumerate() {
        for (dn, block) in d.iter_mut().zip(&blocks) {
            let keys = &block[e * KEY_BLOCK..][..KEY_BLOCK];
            for (di, &k) in dn.iter_mut().zip(keys) {
                *di += qe * k;
            }
        }
    }
    d
}

impl CpuModel {
    /// Token embeddings, `[n][hidden]`.
    pub fn embed(&self, tokens: &[u32]) -> Vec<f32> {
        self.w.embed(tokens)
    }

    /// Runs decoder blocks `layers` over the residual stream `x` (`[n][hidden]`) of the tokens
    /// at positions `pos..`, appending to those blocks' KV caches, with the hook point after
    /// each block. `forward` runs all of them; tests start a block from llama.cpp's residuals.
    pub fn run_blocks(
        &mut self,
        x: &mut [f32],
        pos: usize,
        layers: std::ops::Range<usize>,
        hooks: &mut Hooks,
    ) {
        let n = x.len() / self.w.cfg.hidden;
        let seq = Seq {
            cache: &mut self.cache,
            pos,
            n,
            hooks,
        };
        self.w.run_blocks(x, &mut [seq], layers);
    }

    /// Final norm and output matrix: logits for each residual row of `x`.
    pub fn head(&self, x: &[f32]) -> Vec<f32> {
        self.w.head(x)
    }

    /// Runs already checked `steps` (see [`crate::engine::backend::forward_batch`]) in one pass
    /// when every step is a sequence forked from the same load; `None`, with nothing run,
    /// otherwise. Each step's result is what its own `forward` would give, bit for bit.
    pub(crate) fn forward_batch(steps: &mut [CpuStep<'_>]) -> Option<Vec<Vec<f32>>> {
        let w = steps.first()?.model.w.clone();
        if !steps.iter().all(|s| Arc::ptr_eq(&s.model.w, &w)) {
            return None;
        }
        let (d, kvd) = (w.cfg.hidden, w.cfg.kv_dim());
        let tokens: Vec<u32> = steps.iter().flat_map(|s| s.tokens).copied().collect();
        let all_logits: Vec<bool> = steps.iter().map(|s| s.all_logits).collect();
        let mut seqs = Vec::with_capacity(steps.len());
        for s in steps.iter_mut() {
            let cache = &mut s.model.cache;
            cache.truncate(s.pos, kvd);
            seqs.push(Seq {
                cache,
                pos: s.pos,
                n: s.tokens.len(),
                hooks: &mut *s.hooks,
            });
        }
        let mut x = w.embed(&tokens);
        w.run_blocks(&mut x, &mut seqs, 0..w.cfg.n_layers);
        // The rows whose logits are wanted, all through the output matrix at once.
        let (mut rows, mut wanted) = (Vec::new(), Vec::with_capacity(seqs.len()));
        let mut r = 0;
        for (seq, all) in seqs.iter_mut().zip(all_logits) {
            seq.hooks.end_forward(seq.n, d);
            seq.cache.cached = seq.pos + seq.n;
            let first = if all { r } else { r + seq.n - 1 };
            rows.extend_from_slice(&x[first * d..(r + seq.n) * d]);
            wanted.push(r + seq.n - first);
            r += seq.n;
        }
        let logits = w.head(&rows);
        let vocab = w.cfg.vocab;
        let mut rest = &logits[..];
        Some(
            wanted
                .into_iter()
                .map(|k| {
                    let (mine, after) = rest.split_at(k * vocab);
                    rest = after;
                    mine.to_vec()
                })
                .collect(),
        )
    }
}

impl KvCache {
    fn truncate(&mut self, len: usize, kv_dim: usize) {
        let len = len.min(self.cached);
        for (kc, vc) in self.k.iter_mut().zip(&mut self.v) {
            // Whole key blocks: lanes past `len` are overwritten before they are read again.
            kc.truncate(len.div_ceil(KEY_BLOCK) * kv_dim * KEY_BLOCK);
            vc.truncate(len * kv_dim);
        }
        self.cached = len;
    }
}

/// What [`crate::engine::Backend`] asks of a CPU sequence (the trait's impl is in
/// `backend.rs`, so that this file needs nothing of it).
impl CpuModel {
    pub fn config(&self) -> &ModelConfig {
        &self.w.cfg
    }

    /// One sequence alone: a batch of one.
    pub(crate) fn forward_one(
        &mut self,
        tokens: &[u32],
        pos: usize,
        hooks: &mut Hooks,
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        self.w
            .cfg
            .check_forward(tokens, pos, self.cache.cached, hooks)?;
        let mut one = [CpuStep {
            model: self,
            tokens,
            pos,
            hooks,
            all_logits,
        }];
        Ok(Self::forward_batch(&mut one)
            .and_then(|mut l| l.pop())
            .expect("a CPU sequence is a batch of one"))
    }

    pub(crate) fn truncate_cache(&mut self, len: usize) {
        self.cache.truncate(len, self.w.cfg.kv_dim());
    }

    pub fn cached(&self) -> usize {
        self.cache.cached
    }

    pub fn describe(&self) -> String {
        let t = self.w.threads.count();
        let kernels = crate::engine::quant::kernels();
        format!(
            "cpu ({t} thread{}, {kernels})",
            if t == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys stored in blocks and scored a block or several at a time give every score a lone
    /// dot product of the stored (f16-rounded) key gives, bit for bit, zero sums included, for
    /// a second kv head and a last block cut short.
    #[test]
    fn block_key_scores_equal_lone_dot_products() {
        let (hd, kvd, n, kvh) = (64, 192, 11, 1);
        let wave = |i: usize| ((i * 7919 % 1013) as f32 - 506.0) * 1.37e-3;
        let q: Vec<f32> = (0..hd).map(wave).collect();
        let mut keys: Vec<f32> = (0..n * kvd).map(|i| wave(i + 17)).collect();
        keys[3 * kvd + kvh * hd..][..hd].fill(0.0);
        let mut cache = Vec::new();
        // In two steps, as a prompt then more tokens arrive.
        store_keys(&mut cache, &keys[..5 * kvd], 0, kvd);
        store_keys(&mut cache, &keys[5 * kvd..], 5, kvd);
        let lone = |j: usize| -> f32 {
            let key = &keys[j * kvd + kvh * hd..][..hd];
            q.iter().zip(key).map(|(a, &b)| a * round_f16(b)).sum()
        };
        let block = |b: usize| &cache[(b * kvd + kvh * hd) * KEY_BLOCK..][..hd * KEY_BLOCK];
        // Both blocks at once, as attention takes runs of blocks, and each alone.
        let both = block_dots(&q, [block(0), block(1)]);
        for j in 0..n {
            let (b, lane) = (j / KEY_BLOCK, j % KEY_BLOCK);
            let alone = block_dots(&q, [block(b)])[0][lane];
            assert_eq!(alone.to_bits(), lone(j).to_bits(), "key {j}");
            assert_eq!(
                both[b][lane].to_bits(),
                lone(j).to_bits(),
                "key {j}, two blocks"
            );
        }
    }
}
