//! A tiny but complete llama-architecture GGUF (2 layers, hidden 64, a byte-level vocabulary),
//! written with candle's GGUF writer: fast to parse thousands of times in robustness tests.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

pub const HIDDEN: usize = 64;
pub const LAYERS: usize = 2;

/// GPT-2's printable stand-in for each byte (written out independently of the engine's copy).
fn byte_token(b: u8) -> String {
    let printable =
        |c: u32| (33..=126).contains(&c) || (161..=172).contains(&c) || (174..=255).contains(&c);
    if printable(b as u32) {
        return char::from_u32(b as u32).unwrap().to_string();
    }
    let extra = (0..b as u32).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + extra).unwrap().to_string()
}

fn weights(rows: usize, cols: usize, dtype: GgmlDType, seed: usize) -> QTensor {
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
        .collect();
    QTensor::quantize(
        &Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap(),
        dtype,
    )
    .unwrap()
}

pub fn ones(n: usize) -> QTensor {
    QTensor::quantize(
        &Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap()
}

pub fn tiny_model() -> Vec<u8> {
    tiny_model_with("llama", Vec::new(), Vec::new())
}

/// The tiny model as architecture `arch` (its hyper-parameters under that name), with
/// `extra_md` added (replacing a key of the same name) and `extra_tensors` added.
pub fn tiny_model_with(
    arch: &str,
    extra_md: Vec<(String, Value)>,
    extra_tensors: Vec<(String, QTensor)>,
) -> Vec<u8> {
    let mut tokens: Vec<String> = (0..=255u8).map(byte_token).collect();
    tokens.extend(["hi", "<|im_start|>", "<|im_end|>"].map(String::from));
    let vocab = tokens.len();
    let types: Vec<Value> = (0..vocab)
        .map(|i| Value::I32(if i < 257 { 1 } else { 3 }))
        .collect();
    let h = arch;
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(h.into())),
        ("general.name".into(), Value::String("tiny".into())),
        (format!("{h}.block_count"), Value::U32(LAYERS as u32)),
        (format!("{h}.embedding_length"), Value::U32(HIDDEN as u32)),
        (format!("{h}.feed_forward_length"), Value::U32(128)),
        (format!("{h}.attention.head_count"), Value::U32(4)),
        (format!("{h}.attention.head_count_kv"), Value::U32(2)),
        (format!("{h}.context_length"), Value::U32(64)),
        (format!("{h}.rope.freq_base"), Value::F32(10000.0)),
        (
            format!("{h}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(vec![Value::String("h i".into())]),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(258)),
        (
            "tokenizer.chat_template".into(),
            Value::String("{{'<|im_start|>' + message['role'] + '\\n'}}".into()),
        ),
    ];
    let mut ts: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            weights(vocab, HIDDEN, GgmlDType::Q8_0, 0),
        ),
        ("output_norm.weight".into(), ones(HIDDEN)),
    ];
    for l in 0..LAYERS {
        let n = |s: &str| format!("blk.{l}.{s}");
        ts.push((n("attn_norm.weight"), ones(HIDDEN)));
        ts.push((n("ffn_norm.weight"), ones(HIDDEN)));
        ts.push((
            n("attn_q.weight"),
            weights(HIDDEN, HIDDEN, GgmlDType::Q4_1, 1),
        ));
        ts.push((n("attn_k.weight"), weights(32, HIDDEN, GgmlDType::Q4_1, 2)));
        ts.push((n("attn_v.weight"), weights(32, HIDDEN, GgmlDType::Q4_1, 3)));
        ts.push((
            n("attn_output.weight"),
            weights(HIDDEN, HIDDEN, GgmlDType::Q4_1, 4),
        ));
        ts.push((
            n("ffn_gate.weight"),
            weights(128, HIDDEN, GgmlDType::Q4_1, 5),
        ));
        ts.push((n("ffn_up.weight"), weights(128, HIDDEN, GgmlDType::Q4_1, 6)));
        ts.push((
            n("ffn_down.weight"),
            weights(HIDDEN, 128, GgmlDType::Q4_1, 7),
        ));
    }
    md.retain(|(k, _)| !extra_md.iter().any(|(e, _)| e == k));
    md.extend(extra_md);
    ts.extend(extra_tensors);
    let mut cur = std::io::Cursor::new(Vec::new());
    let mdr: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tsr: Vec<(&str, &QTensor)> = ts.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut cur, &mdr, &tsr).unwrap();
    cur.into_inner()
}
