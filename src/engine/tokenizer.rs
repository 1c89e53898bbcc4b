//! The tokenizer built from the GGUF's own vocabulary (our models ship no tokenizer.json), of
//! either kind llama.cpp reads: byte-level BPE with merges (`gpt2`: SmolLM2, Qwen, Llama 3),
//! pre-tokenized by llama.cpp's per-model regexes selected by `tokenizer.ggml.pre`; or
//! SentencePiece-style pieces with scores (`llama`: Gemma; see `spm.rs`). Control and
//! user-defined tokens are matched in the text as specials.

use super::error::{Error, Result};
use super::gguf::GgufFile;
use super::spm::{self, Spm};
use std::collections::HashMap;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2` / `LLAMA3` splitting regexes (digits 1 or 1-3 at a time).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// A token's `start..end` byte offsets in the text it was encoded from.
pub type ByteRange = (usize, usize);

pub struct Tokenizer {
    kind: Kind,
    tokens: Vec<String>,
    special: Vec<bool>,
    ids: HashMap<String, u32>,
    pub eos: Option<u32>,
    pub bos: Option<u32>,
}

enum Kind {
    Bpe {
        inner: Box<tokenizers::Tokenizer>,
        /// The byte each byte-level character stands for (GPT-2's printable byte mapping).
        char_to_byte: HashMap<char, u8>,
    },
    Spm {
        spm: Box<Spm>,
        /// Special tokens, longest first: llama.cpp splits them out of the text in this order.
        specials: Vec<u32>,
        space_prefix: bool,
        byte: Vec<bool>,
    },
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_chars() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut map = HashMap::new();
    let mut extra = 0;
    for b in 0u32..256 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            printable.push(b);
            255 + extra
        };
        map.insert(char::from_u32(c).expect("valid code point"), b as u8);
    }
    map
}

impl Tokenizer {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let model = f.get_str("tokenizer.ggml.model")?;
        let tokens: Vec<String> = f
            .get_strings("tokenizer.ggml.tokens")?
            .into_iter()
            .map(String::from)
            .collect();
        let types = f.get_i64s("tokenizer.ggml.token_type").unwrap_or_default();
        let special: Vec<bool> = (0..tokens.len())
            .map(|i| {
                matches!(
                    types.get(i),
                    Some(&TOKEN_TYPE_CONTROL) | Some(&TOKEN_TYPE_USER_DEFINED)
                )
            })
            .collect();
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let id = |key: &str| {
            f.get_u64(key)
                .ok()
                .map(|v| v as u32)
                .filter(|&v| (v as usize) < tokens.len())
        };
        let kind = match model {
            "gpt2" => Self::bpe(f, &tokens, &special, &ids)?,
            "llama" => {
                let scores = f.get_f32s("tokenizer.ggml.scores")?;
                if scores.len() != tokens.len() {
                    return Err(Error::Tokenizer(format!(
                        "{} scores for {} tokens",
                        scores.len(),
                        tokens.len()
                    )));
                }
                let byte: Vec<bool> = (0..tokens.len())
                    .map(|i| types.get(i) == Some(&TOKEN_TYPE_BYTE))
                    .collect();
                let mut specials: Vec<u32> = (0..tokens.len() as u32)
                    .filter(|&i| special[i as usize] && !tokens[i as usize].is_empty())
                    .collect();
                specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));
                Kind::Spm {
                    spm: Box::new(Spm::new(
                        &tokens,
                        scores,
                        &byte,
                        id("tokenizer.ggml.unknown_token_id"),
                    )),
                    specials,
                    // llama.cpp's default when the file does not say.
                    space_prefix: f
                        .get_bool("tokenizer.ggml.add_space_prefix")
                        .unwrap_or(true),
                    byte,
                }
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer type '{other}' is not supported (axiscope reads byte-level BPE, \
                     'gpt2', and SentencePiece-style, 'llama')"
                )));
            }
        };
        Ok(Self {
            eos: id("tokenizer.ggml.eos_token_id"),
            bos: id("tokenizer.ggml.bos_token_id"),
            kind,
            tokens,
            special,
            ids,
        })
    }

    fn bpe(
        f: &GgufFile,
        tokens: &[String],
        special: &[bool],
        ids: &HashMap<String, u32>,
    ) -> Result<Kind> {
        let merges: Vec<(String, String)> = f
            .get_strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("malformed merge '{m}'")))
            })
            .collect::<Result<_>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(
                ids.iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre = f.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let byte_level =
            |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, use_regex));
        let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
            Ok(PreTokenizerWrapper::Split(
                Split::new(
                    SplitPattern::Regex(pattern.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(tok_err)?,
            ))
        };
        let steps = match pre {
            "smollm" => vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level(true),
            ],
            "qwen2" => vec![split(QWEN2_PATTERN)?, byte_level(false)],
            "llama-bpe" | "llama3" => vec![split(LLAMA3_PATTERN)?, byte_level(false)],
            "default" | "gpt2" | "gpt-2" => vec![byte_level(true)],
            other => {
                return Err(Error::Tokenizer(format!(
                    "pre-tokenizer '{other}' is not supported"
                )));
            }
        };
        inner.with_pre_tokenizer(Some(Sequence::new(steps)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(special)
            .filter(|(_, s)| **s)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(tok_err)?;
        Ok(Kind::Bpe {
            inner: Box::new(inner),
            char_to_byte: byte_chars(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids, special tokens in the text recognised, no BOS added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_with_offsets(text)?.0)
    }

    /// Token ids and each token's byte range in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<ByteRange>)> {
        match &self.kind {
            Kind::Bpe { inner, .. } => {
                let enc = inner.encode(text, false).map_err(tok_err)?;
                Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
            }
            Kind::Spm {
                spm,
                specials,
                space_prefix,
                ..
            } => {
                let (mut ids, mut offsets) = (Vec::new(), Vec::new());
                let mut prev_special = true;
                for frag in self.split_specials(text, specials) {
                    match frag {
                        Fragment::Text(a, b) => {
                            let prefix = *space_prefix && prev_special;
                            spm.encode(&self.ids, &text[a..b], a, prefix, &mut ids, &mut offsets);
                            prev_special = false;
                        }
                        Fragment::Token(id, a, b) => {
                            ids.push(id);
                            offsets.push((a, b));
                            prev_special = true;
                        }
                    }
                }
                Ok((ids, offsets))
            }
        }
    }

    /// llama.cpp's partition of a text by its special tokens: each token in `specials` order
    /// (longest first) is split out of whatever text is still unsplit.
    fn split_specials(&self, text: &str, specials: &[u32]) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text(0, text.len())];
        for &id in specials {
            let needle = self.tokens[id as usize].as_str();
            if !text.contains(needle) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len());
            for frag in frags {
                let Fragment::Text(mut a, b) = frag else {
                    next.push(frag);
                    continue;
                };
                while let Some(at) = text[a..b].find(needle) {
                    if at > 0 {
                        next.push(Fragment::Text(a, a + at));
                    }
                    next.push(Fragment::Token(id, a + at, a + at + needle.len()));
                    a += at + needle.len();
                }
                if a < b {
                    next.push(Fragment::Text(a, b));
                }
            }
            frags = next;
        }
        frags
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// The raw bytes a token stands for (a special token's own text).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(s) = self.token_str(id) else {
            return Vec::new();
        };
        match &self.kind {
            _ if self.is_special(id) => s.as_bytes().to_vec(),
            Kind::Bpe { char_to_byte, .. } => s
                .chars()
                .map(|c| char_to_byte.get(&c).copied().unwrap_or(b'?'))
                .collect(),
            Kind::Spm { byte, .. } => match spm::parse_byte_token(s) {
                Some(b) if byte[id as usize] => vec![b],
                _ => spm::unescape(s).into_bytes(),
            },
        }
    }

    /// Text of a token sequence; invalid UTF-8 (a split multi-byte character) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.token_bytes(i)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A stretch of text to encode, or a special token found in it (byte ranges of the text).
enum Fragment {
    Text(usize, usize),
    Token(u32, usize, usize),
}

/// Turns a token stream into text pieces without splitting multi-byte characters.
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// The text that `id` completes (possibly empty while a character is incomplete).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend(tok.token_bytes(id));
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_string();
                self.pending.clear();
                s
            }
            Err(e) if e.error_len().is_none() => {
                // Incomplete character at the end: emit the valid prefix, keep the rest.
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                s
            }
        }
    }
}
