//! Segmentation metrics per case and region, with the conventions of the method spec (section 8)
//! and the BraTS challenge: Dice, HD95 in millimetres, sensitivity and specificity of the ET, TC
//! and WT regions; classification metrics in [`classification`].

pub mod classification;
pub mod surface;

use serde::{Deserialize, Serialize};

use metakd_data::preprocess::{REGION_ET, REGION_TC, REGION_WT};
pub use surface::Grid;

/// HD95 when exactly one of the two masks is empty (the BraTS convention: the diagonal of the
/// 240×240×155 grid, in mm).
pub const HD95_ONE_EMPTY: f64 = 373.13;

/// The regions reported, in table order, with their names.
pub const REGIONS: [(u8, &str); 3] = [(REGION_ET, "ET"), (REGION_TC, "TC"), (REGION_WT, "WT")];

/// The metrics of one region of one case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegionMetrics {
    /// 2·|P ∩ R| / (|P| + |R|); 1 when both are empty.
    pub dice: f64,
    /// 95th percentile of the pooled surface distances in mm; 0 when both masks are empty,
    /// [`HD95_ONE_EMPTY`] when exactly one is.
    pub hd95: f64,
    /// |P ∩ R| / |R|; 1 when the reference is empty (nothing to find).
    pub sensitivity: f64,
    /// |¬P ∩ ¬R| / |¬R|; 1 when the reference covers the whole grid.
    pub specificity: f64,
}

/// The voxel counts of a prediction against a reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Confusion {
    true_positive: usize,
    false_positive: usize,
    false_negative: usize,
    true_negative: usize,
}

impl Confusion {
    fn of(predicted: &[bool], reference: &[bool]) -> Self {
        let mut c = Self::default();
        for (&p, &r) in predicted.iter().zip(reference) {
            match (p, r) {
                (true, true) => c.true_positive += 1,
                (true, false) => c.false_positive += 1,
                (false, true) => c.false_negative += 1,
                (false, false) => c.true_negative += 1,
            }
        }
        c
    }
}

/// Ratio with a stated value for an empty denominator.
fn ratio(numerator: usize, denominator: usize, if_empty: f64) -> f64 {
    if denominator == 0 {
        if_empty
    } else {
        numerator as f64 / denominator as f64
    }
}

/// The metrics of a predicted mask against a reference mask on `grid`; `outside` voxels beyond
/// the grid (the rest of a volume the grid was cropped from) are background in both and count
/// as true negatives.
pub fn region_metrics(
    predicted: &[bool],
    reference: &[bool],
    grid: &Grid,
    outside: usize,
) -> RegionMetrics {
    assert_eq!(predicted.len(), reference.len(), "mask sizes differ");
    let mut c = Confusion::of(predicted, reference);
    c.true_negative += outside;
    let (predicted_voxels, reference_voxels) = (
        c.true_positive + c.false_positive,
        c.true_positive + c.false_negative,
    );
    let hd95 = match (predicted_voxels, reference_voxels) {
        (0, 0) => 0.0,
        (0, _) | (_, 0) => HD95_ONE_EMPTY,
        _ => surface::hd95(predicted, reference, grid),
    };
    RegionMetrics {
        dice: ratio(
            2 * c.true_positive,
            predicted_voxels + reference_voxels,
            1.0,
        ),
        hd95,
        sensitivity: ratio(c.true_positive, reference_voxels, 1.0),
        specificity: ratio(c.true_negative, c.true_negative + c.false_positive, 1.0),
    }
}

/// The metrics of ET, TC and WT (in [`REGIONS`] order) of a predicted region-bit map against a
/// reference one (bits `REGION_*` per voxel, C order over `grid`), with `outside` background
/// voxels beyond the grid (see [`region_metrics`]).
pub fn case_metrics(
    predicted: &[u8],
    reference: &[u8],
    grid: &Grid,
    outside: usize,
) -> [RegionMetrics; 3] {
    REGIONS.map(|(bit, _)| {
        let mask =
            |regions: &[u8]| -> Vec<bool> { regions.iter().map(|&r| r & bit != 0).collect() };
        region_metrics(&mask(predicted), &mask(reference), grid, outside)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(shape: [usize; 3]) -> Grid {
        Grid {
            shape,
            spacing: [1.0; 3],
        }
    }

    #[test]
    fn empty_mask_conventions() {
        let g = grid([2, 2, 2]);
        let none = vec![false; 8];
        let mut one = vec![false; 8];
        one[3] = true;
        let both_empty = region_metrics(&none, &none, &g, 0);
        assert_eq!(both_empty.dice, 1.0);
        assert_eq!(both_empty.hd95, 0.0);
        assert_eq!(both_empty.sensitivity, 1.0);
        assert_eq!(both_empty.specificity, 1.0);
        let missed = region_metrics(&none, &one, &g, 0);
        assert_eq!(missed.dice, 0.0);
        assert_eq!(missed.hd95, HD95_ONE_EMPTY);
        assert_eq!(missed.sensitivity, 0.0);
        let invented = region_metrics(&one, &none, &g, 0);
        assert_eq!(invented.dice, 0.0);
        assert_eq!(invented.hd95, HD95_ONE_EMPTY);
        assert_eq!(invented.sensitivity, 1.0);
        assert!((invented.specificity - 7.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn counts_give_dice_sensitivity_and_specificity() {
        let g = grid([1, 2, 5]);
        let predicted = [
            true, true, true, false, false, false, false, false, false, false,
        ];
        let reference = [
            false, true, true, true, true, false, false, false, false, false,
        ];
        let m = region_metrics(&predicted, &reference, &g, 0);
        // TP 2, FP 1, FN 2, TN 5.
        assert!((m.dice - 4.0 / 7.0).abs() < 1e-12);
        assert!((m.sensitivity - 0.5).abs() < 1e-12);
        assert!((m.specificity - 5.0 / 6.0).abs() < 1e-12);
        // Identical masks are at distance 0.
        assert_eq!(region_metrics(&reference, &reference, &g, 0).hd95, 0.0);
    }

    #[test]
    fn regions_are_read_from_their_bits() {
        let g = grid([1, 1, 3]);
        let all = REGION_ET | REGION_TC | REGION_WT;
        let predicted = [all, REGION_WT, 0];
        let reference = [all, REGION_TC | REGION_WT, 0];
        let [et, tc, wt] = case_metrics(&predicted, &reference, &g, 0);
        assert_eq!(et.dice, 1.0);
        assert!((tc.dice - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(wt.dice, 1.0);
    }
}
