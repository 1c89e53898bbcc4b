//! GGUF loading from bytes (the browser has no file system). candle's hardened reader parses the
//! header; the tensor data stays in the one byte buffer, which our kernels read in place.

use super::error::{Error, Result};
use super::quant::QType;
use candle_core::quantized::gguf_file::{Content, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Where one tensor's bytes lie in the file.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub qtype: QType,
    /// GGUF order reversed: `[rows, cols]` for a matrix, `cols` contiguous.
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

pub struct GgufFile {
    bytes: Arc<Vec<u8>>,
    pub metadata: HashMap<String, Value>,
    pub tensors: HashMap<String, TensorEntry>,
}

const MAGIC: &[u8; 4] = b"GGUF";

impl GgufFile {
    /// Parses the header and checks every tensor lies inside the file before anything is
    /// allocated for it: a truncated or hostile file fails here with a one-line reason.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < 24 || &bytes[..4] != MAGIC {
            let what = if bytes.len() < 4 {
                "file is too short".to_string()
            } else {
                format!("it starts with {:02x?}, not 'GGUF'", &bytes[..4])
            };
            return Err(Error::NotGguf(what));
        }
        check_alignment(&bytes)?;
        let content = Content::read(&mut std::io::Cursor::new(bytes.as_slice()))
            .map_err(|e| Error::BadGguf(candle_reason(e)))?;
        let data_start = content.tensor_data_offset as usize;
        let mut tensors = HashMap::with_capacity(content.tensor_infos.len());
        for (name, info) in &content.tensor_infos {
            let shape: Vec<usize> = info.shape.dims().to_vec();
            let qtype =
                QType::from_ggml(info.ggml_dtype).ok_or_else(|| Error::UnsupportedQuant {
                    tensor: name.clone(),
                    qtype: format!("{:?}", info.ggml_dtype),
                })?;
            let elems = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let cols = shape.last().copied().unwrap_or(1);
            let len = elems
                .filter(|_| cols % qtype.block_size() == 0)
                .and_then(|e| (e / qtype.block_size()).checked_mul(qtype.type_size()))
                .ok_or_else(|| {
                    Error::BadGguf(format!(
                        "tensor '{name}' has an impossible shape {shape:?} for {qtype:?}"
                    ))
                })?;
            let offset = data_start
                .checked_add(info.offset as usize)
                .filter(|o| o.checked_add(len).is_some_and(|end| end <= bytes.len()))
                .ok_or_else(|| Error::BadGguf(format!(
                    "tensor '{name}' needs {len} bytes at offset {}, beyond the end of the file ({} bytes): the file is truncated",
                    info.offset, bytes.len()
                )))?;
            tensors.insert(
                name.clone(),
                TensorEntry {
                    qtype,
                    shape,
                    offset,
                    len,
                },
            );
        }
        Ok(Self {
            bytes: Arc::new(bytes),
            metadata: content.metadata,
            tensors,
        })
    }

    pub fn bytes(&self) -> &Arc<Vec<u8>> {
        &self.bytes
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    /// The weight matrix `name`, checked to be `[rows][cols]` as the config says.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<&TensorEntry> {
        let t = self.tensor(name)?;
        if t.shape != [rows, cols] {
            return Err(Error::BadShape {
                name: name.into(),
                got: t.shape.clone(),
                expected: vec![rows, cols],
            });
        }
        Ok(t)
    }

    pub fn tensor_bytes(&self, t: &TensorEntry) -> &[u8] {
        &self.bytes[t.offset..t.offset + t.len]
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Error::BadGguf(format!("metadata '{key}' is not a string"))),
            None => Err(Error::MissingMetadata(key.to_string())),
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self
            .get(key)
            .ok_or_else(|| Error::MissingMetadata(key.to_string()))?;
        let n = match v {
            Value::U8(x) => Some(*x as u64),
            Value::U16(x) => Some(*x as u64),
            Value::U32(x) => Some(*x as u64),
            Value::U64(x) => Some(*x),
            Value::I32(x) => u64::try_from(*x).ok(),
            Value::I64(x) => u64::try_from(*x).ok(),
            _ => None,
        };
        n.ok_or_else(|| Error::BadGguf(format!("metadata '{key}' is not an unsigned integer")))
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self
            .get(key)
            .ok_or_else(|| Error::MissingMetadata(key.to_string()))?;
        v.to_f32()
            .or_else(|_| v.to_f64().map(|x| x as f32))
            .map_err(|_| Error::BadGguf(format!("metadata '{key}' is not a number")))
    }

    /// A string array (vocabulary, merges).
    pub fn get_strings(&self, key: &str) -> Result<Vec<&str>> {
        let arr = self.array(key)?;
        arr.iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(Error::BadGguf(format!(
                    "metadata '{key}' holds a non-string"
                ))),
            })
            .collect()
    }

    pub fn get_i64s(&self, key: &str) -> Result<Vec<i64>> {
        let arr = self.array(key)?;
        arr.iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x as i64),
                Value::U32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U8(x) => Ok(*x as i64),
                Value::I8(x) => Ok(*x as i64),
                _ => Err(Error::BadGguf(format!(
                    "metadata '{key}' holds a non-integer"
                ))),
            })
            .collect()
    }

    /// A number array (a SentencePiece vocabulary's scores).
    pub fn get_f32s(&self, key: &str) -> Result<Vec<f32>> {
        let arr = self.array(key)?;
        arr.iter()
            .map(|v| {
                v.to_f32()
                    .map_err(|_| Error::BadGguf(format!("metadata '{key}' holds a non-number")))
            })
            .collect()
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Error::BadGguf(format!("metadata '{key}' is not a boolean"))),
            None => Err(Error::MissingMetadata(key.to_string())),
        }
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        match self.get(key) {
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(Error::BadGguf(format!("metadata '{key}' is not an array"))),
            None => Err(Error::MissingMetadata(key.to_string())),
        }
    }
}

