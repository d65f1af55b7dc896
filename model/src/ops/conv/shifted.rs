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
//!
//! Each pass works on the whole batch at once: every (sample, group) unit's padded input is
//! built first, and the work items of all units run in one parallel loop, so that a batch of
//! small volumes (one chunk each) keeps every thread busy. The gradient with respect to the
//! input is the forward pass of the output gradient with the flipped, transposed weight.

use rayon::prelude::*;

use super::geometry::{Conv3dParams, Geometry};
use super::strided_gemm::{matmul, View, ViewMut};
use crate::ops::elementwise::{add_parts, assume_written, output_buffer};
use crate::ops::transpose::{transpose_into, transpose_pays, transposed_blocks};

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

/// The (sample, group) units of a convolution: their count and the geometry of each.
fn units(g: &Geometry) -> (usize, Geometry) {
    (g.n * g.params.groups, g.unit())
}

/// Copies each unit of `x [units, c, d, h, w]` into a zero-padded `[units, c, Dp·Hp·Wp]` buffer.
fn pad(x: &[f32], units: usize, u: &Geometry, layout: &Layout) -> Vec<f32> {
    let (vol, pvol) = (u.input_volume(), layout.padded_volume());
    let mut padded = vec![0f32; units * u.c * pvol];
    padded
        .par_chunks_mut(pvol)
        .zip(x.par_chunks(vol))
        .for_each(|(p, x)| {
            layout.for_each_voxel(u.input, u.params.padding, |pi, ci| p[pi] = x[ci]);
        });
    padded
}

/// `w [co, c/groups, taps]` rearranged tap by tap: `[groups, taps, co/groups, c/groups]`, so
/// that each tap's weights are one contiguous matrix (gemm packs a strided one several times
/// slower). With `flip`, the weight of the input gradient's forward pass instead: `[groups,
/// taps, c/groups, co/groups]`, every kernel flipped on all three axes.
fn tap_major(w: &[f32], g: &Geometry, flip: bool) -> Vec<f32> {
    let u = g.unit();
    let kv = g.kernel_volume();
    let tap_size = u.co * u.c;
    let mut out = vec![0f32; w.len()];
    out.par_chunks_mut(tap_size)
        .enumerate()
        .for_each(|(block, out)| {
            let (group, t) = (block / kv, block % kv);
            // Rows are the product's output channels: c for the flipped weight, co otherwise.
            let (tap, cols) = if flip { (kv - 1 - t, u.co) } else { (t, u.c) };
            for (r, out) in out.chunks_mut(cols).enumerate() {
                for (col, o) in out.iter_mut().enumerate() {
                    let (co, ci) = if flip { (col, r) } else { (r, col) };
                    *o = w[((group * u.co + co) * u.c + ci) * kv + tap];
                }
            }
        });
    out
}

/// `y = conv3d(x, w)` for a stride-1 convolution: `x [n, c, d, h, w]`, `w [co, c/groups, k, k,
/// k]`, returns `y [n, co, od, oh, ow]`.
pub fn forward(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    forward_tap_major(x, &tap_major(w, g, false), g)
}

