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

impl Error {
    /// Whether the GPU failed (itself, or for one sequence of a batch): the browser then
    /// moves the model to the CPU engine.
    pub fn is_gpu(&self) -> bool {
        match self {
            Error::Gpu(_) => true,
            Error::InBatch { source, .. } => source.is_gpu(),
            _ => false,
        }
    }

    /// Whether the tokens did not fit the context (for one sequence of a batch, too).
    pub fn is_context_overflow(&self) -> bool {
        match self {
            Error::ContextOverflow { .. } => true,
            Error::InBatch { source, .. } => source.is_context_overflow(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_fault_is_told_apart_inside_a_batch_too() {
        let gpu = || Error::Gpu("reading back a buffer failed".into());
        assert!(gpu().is_gpu());
        let batched = Error::InBatch {
            seq: 0,
            source: Box::new(gpu()),
        };
        assert!(batched.is_gpu());
        // Its text names the sequence, so no test of the text could tell it is the GPU's.
        assert!(!batched.to_string().starts_with("GPU:"));
        assert!(!Error::Invalid("GPU: in a message".into()).is_gpu());
    }
}
