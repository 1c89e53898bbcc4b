//! Q4_1 weights with eight rows interleaved, for the CPU matmul (issue 14).
//!
//! In the file's layout a block's 32 weights fill one vector register, so a kernel ends each
//! block with eight partial sums per (row, token) and pays a conversion, a scale and an add on
//! each, then reduces across lanes at the end. Here each 32-byte load holds four bytes (eight
//! weights) of the same block of eight rows: one integer multiply-add against four activation
//! bytes broadcast serves all eight rows, the block's whole integer sum lands in one lane per
//! row, and the float work is done once per (block, row, token) in one vector operation. The
//! float steps are then exactly [`super::legacy::dot_q4_1`]'s (scale times scale, times the
//! block's sum, added in block order; the mins summed apart), so the packed kernels equal the
//! scalar kernel bit for bit, whatever the number of tokens.
//!
//! A group of eight rows keeps the bytes it had (8 x 20 per block), block after block:
//! the eight rows' f16 scales, their eight f16 mins, then four chunks of 32 bytes where chunk
//! `c` holds bytes `4c..4c + 4` of each row's 16 nibble bytes, row after row.

use super::act::BlockQ8_1;
use super::{Acts, QK, QType};

/// Rows per interleaved group.
pub const GROUP: usize = 8;
/// Bytes of one block of a group.
pub const GROUP_BLOCK: usize = GROUP * 20;

/// Whether this machine runs packed Q4_1 (AVX2 with FMA and F16C, or wasm's simd128);
/// elsewhere matrices keep the file's layout and its kernels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::has_packed();
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return true;
    #[allow(unreachable_code)]
    false
}

/// The interleaved copy of `rows` Q4_1 rows of `cols` weights (the file's layout); `None`
/// where the rows do not fill whole groups.
pub fn pack_q4_1(bytes: &[u8], rows: usize, cols: usize) -> Option<Vec<u8>> {
    let blocks = cols / QK;
    let rb = blocks * QType::Q4_1.type_size();
    if !rows.is_multiple_of(GROUP) || !cols.is_multiple_of(QK) || bytes.len() != rows * rb {
        return None;
    }
    let mut out = vec![0u8; bytes.len()];
    for (src, dst) in bytes
        .chunks_exact(GROUP * rb)
        .zip(out.chunks_exact_mut(GROUP * rb))
    {
        for (b, dst) in dst.chunks_exact_mut(GROUP_BLOCK).enumerate() {
            for r in 0..GROUP {
                let blk = &src[r * rb + b * 20..][..20];
                dst[2 * r..2 * r + 2].copy_from_slice(&blk[0..2]);
                dst[16 + 2 * r..18 + 2 * r].copy_from_slice(&blk[2..4]);
                for c in 0..4 {
                    let at = 32 + 32 * c + 4 * r;
                    dst[at..at + 4].copy_from_slice(&blk[4 + 4 * c..8 + 4 * c]);
                }
            }
        }
    }
    Some(out)
}

/// Tokens per tile: each block of a group is unpacked once for them.
const TOKENS: usize = 4;

/// `out[r * xs.len() + t]` = packed row `r` of `groups` (whole groups of [`GROUP`] rows of `rb`
/// bytes) dotted with `xs[t]`: [`super::legacy::dot_q4_1`]'s value, bit for bit. Tokens go in
/// tiles of [`TOKENS`], then 2 and 1.
///
/// # Panics
/// Where this machine has no packed kernel ([`available`]), or `xs` are not Q8_1 rows of the
/// weights' width.
pub fn dot_tiles_q4_1(groups: &[u8], rb: usize, xs: &[Acts], out: &mut [f32]) {
    assert!(available(), "packed Q4_1 without its kernel");
    let n = xs.len();
    assert!(groups.len().is_multiple_of(GROUP * rb) && out.len() * rb == groups.len() * n);
    let xs: Vec<&[BlockQ8_1]> = xs
        .iter()
        .map(|x| match x {
            Acts::Q8_1(x) if x.len() * 20 == rb => &x[..],
            _ => panic!("packed Q4_1 takes Q8_1 rows of its width"),
        })
        .collect();
    for (g, out) in groups
        .chunks_exact(GROUP * rb)
        .zip(out.chunks_exact_mut(GROUP * n))
    {
        let mut t = 0;
        while t < n {
            let xs = &xs[t..];
            t += match n - t {
                TOKENS.. => put(out, n, t, tile::<TOKENS>(g, xs)),
                2.. => put(out, n, t, tile::<2>(g, xs)),
                _ => put(out, n, t, tile::<1>(g, xs)),
            };
        }
    }
}

/// One group's rows (`g`) dotted with the first T rows of `xs`, as `[token][row]`.
fn tile<const T: usize>(g: &[u8], xs: &[&[BlockQ8_1]]) -> [[f32; GROUP]; T] {
    let blocks = g.len() / GROUP_BLOCK;
    assert!(xs[..T].iter().all(|x| x.len() == blocks));
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ))]
    // SAFETY: the kernel's instructions are there (the caller asserted `available`), `g` holds
    // `blocks` group blocks and each of the T activation rows as many blocks (asserted).
    unsafe {
        super::simd::q4_1_group::<T>(g.as_ptr(), blocks, xs)
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )))]
    unreachable!("packed rows on a target without the kernel")
}

/// Writes a tile (`v[t][r]`) at `out[r * n + t0 + t]`; returns its tokens.
fn put<const T: usize>(out: &mut [f32], n: usize, t0: usize, v: [[f32; GROUP]; T]) -> usize {
    for (t, rows) in v.iter().enumerate() {
        for (r, &x) in rows.iter().enumerate() {
            out[r * n + t0 + t] = x;
        }
    }
    T
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_that_do_not_fill_groups_stay_unpacked() {
        let bytes = vec![7u8; 12 * 40];
        assert!(pack_q4_1(&bytes, 12, 2 * QK).is_none());
        assert!(pack_q4_1(&bytes[..8 * 40 - 1], 8, 2 * QK).is_none());
        assert!(pack_q4_1(&bytes[..8 * 40], 8, 2 * QK).is_some());
    }
}
