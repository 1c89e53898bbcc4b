//! WebGPU compute kernels for the model forward pass (wgpu 30: browser WebGPU on wasm32,
//! Vulkan natively, lavapipe in tests).
//!
//! Every op is one WGSL file next to the Rust that builds and dispatches it. An op is
//! built once ([`Kernel`]: pipeline + bind group + grid rule, parameters baked into a
//! uniform buffer) and then only *encoded* per forward call, so a decode step costs a
//! few hundred `dispatch` calls and no buffer or bind-group creation. The two values
//! that change between forward calls, the token count and the position of the first
//! token, live in one shared [`Step`] uniform.
//!
//! | op | Rust | WGSL |
//! |----|------|------|
//! | weight upload + repack, block decoders | [`weights`] | `quant_common.wgsl`, `quant_{f32,f16,q4_0,q4_1,q5_0,q8_0,q4_k,q5_k,q6_k}.wgsl` |
//! | fused dequantize + matrix-vector (decode) | [`matmul::Linear`] | `matvec.wgsl`, ending in `matvec_store.wgsl` or `matvec_gated.wgsl` |
//! | tiled dequantize + matrix-matrix (prefill) | [`matmul::Linear`] | `matmul.wgsl` |
//! | where a product's rows go: one buffer (set or added to), q/k/v, gate/up | [`matmul::Output`] | `linear_out.wgsl`, `linear_qkv.wgsl`, `linear_pairs.wgsl` |
//! | embedding row gather | [`embedding::embedding`] | `embedding.wgsl` |
//! | RMSNorm, of a whole token or (qwen3, gemma3) of each head | [`norm::rms_norm`], [`norm::head_rms_norm`] | `rms_norm.wgsl` |
//! | RoPE, NORM and NEOX modes; with the KV-cache store | [`rope::rope`], [`rope::rope_store`] | `rope_common.wgsl` + `rope.wgsl`, `rope_store.wgsl` |
//! | causal grouped-query attention over the GPU KV cache, sliding window optional | [`attention::attention`] | `attention.wgsl` |
//! | SiLU or (gemma3) GELU gate `act(gate) * up` | [`elementwise::gated`] | `silu.wgsl` or `gelu.wgsl` + `gated.wgsl` |
//! | scale (gemma3's embeddings) | [`elementwise::scale`] | `scale.wgsl` |
//! | residual add, bias add, hook `add` | [`elementwise::add`] | `add.wgsl` |
//! | KV-cache store, residual record | [`elementwise::copy_rows`] | `copy_rows.wgsl` |
//! | hook `clamp projection` | [`hooks::clamp_projection`] | `clamp_projection.wgsl` |
//! | argmax over logits | [`argmax::argmax`] | `argmax.wgsl` |
//! | the whole forward pass behind [`Backend`](crate::engine::Backend), hooks included | [`model::GpuModel`] | (the ops above) |
//!
//! Conventions: activations are f32, row-major `[n_tok][n]`. Matrices are `[rows][cols]`
//! as in GGUF (`cols` = ne0 is contiguous) and linear layers compute `y = x · Wᵀ`.
//! All arithmetic is f32 (no `shader-f16`, which SwiftShader and lavapipe lack; f16
//! scales are decoded with `unpack2x16float`, which is core WGSL). Reductions use
//! workgroup memory only: wgpu 30 cannot enable `subgroups` in browsers.
//! Kernels stay within WebGPU's default compute limits (256 invocations, 16 KiB of
//! workgroup memory); only buffer sizes use the adapter's larger limits.
//!
//! The forward is fused by default ([`GpuModelOptions::fused`]), which on SmolLM2-135M takes a
//! decode step from 513 dispatches to 243 (the same weights read; BENCHMARKS.md):
//! `rms_norm`; one `Linear` for q, k and v (a stacked matrix, [`matmul::Output::Qkv`], where
//! the three share a type); `rope_store` (RoPE of q and k, k and v into the caches);
//! `attention`; `Linear` o adding into `h` ([`matmul::Output::Add`]); `rms_norm`; one `Linear`
//! for gate and up, interleaved by four rows, whose matrix-vector kernel also applies the
//! activation ([`matmul::Output::Gated`]); `Linear` down adding into `h`; then the hooks.
//! gemma3's post-norms keep their own adds. Unfused (the reference the fused forward is
//! tested against, bit for bit: `tests/gpu/fused.rs`), the embedding gather (then, gemma3,
//! `scale`); then each decoder layer is encoded as:
//! `rms_norm(h → a)`; `Linear` q, k, v (`a → q,k,v`, plus `add` Broadcast for biases;
//! qwen3 and gemma3: `head_rms_norm` of q and k into their own buffers); `rope` on q and k
//! (Llama 3's frequency factors folded into its table, gemma3's local layers with their own
//! base); `copy_rows` AtPosition of k and v into the caches; `attention(q → o)` (gemma3: its
//! query scale, and a window on local layers); `Linear` o (`o → t`); `add` PerToken
//! (`h += t`; gemma3: `rms_norm(t → a)` first and `h += a`); `rms_norm(h → a)`; `Linear`
//! gate, up; `gated` (SiLU; gemma3: GELU); `Linear` down (`→ t`); the same join; then
//! the hook edits (`add` Broadcast, `clamp_projection`) and the record (`copy_rows`
//! Interleaved). A buffer may not be bound twice in one op when one binding writes it
//! (WebGPU usage rule), hence the separate `a`/`t` scratch buffers. gemma3's final logit
//! soft-cap is applied to the read-back logits, as the CPU engine does.
//! Readback: [`GpuContext::read_f32`] / `read_u32` (one u32 after [`argmax::argmax`]).
//!
//! Besides `cargo test` (lavapipe), `python3 scripts/wgsl_chromium_check.py`
//! compiles every pipeline with Chromium's Tint, which is stricter than naga about
//! uniformity; all pass on SwiftShader.

pub mod argmax;
pub mod attention;
pub mod context;
pub mod elementwise;
pub mod embedding;
pub mod hooks;
pub mod matmul;
pub mod model;
pub mod norm;
pub mod rope;
pub mod weights;

#[cfg(test)]
mod tests;

pub use context::{GpuContext, Kernel, Step};
pub use model::{GpuModel, GpuModelOptions};
pub use weights::GpuMatrix;

/// A GPU failure as a one-line, user-facing message (no adapter, a buffer over the
/// device limits, a shader or dispatch error reported by the device, bad shapes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GPU: {0}")]
pub struct GpuError(pub String);

pub type Result<T> = std::result::Result<T, GpuError>;

/// Shorthand for building a [`GpuError`] from a format string.
macro_rules! gpu_err {
    ($($arg:tt)*) => { $crate::engine::gpu::GpuError(format!($($arg)*)) };
}
pub(crate) use gpu_err;
