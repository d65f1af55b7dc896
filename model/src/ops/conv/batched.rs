//! Convolutions with small outputs (the deep stages of the networks, a few voxels per sample): the
//! whole batch becomes one matrix product instead of one small product per sample. The column
//! matrix `[c·taps, n·vol]` holds every sample side by side and only the kernel taps that read
//! the input somewhere (a dilated 3×3×3 kernel on a 2×2×2 map reads it with its centre tap only).

use std::borrow::Cow;

use rayon::prelude::*;

use super::geometry::Geometry;
use super::geometry::{row_map, unravel_tap};
use super::strided_gemm::{matmul, View, ViewMut};
use crate::ops::transpose::{par_transpose_into, transpose_into, transpose_pays};

/// Largest output volume per sample handled here.
const SMALL_OUTPUT_VOLUME: usize = 512;
/// Above this output volume per sample, the batched path needs a column matrix of at most this
/// many elements: at 8×8×8 outputs and 128 channels the column matrix of a 3×3×3 convolution (27
/// input copies per sample, 56 MB for 8 samples) costs more than the per-sample path's extra rows.
const LARGE_COLUMNS: usize = 4 << 20;

/// Whether the batched path applies: one group, several samples, a small output.
pub fn applies(g: &Geometry) -> bool {
    let vol = g.output_volume();
    let columns = g.c * g.kernel_volume() * g.n * vol;
    g.params.groups == 1
        && g.n > 1
        && (vol <= SMALL_OUTPUT_VOLUME / 2
            || (vol <= SMALL_OUTPUT_VOLUME && columns <= LARGE_COLUMNS))
}

/// The kernel taps that read the input for at least one output row.
fn live_taps(g: &Geometry) -> Vec<usize> {
    (0..g.kernel_volume())
        .filter(|&t| {
            let tap = unravel_tap(t, g.kernel);
            (0..g.output[0]).any(|od| (0..g.output[1]).any(|oh| row_map(g, tap, od, oh).is_some()))
        })
        .collect()
}

/// Visits every output row that kernel tap `tap` maps into the input: `visit(output_row,
/// input_offset, lo, hi)`, where output positions `lo..hi` of the row read the input from
/// `input_offset` on, one input stride apart.
fn for_each_mapped_row(
    g: &Geometry,
    tap: usize,
    mut visit: impl FnMut(usize, usize, usize, usize),
) {
    let tap = unravel_tap(tap, g.kernel);
    for od in 0..g.output[0] {
        for oh in 0..g.output[1] {
            if let Some(m) = row_map(g, tap, od, oh) {
                visit(od * g.output[1] + oh, m.base + m.ix0, m.lo, m.hi);
            }
        }
    }
}

/// `col [c·live, n·vol]`: column (s, r·ow + j) of row (ci, t) is the input voxel tap t of output
/// voxel (r, j) of sample s reads (0 in the padding).
fn columns(x: &[f32], g: &Geometry, taps: &[usize]) -> Vec<f32> {
    let (vol, in_vol, ow) = (g.output_volume(), g.input_volume(), g.output[2]);
    let width = g.n * vol;
    let stride = g.params.stride[2];
    let mut col = vec![0f32; g.c * taps.len() * width];
    col.par_chunks_mut(taps.len() * width)
        .enumerate()
        .for_each(|(c, col_c)| {
            for (j, &tap) in taps.iter().enumerate() {
                let row = &mut col_c[j * width..(j + 1) * width];
                for s in 0..g.n {
                    let x_c = &x[(s * g.c + c) * in_vol..(s * g.c + c + 1) * in_vol];
                    for_each_mapped_row(g, tap, |r, start, lo, hi| {
                        let out = &mut row[s * vol + r * ow + lo..s * vol + r * ow + hi];
                        if stride == 1 {
                            out.copy_from_slice(&x_c[start..start + hi - lo]);
                        } else {
                            let strided = x_c[start..].iter().step_by(stride);
                            for (o, &v) in out.iter_mut().zip(strided) {
                                *o = v;
                            }
                        }
                    });
                }
            }
        });
    col
}

/// The weight's live taps, `[co, c·live]`: the weight itself when every tap is live.
fn live_weight<'a>(w: &'a [f32], g: &Geometry, taps: &[usize]) -> Cow<'a, [f32]> {
    let kv = g.kernel_volume();
    if taps.len() == kv {
        return Cow::Borrowed(w);
    }
    let mut out = vec![0f32; g.co * g.c * taps.len()];
    out.par_chunks_mut(taps.len())
        .zip(w.par_chunks(kv))
        .for_each(|(out, w)| {
            for (o, &t) in out.iter_mut().zip(taps) {
                *o = w[t];
            }
        });
    Cow::Owned(out)
}

/// `data [a, b, vol]` as `[b, a, vol]` (samples side by side and back).
fn swap_outer(data: &[f32], a: usize, b: usize, vol: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    out.par_chunks_mut(a * vol)
        .enumerate()
        .for_each(|(j, out)| {
            for (i, out) in out.chunks_mut(vol).enumerate() {
                out.copy_from_slice(&data[(i * b + j) * vol..(i * b + j + 1) * vol]);
            }
        });
    out
}

