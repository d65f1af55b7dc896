//! Matrix products over strided views, on the `gemm` crate: the building block of the
//! convolution kernels.

use gemm::Parallelism;

/// A read-only strided matrix: element (i, j) lies at `ptr + i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl View {
    /// A row-major view with rows `row_stride` apart.
    pub fn rows(ptr: *const f32, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: row_stride as isize,
            col_stride: 1,
        }
    }

    /// The transposed view.
    pub fn t(self) -> Self {
        Self {
            ptr: self.ptr,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// A writable strided matrix.
#[derive(Clone, Copy)]
pub(crate) struct ViewMut {
    pub ptr: *mut f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl ViewMut {
    /// A row-major view with rows `row_stride` apart.
    pub fn rows(ptr: *mut f32, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: row_stride as isize,
            col_stride: 1,
        }
    }
}

/// Whether a product of these extents is worth splitting over threads.
fn parallelism(m: usize, n: usize, k: usize, parallel: bool) -> Parallelism {
    if parallel && m * n * k >= 1 << 15 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    }
}

/// `dst [m, n] (+)= lhs [m, k] · rhs [k, n]`, accumulating when `accumulate` is set, on all
/// threads when `parallel` is set.
///
/// # Safety
/// Every view must address a valid matrix of the stated extents, and `dst` must not alias them.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: ViewMut,
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallel: bool,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr,
        dst.col_stride,
        dst.row_stride,
        accumulate,
        lhs.ptr,
        lhs.col_stride,
        lhs.row_stride,
        rhs.ptr,
        rhs.col_stride,
        rhs.row_stride,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism(m, n, k, parallel),
    );
}
