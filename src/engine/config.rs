//! Model hyper-parameters, read from GGUF metadata.

use super::error::{Error, Result};
use super::gguf::GgufFile;
use super::hooks::Hooks;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
}

/// Metadata under `ARCH.` that the engine reads and applies. Any other `ARCH.` key (rope
/// scaling, soft-capping, sliding windows, experts...) would change the computation, so a file
/// carrying one is refused rather than run wrongly.
const APPLIED_KEYS: &[&str] = &[
    "block_count",
    "embedding_length",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "context_length",
    "rope.freq_base",
    "rope.dimension_count",
    "attention.layer_norm_rms_epsilon",
    "vocab_size",
];

/// Gemma 3's further keys, applied for that architecture only.
const GEMMA3_KEYS: &[&str] = &[
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "rope.freq_base_swa",
    "final_logit_softcapping",
];

/// The gated MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Silu,
    /// GELU in its tanh approximation (Gemma).
    GeluTanh,
}

/// Gemma 3's local attention: most layers see only the latest `size` positions (themselves
/// included) and rotate with their own rope base.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlidingWindow {
    pub size: usize,
    pub rope_theta: f32,
    /// Per layer: whether it is local (windowed) rather than global.
    pub local: Vec<bool>,
}

/// How RoPE pairs dimensions, as llama.cpp names it: `Norm` rotates adjacent pairs
/// (llama: its converter permutes q/k so this matches Hugging Face), `Neox` rotates halves (qwen2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    Norm,
    Neox,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub name: String,
    pub n_layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Per head; `n_heads * head_dim` may differ from `hidden` (qwen3 reads it from
    /// `attention.key_length`).
    pub head_dim: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rms_eps: f32,
    /// Whether `output.weight` is absent and the embedding matrix doubles as the output layer.
    pub tied_embeddings: bool,
    /// q/k/v biases (qwen2).
    pub qkv_bias: bool,
    /// RMSNorm over each head of q and k before RoPE (qwen3).
    pub qk_norm: bool,
    /// Llama 3.x rope scaling: per-pair frequency divisors in `rope_freqs.weight`.
    pub rope_freqs: bool,
    pub activation: Activation,
    /// Gemma: the token embeddings are multiplied by this (sqrt(hidden)).
    pub embed_scale: Option<f32>,
    /// Gemma: an RMSNorm on the attention output and on the MLP output before each is added
    /// back to the residual stream.
    pub post_norms: bool,
    /// Gemma: queries are multiplied by this before attention, and the scores are not scaled
    /// again (otherwise scores are scaled by 1/sqrt(head_dim)).
    pub query_scale: Option<f32>,
    pub sliding_window: Option<SlidingWindow>,
    /// `cap * tanh(logit / cap)` on the output logits (Gemma 2 style soft-capping).
    pub final_logit_softcap: Option<f32>,
}

