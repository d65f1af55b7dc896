//! Shapes of a 3D convolution: input, kernel and output extents with stride, padding and
//! dilation, as `torch.nn.functional.conv3d` defines them.

use candle_core::{bail, Result};

/// Stride, padding and dilation of a 3D convolution, per axis (depth, height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv3dParams {
    /// Step between output positions, per axis.
    pub stride: [usize; 3],
    /// Zero padding added on both sides, per axis.
    pub padding: [usize; 3],
    /// Spacing between kernel taps, per axis.
    pub dilation: [usize; 3],
    /// Channel groups: input and output channels are split into this many groups, each
    /// convolved on its own (the number of channels for a depthwise convolution).
    pub groups: usize,
}

impl Conv3dParams {
    /// The same stride, padding and dilation on all three axes.
    pub fn uniform(stride: usize, padding: usize, dilation: usize) -> Self {
        Self {
            stride: [stride; 3],
            padding: [padding; 3],
            dilation: [dilation; 3],
            groups: 1,
        }
    }

    /// The same parameters with `groups` channel groups.
    pub fn with_groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }
}

impl Default for Conv3dParams {
    fn default() -> Self {
        Self::uniform(1, 0, 1)
    }
}

/// Every extent of one convolution: `x [n, c, d, h, w]`, `weight [co, c/groups, kd, kh, kw]`,
/// `y [n, co, od, oh, ow]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input spatial extents (d, h, w).
    pub input: [usize; 3],
    /// Output channels.
    pub co: usize,
    /// Kernel extents (kd, kh, kw).
    pub kernel: [usize; 3],
    /// Output spatial extents (od, oh, ow).
    pub output: [usize; 3],
    /// Stride, padding and dilation.
    pub params: Conv3dParams,
}

/// Output extent of one axis, or `None` when the dilated kernel does not fit.
fn output_extent(input: usize, kernel: usize, p: &Conv3dParams, axis: usize) -> Option<usize> {
    let span = p.dilation[axis] * (kernel - 1) + 1;
    let padded = input + 2 * p.padding[axis];
    (padded >= span).then(|| (padded - span) / p.stride[axis] + 1)
}

impl Geometry {
    /// Geometry of `conv3d(x, weight)` for `x` of dims `[n, c, d, h, w]` and `weight` of dims
    /// `[co, c/groups, kd, kh, kw]`.
    pub fn new(x: &[usize], weight: &[usize], params: Conv3dParams) -> Result<Self> {
        if x.len() != 5 || weight.len() != 5 {
            bail!("conv3d expects 5-D input and weight, got {x:?} and {weight:?}")
        }
        if params.stride.contains(&0) || params.dilation.contains(&0) || params.groups == 0 {
            bail!("conv3d: stride, dilation and groups must be positive, got {params:?}")
        }
        if x[1] != weight[1] * params.groups || !weight[0].is_multiple_of(params.groups) {
            bail!(
                "conv3d: input has {} channels and the weight {:?}, which does not fit {} groups",
                x[1],
                weight,
                params.groups
            )
        }
        let kernel = [weight[2], weight[3], weight[4]];
        let input = [x[2], x[3], x[4]];
        let mut output = [0; 3];
        for axis in 0..3 {
            output[axis] =
                output_extent(input[axis], kernel[axis], &params, axis).ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "conv3d: kernel {kernel:?} with {params:?} does not fit input {input:?}"
                    ))
                })?;
        }
        Ok(Self {
            n: x[0],
            c: x[1],
            input,
            co: weight[0],
            kernel,
            output,
            params,
        })
    }

    /// Taps of the kernel per input channel (kd·kh·kw).
    pub fn kernel_volume(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Rows of the column matrix: c·kd·kh·kw (of one group, for [`Geometry::unit`]).
    pub fn col_rows(&self) -> usize {
        self.c * self.kernel_volume()
    }

    /// The convolution of one sample and one channel group: `n` = 1, `c` and `co` divided by
    /// the groups.
    pub fn unit(&self) -> Self {
        let groups = self.params.groups;
        Self {
            n: 1,
            c: self.c / groups,
            co: self.co / groups,
            params: Conv3dParams {
                groups: 1,
                ..self.params
            },
            ..*self
        }
    }

    /// Voxels of one input channel.
    pub fn input_volume(&self) -> usize {
        self.input.iter().product()
    }

    /// Voxels of one output channel.
    pub fn output_volume(&self) -> usize {
        self.output.iter().product()
    }

    /// Dims of the output tensor.
    pub fn output_dims(&self) -> [usize; 5] {
        [
            self.n,
            self.co,
            self.output[0],
            self.output[1],
            self.output[2],
        ]
    }
}

/// Where one output row of one kernel tap reads its input row.
pub(crate) struct RowMap {
    /// Offset of the input row inside one channel.
    pub base: usize,
    /// First output position that reads inside the input.
    pub lo: usize,
    /// One past the last output position that reads inside the input.
    pub hi: usize,
    /// Input column read by output position `lo`.
    pub ix0: usize,
}

/// Maps output row `(od, oh)` of kernel tap `tap = (kz, ky, kx)` onto the input, or `None` when
/// the whole row falls into the padding.
pub(crate) fn row_map(g: &Geometry, tap: [usize; 3], od: usize, oh: usize) -> Option<RowMap> {
    let p = &g.params;
    let iz = (od * p.stride[0] + tap[0] * p.dilation[0]).checked_sub(p.padding[0])?;
    let iy = (oh * p.stride[1] + tap[1] * p.dilation[1]).checked_sub(p.padding[1])?;
    if iz >= g.input[0] || iy >= g.input[1] {
        return None;
    }
    let (width, pad, stride) = (g.input[2], p.padding[2], p.stride[2]);
    let offset = tap[2] * p.dilation[2];
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    if width + pad <= offset {
        return None;
    }
    let hi = ((width - 1 + pad - offset) / stride + 1).min(g.output[2]);
    if lo >= hi {
        return None;
    }
    Some(RowMap {
        base: (iz * g.input[1] + iy) * width,
        lo,
        hi,
        ix0: lo * stride + offset - pad,
    })
}

/// Kernel tap `(kz, ky, kx)` of flat tap index `index`.
pub(crate) fn unravel_tap(index: usize, kernel: [usize; 3]) -> [usize; 3] {
    [
        index / (kernel[1] * kernel[2]),
        (index / kernel[2]) % kernel[1],
        index % kernel[2],
    ]
}
