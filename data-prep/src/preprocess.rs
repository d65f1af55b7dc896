//! Preprocessing of one case as the MetaKD reference implementation does it, per modality on the
//! whole volume: clip the upper intensity tail at the index of the last histogram bin holding at
//! least 50 voxels, z-score over the voxels that differ from the background value (the value at
//! voxel [0, 0, 0]) with the population standard deviation, set the background to 0; then crop
//! all modalities to the union bounding box of their foreground, keeping the offsets. Every step
//! is described in `docs/preprocessing.md`.

use ndarray::s;
use serde::{Deserialize, Serialize};

use crate::brats::RawCase;
use crate::error::{DataError, Result};
use crate::metadata::CaseMetadata;
use crate::modality::Modality;
use crate::release::{Grade, Release};

/// Bit of the enhancing-tumour region (label 4) in a region mask.
pub const REGION_ET: u8 = 1;
/// Bit of the tumour-core region (labels 1 and 4).
pub const REGION_TC: u8 = 2;
/// Bit of the whole-tumour region (labels 1, 2 and 4).
pub const REGION_WT: u8 = 4;

/// Voxels the last kept histogram bin must hold in a BraTS volume (the reference's threshold).
pub const CLIP_MIN_VOXELS: usize = 50;
/// Voxels of a BraTS volume (240 × 240 × 155), the size the reference's threshold is meant for.
pub const BRATS_VOXELS: usize = 240 * 240 * 155;

/// The bin threshold for a volume of `voxels`: `min_voxels` for a BraTS-sized volume, scaled in
/// proportion for other sizes (at least 1), so a small volume is not clipped to its background.
pub fn clip_threshold(min_voxels: usize, voxels: usize) -> usize {
    if voxels == BRATS_VOXELS {
        return min_voxels;
    }
    ((min_voxels as f64 * voxels as f64 / BRATS_VOXELS as f64).round() as usize).max(1)
}

/// The region bits of one BraTS label.
pub fn regions_of_label(label: u8) -> u8 {
    match label {
        4 => REGION_ET | REGION_TC | REGION_WT,
        1 => REGION_TC | REGION_WT,
        2 => REGION_WT,
        _ => 0,
    }
}

/// The preprocessing settings recorded in a shard manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSettings {
    /// Voxels the last kept histogram bin must hold in a 240×240×155 volume (scaled in
    /// proportion for other sizes).
    pub clip_min_voxels: usize,
    /// How the upper tail is clipped.
    pub clipping: String,
    /// How intensities are normalised.
    pub normalisation: String,
    /// How the volumes are cropped.
    pub cropping: String,
    /// Array order of the stored volumes.
    pub axis_order: String,
}

impl Default for PreprocessSettings {
    fn default() -> Self {
        Self {
            clip_min_voxels: CLIP_MIN_VOXELS,
            clipping: "histogram of the whole volume with bins = int(max) over [min, max] (numpy \
                       semantics); k = index of the last bin holding >= clip_min_voxels voxels; \
                       values >= k set to k; the threshold scales with volume size (50 at 240x240x155); no \
                       clipping when k would not exceed the background value"
                .into(),
            normalisation: "z-score over voxels != the value at voxel [0,0,0] (population std, \
                            float64), background set to 0"
                .into(),
            cropping: "union bounding box of the foreground of all four modalities; offsets kept"
                .into(),
            axis_order: "(D, H, W) = (z, x, y), C order".into(),
        }
    }
}

/// What clipping did to one modality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClipOutcome {
    /// Values at or above `level` were set to it.
    Clipped {
        /// The bin index the tail was clipped to.
        level: f32,
        /// Voxels changed.
        voxels: usize,
    },
    /// The volume has no histogram to clip by (its maximum is below 1, so `int(max)` bins would
    /// be none), no bin holds enough voxels, or the level would not exceed the background value.
    Unclipped,
}

/// Bin index of `x` in numpy's uniform histogram of `bins` bins over `[first, last]`, as
/// `np.histogram` computes it (scaled offset, then corrected against the exact edges).
fn numpy_bin(x: f64, first: f64, last: f64, bins: usize, edge: impl Fn(usize) -> f64) -> usize {
    let scaled = (x - first) / (last - first) * bins as f64;
    let mut i = (scaled as usize).min(bins - 1);
    if x < edge(i) && i > 0 {
        i -= 1;
    }
    if i + 1 < bins && x >= edge(i + 1) {
        i += 1;
    }
    i
}

/// Clips the upper intensity tail of `values` in place as the reference does:
/// `hist = np.histogram(v, bins=int(v.max()))`, `k` = index of the last bin with at least
/// `min_voxels` voxels, `v[v >= k] = k` — unless `k` does not exceed the background value
/// `values[0]`, where the reference would wipe out the foreground.
pub fn clip_upper_tail(values: &mut [f32], min_voxels: usize) -> ClipOutcome {
    let Some((min, max)) = values.iter().fold(None, |acc: Option<(f32, f32)>, &v| {
        Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
    }) else {
        return ClipOutcome::Unclipped;
    };
    let bins = max.trunc();
    if !(bins >= 1.0) {
        return ClipOutcome::Unclipped;
    }
    let bins = bins as usize;
    let (mut first, mut last) = (f64::from(min), f64::from(max));
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let step = (last - first) / bins as f64;
    let edge = |i: usize| {
        if i == bins {
            last
        } else {
            i as f64 * step + first
        }
    };
    let mut counts = vec![0usize; bins];
    for &v in values.iter() {
        counts[numpy_bin(f64::from(v), first, last, bins, edge)] += 1;
    }
    let Some(k) = counts.iter().rposition(|&c| c >= min_voxels) else {
        return ClipOutcome::Unclipped;
    };
    let level = k as f32;
    if level <= values[0] {
        return ClipOutcome::Unclipped;
    }
    let mut voxels = 0;
    for v in values.iter_mut().filter(|v| **v >= level) {
        voxels += usize::from(*v != level);
        *v = level;
    }
    ClipOutcome::Clipped { level, voxels }
}

