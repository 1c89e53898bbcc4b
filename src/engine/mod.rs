//! The inference engine: GGUF, tokenizer, chat template, forward pass with hooks, sampling.
//! Free of UI code; the science and the web app drive it through [`backend::Backend`].

pub mod backend;
pub mod chat;
pub mod clock;
pub mod config;
pub mod error;
pub mod exp;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod hooks;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod pool;
pub mod quant;
pub mod sampler;
pub mod speed;
pub mod spm;
pub mod threads;
pub mod tokenizer;

pub use backend::Backend;
pub use config::ModelConfig;
pub use error::{Error, Result};
pub use generate::{GenerateOptions, Generation, OnToken, Session, StopReason};
pub use gguf::GgufFile;
pub use hooks::{Edit, EditOp, Hooks, Recording};
pub use model::CpuModel;
pub use sampler::SamplerConfig;

use chat::{ChatTemplate, Message, Rendered};
use tokenizer::Tokenizer;

/// A loaded model file: what every backend and the science need besides the weights' math.
pub struct Model {
    pub gguf: GgufFile,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

impl Model {
    /// Parses and checks a GGUF file held in memory. Fails with a one-line reason for a foreign
    /// or damaged file, an unsupported architecture, quantization or tokenizer.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let gguf = GgufFile::from_bytes(bytes)?;
        let config = ModelConfig::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        if tokenizer.vocab_size() != config.vocab {
            return Err(Error::BadGguf(format!(
                "the vocabulary has {} tokens but the embedding matrix {} rows",
                tokenizer.vocab_size(),
                config.vocab
            )));
        }
        let template = ChatTemplate::from_gguf(&gguf);
        Ok(Self {
            gguf,
            config,
            tokenizer,
            template,
        })
    }

    pub fn cpu_backend(&self, threads: usize) -> Result<CpuModel> {
        CpuModel::load(&self.gguf, threads)
    }

    /// Tokens that end an assistant reply: the template's end of turn and the end-of-text token.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut stop: Vec<u32> = self
            .tokenizer
            .token_id(self.template.end_of_turn())
            .into_iter()
            .collect();
        stop.extend(self.tokenizer.eos.filter(|e| !stop.contains(e)));
        stop
    }

    /// The chat rendered for a reply from the assistant, every token labelled.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Rendered> {
        self.template
            .tokenize(&self.tokenizer, messages, add_generation_prompt)
    }
}
