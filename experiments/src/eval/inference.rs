//! Sliding-window evaluation of one case for every modality subset (method spec, section 8).
//!
//! The encoder sees each modality on its own, so per tile it runs once on the case's images and
//! once (per evaluation) on a zero image; every subset then reuses those features: available
//! modalities take their own, missing ones the zero image's, exactly as a naive per-subset forward
//! pass with zeroed channels would compute them.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use metakd_data::preprocess::{label_of_regions, regions_of_label, PreparedCase};
use metakd_model::nets::ModalityFeatures;
use metakd_model::ops::autocast;

use crate::batches::sampler::{extract, OUTPUT_REGIONS};
use crate::eval::postprocess::postprocess_regions;
use crate::metrics::{case_metrics, Grid, RegionMetrics};
use crate::run::config::{EvalConfig, RunConfig, TileWeighting};
use crate::run::model::Model;
use crate::train::step::mask_missing;
use metakd_model::method::Subset;

/// Start positions of the tiles along one axis: `tile`-long windows whose neighbours share about
/// `overlap` of their extent, the last one flush with the end.
pub fn tile_starts(extent: usize, tile: usize, overlap: f64) -> Vec<usize> {
    if extent <= tile {
        return vec![0];
    }
    let step = ((tile as f64 * (1.0 - overlap)).round() as usize).max(1);
    let last = extent - tile;
    let mut starts: Vec<usize> = (0..last).step_by(step).collect();
    starts.push(last);
    starts
}

/// The encoder's features of a zero image of one tile's size.
pub fn zero_features(model: &Model, tile: [usize; 3], device: &Device) -> Result<ModalityFeatures> {
    let m = model.net.config().modalities;
    let zeros = Tensor::zeros(
        (1, m, tile[0], tile[1], tile[2]),
        candle_core::DType::F32,
        device,
    )?;
    Ok(model.net.encode(&zeros)?.detach())
}

