//! Preprocessing of one case: crop to the brain's bounding box (keeping the offsets), z-score each
//! modality over its brain voxels, and derive the ET/TC/WT region masks from the labels.

use ndarray::{s, Array3};

use crate::brats::RawCase;
use crate::error::{DataError, Result};
use crate::modality::Modality;

/// Bit of the enhancing-tumour region (label 4) in a region mask.
pub const REGION_ET: u8 = 1;
/// Bit of the tumour-core region (labels 1 and 4).
pub const REGION_TC: u8 = 2;
/// Bit of the whole-tumour region (labels 1, 2 and 4).
pub const REGION_WT: u8 = 4;

/// The region bits of one BraTS label.
pub fn regions_of_label(label: u8) -> u8 {
    match label {
        4 => REGION_ET | REGION_TC | REGION_WT,
        1 => REGION_TC | REGION_WT,
        2 => REGION_WT,
        _ => 0,
    }
}

/// A preprocessed case, cropped to its brain.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedCase {
    /// The case id.
    pub id: String,
    /// Extents (d, h, w) before cropping.
    pub original_shape: [usize; 3],
    /// First voxel of the crop in the original grid.
    pub crop_offset: [usize; 3],
    /// Extents (d, h, w) after cropping.
    pub shape: [usize; 3],
    /// Voxel size in mm along (x, y, z).
    pub spacing: [f32; 3],
    /// Voxel-to-world affine of the original grid, 3×4 row-major.
    pub affine: [f32; 12],
    /// Z-scored images, `[4, d, h, w]` flattened, background 0.
    pub images: Vec<f32>,
    /// BraTS labels `[d, h, w]` flattened (all 0 when the release has none).
    pub labels: Vec<u8>,
    /// Region bits (`REGION_ET | REGION_TC | REGION_WT`) per voxel.
    pub regions: Vec<u8>,
}

impl PreparedCase {
    /// Voxels per modality.
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// The image of one modality.
    pub fn image(&self, m: Modality) -> &[f32] {
        let v = self.voxels();
        &self.images[m.index() * v..(m.index() + 1) * v]
    }
}

/// The bounding box `[start, end)` of the voxels where any image is non-zero.
fn brain_bounding_box(case: &RawCase) -> Option<([usize; 3], [usize; 3])> {
    let shape = case.images[0].shape();
    let mut lo = shape;
    let mut hi = [0; 3];
    for image in &case.images {
        for ((z, x, y), &v) in image.data.indexed_iter() {
            if v != 0.0 {
                for (axis, i) in [z, x, y].into_iter().enumerate() {
                    lo[axis] = lo[axis].min(i);
                    hi[axis] = hi[axis].max(i + 1);
                }
            }
        }
    }
    (hi[0] > 0).then_some((lo, hi))
}

/// Z-scores `image` over its non-zero voxels (population standard deviation); zeros stay 0.
fn zscore_brain(image: &mut Array3<f32>, case: &str, m: Modality) -> Result<()> {
    let (mut n, mut sum) = (0usize, 0f64);
    for &v in image.iter().filter(|v| **v != 0.0) {
        n += 1;
        sum += f64::from(v);
    }
    if n == 0 {
        return Err(DataError::EmptyVolume {
            case: case.to_owned(),
            modality: m.display_name().to_owned(),
        });
    }
    let mean = sum / n as f64;
    let var = image
        .iter()
        .filter(|v| **v != 0.0)
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    let std = var.sqrt().max(1e-8);
    image.mapv_inplace(|v| {
        if v == 0.0 {
            0.0
        } else {
            ((f64::from(v) - mean) / std) as f32
        }
    });
    Ok(())
}

/// Crops, normalises and labels one case.
pub fn prepare_case(case: &RawCase) -> Result<PreparedCase> {
    let original_shape = case.images[0].shape();
    let (lo, hi) = brain_bounding_box(case).ok_or_else(|| DataError::EmptyVolume {
        case: case.id.clone(),
        modality: "every modality".into(),
    })?;
    let crop = s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]];
    let shape = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let mut images = Vec::with_capacity(4 * shape.iter().product::<usize>());
    for (m, volume) in Modality::ALL.iter().zip(&case.images) {
        let mut cropped = volume.data.slice(crop).to_owned();
        zscore_brain(&mut cropped, &case.id, *m)?;
        images.extend(cropped.iter());
    }
    let labels: Vec<u8> = match &case.labels {
        Some(l) => l.slice(crop).iter().copied().collect(),
        None => vec![0; shape.iter().product()],
    };
    let regions = labels.iter().map(|&l| regions_of_label(l)).collect();
    let a = case.images[0].affine;
    let mut affine = [0f32; 12];
    for (r, row) in a.iter().enumerate() {
        affine[r * 4..r * 4 + 4].copy_from_slice(row);
    }
    Ok(PreparedCase {
        id: case.id.clone(),
        original_shape,
        crop_offset: lo,
        shape,
        spacing: case.images[0].spacing,
        affine,
        images,
        labels,
        regions,
    })
}
