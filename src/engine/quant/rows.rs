//! What the multi-row kernels (x86.rs, wasm.rs) share: running a matrix's rows against one or
//! more activation rows in tiles, and reading a block's f16 scale through a raw pointer.
//!
//! A tile is R weight rows by T activation rows. Decoding one token uses tiles of `ROWS` x 1:
//! each activation block is loaded once for four weight rows, and their independent loads keep
//! more memory requests in flight (the weights stream from memory, and that is the limit).
//! Several tokens (a prompt, or a batch of sequences each at its next token) use tiles of 1 x
//! `TOKENS` (then 4, 2, 1): each weight block is loaded and unpacked once for all of them,
//! which is most of a 4-bit kernel's work. Once that is shared, the per-token scalar work
//! (scale times scale, Q4_1's min term) is what is left beside the integer dot products, so the
//! formats with one scale per activation block take the `TOKENS` rows' scales gathered side by
//! side (`Gathered`, once per product) and do it for all of them in one vector operation.
//! Every (row, token) pair runs the same operations in the same order whichever tile computes
//! it, so the results are bit-identical to one pair alone.

use super::{Acts, QType};

/// Weight rows per tile when there is one activation row.
const ROWS: usize = 4;
/// Activation rows per tile when there are several (then 4, 2 and 1 for the rest): eight
/// accumulators and the unpacked weights fit the 16 AVX2 registers; on one core, batches of 8
/// decoded 130 tok/s with 8, 123 with 4 and 111 with 2 x 4 tiles (issue 14's measurements).
pub(super) const TOKENS: usize = 8;

/// One block's scales of [`TOKENS`] activation rows side by side (Q8_1's sums in `s`; zeros
/// for Q8_0): a tile kernel scales a weight block for all the rows with one vector product
/// instead of one scalar product per row.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub struct TokenScales {
    pub d: [f32; TOKENS],
    pub s: [f32; TOKENS],
}

/// The [`TokenScales`] of each group of [`TOKENS`] activation rows, gathered once per matrix
/// product and shared by all its row chunks; a group's entry is None where the rows' form has
/// no single scale per block (F32, F16, Q8_K).
#[derive(Default)]
pub struct Gathered(Vec<Option<Vec<TokenScales>>>);

impl Gathered {
    pub fn of(xs: &[Acts]) -> Self {
        Self(xs.chunks_exact(TOKENS).map(gather).collect())
    }

    /// The scales of rows `TOKENS * i ..`.
    pub fn group(&self, i: usize) -> Option<&[TokenScales]> {
        self.0.get(i)?.as_deref()
    }
}

/// Each block's [`TokenScales`] across `xs` ([`TOKENS`] rows of Q8_0 or Q8_1 blocks).
fn gather(xs: &[Acts]) -> Option<Vec<TokenScales>> {
    let zero = TokenScales {
        d: [0.0; TOKENS],
        s: [0.0; TOKENS],
    };
    let mut g = vec![zero; xs[0].blocks()];
    for (t, x) in xs.iter().enumerate() {
        match x {
            Acts::Q8_0(x) => g.iter_mut().zip(x).for_each(|(g, b)| g.d[t] = b.d),
            Acts::Q8_1(x) => g
                .iter_mut()
                .zip(x)
                .for_each(|(g, b)| (g.d[t], g.s[t]) = (b.d, b.s)),
            _ => return None,
        }
    }
    Some(g)
}

/// A format's tile kernel: `out[r][t]` = row `r` (of `rb` bytes from `base`) dotted with `xs[t]`.
pub trait Tile {
    /// # Safety
    /// `base` must point at R readable rows; `xs` holds T activation rows of this kernel's
    /// form and length; the CPU has the kernel's instructions.
    unsafe fn tile<const R: usize, const T: usize>(
        &self,
        base: *const u8,
        rb: usize,
        xs: &[Acts],
    ) -> [[f32; T]; R];

