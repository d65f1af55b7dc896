//! CPU kernels of the 3D convolution: forward, gradient with respect to the input ("backward
//! data", which is also the transposed convolution) and gradient with respect to the weight
//! ("backward filter").
//!
//! Each kernel walks the output in chunks of whole output rows. For one sample and one chunk it
//! unfolds the input into a column matrix (vol2col, `[c·kd·kh·kw, rows·ow]`), small enough to stay
//! in cache, and hands it to `gemm`. The backward-data kernel folds a column matrix back into the
//! input (col2vol). Unfolding and folding run in parallel over channels with rayon; the matrix
//! products run on gemm's rayon parallelism. A 1×1×1 kernel with stride 1 and no padding skips the
//! unfolding: the input already is its column matrix. Other stride-1 convolutions go through
//! [`super::shifted`], which needs no column matrix at all.

use std::ops::Range;

use rayon::prelude::*;

use super::geometry::Geometry;
use super::geometry::{row_map, unravel_tap, RowMap};
use super::strided_gemm::{matmul, View, ViewMut};
use super::{batched, shifted};
use crate::ops::elementwise::{add_parts, assume_written, output_buffer};
use crate::ops::transpose::{transpose_into, transpose_pays, transposed_blocks};

/// Largest column matrix built at once, in `f32` elements (8 MiB).
const COL_BUDGET_ELEMENTS: usize = 2 << 20;

/// Visits every (tap, output row) pair of the chunk `rows` for one channel: `visit(tap_index,
/// row_in_chunk, map)`.
fn for_each_row(
    g: &Geometry,
    rows: &Range<usize>,
    mut visit: impl FnMut(usize, usize, Option<RowMap>),
) {
    for tap_index in 0..g.kernel_volume() {
        let tap = unravel_tap(tap_index, g.kernel);
        for (i, r) in rows.clone().enumerate() {
            let (od, oh) = (r / g.output[1], r % g.output[1]);
            visit(tap_index, i, row_map(g, tap, od, oh));
        }
    }
}

/// Unfolds output rows `rows` of one sample `x [c, d, h, w]` into `col [c·taps, rows·ow]`, one
/// (channel, tap) row of the column matrix per parallel task, so that a single-channel input (the
/// images) unfolds in parallel too.
fn vol2col(x: &[f32], g: &Geometry, rows: &Range<usize>, col: &mut [f32]) {
    let ow = g.output[2];
    let chunk = rows.len() * ow;
    let stride = g.params.stride[2];
    let taps = g.kernel_volume();
    col.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(channel_tap, col_row)| {
            let x_c = &x[(channel_tap / taps) * g.input_volume()..];
            let tap = unravel_tap(channel_tap % taps, g.kernel);
            for (i, r) in rows.clone().enumerate() {
                let out = &mut col_row[i * ow..(i + 1) * ow];
                match row_map(g, tap, r / g.output[1], r % g.output[1]) {
                    None => out.fill(0.0),
                    Some(m) => {
                        out[..m.lo].fill(0.0);
                        out[m.hi..].fill(0.0);
                        let src = &x_c[m.base + m.ix0..];
                        if stride == 1 {
                            out[m.lo..m.hi].copy_from_slice(&src[..m.hi - m.lo]);
                        } else {
                            let strided = src.iter().step_by(stride);
                            for (o, &v) in out[m.lo..m.hi].iter_mut().zip(strided) {
                                *o = v;
                            }
                        }
                    }
                }
            }
        });
}

/// Folds `col [c·taps, rows·ow]` back onto one sample `dx [c, d, h, w]`, adding overlaps.
fn col2vol(col: &[f32], g: &Geometry, rows: &Range<usize>, dx: &mut [f32]) {
    let ow = g.output[2];
    let chunk = rows.len() * ow;
    let stride = g.params.stride[2];
    dx.par_chunks_mut(g.input_volume())
        .zip(col.par_chunks(g.kernel_volume() * chunk))
        .for_each(|(dx_c, col_c)| {
            for_each_row(g, rows, |tap, i, map| {
                if let Some(m) = map {
                    let src = &col_c[tap * chunk + i * ow + m.lo..tap * chunk + i * ow + m.hi];
                    let dst = &mut dx_c[m.base + m.ix0..];
                    if stride == 1 {
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (j, s) in src.iter().enumerate() {
                            dst[j * stride] += s;
                        }
                    }
                }
            });
        });
}