impl ModelConfig {
    /// The checks every backend makes before a forward call, with the same messages: `tokens` at
    /// `pos` must be non-empty, follow the `cached` positions, fit the context and the vocabulary,
    /// and the hooks must name this model's layers ([`Hooks::check`]).
    pub fn check_forward(
        &self,
        tokens: &[u32],
        pos: usize,
        cached: usize,
        hooks: &Hooks,
    ) -> Result<()> {
        let n = tokens.len();
        if n == 0 {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        if pos > cached {
            return Err(Error::Invalid(format!(
                "position {pos} is past the {cached} cached tokens"
            )));
        }
        if pos + n > self.context {
            return Err(Error::ContextOverflow {
                needed: pos + n,
                limit: self.context,
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::Invalid(format!(
                "token id {t} is outside the vocabulary of {}",
                self.vocab
            )));
        }
        hooks.check(self.n_layers, self.hidden)
    }

    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch_name = f.get_str("general.architecture")?;
        let architecture = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            "gemma3" => Architecture::Gemma3,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let n_layers = f.get_u64(&key("block_count"))? as usize;
        let hidden = f.get_u64(&key("embedding_length"))? as usize;
        let ffn = f.get_u64(&key("feed_forward_length"))? as usize;
        let n_heads = f.get_u64(&key("attention.head_count"))? as usize;
        let n_kv_heads = f
            .get_u64(&key("attention.head_count_kv"))
            .unwrap_or(n_heads as u64) as usize;
        let context = f.get_u64(&key("context_length"))? as usize;
        let rope_theta = f.get_f32(&key("rope.freq_base")).unwrap_or(10_000.0);
        let rms_eps = f.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        let gemma = architecture == Architecture::Gemma3;
        for k in f.metadata.keys() {
            let applied = k
                .strip_prefix(arch_name)
                .and_then(|r| r.strip_prefix('.'))
                .is_none_or(|r| APPLIED_KEYS.contains(&r) || gemma && GEMMA3_KEYS.contains(&r));
            if !applied {
                // Names come from the file: escaped, so the message stays one line.
                return Err(Error::NotApplied(format!(
                    "metadata '{}'",
                    k.escape_debug()
                )));
            }
        }
        let sane = |v: usize, max: usize| v > 0 && v <= max;
        let head_dim = match f.get_u64(&key("attention.key_length")) {
            Ok(v) => v as usize,
            Err(_) if n_heads > 0 && hidden.is_multiple_of(n_heads) => hidden / n_heads,
            Err(_) => 0,
        };
        if !(sane(n_layers, 512)
            && sane(hidden, 1 << 16)
            && sane(ffn, 1 << 18)
            && sane(n_heads, 1024)
            && sane(n_kv_heads, n_heads)
            && sane(head_dim, 1024)
            && n_heads.is_multiple_of(n_kv_heads)
            && sane(context, 1 << 22))
        {
            return Err(Error::BadGguf(format!(
                "inconsistent hyper-parameters: {n_layers} layers, hidden {hidden}, ffn {ffn}, {n_heads} heads, {n_kv_heads} kv heads, head dimension {head_dim}, context {context}"
            )));
        }
        if head_dim % 2 != 0 {
            return Err(Error::BadGguf(format!("head dimension {head_dim} is odd")));
        }
        // The engine rotates whole heads with keys and values of one width.
        for (k, what) in [
            ("attention.value_length", "value head dimension"),
            ("rope.dimension_count", "rotary dimension count"),
        ] {
            if let Ok(v) = f.get_u64(&key(k))
                && v as usize != head_dim
            {
                return Err(Error::NotApplied(format!(
                    "{what} {v} (metadata '{}') differing from the head dimension {head_dim}",
                    key(k)
                )));
            }
        }
        let emb = f.tensor("token_embd.weight")?;
        let vocab = emb.shape.first().copied().unwrap_or(0);
        if emb.shape != [vocab, hidden] {
            return Err(Error::BadShape {
                name: "token_embd.weight".into(),
                got: emb.shape.clone(),
                expected: vec![vocab, hidden],
            });
        }
        let sliding_window = if gemma {
            sliding_window(f, &key, n_layers)?
        } else {
            None
        };
        let final_logit_softcap = match f.get_f32(&key("final_logit_softcapping")) {
            Ok(cap) if gemma && cap != 0.0 => Some(cap),
            _ => None,
        };
        let cfg = Self {
            architecture,
            name: f.get_str("general.name").unwrap_or(arch_name).to_string(),
            n_layers,
            hidden,
            ffn,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab,
            context,
            rope_theta,
            rope_style: match architecture {
                Architecture::Llama => RopeStyle::Norm,
                Architecture::Qwen2 | Architecture::Qwen3 | Architecture::Gemma3 => RopeStyle::Neox,
            },
            rms_eps,
            tied_embeddings: !f.tensors.contains_key("output.weight"),
            // llama.cpp reads q/k/v biases for llama and qwen2, never for qwen3.
            qkv_bias: matches!(architecture, Architecture::Llama | Architecture::Qwen2)
                && f.tensors.contains_key("blk.0.attn_q.bias"),
            qk_norm: matches!(architecture, Architecture::Qwen3 | Architecture::Gemma3),
            // llama.cpp reads this tensor for llama only; elsewhere it stays unknown (refused).
            rope_freqs: architecture == Architecture::Llama
                && f.tensors.contains_key("rope_freqs.weight"),
            activation: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            embed_scale: gemma.then(|| (hidden as f32).sqrt()),
            post_norms: gemma,
            // llama.cpp's choice, after gemma_pytorch: 1/sqrt(hidden / heads) for the 27B model
            // (62 layers), 1/sqrt(head_dim) for the others.
            query_scale: gemma.then(|| {
                let width = if n_layers == 62 {
                    hidden / n_heads
                } else {
                    head_dim
                };
                1.0 / (width as f32).sqrt()
            }),
            sliding_window,
            final_logit_softcap,
        };
        if let Some(name) = f.tensors.keys().filter(|t| !cfg.applies_tensor(t)).min() {
            return Err(Error::NotApplied(format!(
                "tensor '{}'",
                name.escape_debug()
            )));
        }
        Ok(cfg)
    }

    /// Whether the forward pass reads tensor `name`. A tensor it would skip (a bias, a norm,
    /// a scaling table it does not know) means the file computes something else.
    fn applies_tensor(&self, name: &str) -> bool {
        if let Some(rest) = name.strip_prefix("blk.") {
            let Some((layer, t)) = rest.split_once('.') else {
                return false;
            };
            // The canonical spelling only: "blk.+1" or "blk.01" are not block 1 to llama.cpp.
            let ours = layer
                .parse::<usize>()
                .is_ok_and(|l| l < self.n_layers && l.to_string() == layer);
            return ours && self.block_tensors().contains(&t);
        }
        match name {
            "token_embd.weight" | "output_norm.weight" | "output.weight" => true,
            "rope_freqs.weight" => self.rope_freqs,
            _ => false,
        }
    }

    /// The tensor names (after `blk.N.`) that one decoder block reads.
    pub fn block_tensors(&self) -> Vec<&'static str> {
        let mut names = vec![
            "attn_norm.weight",
            "attn_q.weight",
            "attn_k.weight",
            "attn_v.weight",
            "attn_output.weight",
            "ffn_norm.weight",
            "ffn_gate.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ];
        if self.qkv_bias {
            names.extend(["attn_q.bias", "attn_k.bias", "attn_v.bias"]);
        }
        if self.qk_norm {
            names.extend(["attn_q_norm.weight", "attn_k_norm.weight"]);
        }
        if self.post_norms {
            names.extend(["post_attention_norm.weight", "post_ffw_norm.weight"]);
        }
        names
    }

    /// Layer `l`'s rope base: a local layer's own, or the model's.
    pub fn rope_theta_at(&self, l: usize) -> f32 {
        match &self.sliding_window {
            Some(w) if w.local[l] => w.rope_theta,
            _ => self.rope_theta,
        }
    }

    /// How many latest positions layer `l` attends to, if it is a local layer.
    pub fn window_at(&self, l: usize) -> Option<usize> {
        self.sliding_window
            .as_ref()
            .filter(|w| w.local[l])
            .map(|w| w.size)
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Width of all query heads together (the attention output's width too).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
}

/// Gemma 3's local layers, as llama.cpp reads them: a window from `attention.sliding_window`
/// (none, or 0, means every layer is global), the pattern from `attention.sliding_window_pattern`
/// (default 6: in each group of 6 layers the last is global), the local rope base from
/// `rope.freq_base_swa` (default 10,000).
fn sliding_window(
    f: &GgufFile,
    key: &dyn Fn(&str) -> String,
    n_layers: usize,
) -> Result<Option<SlidingWindow>> {
    let size = match f.get_u64(&key("attention.sliding_window")) {
        Ok(0) | Err(Error::MissingMetadata(_)) => return Ok(None),
        Ok(v) => v as usize,
        Err(e) => return Err(e),
    };
    let pattern_key = key("attention.sliding_window_pattern");
    let pattern = match f.get_u64(&pattern_key) {
        Ok(p) => p as usize,
        Err(Error::MissingMetadata(_)) => 6,
        // The per-layer array form: not read (Gemma 3 files carry the integer or nothing).
        Err(_) => {
            return Err(Error::NotApplied(format!(
                "metadata '{pattern_key}' as a list"
            )));
        }
    };
    Ok(Some(SlidingWindow {
        size,
        rope_theta: f.get_f32(&key("rope.freq_base_swa")).unwrap_or(10_000.0),
        local: (0..n_layers)
            .map(|l| pattern == 0 || l % pattern < pattern - 1)
            .collect(),
    }))
}