    /// The row at `base` dotted with [`TOKENS`] activation rows whose block scales `g` holds
    /// ([`Gathered`]): `tile::<1, TOKENS>`'s results, bit for bit, by a kernel that
    /// scales each weight block for all the rows at once (the plain tile where the format has
    /// no such kernel).
    ///
    /// # Safety
    /// As [`Tile::tile`], with `g` gathered from `xs`.
    unsafe fn tile_gathered(
        &self,
        base: *const u8,
        rb: usize,
        xs: &[Acts],
        _g: &[TokenScales],
    ) -> [f32; TOKENS] {
        // SAFETY: the caller's promise.
        unsafe { self.tile::<1, TOKENS>(base, rb, xs)[0] }
    }
}

/// Declares the [`Tile`] of each format with a fast kernel, running the kernel file's (x86.rs,
/// wasm.rs) `q4_1_tile`, `q5_0_tile`, `q8_0_tile`, `q45k_tile` (Q4_K and Q5_K, told which by a
/// flag) and `q6k_tile` on the activation rows as [`Acts`] hands them over, and for the formats
/// whose activations have one scale per block, `q4_1_tile8`, `q5_0_tile8` and `q8_0_tile8` on
/// gathered scales.
macro_rules! tile_kernels {
    () => {
        tile_kernels!(Q4_1, q4_1_tile, q8_1_rows; q4_1_tile8);
        tile_kernels!(Q5_0, q5_0_tile, q8_0_rows; q5_0_tile8);
        tile_kernels!(Q8_0, q8_0_tile, q8_0_rows; q8_0_tile8);
        tile_kernels!(Q4K, q45k_tile, q8k_rows, false);
        tile_kernels!(Q5K, q45k_tile, q8k_rows, true);
        tile_kernels!(Q6K, q6k_tile, q8k_rows);
    };
    ($name:ident, $kernel:ident, $rows:ident $(, $flag:expr)? $(; $gathered:ident)?) => {
        pub(in $crate::engine::quant) struct $name;

        impl $crate::engine::quant::rows::Tile for $name {
            unsafe fn tile<const R: usize, const T: usize>(
                &self,
                base: *const u8,
                rb: usize,
                xs: &[$crate::engine::quant::Acts],
            ) -> [[f32; T]; R] {
                // SAFETY: the caller's promise (Tile::tile).
                unsafe { $kernel(base, rb, $crate::engine::quant::Acts::$rows(xs) $(, $flag)?) }
            }
            $(
            unsafe fn tile_gathered(
                &self,
                base: *const u8,
                _rb: usize,
                xs: &[$crate::engine::quant::Acts],
                g: &[$crate::engine::quant::rows::TokenScales],
            ) -> [f32; $crate::engine::quant::rows::TOKENS] {
                let xs = $crate::engine::quant::Acts::$rows(xs);
                // The kernel reads g.len() blocks of each row unchecked.
                assert!(xs.iter().all(|x| x.len() == g.len()));
                // SAFETY: the caller's promise (Tile::tile_gathered), and the rows' lengths.
                unsafe { $gathered(base, xs, g) }
            }
            )?
        }
    };
}
pub(super) use tile_kernels;

/// `out[r * xs.len() + t]` = row `r` of `rows` (of `rb` bytes) dotted with `xs[t]`, in tiles of
/// this target's kernels (`simd`: x86.rs or wasm.rs), where it has one for `qtype`; false where
/// it has none.
///
/// # Safety
/// The CPU has the kernels' instructions (x86: AVX2 and FMA); every `xs[t]` was quantized for
/// `qtype` (`Acts::quantize`) from a row as wide as the weight rows; `g` was gathered from `xs`.
pub unsafe fn dot_tiles(
    qtype: QType,
    rows: &[u8],
    rb: usize,
    xs: &[Acts],
    g: &Gathered,
    out: &mut [f32],
) -> bool {
    use super::simd::{Q4_1, Q4K, Q5_0, Q5K, Q6K, Q8_0};
    // SAFETY: the caller's promise.
    unsafe {
        match qtype {
            QType::Q4_1 => by_tiles(rows, rb, xs, g, out, &Q4_1),
            QType::Q5_0 => by_tiles(rows, rb, xs, g, out, &Q5_0),
            QType::Q8_0 => by_tiles(rows, rb, xs, g, out, &Q8_0),
            QType::Q4K => by_tiles(rows, rb, xs, g, out, &Q4K),
            QType::Q5K => by_tiles(rows, rb, xs, g, out, &Q5K),
            QType::Q6K => by_tiles(rows, rb, xs, g, out, &Q6K),
            _ => return false,
        }
    }
    true
}

