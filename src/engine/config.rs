//! Model hyper-parameters, read from GGUF metadata.

use super::error::{Error, Result};
use super::gguf::GgufFile;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
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
}

impl ModelConfig {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch_name = f.get_str("general.architecture")?;
        let architecture = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
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
        let sane = |v: usize, max: usize| v > 0 && v <= max;
        if !(sane(n_layers, 512)
            && sane(hidden, 1 << 16)
            && sane(ffn, 1 << 18)
            && sane(n_heads, 1024)
            && sane(n_kv_heads, n_heads)
            && hidden % n_heads == 0
            && n_heads % n_kv_heads == 0
            && sane(context, 1 << 22))
        {
            return Err(Error::BadGguf(format!(
                "inconsistent hyper-parameters: {n_layers} layers, hidden {hidden}, ffn {ffn}, {n_heads} heads, {n_kv_heads} kv heads, context {context}"
            )));
        }
        let head_dim = hidden / n_heads;
        if head_dim % 2 != 0 {
            return Err(Error::BadGguf(format!("head dimension {head_dim} is odd")));
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
        Ok(Self {
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
                Architecture::Qwen2 => RopeStyle::Neox,
            },
            rms_eps,
            tied_embeddings: !f.tensors.contains_key("output.weight"),
            qkv_bias: f.tensors.contains_key("blk.0.attn_q.bias"),
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}
