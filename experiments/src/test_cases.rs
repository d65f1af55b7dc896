//! Cases built in memory for the unit tests.

use metakd_data::metadata::CaseMetadata;
use metakd_data::preprocess::{regions_of_label, ClipOutcome, PreparedCase};

/// A labelled case `id` of `shape` that is its own whole volume, with `images` (`[4, shape]`)
/// and BraTS `labels`.
pub fn labelled_case(
    id: &str,
    shape: [usize; 3],
    images: Vec<f32>,
    labels: Vec<u8>,
) -> PreparedCase {
    PreparedCase {
        id: id.into(),
        release: None,
        grade: None,
        metadata: CaseMetadata::new(),
        original_shape: shape,
        crop_offset: [0; 3],
        shape,
        spacing: [1.0; 3],
        affine: [0.0; 12],
        images,
        labelled: true,
        regions: labels.iter().map(|&l| regions_of_label(l)).collect(),
        labels,
        clipping: [ClipOutcome::Unclipped; 4],
        normalisation: None,
    }
}
