//! Weight matrices on the GPU and the WGSL block decoders.
//!
//! Layout choice: GGUF blocks are not 4-byte aligned (Q4_0 18 B, Q5_0 22 B, Q8_0 34 B,
//! Q6_K 210 B), and WGSL reads storage in 4-byte words. At upload each block is
//! repacked once into whole u32 words by inserting 2 zero bytes so that every field
//! starts on a word boundary; fields keep ggml's order and byte layout otherwise:
//!
//! | type | GGUF block | GPU block | repack |
//! |------|-----------|-----------|--------|
//! | Q4_0 | 18 B: d, qs\[16\] | 5 words | pad after `d` |
//! | Q4_1 | 20 B: d, m, qs\[16\] | 5 words | none |
//! | Q5_0 | 22 B: d, qh\[4\], qs\[16\] | 6 words | pad after `d` |
//! | Q8_0 | 34 B: d, qs\[32\] | 9 words | pad after `d` |
//! | Q4_K | 144 B: d, dmin, scales\[12\], qs\[128\] | 36 words | none |
//! | Q5_K | 176 B: d, dmin, scales\[12\], qh\[32\], qs\[128\] | 44 words | none |
//! | Q6_K | 210 B: ql\[128\], qh\[64\], scales\[16\], d | 53 words | pad after `d` (end) |
//! | F16 | 2 B per value | rows padded to 32 values | zero tail |
//! | F32 | 4 B per value | rows padded to 32 values | zero tail |
//!
//! The cost is at most 11 % more memory (Q4_0) and no per-load byte shuffling in the
//! shaders. A split layout (scales and quants in separate arrays) would coalesce better
//! on large GPUs but doubles the bindings; the padded one keeps one buffer per matrix.
//!
//! Each `quant_*.wgsl` defines `load8(row_base, g) -> W8`: the 8 dequantized weights
//! `W[row][8g .. 8g+8]`, where `row_base` is the row's first word. Every kernel that
//! reads weights (matvec, matmul, embedding) is generic over that one function.

use super::{GpuContext, Result, gpu_err};
use crate::engine::quant::QType;