/// Whether the convolution is a plain per-voxel matrix product (1×1×1, stride 1, no padding).
fn is_pointwise(g: &Geometry) -> bool {
    g.kernel == [1, 1, 1] && g.params.stride == [1, 1, 1] && g.params.padding == [0, 0, 0]
}

/// Output-row chunks whose column matrix fits the budget.
fn row_chunks(g: &Geometry) -> Vec<Range<usize>> {
    let total = g.output[0] * g.output[1];
    let per_row = (g.col_rows() * g.output[2]).max(1);
    let step = (COL_BUDGET_ELEMENTS / per_row).clamp(1, total.max(1));
    (0..total)
        .step_by(step)
        .map(|start| start..(start + step).min(total))
        .collect()
}

/// A row-major matrix inside a larger buffer, rows `row_stride` apart: the column matrix
/// `[c·taps, chunk]` or the output gradient's `[co, chunk]` of one chunk of output rows.
struct RowBlock<'a> {
    data: &'a [f32],
    row_stride: usize,
}

impl RowBlock<'_> {
    fn view(&self) -> View {
        View::rows(self.data.as_ptr(), self.row_stride)
    }
}

/// The column matrix of one chunk: the input itself for pointwise convolutions, otherwise the
/// unfolded buffer.
fn columns<'a>(
    x_n: &'a [f32],
    g: &Geometry,
    rows: &Range<usize>,
    buffer: &'a mut Vec<f32>,
) -> RowBlock<'a> {
    let chunk = rows.len() * g.output[2];
    if is_pointwise(g) {
        return RowBlock {
            data: &x_n[rows.start * g.output[2]..],
            row_stride: g.input_volume(),
        };
    }
    buffer.resize(g.col_rows() * chunk, 0.0);
    vol2col(x_n, g, rows, buffer);
    RowBlock {
        data: buffer,
        row_stride: chunk,
    }
}

/// Offsets of the input, output and weight of one (sample, group) unit of a convolution.
type Unit = (usize, usize, usize);

/// The [`Unit`]s of the convolution, each of which is a convolution with one sample and one
/// group of geometry [`Geometry::unit`].
fn units(g: &Geometry) -> impl Iterator<Item = Unit> + '_ {
    let u = g.unit();
    let (x_size, y_size, w_size) = (
        u.c * g.input_volume(),
        u.co * g.output_volume(),
        u.co * u.col_rows(),
    );
    (0..g.n).flat_map(move |n| {
        (0..g.params.groups).map(move |grp| {
            (
                (n * g.params.groups + grp) * x_size,
                (n * g.params.groups + grp) * y_size,
                grp * w_size,
            )
        })
    })
}

/// The `[co, rows·ow]` block of output rows `rows` of the unit whose output gradient starts at
/// `yo` in `dy`.
fn gradient_block<'a>(dy: &'a [f32], yo: usize, rows: &Range<usize>, g: &Geometry) -> RowBlock<'a> {
    RowBlock {
        data: &dy[yo + rows.start * g.output[2]..],
        row_stride: g.output_volume(),
    }
}

