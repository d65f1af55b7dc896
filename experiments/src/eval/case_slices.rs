//! The case slices of a report's figure: the axial slice of a case with the most tumour, its
//! images, its reference labels and the labels predicted from every modality and from each
//! modality alone.

use anyhow::Result;
use metakd_data::preprocess::{PreparedCase, REGION_WT};
use metakd_data::Modality;
use metakd_model::nets::ModalityFeatures;
use metakd_reports::slices::CaseSlices;

use crate::eval::inference::{predicted_regions, Inference};
use metakd_data::preprocess::label_of_regions;
use metakd_model::method::Subset;

/// The axial slice (first axis) of `regions [d, h, w]` with the most whole-tumour voxels; the
/// middle slice when there is no tumour.
pub fn slice_with_most_tumour(regions: &[u8], shape: [usize; 3]) -> usize {
    let plane = shape[1] * shape[2];
    let counts: Vec<usize> = regions
        .chunks(plane)
        .map(|p| p.iter().filter(|&&r| r & REGION_WT != 0).count())
        .collect();
    match counts.iter().max() {
        Some(&most) if most > 0 => counts.iter().position(|&c| c == most).unwrap_or(0),
        _ => shape[0] / 2,
    }
}

/// Plane `z` of `values [d, h, w]`, transposed to rows along w (y) and columns along h (x), the
/// way axial slices are usually shown.
fn plane<T: Copy>(values: &[T], shape: [usize; 3], z: usize) -> Vec<T> {
    let [_, h, w] = shape;
    let mut out = Vec::with_capacity(h * w);
    for y in 0..w {
        for x in 0..h {
            out.push(values[(z * h + x) * w + y]);
        }
    }
    out
}

/// The slices of `case` for the figure, predicted by `inference` with every modality and with
/// each one alone.
pub fn case_slices(
    inference: &Inference<'_>,
    zero: &ModalityFeatures,
    case: &PreparedCase,
    modalities: &[String],
) -> Result<CaseSlices> {
    let m = modalities.len();
    let mut subsets: Vec<Subset> = vec![Subset::full(m)];
    subsets.extend((0..m).map(|i| Subset(1 << i)));
    let probabilities = inference.predict(case, &subsets, zero)?;
    let shape = case.shape;
    let z = slice_with_most_tumour(&case.regions, shape);
    let labels = |regions: &[u8]| -> Vec<u8> {
        plane(regions, shape, z)
            .into_iter()
            .map(label_of_regions)
            .collect()
    };
    let voxels = case.voxels();
    Ok(CaseSlices {
        case: case.id.clone(),
        slice: z,
        height: shape[2],
        width: shape[1],
        modalities: modalities.to_vec(),
        images: (0..m)
            .map(|c| plane(&case.images[c * voxels..(c + 1) * voxels], shape, z))
            .collect(),
        reference: labels(&case.regions),
        predictions: subsets
            .iter()
            .zip(&probabilities)
            .map(|(s, p)| {
                let name = if s.0.count_ones() as usize == m {
                    "all modalities".to_owned()
                } else {
                    s.name(&Modality::DISPLAY_NAMES)
                };
                (
                    name,
                    labels(&predicted_regions(p, inference.eval.threshold)),
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slice_with_the_most_tumour_is_chosen() {
        let shape = [3, 2, 2];
        let mut regions = vec![0u8; 12];
        regions[4] = REGION_WT; // slice 1: one voxel
        regions[8] = REGION_WT; // slice 2: two voxels
        regions[11] = REGION_WT;
        assert_eq!(slice_with_most_tumour(&regions, shape), 2);
        assert_eq!(slice_with_most_tumour(&[0; 12], shape), 1, "the middle");
    }

    #[test]
    fn planes_are_transposed_slices() {
        // [d, h, w] = [2, 2, 3]: value = 100 z + 10 x + y.
        let values: Vec<u32> = (0..2)
            .flat_map(|z| (0..2).flat_map(move |x| (0..3).map(move |y| 100 * z + 10 * x + y)))
            .collect();
        assert_eq!(
            plane(&values, [2, 2, 3], 1),
            vec![100, 110, 101, 111, 102, 112]
        );
    }
}