/// [`forward`] with the weight already rearranged by [`tap_major`].
fn forward_tap_major(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let (units, u) = units(g);
    let layout = Layout::new(&u);
    let xp = pad(x, units, &u, &layout);
    let (pvol, span) = (layout.padded_volume(), layout.span);
    let chunks = span.div_ceil(CHUNK);
    let block = u.co * CHUNK;
    let weights = u.co * u.col_rows();
    // One [co, CHUNK] block per (unit, chunk): the first tap's product writes its columns
    // without reading them; the rest of a unit's last block is neither written nor read.
    let mut out = output_buffer(units * chunks * block);
    out.par_chunks_mut(block)
        .enumerate()
        .for_each(|(item, out)| {
            let (unit, start) = (item / chunks, (item % chunks) * CHUNK);
            let end = (start + CHUNK).min(span);
            let x_u = &xp[unit * u.c * pvol..(unit + 1) * u.c * pvol];
            let group = unit % g.params.groups;
            let w_u = &w[group * weights..(group + 1) * weights];
            for (t, &offset) in layout.offsets.iter().enumerate() {
                // SAFETY: `out` holds co rows of CHUNK; the shifted input holds c rows from
                // `offset + start` within the unit's padded volume (offset + end ≤ pvol).
                unsafe {
                    matmul(
                        u.co,
                        end - start,
                        u.c,
                        ViewMut::rows(out.as_mut_ptr().cast(), CHUNK),
                        View::rows(w_u[t * u.co * u.c..].as_ptr(), u.c),
                        View::rows(x_u[offset + start..].as_ptr(), pvol),
                        t > 0,
                        false,
                    )
                };
            }
        });
    let out_vol = g.output_volume();
    let mut y = output_buffer(g.n * g.co * out_vol);
    y.par_chunks_mut(out_vol)
        .enumerate()
        .for_each(|(plane, y)| {
            let (unit, co) = (plane / u.co, plane % u.co);
            let blocks = &out[unit * chunks * block..(unit + 1) * chunks * block];
            layout.for_each_voxel(g.output, [0; 3], |l, i| {
                // SAFETY: l < span lies in chunk l / CHUNK at column l % CHUNK < end - start, which
                // the first tap's product wrote.
                y[i].write(unsafe {
                    blocks[(l / CHUNK) * block + co * CHUNK + l % CHUNK].assume_init()
                });
            });
        });
    // SAFETY: the planes cover the output, and for_each_voxel visits every voxel of a plane.
    unsafe { assume_written(y) }
}

/// The convolution whose forward pass is the gradient of `g` with respect to its input: the
/// output gradient convolved with the flipped weight, padded by `dilation·(k − 1) − padding`.
/// `None` when the padding exceeds that (the gradient would need cropping).
fn gradient_as_forward(g: &Geometry) -> Option<Geometry> {
    let p = &g.params;
    let pad = |axis: usize| (p.dilation[axis] * (g.kernel[axis] - 1)).checked_sub(p.padding[axis]);
    let padding = [pad(0)?, pad(1)?, pad(2)?];
    Some(Geometry {
        n: g.n,
        c: g.co,
        input: g.output,
        co: g.c,
        kernel: g.kernel,
        output: g.input,
        params: Conv3dParams { padding, ..*p },
    })
}

/// Gradient of a stride-1 `conv3d` with respect to its input: `dy [n, co, od, oh, ow]`, returns
/// `dx [n, c, d, h, w]`, or `None` when the padding is too large for the shifted products.
pub fn backward_data(dy: &[f32], w: &[f32], g: &Geometry) -> Option<Vec<f32>> {
    let transposed = gradient_as_forward(g)?;
    Some(forward_tap_major(dy, &tap_major(w, g, true), &transposed))
}

/// Each unit of `dy [units, co, od, oh, ow]` placed into the padded row layout and transposed:
/// `[units, span, co]`, zero at the positions outside the output.
fn spread_transposed(dy: &[f32], units: usize, u: &Geometry, layout: &Layout) -> Vec<f32> {
    let (span, co, out_vol) = (layout.span, u.co, u.output_volume());
    let [od, oh, ow] = u.output;
    let (plane, row) = (layout.padded[1] * layout.padded[2], layout.padded[2]);
    let mut out = vec![0f32; units * span * co];
    out.par_chunks_mut(span * co)
        .enumerate()
        .flat_map(|(unit, out)| {
            out.par_chunks_mut(plane * co)
                .take(od)
                .enumerate()
                .map(move |(z, out)| (unit, z, out))
        })
        .for_each(|(unit, z, out)| {
            let dy_u = &dy[unit * co * out_vol..(unit + 1) * co * out_vol];
            for y in 0..oh {
                let src = &dy_u[(z * oh + y) * ow..];
                transpose_into(src, out_vol, co, ow, &mut out[y * row * co..], co);
            }
        });
    out
}