/// `y = conv3d(x, w)`: `x [n, c, d, h, w]`, `w [co, c/groups, kd, kh, kw]`, returns
/// `y [n, co, od, oh, ow]`.
pub fn forward(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    if batched::applies(g) {
        return batched::forward(x, w, g);
    }
    if shifted::applies(g) && !is_pointwise(g) {
        return shifted::forward(x, w, g);
    }
    let u = g.unit();
    let out_vol = g.output_volume();
    let mut y = output_buffer(g.n * g.co * out_vol);
    let mut buffer = Vec::new();
    let chunks = row_chunks(&u);
    for (xo, yo, wo) in units(g) {
        let x_u = &x[xo..xo + u.c * g.input_volume()];
        let weight = View {
            ptr: w[wo..].as_ptr(),
            row_stride: u.col_rows() as isize,
            col_stride: 1,
        };
        for rows in &chunks {
            let chunk = rows.len() * g.output[2];
            let col = columns(x_u, &u, rows, &mut buffer).view();
            // SAFETY: the unit's output holds co rows of out_vol elements from `yo`; the chunk's
            // columns start at rows.start·ow and span `chunk` elements of each row.
            unsafe {
                matmul(
                    u.co,
                    chunk,
                    u.col_rows(),
                    ViewMut::rows(
                        y[yo + rows.start * g.output[2]..].as_mut_ptr().cast(),
                        out_vol,
                    ),
                    weight,
                    col,
                    false,
                    true,
                )
            };
        }
    }
    // SAFETY: the units cover the batch and groups, each unit's row chunks cover its output
    // rows, and every product writes its whole [co, chunk] block without reading it.
    unsafe { assume_written(y) }
}

/// Gradient of `conv3d` with respect to its input: `dy [n, co, od, oh, ow]`, `w [co, c/groups,
/// kd, kh, kw]`, returns `dx [n, c, d, h, w]`. This is also the transposed convolution of `dy`
/// by `w`.
pub fn backward_data(dy: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    if batched::applies(g) {
        return batched::backward_data(dy, w, g);
    }
    if shifted::applies(g) && !is_pointwise(g) {
        if let Some(dx) = shifted::backward_data(dy, w, g) {
            return dx;
        }
    }
    if is_pointwise(g) {
        return pointwise_backward_data(dy, w, g);
    }
    let u = g.unit();
    let in_vol = g.input_volume();
    let mut dx = vec![0f32; g.n * g.c * in_vol];
    let mut buffer = Vec::new();
    let chunks = row_chunks(&u);
    for (xo, yo, wo) in units(g) {
        let dx_u = &mut dx[xo..xo + u.c * in_vol];
        let weight_t = View {
            ptr: w[wo..].as_ptr(),
            row_stride: 1,
            col_stride: u.col_rows() as isize,
        };
        for rows in &chunks {
            let chunk = rows.len() * g.output[2];
            buffer.resize(u.col_rows() * chunk, 0.0);
            let grad = gradient_block(dy, yo, rows, g).view();
            // SAFETY: buffer holds col_rows × chunk elements.
            unsafe {
                matmul(
                    u.col_rows(),
                    chunk,
                    u.co,
                    ViewMut::rows(buffer.as_mut_ptr(), chunk),
                    weight_t,
                    grad,
                    false,
                    true,
                )
            };
            col2vol(&buffer, &u, rows, dx_u);
        }
    }
    dx
}

/// The input gradient of a pointwise convolution, unit by unit `dx [c, vol] = wᵀ [c, co] ·
/// dy [co, vol]`, each product writing its whole block.
fn pointwise_backward_data(dy: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let u = g.unit();
    let vol = g.input_volume();
    let mut dx = output_buffer(g.n * g.c * vol);
    for (xo, yo, wo) in units(g) {
        let weight_t = View {
            ptr: w[wo..].as_ptr(),
            row_stride: 1,
            col_stride: u.c as isize,
        };
        // SAFETY: the unit's dx is [c, vol] from `xo` and its gradient [co, vol] from `yo`, both
        // contiguous; the group's weight is [co, c] from `wo`.
        unsafe {
            matmul(
                u.c,
                vol,
                u.co,
                ViewMut::rows(dx[xo..].as_mut_ptr().cast(), vol),
                weight_t,
                View::rows(dy[yo..].as_ptr(), vol),
                false,
                true,
            )
        };
    }
    // SAFETY: the units cover the batch and groups, and each product wrote its unit's block.
    unsafe { assume_written(dx) }
}