/// Z-scores `values` over the voxels that differ from `background` (population standard
/// deviation, in f64) and sets the background to 0. Returns the foreground mask, or `None` when
/// every voxel is background.
pub fn zscore_foreground(values: &mut [f32], background: f32) -> Option<Vec<bool>> {
    let mask: Vec<bool> = values.iter().map(|&v| v != background).collect();
    let n = mask.iter().filter(|&&m| m).count();
    if n == 0 {
        return None;
    }
    let foreground = || values.iter().zip(&mask).filter(|(_, &m)| m).map(|(&v, _)| f64::from(v));
    let mean = foreground().sum::<f64>() / n as f64;
    let var = foreground().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    let std = if var > 0.0 { var.sqrt() } else { 1.0 };
    for (v, &m) in values.iter_mut().zip(&mask) {
        *v = if m {
            ((f64::from(*v) - mean) / std) as f32
        } else {
            0.0
        };
    }
    Some(mask)
}

/// The bounding box `[start, end)` of the `true` voxels of a `[d, h, w]` mask, if any.
pub fn bounding_box(mask: &[bool], shape: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let [_, h, w] = shape;
    let mut lo = shape;
    let mut hi = [0; 3];
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let p = [i / (h * w), (i / w) % h, i % w];
        for axis in 0..3 {
            lo[axis] = lo[axis].min(p[axis]);
            hi[axis] = hi[axis].max(p[axis] + 1);
        }
    }
    (hi[0] > 0).then_some((lo, hi))
}

/// A preprocessed case, cropped to its foreground.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedCase {
    /// The case id.
    pub id: String,
    /// The release the case comes from, when known.
    pub release: Option<Release>,
    /// The grade, when known.
    pub grade: Option<Grade>,
    /// Columns of the release's CSV tables for this case.
    pub metadata: CaseMetadata,
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
    /// Normalised images, `[4, d, h, w]` flattened, background 0.
    pub images: Vec<f32>,
    /// Whether the case has a label map.
    pub labelled: bool,
    /// Raw BraTS labels (0, 1, 2, 4) `[d, h, w]` flattened (all 0 without a label map).
    pub labels: Vec<u8>,
    /// Region bits (`REGION_ET | REGION_TC | REGION_WT`) per voxel.
    pub regions: Vec<u8>,
    /// What clipping did per modality.
    pub clipping: [ClipOutcome; 4],
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

/// Clips, normalises, crops and labels one case.
pub fn prepare_case(case: RawCase, settings: &PreprocessSettings) -> Result<PreparedCase> {
    let original_shape = case.images[0].shape();
    let spacing = case.images[0].spacing;
    let mut affine = [0f32; 12];
    for (r, row) in case.images[0].affine.iter().enumerate() {
        affine[r * 4..r * 4 + 4].copy_from_slice(row);
    }
    let voxels: usize = original_shape.iter().product();
    let mut union = vec![false; voxels];
    let mut clipping = [ClipOutcome::Unclipped; 4];
    let mut normalised = Vec::with_capacity(4);
    for ((m, volume), outcome) in Modality::ALL.iter().zip(case.images).zip(&mut clipping) {
        let mut data = volume.data;
        let values = data.as_slice_mut().expect("volumes are C-contiguous");
        *outcome = clip_upper_tail(values, clip_threshold(settings.clip_min_voxels, voxels));
        let background = values[0];
        let mask = zscore_foreground(values, background).ok_or_else(|| DataError::EmptyVolume {
            case: case.id.clone(),
            modality: m.display_name().to_owned(),
        })?;
        for (u, f) in union.iter_mut().zip(mask) {
            *u |= f;
        }
        normalised.push(data);
    }
    let (lo, hi) = bounding_box(&union, original_shape).expect("each modality has foreground");
    let crop = s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]];
    let shape = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let cropped_voxels: usize = shape.iter().product();
    let mut images = Vec::with_capacity(4 * cropped_voxels);
    for data in &normalised {
        images.extend(data.slice(crop).iter());
    }
    let labelled = case.labels.is_some();
    let labels: Vec<u8> = match &case.labels {
        Some(l) => l.slice(crop).iter().copied().collect(),
        None => vec![0; cropped_voxels],
    };
    let regions = labels.iter().map(|&l| regions_of_label(l)).collect();
    Ok(PreparedCase {
        id: case.id,
        release: None,
        grade: None,
        metadata: CaseMetadata::new(),
        original_shape,
        crop_offset: lo,
        shape,
        spacing,
        affine,
        images,
        labelled,
        labels,
        regions,
        clipping,
    })
}