/// Each unit of `dy [units, co, od, oh, ow]` placed into the padded row layout: `[units, co,
/// span]`, zero at the positions outside the output.
fn spread(dy: &[f32], units: usize, u: &Geometry, layout: &Layout) -> Vec<f32> {
    let mut out = vec![0f32; units * u.co * layout.span];
    out.par_chunks_mut(layout.span)
        .zip(dy.par_chunks(u.output_volume()))
        .for_each(|(o, dy)| {
            layout.for_each_voxel(u.output, [0; 3], |l, i| o[l] = dy[i]);
        });
    out
}

/// Gradient of a stride-1 `conv3d` with respect to its weight: `x [n, c, d, h, w]`, `dy [n, co,
/// od, oh, ow]`, returns `dw [co, c/groups, k, k, k]`.
///
/// The padded-layout voxels of all units are split into one contiguous part per thread; each
/// part sums `Σ_l dy_p[co, l] · x_p[c, l + offset_t]` over its voxels into its own accumulator,
/// and the parts are added in order. Where [`transpose_pays`], the output gradient is transposed
/// first (`[span, co]`) and the accumulator is `[groups, c, taps, co]`, so that the products read
/// both operands along their rows; otherwise both run along the voxels and the accumulator is
/// the gradient itself.
pub fn backward_filter(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (units, u) = units(g);
    let layout = Layout::new(&u);
    let xp = pad(x, units, &u, &layout);
    let transposed = transpose_pays(u.c, u.co);
    let dyp = if transposed {
        spread_transposed(dy, units, &u, &layout)
    } else {
        spread(dy, units, &u, &layout)
    };
    let (pvol, span, kv, groups) = (
        layout.padded_volume(),
        layout.span,
        g.kernel_volume(),
        g.params.groups,
    );
    let group_size = u.col_rows() * u.co;
    let total = units * span;
    let parts = rayon::current_num_threads().clamp(1, total.max(1));
    let mut acc_all = vec![0f32; groups * group_size];
    add_parts(&mut acc_all, parts, |part, acc| {
        let (first, last) = (part * total / parts, (part + 1) * total / parts);
        for unit in first / span..last.div_ceil(span) {
            let start = first.max(unit * span) - unit * span;
            let end = last.min((unit + 1) * span) - unit * span;
            if start >= end {
                continue;
            }
            let x_u = &xp[unit * u.c * pvol..(unit + 1) * u.c * pvol];
            let dy_u = &dyp[unit * span * u.co..(unit + 1) * span * u.co];
            let acc_g = &mut acc[(unit % groups) * group_size..];
            for (t, &offset) in layout.offsets.iter().enumerate() {
                let x_t = View::rows(x_u[offset + start..].as_ptr(), pvol);
                // SAFETY: the shifted input holds c rows of end - start from `offset + start`.
                // Transposed: the tap's accumulator is [c, co] with rows taps·co apart from t·co
                // and dy_u holds span rows of co. Otherwise: the tap's accumulator is [co, c]
                // with rows c·taps and columns taps apart from t, and dy_u holds co rows of span.
                unsafe {
                    if transposed {
                        matmul(
                            u.c,
                            u.co,
                            end - start,
                            ViewMut::rows(acc_g[t * u.co..].as_mut_ptr(), kv * u.co),
                            x_t,
                            View::rows(dy_u[start * u.co..].as_ptr(), u.co),
                            true,
                            false,
                        )
                    } else {
                        matmul(
                            u.co,
                            u.c,
                            end - start,
                            ViewMut {
                                ptr: acc_g[t..].as_mut_ptr(),
                                row_stride: u.col_rows() as isize,
                                col_stride: kv as isize,
                            },
                            View::rows(dy_u[start..].as_ptr(), span),
                            x_t.t(),
                            true,
                            false,
                        )
                    }
                };
            }
        }
    });
    if !transposed {
        return acc_all;
    }
    // Each group's [c·taps, co] accumulator is its [co, c, taps] gradient transposed.
    transposed_blocks(&acc_all, u.col_rows(), u.co)
}
