//! Atrous spatial pyramid pooling (method spec, section 3): a 1×1×1 branch, 3×3×3 branches with
//! growing dilation and a global-average-pool branch, concatenated and fused by a 1×1×1 block.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::ConvBlock;
use crate::ops::{self, Conv3dParams, ResampleTo};

/// The ASPP module (parameters `branches.{b}.*`, `pool.*`, `project.*`).
#[derive(Debug, Clone)]
pub struct Aspp {
    branches: Vec<ConvBlock>,
    pool: ConvBlock,
    project: ConvBlock,
}

impl Aspp {
    /// ASPP from `ci` to `co` channels: branch 0 is 1×1×1, branch b ≥ 1 is 3×3×3 with dilation
    /// `dilations[b − 1]` (padding equal to the dilation); every branch has `co` channels.
    pub fn new(
        ci: usize,
        co: usize,
        dilations: &[usize],
        slope: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vbb = vb.pp("branches");
        let mut branches = vec![ConvBlock::new(ci, co, 1, 1, slope, vbb.pp(0))?];
        for (b, &d) in dilations.iter().enumerate() {
            let params = Conv3dParams::uniform(1, d, d);
            branches.push(ConvBlock::with_params(
                ci,
                co,
                3,
                params,
                slope,
                vbb.pp(b + 1),
            )?);
        }
        let pool = ConvBlock::new(ci, co, 1, 1, slope, vb.pp("pool"))?;
        let project = ConvBlock::new(co * (branches.len() + 1), co, 1, 1, slope, vb.pp("project"))?;
        Ok(Self {
            branches,
            pool,
            project,
        })
    }

    /// Applies the module to `x [n, ci, d, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, d, h, w) = x.dims5()?;
        let mut outputs = self
            .branches
            .iter()
            .map(|b| b.forward(x))
            .collect::<Result<Vec<_>>>()?;
        // Instance norm of the pooled 1×1×1 feature is its bias, as in the reference.
        let pooled = self.pool.forward(&ops::global_avg_pool3d(x)?)?;
        outputs.push(ops::upsample_trilinear3d(
            &pooled,
            ResampleTo::Size([d, h, w]),
            true,
        )?);
        self.project.forward(&Tensor::cat(&outputs, 1)?)
    }
}