/// `y = conv3d(x, w)` for the whole batch at once.
pub fn forward(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let taps = live_taps(g);
    let vol = g.output_volume();
    let width = g.n * vol;
    let mut y_all = vec![0f32; g.co * width];
    if !taps.is_empty() {
        let col = columns(x, g, &taps);
        let weight = live_weight(w, g, &taps);
        let k = g.c * taps.len();
        // SAFETY: weight is [co, k], col is [k, width], y_all is [co, width].
        unsafe {
            matmul(
                g.co,
                width,
                k,
                ViewMut::rows(y_all.as_mut_ptr(), width),
                View::rows(weight.as_ptr(), k),
                View::rows(col.as_ptr(), width),
                false,
                true,
            )
        };
    }
    swap_outer(&y_all, g.co, g.n, vol)
}

/// Gradient with respect to the input for the whole batch at once.
pub fn backward_data(dy: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let taps = live_taps(g);
    let (vol, in_vol, ow) = (g.output_volume(), g.input_volume(), g.output[2]);
    if taps.is_empty() {
        return vec![0f32; g.n * g.c * in_vol];
    }
    let width = g.n * vol;
    let k = g.c * taps.len();
    let grad = swap_outer(dy, g.n, g.co, g.output_volume());
    let weight = live_weight(w, g, &taps);
    let mut dcol = vec![0f32; k * width];
    // SAFETY: weightᵀ is [k, co], grad is [co, width], dcol is [k, width].
    unsafe {
        matmul(
            k,
            width,
            g.co,
            ViewMut::rows(dcol.as_mut_ptr(), width),
            View::rows(weight.as_ptr(), k).t(),
            View::rows(grad.as_ptr(), width),
            false,
            true,
        )
    };
    let stride = g.params.stride[2];
    // Fold: channel c of every sample gathers its rows of dcol.
    let mut by_channel = vec![0f32; g.c * g.n * in_vol];
    by_channel
        .par_chunks_mut(g.n * in_vol)
        .enumerate()
        .for_each(|(c, dx_c)| {
            for (j, &tap) in taps.iter().enumerate() {
                let row = &dcol[(c * taps.len() + j) * width..(c * taps.len() + j + 1) * width];
                for s in 0..g.n {
                    let dst = &mut dx_c[s * in_vol..(s + 1) * in_vol];
                    for_each_mapped_row(g, tap, |r, start, lo, hi| {
                        let src = &row[s * vol + r * ow + lo..s * vol + r * ow + hi];
                        if stride == 1 {
                            let dst = &mut dst[start..start + hi - lo];
                            dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                        } else {
                            for (k, v) in src.iter().enumerate() {
                                dst[start + k * stride] += v;
                            }
                        }
                    });
                }
            }
        });
    swap_outer(&by_channel, g.c, g.n, in_vol)
}

/// `dy [n, co, vol]` as `[n·vol, co]`: the output gradient with samples side by side along the
/// rows, transposed so that the weight gradient's product reads it along its rows.
fn gradient_transposed(dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (vol, co) = (g.output_volume(), g.co);
    let mut out = vec![0f32; dy.len()];
    out.par_chunks_mut(vol * co)
        .zip(dy.par_chunks(co * vol))
        .for_each(|(out, dy)| transpose_into(dy, vol, co, vol, out, co));
    out
}

/// Gradient with respect to the weight for the whole batch at once. Where [`transpose_pays`],
/// the output gradient is transposed first and the product gives dwᵀ; otherwise it reads both
/// operands along the voxels and gives dw.
pub fn backward_filter(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let taps = live_taps(g);
    let kv = g.kernel_volume();
    if taps.is_empty() {
        return vec![0f32; g.co * g.c * kv];
    }
    let width = g.n * g.output_volume();
    let k = g.c * taps.len();
    let col = columns(x, g, &taps);
    let mut dw_live = vec![0f32; g.co * k];
    if transpose_pays(k, g.co) {
        let grad_t = gradient_transposed(dy, g);
        let mut dw_t = vec![0f32; k * g.co];
        // SAFETY: col is [k, width], gradᵀ is [width, co], dwᵀ is [k, co].
        unsafe {
            matmul(
                k,
                g.co,
                width,
                ViewMut::rows(dw_t.as_mut_ptr(), g.co),
                View::rows(col.as_ptr(), width),
                View::rows(grad_t.as_ptr(), g.co),
                false,
                true,
            )
        };
        par_transpose_into(&dw_t, k, g.co, &mut dw_live);
    } else {
        let grad = swap_outer(dy, g.n, g.co, g.output_volume());
        // SAFETY: grad is [co, width], colᵀ is [width, k], dw_live is [co, k].
        unsafe {
            matmul(
                g.co,
                k,
                width,
                ViewMut::rows(dw_live.as_mut_ptr(), k),
                View::rows(grad.as_ptr(), width),
                View::rows(col.as_ptr(), width).t(),
                false,
                true,
            )
        };
    }
    if taps.len() == kv {
        return dw_live;
    }
    // Column (c, j) of the live weight gradient is tap taps[j] of input channel c.
    let mut dw = vec![0f32; g.co * g.c * kv];
    dw.par_chunks_mut(kv)
        .zip(dw_live.par_chunks(taps.len()))
        .for_each(|(dw, live)| {
            for (&t, &v) in taps.iter().zip(live) {
                dw[t] = v;
            }
        });
    dw
}
