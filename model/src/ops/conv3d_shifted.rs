//! Stride-1 3D convolution without unfolding: the input is zero-padded once, and every kernel tap
//! becomes one matrix product of the tap's weights with the padded input shifted by the tap's
//! offset.
//!
//! The output is computed in the padded input's row layout: output voxel (z, y, x) sits at
//! `l = z·Hp·Wp + y·Wp + x`, and tap (a, b, c) reads the padded input at `l + a·dd·Hp·Wp +
//! b·dh·Wp + c·dw`. So each tap reads a contiguous, merely shifted range of the padded input,
//! and `y = Σ_taps W_tap · shift_tap(x_padded)`. Positions with y ≥ oh or x ≥ ow are computed and
//! dropped. Compared with vol2col this never builds the c·k³-fold column matrix, whose memory
//! traffic dominated the stride-1 convolutions of the networks.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::elementwise::{add_parts, output_buffer};
use super::geometry::Geometry;
use super::strided_gemm::{matmul, View, ViewMut};

/// Output columns per work item of the forward pass.
const CHUNK: usize = 2048;

/// The padded row layout of one (sample, group) unit.
struct Layout {
    /// Padded extents.
    padded: [usize; 3],
    /// Length of the padded-layout output (one past its last valid voxel).
    span: usize,
    /// Offset of each kernel tap in the padded input.
    offsets: Vec<usize>,
}

impl Layout {
    fn new(g: &Geometry) -> Self {
        let p = &g.params;
        let padded: [usize; 3] = std::array::from_fn(|a| g.input[a] + 2 * p.padding[a]);
        let (plane, row) = (padded[1] * padded[2], padded[2]);
        let [od, oh, ow] = g.output;
        let span = (od - 1) * plane + (oh - 1) * row + ow;
        let mut offsets = Vec::with_capacity(g.kernel_volume());
        for a in 0..g.kernel[0] {
            for b in 0..g.kernel[1] {
                for c in 0..g.kernel[2] {
                    offsets.push(
                        a * p.dilation[0] * plane + b * p.dilation[1] * row + c * p.dilation[2],
                    );
                }
            }
        }
        Self {
            padded,
            span,
            offsets,
        }
    }

    fn padded_volume(&self) -> usize {
        self.padded.iter().product()
    }

    /// Calls `f(padded_index, compact_index)` for every voxel of a `extents`-sized block placed at
    /// `origin` in the padded grid.
    fn for_each_voxel(
        &self,
        extents: [usize; 3],
        origin: [usize; 3],
        mut f: impl FnMut(usize, usize),
    ) {
        let (plane, row) = (self.padded[1] * self.padded[2], self.padded[2]);
        let mut compact = 0;
        for z in 0..extents[0] {
            for y in 0..extents[1] {
                let base = (z + origin[0]) * plane + (y + origin[1]) * row + origin[2];
                for x in 0..extents[2] {
                    f(base + x, compact);
                    compact += 1;
                }
            }
        }
    }
}

/// Whether the shifted-product kernels apply (stride 1 on every axis).
pub fn applies(g: &Geometry) -> bool {
    g.params.stride == [1, 1, 1]
}

/// Copies `x [c, d, h, w]` into a zero-padded `[c, Dp·Hp·Wp]` buffer.
fn pad(x: &[f32], g: &Geometry, layout: &Layout) -> Vec<f32> {
    let (vol, pvol) = (g.input_volume(), layout.padded_volume());
    let mut padded = vec![0f32; g.c * pvol];
    padded
        .par_chunks_mut(pvol)
        .zip(x.par_chunks(vol))
        .for_each(|(p, x)| {
            layout.for_each_voxel(g.input, g.params.padding, |pi, ci| p[pi] = x[ci]);
        });
    padded
}

/// The weights of tap `t` as a `[co, c]` view of `w [co, c, taps]`.
fn tap_weights(w: &[f32], g: &Geometry, t: usize) -> View {
    View {
        ptr: w[t..].as_ptr(),
        row_stride: g.col_rows() as isize,
        col_stride: g.kernel_volume() as isize,
    }
}