/// What the GPU needs of a GGUF tensor type beyond the CPU engine's [`QType`]: names for
/// pipelines, the repacked row layout and the WGSL decoder.
impl QType {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q8_0 => "q8_0",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
        }
    }

    /// GGUF bytes of one row of `cols` values.
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_size() * self.type_size()
    }

    /// u32 words of one repacked row on the GPU.
    pub fn row_words(self, cols: usize) -> usize {
        match self {
            Self::F32 => cols.div_ceil(32) * 32,
            Self::F16 => cols.div_ceil(32) * 16,
            _ => cols / self.block_size() * self.block_words(),
        }
    }

    fn block_words(self) -> usize {
        self.type_size().div_ceil(4)
    }

    /// The WGSL decoder (`load8`) for this type.
    pub(crate) fn wgsl(self) -> &'static str {
        match self {
            Self::F32 => include_str!("quant_f32.wgsl"),
            Self::F16 => include_str!("quant_f16.wgsl"),
            Self::Q4_0 => include_str!("quant_q4_0.wgsl"),
            Self::Q4_1 => include_str!("quant_q4_1.wgsl"),
            Self::Q5_0 => include_str!("quant_q5_0.wgsl"),
            Self::Q8_0 => include_str!("quant_q8_0.wgsl"),
            Self::Q4K => include_str!("quant_q4_k.wgsl"),
            Self::Q5K => include_str!("quant_q5_k.wgsl"),
            Self::Q6K => include_str!("quant_q6_k.wgsl"),
        }
    }

    /// `kernel` (a WGSL file that calls `load8`) specialised for this type.
    pub(crate) fn shader(self, kernel: &str) -> String {
        format!(
            "{}\n{}\n{}",
            include_str!("quant_common.wgsl"),
            self.wgsl(),
            kernel
        )
    }

    /// Check that `bytes` is a `[rows][cols]` tensor of this type.
    fn check_shape(self, rows: usize, cols: usize, bytes: usize) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Err(gpu_err!("empty {} matrix {rows}x{cols}", self.name()));
        }
        if !cols.is_multiple_of(self.block_size()) {
            return Err(gpu_err!(
                "{} rows of {cols} values are not whole blocks of {}",
                self.name(),
                self.block_size()
            ));
        }
        let want = rows.checked_mul(self.row_bytes(cols));
        if want != Some(bytes) {
            return Err(gpu_err!(
                "{} matrix {rows}x{cols} needs {} bytes, got {bytes}",
                self.name(),
                want.map_or("too many".to_string(), |w| w.to_string())
            ));
        }
        Ok(())
    }

    /// Repack GGUF `bytes` of a `[rows][cols]` tensor into the GPU layout (module doc).
    pub fn repack(self, rows: usize, cols: usize, bytes: &[u8]) -> Result<Vec<u32>> {
        self.check_shape(rows, cols, bytes.len())?;
        let row_words = self.row_words(cols);
        let mut out = vec![0u32; rows * row_words];
        let row_bytes = self.row_bytes(cols);
        for (src, dst) in bytes
            .chunks_exact(row_bytes)
            .zip(out.chunks_exact_mut(row_words))
        {
            match self {
                Self::F32 | Self::F16 | Self::Q4_1 | Self::Q4K | Self::Q5K => {
                    // Already word-aligned: copy, leaving the zero tail of F32/F16 rows.
                    let dst: &mut [u8] = bytemuck::cast_slice_mut(dst);
                    dst[..src.len()].copy_from_slice(src);
                }
                Self::Q4_0 | Self::Q5_0 | Self::Q8_0 => {
                    let (bb, bw) = (self.type_size(), self.block_words());
                    for (sb, db) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(bw)) {
                        let db: &mut [u8] = bytemuck::cast_slice_mut(db);
                        db[..2].copy_from_slice(&sb[..2]);
                        db[4..].copy_from_slice(&sb[2..]);
                    }
                }
                Self::Q6K => {
                    for (sb, db) in src.chunks_exact(210).zip(dst.chunks_exact_mut(53)) {
                        let db: &mut [u8] = bytemuck::cast_slice_mut(db);
                        db[..210].copy_from_slice(sb);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A `[rows][cols]` weight matrix on the GPU in the repacked layout. Clones share the buffer.
#[derive(Clone)]
pub struct GpuMatrix {
    pub buffer: wgpu::Buffer,
    pub qtype: QType,
    pub rows: usize,
    pub cols: usize,
}

impl GpuMatrix {
    /// Upload a GGUF tensor (`ne0 = cols` contiguous). Errors on bad sizes or when the
    /// matrix exceeds the device's storage-buffer limit.
    pub fn upload(
        ctx: &GpuContext,
        label: &str,
        qtype: QType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self> {
        let words = qtype.repack(rows, cols, bytes)?;
        let buffer = ctx.upload(label, &words)?;
        Ok(Self {
            buffer,
            qtype,
            rows,
            cols,
        })
    }

    pub fn row_words(&self) -> usize {
        self.qtype.row_words(self.cols)
    }

    /// One matrix of the rows of `parts` (GGUF bytes of `[rows_i][cols]` tensors of one type),
    /// one part after another: q, k and v as one product ([`Output::Qkv`](super::matmul::Output)).
    pub fn stack(
        ctx: &GpuContext,
        label: &str,
        qtype: QType,
        cols: usize,
        parts: &[(usize, &[u8])],
    ) -> Result<Self> {
        let rows = parts.iter().map(|p| p.0).sum();
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
        Self::upload(ctx, label, qtype, rows, cols, &bytes)
    }

    /// One matrix of two `[rows][cols]` tensors of one type interleaved four rows at a time
    /// (`a`'s rows 4b..4b+3, then `b`'s): gate and up as one product whose matrix-vector
    /// kernel finds a row's gate and up sums in one workgroup
    /// ([`Output::Gated`](super::matmul::Output)).
    pub fn interleave4(
        ctx: &GpuContext,
        label: &str,
        qtype: QType,
        rows: usize,
        cols: usize,
        a: &[u8],
        b: &[u8],
    ) -> Result<Self> {
        let rb = qtype.row_bytes(cols);
        if !rows.is_multiple_of(4) || a.len() != rows * rb || b.len() != rows * rb {
            return Err(gpu_err!(
                "{label}: two {rows}x{cols} {} matrices cannot be interleaved by four rows",
                qtype.name()
            ));
        }
        let bytes: Vec<u8> = a
            .chunks_exact(4 * rb)
            .zip(b.chunks_exact(4 * rb))
            .flat_map(|(x, y)| x.iter().chain(y).copied())
            .collect();
        Self::upload(ctx, label, qtype, 2 * rows, cols, &bytes)
    }
}