/// `out[r * xs.len() + t]` = row `r` of `rows` (consecutive rows of `rb` bytes) dotted with
/// `xs[t]`, in tiles through `k`, the rest one pair at a time through the same kernel.
///
/// # Safety
/// As [`Tile::tile`] for every row of `rows` and every `xs[t]`; `g` was gathered from `xs`.
pub unsafe fn by_tiles(
    rows: &[u8],
    rb: usize,
    xs: &[Acts],
    g: &Gathered,
    out: &mut [f32],
    k: &impl Tile,
) {
    let n_tok = xs.len();
    assert_eq!(rows.len() * n_tok, rb * out.len());
    let base = rows.as_ptr();
    // SAFETY (all): every pointer below is the start of a row inside `rows` (asserted above).
    unsafe {
        if n_tok == 1 {
            let mut groups = out.chunks_exact_mut(ROWS);
            let mut r = 0;
            for o in &mut groups {
                let v = k.tile::<ROWS, 1>(base.add(r * rb), rb, xs);
                for (o, v) in o.iter_mut().zip(v) {
                    *o = v[0];
                }
                r += ROWS;
            }
            for o in groups.into_remainder() {
                *o = k.tile::<1, 1>(base.add(r * rb), rb, xs)[0][0];
                r += 1;
            }
            return;
        }
        for (r, per_tok) in out.chunks_exact_mut(n_tok).enumerate() {
            let row = base.add(r * rb);
            let mut t = 0;
            while t < n_tok {
                let (o, x) = (&mut per_tok[t..], &xs[t..]);
                t += match n_tok - t {
                    TOKENS.. => put(
                        o,
                        [match g.group(t / TOKENS) {
                            Some(g) => k.tile_gathered(row, rb, x, g),
                            None => k.tile::<1, TOKENS>(row, rb, x)[0],
                        }],
                    ),
                    4.. => put(o, k.tile::<1, 4>(row, rb, x)),
                    2.. => put(o, k.tile::<1, 2>(row, rb, x)),
                    _ => put(o, k.tile::<1, 1>(row, rb, x)),
                };
            }
        }
    }
}

/// Writes one row's tile results at the start of `out`; returns how many.
fn put<const T: usize>(out: &mut [f32], v: [[f32; T]; 1]) -> usize {
    out[..T].copy_from_slice(&v[0]);
    T
}

/// Block `b` of activation row `t`, unchecked: the 8-token kernels' hot loop reads eight rows
/// per block, and their bounds checks cost ~5 % of a batched decode natively.
///
/// # Safety
/// Every row of `xs` holds more than `b` blocks.
#[inline(always)]
pub unsafe fn block<'a, B>(xs: &[&'a [B]; TOKENS], t: usize, b: usize) -> &'a B {
    debug_assert!(b < xs[t].len());
    // SAFETY: the caller's promise.
    unsafe { &*xs[t].as_ptr().add(b) }
}

/// The f16 at `p` (little-endian) as f32, through the shared table.
#[inline(always)]
pub unsafe fn f16_ptr(p: *const u8) -> f32 {
    // SAFETY: the caller points at two readable bytes.
    let bits = unsafe { u16::from_le_bytes([*p, *p.add(1)]) };
    super::F16_TO_F32[bits as usize]
}