/// The weight of each voxel of a tile when overlapping tiles are averaged, `[d, h, w]` C order.
pub fn tile_weights(tile: [usize; 3], weighting: TileWeighting) -> Vec<f32> {
    let voxels = tile.iter().product();
    match weighting {
        TileWeighting::Uniform => vec![1.0; voxels],
        TileWeighting::Gaussian => {
            // exp(−Σ (x − c)² / 2σ²) with σ = tile / 8, scaled to a maximum of 1.
            let axis = |a: usize| -> Vec<f64> {
                let (centre, sigma) = ((tile[a] as f64 - 1.0) / 2.0, tile[a] as f64 / 8.0);
                (0..tile[a])
                    .map(|i| (-(i as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp())
                    .collect()
            };
            let (z, y, x) = (axis(0), axis(1), axis(2));
            let peak = z.iter().cloned().fold(0.0, f64::max)
                * y.iter().cloned().fold(0.0, f64::max)
                * x.iter().cloned().fold(0.0, f64::max);
            let mut out = Vec::with_capacity(voxels);
            for wz in &z {
                for wy in &y {
                    for wx in &x {
                        out.push((wz * wy * wx / peak) as f32);
                    }
                }
            }
            out
        }
    }
}

/// Region bits per voxel (`REGION_*`) of probabilities `[3, voxels]` in output-channel order,
/// read back from the BraTS label map they make ([`label_of_regions`]): the regions that a
/// submitted label map is scored on, nested as ET ⊂ TC ⊂ WT.
pub fn predicted_regions(probabilities: &[f32], threshold: f32) -> Vec<u8> {
    let voxels = probabilities.len() / OUTPUT_REGIONS.len();
    let mut regions = vec![0u8; voxels];
    for (c, &bit) in OUTPUT_REGIONS.iter().enumerate() {
        for (r, &p) in regions
            .iter_mut()
            .zip(&probabilities[c * voxels..(c + 1) * voxels])
        {
            if p > threshold {
                *r |= bit;
            }
        }
    }
    for r in &mut regions {
        *r = regions_of_label(label_of_regions(*r));
    }
    regions
}

/// Sliding-window inference of one model (method spec, section 8): tiles of the training crop's
/// size, overlapping by `eval.overlap`, averaged with `eval.weighting`.
#[derive(Clone, Copy)]
pub struct Inference<'a> {
    /// The trained model.
    pub model: &'a Model,
    /// Tile extents (d, h, w).
    pub tile: [usize; 3],
    /// Overlap, weighting and threshold.
    pub eval: &'a EvalConfig,
    /// Where the network runs.
    pub device: &'a Device,
}

/// Sigmoid probabilities of `logits [b, 3, ...]`, flattened.
fn probabilities(logits: &Tensor) -> Result<Vec<f32>> {
    Ok(candle_nn::ops::sigmoid(logits)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

impl<'a> Inference<'a> {
    /// The inference a run's configuration describes (tiles of its training crop, its `[eval]`
    /// settings), with the zero image's features it needs.
    pub fn of_run(
        model: &'a Model,
        cfg: &'a RunConfig,
        device: &'a Device,
    ) -> Result<(Self, ModalityFeatures)> {
        let tile = cfg.train.crop;
        let inference = Self {
            model,
            tile,
            eval: &cfg.eval,
            device,
        };
        let _precision = autocast(cfg.eval.precision);
        Ok((inference, zero_features(model, tile, device)?))
    }

    /// Slides a tile-sized window over the case's cropped volume and averages, with the configured
    /// weighting, the sigmoid probabilities that `predict` returns — for a batch of up to
    /// `eval.tile_batch` tiles `[b, m, tile]`, one `[b, 3, tile]` map (output-channel order) per
    /// entry of a list of `outputs` predictions. Returns one `[3, voxels]` map per prediction.
    /// The convolutions run in `eval.precision`.
    fn slide(
        &self,
        case: &PreparedCase,
        outputs: usize,
        mut predict: impl FnMut(&Tensor) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Vec<Vec<f32>>> {
        let (tile, eval) = (self.tile, self.eval);
        let _precision = autocast(eval.precision);
        let m = case.images.len() / case.voxels();
        let shape = case.shape;
        let voxels: usize = shape.iter().product();
        let tile_voxels: usize = tile.iter().product();
        let weights = tile_weights(tile, eval.weighting);
        let mut sums = vec![vec![0f32; 3 * voxels]; outputs];
        let mut totals = vec![0f32; voxels];
        let starts: Vec<Vec<usize>> = (0..3)
            .map(|a| tile_starts(shape[a], tile[a], eval.overlap))
            .collect();
        let mut positions = Vec::new();
        for &z0 in &starts[0] {
            for &y0 in &starts[1] {
                for &x0 in &starts[2] {
                    positions.push([z0, y0, x0]);
                }
            }
        }
        for batch in positions.chunks(eval.tile_batch.max(1)) {
            let mut images = Vec::with_capacity(batch.len() * m * tile_voxels);
            for &start in batch {
                images.extend(extract(case, start, tile, [false; 3])?.images);
            }
            let x = Tensor::from_vec(
                images,
                (batch.len(), m, tile[0], tile[1], tile[2]),
                self.device,
            )?;
            let probabilities = predict(&x)?;
            for (k, &[z0, y0, x0]) in batch.iter().enumerate() {
                // Tile voxel t and volume voxel v of every tile voxel inside the volume.
                let mut inside = Vec::with_capacity(tile_voxels);
                for tz in 0..tile[0].min(shape[0] - z0) {
                    for ty in 0..tile[1].min(shape[1] - y0) {
                        for tx in 0..tile[2].min(shape[2] - x0) {
                            let t = (tz * tile[1] + ty) * tile[2] + tx;
                            let v = ((z0 + tz) * shape[1] + y0 + ty) * shape[2] + x0 + tx;
                            inside.push((t, v));
                        }
                    }
                }
                for &(t, v) in &inside {
                    totals[v] += weights[t];
                }
                for (sum, probs) in sums.iter_mut().zip(&probabilities) {
                    let probs = &probs[k * 3 * tile_voxels..(k + 1) * 3 * tile_voxels];
                    for c in 0..3 {
                        for &(t, v) in &inside {
                            sum[c * voxels + v] += weights[t] * probs[c * tile_voxels + t];
                        }
                    }
                }
            }
        }
        for sum in &mut sums {
            for c in 0..3 {
                for (s, t) in sum[c * voxels..(c + 1) * voxels].iter_mut().zip(&totals) {
                    *s /= t;
                }
            }
        }
        Ok(sums)
    }

    /// Slides over the case with one prediction per subset and tile: `prepare` runs once per
    /// tile on its images, `logits` once per subset on what `prepare` returned and the subset's
    /// flags.
    fn slide_subsets<T>(
        &self,
        case: &PreparedCase,
        subsets: &[Subset],
        prepare: impl Fn(&Tensor) -> Result<T>,
        logits: impl Fn(&T, &[bool]) -> Result<Tensor>,
    ) -> Result<Vec<Vec<f32>>> {
        let m = self.model.net.config().modalities;
        self.slide(case, subsets.len(), |x| {
            let prepared = prepare(x)?;
            subsets
                .iter()
                .map(|subset| probabilities(&logits(&prepared, &subset.flags(m))?))
                .collect()
        })
    }

    /// The averaged probabilities `[3, voxels]` (output-channel order, on the case's cropped
    /// grid) of each of `subsets`. Per tile the encoder runs once on the case's images; every
    /// subset reuses those features, missing modalities taking the features of the zero image
    /// (`zero`, from [`zero_features`]).
    pub fn predict(
        &self,
        case: &PreparedCase,
        subsets: &[Subset],
        zero: &ModalityFeatures,
    ) -> Result<Vec<Vec<f32>>> {
        let net = &self.model.net;
        self.slide_subsets(
            case,
            subsets,
            |x| Ok(net.encode(x)?.detach()),
            |features, available| {
                let own_or_zero = features.with_missing_as(available, zero)?;
                Ok(net.decode(&own_or_zero, available)?)
            },
        )
    }

    /// The same probabilities as [`Inference::predict`] from one full forward pass per subset
    /// and tile, with the missing modalities' channels zeroed: the evaluation the cached one must
    /// equal.
    pub fn predict_naive(&self, case: &PreparedCase, subsets: &[Subset]) -> Result<Vec<Vec<f32>>> {
        let net = &self.model.net;
        self.slide_subsets(
            case,
            subsets,
            |x| Ok(x.clone()),
            |x, available| Ok(net.decode(&net.encode(&mask_missing(x, available)?)?, available)?),
        )
    }

    /// Metrics (ET, TC, WT) of `case` for each of `subsets`, by sliding-window inference with the
    /// cached encoder features, as predicted and, when `eval.postprocess` is set, after the
    /// post-processing. The voxels outside the case's crop are background in both the prediction
    /// and the reference, and count as such for specificity.
    pub fn evaluate(
        &self,
        case: &PreparedCase,
        subsets: &[Subset],
        zero: &ModalityFeatures,
    ) -> Result<Vec<SubsetScores>> {
        if !case.labelled {
            bail!("case {} has no label map to score against", case.id)
        }
        let grid = Grid::of_zxy_volume(case.shape, case.spacing);
        let outside = case.original_shape.iter().product::<usize>() - case.voxels();
        let score = |regions: &[u8]| case_metrics(regions, &case.regions, &grid, outside);
        Ok(self
            .predict(case, subsets, zero)?
            .iter()
            .map(|p| {
                let mut regions = predicted_regions(p, self.eval.threshold);
                let raw = score(&regions);
                let postprocessed = self.eval.postprocess.then(|| {
                    postprocess_regions(&mut regions, case, self.eval.postprocess_rule);
                    score(&regions)
                });
                SubsetScores { raw, postprocessed }
            })
            .collect())
    }
}

/// The metrics (ET, TC, WT) of one case and subset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubsetScores {
    /// Of the predicted label map.
    pub raw: [RegionMetrics; 3],
    /// Of the post-processed label map, when post-processing is on.
    pub postprocessed: Option<[RegionMetrics; 3]>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use metakd_data::preprocess::{REGION_ET, REGION_TC, REGION_WT};

    #[test]
    fn predicted_regions_are_those_of_the_label_map() {
        // Voxels: ET only, TC only, WT only, nothing (channels in ET, WT, TC output order).
        let probabilities = [
            0.9, 0.1, 0.1, 0.1, // ET
            0.1, 0.1, 0.9, 0.1, // WT
            0.1, 0.9, 0.1, 0.1, // TC
        ];
        let all = REGION_ET | REGION_TC | REGION_WT;
        assert_eq!(
            predicted_regions(&probabilities, 0.5),
            vec![all, REGION_TC | REGION_WT, REGION_WT, 0]
        );
    }

    #[test]
    fn tiles_cover_the_volume_with_the_requested_overlap() {
        assert_eq!(tile_starts(32, 32, 1.0 / 3.0), vec![0]);
        assert_eq!(tile_starts(20, 32, 1.0 / 3.0), vec![0]);
        assert_eq!(tile_starts(60, 32, 1.0 / 3.0), vec![0, 21, 28]);
        assert_eq!(tile_starts(96, 32, 0.5), vec![0, 16, 32, 48, 64]);
    }
}