/// candle divides by `general.alignment` without checking it, so a file claiming 0 would
/// panic the reader: walk the metadata (no allocation) and refuse it first. Anything else
/// malformed is left to candle's reader, which reports it.
fn check_alignment(bytes: &[u8]) -> Result<()> {
    const KEY: &[u8] = b"general.alignment";
    let mut r = Walker { bytes, at: 4 };
    let Some(version) = r.u32() else {
        return Ok(());
    };
    let wide = version >= 2; // v1 used 32-bit lengths and counts
    let (Some(_tensors), Some(kvs)) = (r.len(wide), r.len(wide)) else {
        return Ok(());
    };
    for _ in 0..kvs {
        let Some(key_len) = r.len(wide) else {
            return Ok(());
        };
        let key_at = r.at;
        let (Some(_), Some(ty)) = (r.skip(key_len), r.u32()) else {
            return Ok(());
        };
        if &bytes[key_at..r.at - 4] == KEY {
            let zero = match ty {
                0 | 1 | 7 => r.bytes_at(1).map(|b| b == [0]),
                2 | 3 => r.bytes_at(2).map(|b| b == [0; 2]),
                4 | 5 => r.bytes_at(4).map(|b| b == [0; 4]),
                10 | 11 => r.bytes_at(8).map(|b| b == [0; 8]),
                _ => None,
            };
            if zero == Some(true) {
                return Err(Error::BadGguf("general.alignment is 0".into()));
            }
            return Ok(());
        }
        if r.value(ty, wide, 0).is_none() {
            return Ok(());
        }
    }
    Ok(())
}

/// A bounds-checked cursor over the header; `None` means the bytes ran out or made no sense.
struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Walker<'_> {
    fn bytes_at(&self, n: usize) -> Option<&[u8]> {
        self.bytes.get(self.at..self.at.checked_add(n)?)
    }
    fn skip(&mut self, n: u64) -> Option<()> {
        let n = usize::try_from(n).ok()?;
        self.bytes_at(n)?;
        self.at += n;
        Some(())
    }
    fn u32(&mut self) -> Option<u32> {
        let v = u32::from_le_bytes(self.bytes_at(4)?.try_into().ok()?);
        self.at += 4;
        Some(v)
    }
    fn len(&mut self, wide: bool) -> Option<u64> {
        if !wide {
            return self.u32().map(u64::from);
        }
        let v = u64::from_le_bytes(self.bytes_at(8)?.try_into().ok()?);
        self.at += 8;
        Some(v)
    }
    /// Skips one metadata value of type `ty`.
    fn value(&mut self, ty: u32, wide: bool, depth: usize) -> Option<()> {
        let fixed = |ty| match ty {
            0 | 1 | 7 => Some(1u64),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match ty {
            8 => {
                let n = self.len(wide)?;
                self.skip(n)
            }
            9 if depth < 64 => {
                let inner = self.u32()?;
                let n = self.len(wide)?;
                match fixed(inner) {
                    Some(size) => self.skip(n.checked_mul(size)?),
                    None => (0..n).try_for_each(|_| self.value(inner, wide, depth + 1)),
                }
            }
            _ => self.skip(fixed(ty)?),
        }
    }
}

/// The first line of candle's reason, without the backtrace it captures when RUST_BACKTRACE
/// is set: printing that would resolve symbols (a second and tens of MB per bad file).
fn candle_reason(e: candle_core::Error) -> String {
    let e = match e {
        candle_core::Error::WithBacktrace { inner, .. } => *inner,
        e => e,
    };
    e.to_string().lines().next().unwrap_or("").to_string()
}
