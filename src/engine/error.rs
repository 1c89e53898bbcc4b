//! One error type for the engine. Every message is one line a user can act on: the CLI prints
//! it and exits non-zero, the page shows it and keeps the previous model and conversation.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a GGUF file: {0}")]
    NotGguf(String),
    #[error("damaged GGUF file: {0}")]
    BadGguf(String),
    #[error("unsupported architecture '{0}': axiscope runs llama, qwen2, qwen3 and gemma3 models")]
    UnsupportedArchitecture(String),
    #[error(
        "unsupported quantization {qtype} in tensor '{tensor}': axiscope runs F32, F16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K"
    )]
    UnsupportedQuant { tensor: String, qtype: String },
    /// Something in the file changes the computation in a way the engine does not apply.
    #[error("the model file's {0} changes the computation and axiscope does not apply it")]
    NotApplied(String),
    #[error("the model file has no tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {got:?}, expected {expected:?}")]
    BadShape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("the model file has no metadata '{0}'")]
    MissingMetadata(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(
        "the conversation needs {needed} tokens but the model's context holds {limit}: trim the oldest turns or start over"
    )]
    ContextOverflow { needed: usize, limit: usize },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("GPU: {0}")]
    Gpu(String),
    /// A sequence of a batched forward call failed (see `backend::forward_batch`).
    #[error("sequence {seq} of the batch: {source}")]
    InBatch { seq: usize, source: Box<Error> },
}

pub type Result<T> = std::result::Result<T, Error>;
