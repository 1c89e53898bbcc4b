//! What the multi-row kernels (x86.rs, wasm.rs) share: running a matrix's rows in groups, and
//! reading a block's f16 scale through a raw pointer.

/// Rows a multi-row kernel computes together: each activation block is loaded (and widened)
/// once for all of them, and their independent loads keep more memory requests in flight: while
/// decoding, the weights stream from memory and that, not arithmetic, is the limit.
const ROWS: usize = 4;

/// `out[i] = rows[i] . x` for consecutive rows of `rb` bytes, `ROWS` at a time through
/// `group`, the rest one by one through the same kernel (`N = 1`): every row's arithmetic is the
/// same, in the same order, whichever way it goes, so the results are bit-identical.
pub fn by_groups(
    rows: &[u8],
    rb: usize,
    out: &mut [f32],
    group: impl Fn(*const u8) -> [f32; ROWS],
    single: impl Fn(*const u8) -> [f32; 1],
) {
    assert_eq!(rows.len(), rb * out.len());
    let mut base = rows.as_ptr();
    let mut groups = out.chunks_exact_mut(ROWS);
    for o in &mut groups {
        o.copy_from_slice(&group(base));
        // SAFETY: still inside `rows` (asserted above), or one past its end after the last.
        base = unsafe { base.add(ROWS * rb) };
    }
    for o in groups.into_remainder() {
        *o = single(base)[0];
        // SAFETY: as above.
        base = unsafe { base.add(rb) };
    }
}

/// The f16 at `p` (little-endian) as f32, through the shared table.
#[inline(always)]
pub unsafe fn f16_ptr(p: *const u8) -> f32 {
    // SAFETY: the caller points at two readable bytes.
    let bits = unsafe { u16::from_le_bytes([*p, *p.add(1)]) };
    super::F16_TO_F32[bits as usize]
}
