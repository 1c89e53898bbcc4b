//! Subcommands over the engine: inspect, tokenize, generate (with capping and steering from
//! a bundle); the method's own subcommands live in `science_cmds`.

use anyhow::{Context, Result};
use axiscope::engine::chat::{Message, Role};
use axiscope::engine::{GenerateOptions, Hooks, SamplerConfig, Session};
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::{BackendChoice, backend, load};
use crate::edits::{EditArgs, readback};

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// System prompt; without it the model's template decides (SmolLM2 injects its own).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long)]
    pub prompt: String,
    /// The prompt is already templated text (special tokens included); no chat template.
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// 0 is off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads; 0 is one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Record the residual stream at these layers' outputs while generating (`all`, or
    /// comma-separated indices); what it costs is what the benchmark measures.
    #[arg(long)]
    pub record_layers: Option<String>,
    /// Where the model runs: the CPU engine, or the GPU (Vulkan natively) through wgpu.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// JSON output; with --bundle it includes the reply's projection read back by the model
    /// without edits.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub edits: EditArgs,
}

/// `all` or `0,5,29` -> ascending layer indices, each below `n_layers`.
fn parse_layers(spec: &str, n_layers: usize) -> Result<Vec<usize>> {
    if spec.trim() == "all" {
        return Ok((0..n_layers).collect());
    }
    let mut layers = Vec::new();
    for part in spec.split(',') {
        let l: usize = part
            .trim()
            .parse()
            .with_context(|| format!("--record-layers: {part:?} is not a layer index or `all`"))?;
        anyhow::ensure!(
            l < n_layers,
            "--record-layers: layer {l} is out of range (the model has {n_layers})"
        );
        layers.push(l);
    }
    layers.sort_unstable();
    layers.dedup();
    Ok(layers)
}

pub fn inspect(path: &Path, as_json: bool) -> Result<()> {
    let m = load(path)?;
    let mut quants: BTreeMap<String, usize> = BTreeMap::new();
    for t in m.gguf.tensors.values() {
        *quants.entry(format!("{:?}", t.qtype)).or_default() += 1;
    }
    let default_system = match &m.template.kind {
        axiscope::engine::chat::TemplateKind::ChatMl { default_system, .. } => {
            default_system.clone()
        }
        _ => None,
    };
    let info = json!({
        "file": path.display().to_string(),
        "bytes": m.gguf.bytes().len(),
        "config": m.config,
        "tensors": m.gguf.tensors.len(),
        "quant_types": quants,
        "chat_template": m.template.name(),
        "default_system_prompt": default_system,
        "tokenizer_pre": m.gguf.get_str("tokenizer.ggml.pre").ok(),
        "stop_tokens": m.stop_tokens(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        let c = &m.config;
        println!(
            "{} ({:?}), {:.1} MB",
            c.name,
            c.architecture,
            m.gguf.bytes().len() as f64 / 1e6
        );
        println!(
            "  layers {}, hidden {}, ffn {}, heads {} (kv {}), head dim {}",
            c.n_layers, c.hidden, c.ffn, c.n_heads, c.n_kv_heads, c.head_dim
        );
        println!(
            "  vocab {}, context {}, rope theta {}, rms eps {}",
            c.vocab, c.context, c.rope_theta, c.rms_eps
        );
        println!(
            "  tied embeddings {}, qkv bias {}",
            c.tied_embeddings, c.qkv_bias
        );
        println!(
            "  tensors {}: {}",
            m.gguf.tensors.len(),
            quants
                .iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  chat template {}, default system prompt {:?}",
            m.template.name(),
            default_system
        );
    }
    Ok(())
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    let m = load(&a.model)?;
    let (bundle, edits, about) = a.edits.resolve(&m)?;
    let mut msgs = Vec::new();
    let prompt = if a.raw {
        if bundle.is_some() {
            anyhow::bail!(
                "--raw text has no chat turns to project or edit by: drop --raw or --bundle"
            );
        }
        m.tokenizer.encode(&a.prompt)?
    } else {
        if let Some(s) = &a.system {
            msgs.push(Message::new(Role::System, s.clone()));
        }
        msgs.push(Message::new(Role::User, a.prompt.clone()));
        m.render(&msgs, true)?.ids
    };
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repeat_penalty: a.repeat_penalty,
            seed: a.seed,
            ..SamplerConfig::default()
        },
        stop: m.stop_tokens(),
    };
    let mut hooks = match &a.record_layers {
        Some(spec) => Hooks::recording(parse_layers(spec, m.config.n_layers)?),
        None => Hooks::none(),
    };
    let mut session = Session::new(backend(&m, a.backend, a.threads)?);
    let stream = !a.json;
    let mut out = std::io::stdout();
    hooks.edits = edits;
    let g = session.generate(&m.tokenizer, &prompt, &opts, &mut hooks, &mut |_, piece| {
        if stream {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
        true
    })?;
    // "Showing capped text fairly" (docs/method.md): the reply as the unedited model reads it.
    let projection = match &bundle {
        Some(b) if !g.text.trim().is_empty() => {
            msgs.push(Message::new(Role::Assistant, g.text.clone()));
            readback(&m, &mut session, &msgs, b, b.analysis_layer)?.map(|p| (b.analysis_layer, p))
        }
        _ => None,
    };
    if a.json {
        let mut v = json!({
            "text": g.text,
            "tokens": g.tokens,
            "prompt_tokens": g.prompt_tokens,
            "prefill_tok_s": g.prefill_tok_s(),
            "decode_tok_s": g.decode_tok_s(),
            "stop": g.stop,
            "backend": session.backend.describe(),
            "recorded_layers": hooks.recording.layers.len(),
            "recorded_tokens": hooks.recording.n_tokens(),
        });
        if let Some(b) = &bundle {
            v["edits"] = json!(about);
            v["layer"] = json!(b.analysis_layer);
            v["projection_unsteered"] = json!(projection.map(|p| p.1));
            v["default_projection"] = json!(b.vectors.default_projection(b.analysis_layer));
        }
        println!("{v}");
    } else {
        println!();
        if let Some((l, p)) = projection {
            eprintln!("[projection at layer {l}, read back without edits: {p:.2}]");
        }
        eprintln!(
            "[{} prompt tokens, {:.1} tok/s prefill; {} generated, {:.1} tok/s decode; {}]",
            g.prompt_tokens,
            g.prefill_tok_s(),
            g.tokens.len(),
            g.decode_tok_s(),
            session.backend.describe()
        );
    }
    Ok(())
}