/// Forward pass of one unit (one sample, one group): `x [c, d, h, w]`, `w [co, c, k, k, k]`,
/// writes every element of `y [co, od, oh, ow]`.
pub fn forward_unit(x: &[f32], w: &[f32], g: &Geometry, y: &mut [MaybeUninit<f32>]) {
    let layout = Layout::new(g);
    let xp = pad(x, g, &layout);
    let pvol = layout.padded_volume();
    let chunks: Vec<(usize, usize)> = (0..layout.span)
        .step_by(CHUNK)
        .map(|s| (s, (s + CHUNK).min(layout.span)))
        .collect();
    // The first tap's product writes each chunk's [co, end - start] block without reading it;
    // the rest of the last chunk is neither written nor read.
    let mut out = output_buffer(g.co * chunks.len() * CHUNK);
    out.par_chunks_mut(g.co * CHUNK)
        .zip(&chunks)
        .for_each(|(out, &(start, end))| {
            for (t, &offset) in layout.offsets.iter().enumerate() {
                // SAFETY: `out` holds co rows of CHUNK; the shifted input holds c rows from
                // `offset + start` within the padded volume (start + offset + (end - start) ≤ pvol).
                unsafe {
                    matmul(
                        g.co,
                        end - start,
                        g.c,
                        ViewMut::rows(out.as_mut_ptr().cast(), CHUNK),
                        tap_weights(w, g, t),
                        View::rows(xp[offset + start..].as_ptr(), pvol),
                        t > 0,
                        false,
                    )
                };
            }
        });
    let out_vol = g.output_volume();
    assert_eq!(y.len(), g.co * out_vol, "forward_unit: output size");
    y.par_chunks_mut(out_vol).enumerate().for_each(|(co, y)| {
        layout.for_each_voxel(g.output, [0; 3], |l, i| {
            // SAFETY: l < span lies in chunk l / CHUNK at column l % CHUNK < end - start, which
            // the first tap's product wrote.
            y[i].write(unsafe {
                out[(l / CHUNK) * g.co * CHUNK + co * CHUNK + l % CHUNK].assume_init()
            });
        });
    });
}

/// `dy [co, od, oh, ow]` placed into the padded row layout `[co, span]`, zero elsewhere.
fn spread(dy: &[f32], g: &Geometry, layout: &Layout) -> Vec<f32> {
    let mut out = vec![0f32; g.co * layout.span];
    out.par_chunks_mut(layout.span)
        .zip(dy.par_chunks(g.output_volume()))
        .for_each(|(o, dy)| {
            layout.for_each_voxel(g.output, [0; 3], |l, i| o[l] = dy[i]);
        });
    out
}

/// Gradient with respect to the input of one unit: writes `dx [c, d, h, w]`.
pub fn backward_data_unit(dy: &[f32], w: &[f32], g: &Geometry, dx: &mut [f32]) {
    let layout = Layout::new(g);
    let dyp = spread(dy, g, &layout);
    let pvol = layout.padded_volume();
    let mut dxp = vec![0f32; g.c * pvol];
    for start in (0..layout.span).step_by(4 * CHUNK) {
        let end = (start + 4 * CHUNK).min(layout.span);
        for (t, &offset) in layout.offsets.iter().enumerate() {
            // SAFETY: dxp holds c rows of pvol from `offset + start`; dyp holds co rows of span.
            unsafe {
                matmul(
                    g.c,
                    end - start,
                    g.co,
                    ViewMut::rows(dxp[offset + start..].as_mut_ptr(), pvol),
                    tap_weights(w, g, t).t(),
                    View::rows(dyp[start..].as_ptr(), layout.span),
                    true,
                    true,
                )
            };
        }
    }
    dx.par_chunks_mut(g.input_volume())
        .zip(dxp.par_chunks(pvol))
        .for_each(|(dx, p)| {
            layout.for_each_voxel(g.input, g.params.padding, |pi, ci| dx[ci] = p[pi]);
        });
}

/// Gradient with respect to the weight of one unit, added to `dw [co, c, taps]`.
pub fn backward_filter_unit(x: &[f32], dy: &[f32], g: &Geometry, dw: &mut [f32]) {
    let layout = Layout::new(g);
    let xp = pad(x, g, &layout);
    let dyp = spread(dy, g, &layout);
    let pvol = layout.padded_volume();
    let parts = rayon::current_num_threads().max(1);
    let step = layout.span.div_ceil(parts);
    add_parts(dw, parts, |part, acc| {
        let (start, end) = (part * step, ((part + 1) * step).min(layout.span));
        if start >= end {
            return;
        }
        for (t, &offset) in layout.offsets.iter().enumerate() {
            // SAFETY: acc is [co, c, taps]; dyp holds co rows of span; the shifted input holds c
            // rows from `offset + start`.
            unsafe {
                matmul(
                    g.co,
                    g.c,
                    end - start,
                    ViewMut {
                        ptr: acc[t..].as_mut_ptr(),
                        row_stride: g.col_rows() as isize,
                        col_stride: g.kernel_volume() as isize,
                    },
                    View::rows(dyp[start..].as_ptr(), layout.span),
                    View::rows(xp[offset + start..].as_ptr(), pvol).t(),
                    true,
                    false,
                )
            };
        }
    });
}