/// Gradient of `conv3d` with respect to its weight: `x [n, c, d, h, w]`, `dy [n, co, od, oh,
/// ow]`, returns `dw [co, c/groups, kd, kh, kw]`.
///
/// The weight gradient is small and its reduction axis (samples × voxels) long, so a product per
/// chunk would leave threads idle (gemm parallelises over the output's blocks, of which a 64 × 64
/// weight has one). Instead the chunks of all units are split into one contiguous part per
/// thread, each part sums its chunks' products into its own buffer, and the parts are added.
/// The sums' order depends only on the number of threads, so results repeat exactly.
///
/// Both operands run along the voxels, the reduction axis. Where [`transpose_pays`], the smaller
/// of the two (the output gradient's block or the column matrix) is transposed first, so that
/// each product reads its right-hand operand along its rows.
pub fn backward_filter(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    if batched::applies(g) {
        return batched::backward_filter(x, dy, g);
    }
    if shifted::applies(g) && !is_pointwise(g) {
        return shifted::backward_filter(x, dy, g);
    }
    let u = g.unit();
    let (cols, co) = (u.col_rows(), u.co);
    let chunks = row_chunks(&u);
    let items: Vec<(Unit, &Range<usize>)> = units(g)
        .flat_map(|unit| chunks.iter().map(move |rows| (unit, rows)))
        .collect();
    let threads = rayon::current_num_threads();
    let parts = threads.clamp(1, items.len().max(1));
    // Fewer chunks than threads: each product is parallel instead.
    let parallel_products = items.len() < threads;
    // Transposing the gradient block accumulates dwᵀ [cols, co] per group, otherwise dw itself.
    let transpose_any = transpose_pays(co, cols);
    let transpose_gradient = transpose_any && co <= cols;
    let mut acc_all = vec![0f32; g.co * cols];
    add_parts(&mut acc_all, parts, |part, acc| {
        let (mut buffer, mut transposed) = (Vec::new(), Vec::new());
        let share = &items[part * items.len() / parts..(part + 1) * items.len() / parts];
        for &((xo, yo, wo), rows) in share {
            let x_u = &x[xo..xo + u.c * g.input_volume()];
            let chunk = rows.len() * g.output[2];
            let col = columns(x_u, &u, rows, &mut buffer);
            let grad = gradient_block(dy, yo, rows, g);
            if transpose_gradient {
                transposed.resize(chunk * co, 0.0);
                transpose_into(grad.data, grad.row_stride, co, chunk, &mut transposed, co);
                // SAFETY: the group's dwᵀ is [cols, co] from `wo`; the columns are [cols,
                // chunk]; the transposed gradient is [chunk, co].
                unsafe {
                    matmul(
                        cols,
                        co,
                        chunk,
                        ViewMut::rows(acc[wo..].as_mut_ptr(), co),
                        col.view(),
                        View::rows(transposed.as_ptr(), co),
                        true,
                        parallel_products,
                    )
                };
            } else {
                let columns_t = if transpose_any {
                    transposed.resize(chunk * cols, 0.0);
                    transpose_into(col.data, col.row_stride, cols, chunk, &mut transposed, cols);
                    View::rows(transposed.as_ptr(), cols)
                } else {
                    col.view().t()
                };
                // SAFETY: the group's dw is [co, cols] from `wo`; grad is [co, chunk]; the
                // columns, transposed or read as such, are [chunk, cols].
                unsafe {
                    matmul(
                        co,
                        cols,
                        chunk,
                        ViewMut::rows(acc[wo..].as_mut_ptr(), cols),
                        grad.view(),
                        columns_t,
                        true,
                        parallel_products,
                    )
                };
            }
        }
    });
    if transpose_gradient {
        transposed_blocks(&acc_all, cols, co)
    } else {
        acc_all
    }
}
