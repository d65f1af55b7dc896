//! Blocked matrix transposition, for handing matrix products their operands in the layout
//! `gemm` reads fastest.
//!
//! A product whose two operands both run along the reduction axis (a weight gradient: output
//! gradient `[co, voxels]` times input `[c, voxels]` transposed) runs at about half the speed of
//! one whose right-hand operand runs along the output's columns, so the convolutions transpose
//! the smaller operand first — unless the result is thin: below 16 rows or columns gemm's
//! dot-product kernels, which read both operands along the reduction axis, are the faster ones
//! (8 × 8 results: about 90 GFLOP/s against 10 on one AVX-512 core).

use rayon::prelude::*;

/// Whether a product with an `m × n` result and a long reduction axis, both of whose operands
/// run along that axis, is faster with one operand transposed first.
pub(crate) fn transpose_pays(m: usize, n: usize) -> bool {
    m.min(n) >= 16
}

/// Side of the square tiles the transposition walks, so that both the rows read and the rows
/// written stay in cache.
const TILE: usize = 32;

/// Writes `src [rows, cols]` (rows `src_stride` apart) transposed into `dst [cols, rows]` (rows
/// `dst_stride` apart).
pub(crate) fn transpose_into(
    src: &[f32],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src.len() > (rows - 1) * src_stride + cols - 1
            && dst.len() > (cols - 1) * dst_stride + rows - 1,
        "transpose_into: a {rows}×{cols} matrix does not fit its source or destination"
    );
    for j0 in (0..cols).step_by(TILE) {
        let j1 = (j0 + TILE).min(cols);
        for i0 in (0..rows).step_by(TILE) {
            let i1 = (i0 + TILE).min(rows);
            for j in j0..j1 {
                let out = &mut dst[j * dst_stride + i0..j * dst_stride + i1];
                for (k, o) in out.iter_mut().enumerate() {
                    *o = src[(i0 + k) * src_stride + j];
                }
            }
        }
    }
}

/// `src [rows, cols]`, contiguous, transposed into `dst [cols, rows]`, in parallel bands of
/// `dst`'s rows.
pub(crate) fn par_transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(
        src.len() == rows * cols && dst.len() == rows * cols,
        "par_transpose_into: a {rows}×{cols} matrix needs {} elements on both sides",
        rows * cols
    );
    if rows == 0 || cols == 0 {
        return;
    }
    dst.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(band, out)| {
            transpose_into(&src[band * TILE..], cols, rows, out.len() / rows, out, rows);
        });
}

/// The consecutive `[rows, cols]` matrices of `src` (one per channel group), each transposed:
/// a new buffer of as many `[cols, rows]` matrices.
pub(crate) fn transposed_blocks(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut dst = vec![0f32; src.len()];
    let size = (rows * cols).max(1);
    for (dst, src) in dst.chunks_mut(size).zip(src.chunks(size)) {
        par_transpose_into(src, rows, cols, dst);
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_strided_blocks_and_leaves_the_rest() {
        // A 37×45 block of a matrix with rows 50 apart, into rows 40 apart (not tile multiples).
        let (rows, cols, src_stride, dst_stride) = (37, 45, 50, 40);
        let src: Vec<f32> = (0..rows * src_stride).map(|i| i as f32).collect();
        let mut dst = vec![-1f32; cols * dst_stride];
        transpose_into(&src, src_stride, rows, cols, &mut dst, dst_stride);
        for j in 0..cols {
            for i in 0..dst_stride {
                let expected = if i < rows {
                    src[i * src_stride + j]
                } else {
                    -1.0
                };
                assert_eq!(dst[j * dst_stride + i], expected, "({j}, {i})");
            }
        }
    }

    #[test]
    fn parallel_transpose_matches_a_naive_loop() {
        let (rows, cols) = (70, 33);
        let src: Vec<f32> = (0..rows * cols).map(|i| (i * 7 % 13) as f32).collect();
        let mut dst = vec![0f32; rows * cols];
        par_transpose_into(&src, rows, cols, &mut dst);
        for i in 0..rows {
            for j in 0..cols {
                assert_eq!(dst[j * rows + i], src[i * cols + j]);
            }
        }
    }

    #[test]
    fn blocks_are_transposed_one_by_one() {
        // Two 2×3 blocks.
        let src = [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.];
        let t = transposed_blocks(&src, 2, 3);
        assert_eq!(t, [1., 4., 2., 5., 3., 6., 7., 10., 8., 11., 9., 12.]);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn refuses_a_destination_too_small() {
        let src = vec![0f32; 12];
        let mut dst = vec![0f32; 11];
        transpose_into(&src, 4, 3, 4, &mut dst, 3);
    }
}
