//! Sliding-window evaluation of one case for every modality subset (method spec, section 8).
//!
//! The encoder sees each modality on its own, so per tile it runs once on the case's images and
//! once (per evaluation) on a zero image; every subset then reuses those features: available
//! modalities take their own, missing ones the zero image's, exactly as a naive per-subset forward
//! pass with zeroed channels would compute them.

use anyhow::Result;
use candle_core::{Device, Tensor};
use metakd_data::preprocess::{PreparedCase, REGION_ET, REGION_TC, REGION_WT};
use metakd_model::nets::ModalityFeatures;

use crate::checkpoint::Model;
use crate::config::EvalConfig;
use crate::sampler::{extract, OUTPUT_REGIONS};
use crate::subsets::Subset;

/// Regions in reporting order (ET, TC, WT).
pub const REPORT_REGIONS: [u8; 3] = [REGION_ET, REGION_TC, REGION_WT];

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

/// Dice of two binary masks given as counts: both empty → 1, one empty → 0.
pub fn dice(intersection: usize, predicted: usize, reference: usize) -> f64 {
    if predicted + reference == 0 {
        1.0
    } else {
        2.0 * intersection as f64 / (predicted + reference) as f64
    }
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

/// Dice (ET, TC, WT) of `case` for each of `subsets`, by sliding-window inference with uniform
/// averaging of the sigmoid probabilities.
pub fn evaluate_case(
    model: &Model,
    case: &PreparedCase,
    tile: [usize; 3],
    eval: &EvalConfig,
    subsets: &[Subset],
    zero: &ModalityFeatures,
    device: &Device,
) -> Result<Vec<[f64; 3]>> {
    let m = model.net.config().modalities;
    let shape = case.shape;
    let voxels: usize = shape.iter().product();
    let tile_voxels: usize = tile.iter().product();
    let mut sums = vec![vec![0f32; 3 * voxels]; subsets.len()];
    let mut counts = vec![0f32; voxels];
    let starts: Vec<Vec<usize>> = (0..3)
        .map(|a| tile_starts(shape[a], tile[a], eval.overlap))
        .collect();
    for &z0 in &starts[0] {
        for &y0 in &starts[1] {
            for &x0 in &starts[2] {
                let start = [z0, y0, x0];
                let crop = extract(case, start, tile, [false; 3])?;
                let x = Tensor::from_vec(crop.images, (1, m, tile[0], tile[1], tile[2]), device)?;
                let features = model.net.encode(&x)?.detach();
                let inside = |f: &mut dyn FnMut(usize, usize)| {
                    for tz in 0..tile[0].min(shape[0] - z0) {
                        for ty in 0..tile[1].min(shape[1] - y0) {
                            for tx in 0..tile[2].min(shape[2] - x0) {
                                let t = (tz * tile[1] + ty) * tile[2] + tx;
                                let v = ((z0 + tz) * shape[1] + y0 + ty) * shape[2] + x0 + tx;
                                f(t, v);
                            }
                        }
                    }
                };
                inside(&mut |_, v| counts[v] += 1.0);
                for (subset, sum) in subsets.iter().zip(sums.iter_mut()) {
                    let available = subset.flags(m);
                    let logits = model
                        .net
                        .decode(&features.with_missing_as(&available, zero)?, &available)?;
                    let probs = candle_nn::ops::sigmoid(&logits)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                    for c in 0..3 {
                        inside(&mut |t, v| sum[c * voxels + v] += probs[c * tile_voxels + t]);
                    }
                }
            }
        }
    }
    Ok(sums
        .iter()
        .map(|sum| {
            REPORT_REGIONS.map(|region| {
                let channel = OUTPUT_REGIONS
                    .iter()
                    .position(|&r| r == region)
                    .expect("every region is an output");
                let (mut inter, mut pred, mut refr) = (0, 0, 0);
                for v in 0..voxels {
                    let p = sum[channel * voxels + v] / counts[v] > eval.threshold;
                    let g = case.regions[v] & region != 0;
                    inter += usize::from(p && g);
                    pred += usize::from(p);
                    refr += usize::from(g);
                }
                dice(inter, pred, refr)
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_volume_with_the_requested_overlap() {
        assert_eq!(tile_starts(32, 32, 1.0 / 3.0), vec![0]);
        assert_eq!(tile_starts(20, 32, 1.0 / 3.0), vec![0]);
        assert_eq!(tile_starts(60, 32, 1.0 / 3.0), vec![0, 21, 28]);
        assert_eq!(tile_starts(96, 32, 0.5), vec![0, 16, 32, 48, 64]);
    }

    #[test]
    fn dice_follows_the_empty_mask_conventions() {
        assert_eq!(dice(0, 0, 0), 1.0);
        assert_eq!(dice(0, 5, 0), 0.0);
        assert_eq!(dice(0, 0, 5), 0.0);
        assert!((dice(3, 4, 6) - 0.6).abs() < 1e-12);
    }
}
