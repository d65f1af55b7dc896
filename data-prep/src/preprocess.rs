//! Preprocessing of one case as the MetaKD reference implementation does it, per modality on the
//! whole volume: clip the upper intensity tail at the index of the last histogram bin holding at
//! least 50 voxels, z-score over the voxels that differ from the background value (the value at
//! voxel [0, 0, 0]) with the population standard deviation, set the background to 0; then crop
//! all modalities to the union bounding box of their foreground, keeping the offsets. Every step
//! is described in `docs/preprocessing.md`.

use std::borrow::Cow;

use ndarray::ArrayView3;
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

/// The BraTS label of a voxel's region bits: WT → 2, then TC → 1, then ET → 4, each later one
/// overriding the earlier (method spec, section 8).
pub fn label_of_regions(regions: u8) -> u8 {
    let mut label = 0;
    if regions & REGION_WT != 0 {
        label = 2;
    }
    if regions & REGION_TC != 0 {
        label = 1;
    }
    if regions & REGION_ET != 0 {
        label = 4;
    }
    label
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

/// How one modality's intensities were normalised: v ↦ (v − mean) / std over the voxels that
/// differ from `background` (after clipping), the background set to 0. The statistics are kept
/// in single precision (they round-trip through the manifest's JSON exactly).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalisation {
    /// Mean of the foreground voxels.
    pub mean: f32,
    /// Population standard deviation of the foreground voxels (1 where it is 0).
    pub std: f32,
    /// The background value (the voxel at [0, 0, 0]).
    pub background: f32,
}

impl Normalisation {
    /// The intensities before normalisation (after clipping) of `normalised` values whose
    /// foreground is marked by `foreground`: the background value elsewhere.
    pub fn restore(&self, normalised: &[f32], foreground: impl Fn(usize) -> bool) -> Vec<f32> {
        normalised
            .iter()
            .enumerate()
            .map(|(i, &z)| {
                if foreground(i) {
                    (f64::from(z) * f64::from(self.std) + f64::from(self.mean)) as f32
                } else {
                    self.background
                }
            })
            .collect()
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

/// Largest span of integer values counted value by value before they are binned.
const DIRECT_COUNT_SPAN: f64 = (1 << 22) as f64;

/// The intensity range of a volume and, when every value is an integer (every BraTS image), the
/// number of voxels per value from `lo` up.
struct Census {
    min: f32,
    max: f32,
    per_value: Option<(f64, Vec<usize>)>,
}

fn census(values: &[f32]) -> Option<Census> {
    let &start = values.first()?;
    let (mut min, mut max) = (start, start);
    for &v in values {
        min = if v < min { v } else { min };
        max = if v > max { v } else { max };
    }
    let (lo, hi) = (f64::from(min).ceil(), f64::from(max).floor());
    let per_value = count_integer_values(values, lo, hi).map(|counts| (lo, counts));
    Some(Census {
        min,
        max,
        per_value,
    })
}

/// Voxels per integer value `lo ..= hi`, or `None` when a value is not an integer (or the span is
/// too wide to count value by value). Four interleaved counters keep runs of equal values (the
/// background) from serialising on one counter.
fn count_integer_values(values: &[f32], lo: f64, hi: f64) -> Option<Vec<usize>> {
    if hi - lo >= DIRECT_COUNT_SPAN || hi < lo {
        return None;
    }
    let span = (hi - lo) as usize + 1;
    let lo = lo as i32;
    let mut lanes = vec![[0u32; 4]; span];
    let mut integral = true;
    let mut chunks = values.chunks_exact(4);
    for chunk in &mut chunks {
        for (lane, &v) in chunk.iter().enumerate() {
            let i = v as i32;
            integral &= i as f32 == v;
            lanes[((i - lo) as usize).min(span - 1)][lane] += 1;
        }
    }
    for &v in chunks.remainder() {
        let i = v as i32;
        integral &= i as f32 == v;
        lanes[((i - lo) as usize).min(span - 1)][0] += 1;
    }
    integral.then(|| {
        lanes
            .iter()
            .map(|l| l.iter().map(|&n| n as usize).sum())
            .collect()
    })
}

/// The reference's clip level of a volume: numpy's histogram with `bins = int(max)` over
/// `[min, max]`, the index of its last bin holding at least `min_voxels` voxels — or `None` when
/// there is no such bin, no bins at all, or the level would not exceed the background `values[0]`.
fn clip_level(values: &[f32], census: &Census, min_voxels: usize) -> Option<f32> {
    let bins = census.max.trunc();
    if bins.is_nan() || bins < 1.0 {
        return None;
    }
    let bins = bins as usize;
    let (mut first, mut last) = (f64::from(census.min), f64::from(census.max));
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
    match &census.per_value {
        Some((lo, per_value)) => {
            for (offset, &n) in per_value.iter().enumerate().filter(|(_, &n)| n > 0) {
                counts[numpy_bin(lo + offset as f64, first, last, bins, edge)] += n;
            }
        }
        None => {
            for &v in values {
                counts[numpy_bin(f64::from(v), first, last, bins, edge)] += 1;
            }
        }
    }
    let level = counts.iter().rposition(|&c| c >= min_voxels)? as f32;
    (level > values[0]).then_some(level)
}

/// Clips the upper intensity tail of `values` in place as the reference does:
/// `hist = np.histogram(v, bins=int(v.max()))`, `k` = index of the last bin with at least
/// `min_voxels` voxels, `v[v >= k] = k` — unless `k` does not exceed the background value
/// `values[0]`, where the reference would wipe out the foreground.
pub fn clip_upper_tail(values: &mut [f32], min_voxels: usize) -> ClipOutcome {
    match census(values) {
        Some(census) => clip_with(values, &census, min_voxels),
        None => ClipOutcome::Unclipped,
    }
}

/// [`clip_upper_tail`] with the volume's census already taken.
fn clip_with(values: &mut [f32], census: &Census, min_voxels: usize) -> ClipOutcome {
    let Some(level) = clip_level(values, census, min_voxels) else {
        return ClipOutcome::Unclipped;
    };
    let mut voxels = 0;
    for v in values.iter_mut() {
        voxels += usize::from(*v > level);
        *v = if *v >= level { level } else { *v };
    }
    ClipOutcome::Clipped { level, voxels }
}

/// [`clip_upper_tail`] then [`zscore_foreground`] with the background `values[0]`, in one pass
/// over the voxels for integer-valued volumes (the mean and standard deviation then come from the
/// voxel count per value). Returns `None` when every voxel is background.
pub fn clip_and_normalise(
    values: &mut [f32],
    min_voxels: usize,
    foreground: &mut [bool],
) -> Option<(ClipOutcome, Normalisation)> {
    let census = census(values)?;
    let Some((lo, per_value)) = &census.per_value else {
        let outcome = clip_with(values, &census, min_voxels);
        let background = values[0];
        return zscore_foreground(values, background, foreground).map(|n| (outcome, n));
    };
    let level = clip_level(values, &census, min_voxels);
    let cap = |v: f32| match level {
        Some(l) if v >= l => l,
        _ => v,
    };
    let background = cap(values[0]);
    let distinct = || {
        per_value
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(offset, &n)| ((lo + offset as f64) as f32, n))
    };
    let (mut n, mut sum, mut changed) = (0usize, 0f64, 0usize);
    for (v, count) in distinct() {
        if level.is_some_and(|l| v > l) {
            changed += count;
        }
        if cap(v) != background {
            n += count;
            sum += count as f64 * f64::from(cap(v));
        }
    }
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    let squares: f64 = distinct()
        .filter(|&(v, _)| cap(v) != background)
        .map(|(v, count)| count as f64 * (f64::from(cap(v)) - mean).powi(2))
        .sum();
    let var = squares / n as f64;
    let std = if var > 0.0 { var.sqrt() } else { 1.0 };
    for (v, mark) in values.iter_mut().zip(foreground.iter_mut()) {
        let c = cap(*v);
        let keep = c != background;
        *mark |= keep;
        *v = if keep {
            ((f64::from(c) - mean) / std) as f32
        } else {
            0.0
        };
    }
    let outcome = match level {
        Some(level) => ClipOutcome::Clipped {
            level,
            voxels: changed,
        },
        None => ClipOutcome::Unclipped,
    };
    Some((
        outcome,
        Normalisation {
            mean: mean as f32,
            std: std as f32,
            background,
        },
    ))
}

/// Sums of `f(v)` over the voxels that differ from `background`, in eight lanes so the additions
/// pipeline; returns (count, sum).
fn foreground_sum(values: &[f32], background: f32, f: impl Fn(f64) -> f64) -> (usize, f64) {
    let mut lanes = [0f64; 8];
    let mut count = 0usize;
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            let keep = v != background;
            count += usize::from(keep);
            *lane += if keep { f(f64::from(v)) } else { 0.0 };
        }
    }
    for &v in chunks.remainder() {
        if v != background {
            count += 1;
            lanes[0] += f(f64::from(v));
        }
    }
    (count, lanes.iter().sum())
}

/// Z-scores `values` over the voxels that differ from `background` (population standard
/// deviation, in f64), sets the background to 0 and marks the foreground in `foreground`. Returns
/// the normalisation, or `None` (leaving `values` as they were) when every voxel is background.
pub fn zscore_foreground(
    values: &mut [f32],
    background: f32,
    foreground: &mut [bool],
) -> Option<Normalisation> {
    let (n, sum) = foreground_sum(values, background, |v| v);
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    let (_, squares) = foreground_sum(values, background, |v| (v - mean) * (v - mean));
    let var = squares / n as f64;
    let std = if var > 0.0 { var.sqrt() } else { 1.0 };
    for (v, mark) in values.iter_mut().zip(foreground.iter_mut()) {
        let keep = *v != background;
        *mark |= keep;
        *v = if keep {
            ((f64::from(*v) - mean) / std) as f32
        } else {
            0.0
        };
    }
    Some(Normalisation {
        mean: mean as f32,
        std: std as f32,
        background,
    })
}

/// The bounding box `[start, end)`, in (z, x, y) order, of the `true` voxels of a mask stored in
/// NIfTI order (x fastest) with extents `[x, y, z]`, if any.
pub fn bounding_box_zxy(mask: &[bool], dims_xyz: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, nz] = dims_xyz;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0; 3];
    for z in 0..nz {
        for y in 0..ny {
            let row = &mask[(z * ny + y) * nx..(z * ny + y + 1) * nx];
            let (Some(first), Some(last)) =
                (row.iter().position(|&m| m), row.iter().rposition(|&m| m))
            else {
                continue;
            };
            let p = [(z, z), (first, last), (y, y)];
            for (axis, (a, b)) in p.into_iter().enumerate() {
                lo[axis] = lo[axis].min(a);
                hi[axis] = hi[axis].max(b + 1);
            }
        }
    }
    (hi[0] > 0).then_some((lo, hi))
}

/// Copies the box `lo..hi` (in (z, x, y) order) of a volume stored in NIfTI order (x fastest,
/// extents `[x, y, z]`) into `out` in (z, x, y) C order.
pub fn crop_to_zxy<T: Copy>(
    values: &[T],
    dims_xyz: [usize; 3],
    lo: [usize; 3],
    hi: [usize; 3],
    out: &mut Vec<T>,
) {
    let [nx, ny, _] = dims_xyz;
    for z in lo[0]..hi[0] {
        // One z-slice is small enough to stay in cache while it is read column by column.
        let slice = &values[z * nx * ny..(z + 1) * nx * ny];
        for x in lo[1]..hi[1] {
            out.extend((lo[2]..hi[2]).map(|y| slice[y * nx + x]));
        }
    }
}

/// The voxels of a `[z, x, y]`-indexed array in NIfTI memory order (x fastest, then y, then z):
/// borrowed when the array is already laid out so (as volumes read from files are), else copied.
pub fn in_nifti_order<T: Clone>(a: ArrayView3<'_, T>) -> Cow<'_, [T]> {
    if has_nifti_layout(&a) {
        if let Some(slice) = a.to_slice_memory_order() {
            return Cow::Borrowed(slice);
        }
    }
    Cow::Owned(a.permuted_axes([0, 2, 1]).iter().cloned().collect())
}

/// Whether a `[z, x, y]`-indexed array is laid out contiguously in NIfTI order.
fn has_nifti_layout<T>(a: &ArrayView3<'_, T>) -> bool {
    let (h, w) = (a.shape()[1], a.shape()[2]);
    let nifti_strides = [(h * w) as isize, 1, h as isize];
    let strides_match = (0..3).all(|i| a.shape()[i] <= 1 || a.strides()[i] == nifti_strides[i]);
    strides_match && a.as_slice_memory_order().is_some()
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
    /// How each modality was normalised; `None` for shards written before it was recorded.
    pub normalisation: Option<[Normalisation; 4]>,
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

    /// The case on the grid of its whole original volume: the stored box put back at its offset,
    /// zero (background, no label) around it.
    pub fn on_whole_volume(self) -> PreparedCase {
        if self.shape == self.original_shape {
            return self;
        }
        let (shape, whole, offset) = (self.shape, self.original_shape, self.crop_offset);
        let images = self
            .images
            .chunks(self.voxels())
            .flat_map(|image| place_box(image, shape, whole, offset))
            .collect();
        let labels = place_box(&self.labels, shape, whole, offset);
        let regions = place_box(&self.regions, shape, whole, offset);
        PreparedCase {
            shape: whole,
            crop_offset: [0; 3],
            images,
            labels,
            regions,
            ..self
        }
    }
}

/// A `whole`-sized volume (C order), zero but for `values`, a `shape`-sized box, at `offset`.
fn place_box<T: Copy + Default>(
    values: &[T],
    shape: [usize; 3],
    whole: [usize; 3],
    offset: [usize; 3],
) -> Vec<T> {
    let [d, h, w] = shape;
    let [_, big_h, big_w] = whole;
    let mut out = vec![T::default(); whole.iter().product()];
    for z in 0..d {
        for y in 0..h {
            let src = (z * h + y) * w;
            let dst = ((z + offset[0]) * big_h + y + offset[1]) * big_w + offset[2];
            out[dst..dst + w].copy_from_slice(&values[src..src + w]);
        }
    }
    out
}

/// The voxels of a `[z, x, y]`-indexed array in NIfTI memory order, without a copy when the array
/// is laid out so.
pub fn into_nifti_order<T: Clone>(a: ndarray::Array3<T>) -> Vec<T> {
    if !has_nifti_layout(&a.view()) {
        return in_nifti_order(a.view()).into_owned();
    }
    let len = a.len();
    let (vec, offset) = a.into_raw_vec_and_offset();
    let start = offset.unwrap_or(0);
    if start == 0 && vec.len() == len {
        vec
    } else {
        vec[start..start + len].to_vec()
    }
}

/// Clips, normalises, crops and labels one case.
pub fn prepare_case(case: RawCase, settings: &PreprocessSettings) -> Result<PreparedCase> {
    let original_shape = case.images[0].shape();
    let [d, h, w] = original_shape;
    let dims_xyz = [h, w, d];
    let spacing = case.images[0].spacing;
    let mut affine = [0f32; 12];
    for (r, row) in case.images[0].affine.iter().enumerate() {
        affine[r * 4..r * 4 + 4].copy_from_slice(row);
    }
    let voxels: usize = original_shape.iter().product();
    let threshold = clip_threshold(settings.clip_min_voxels, voxels);
    let mut union = vec![false; voxels];
    let mut clipping = [ClipOutcome::Unclipped; 4];
    let mut normalisation = [Normalisation {
        mean: 0.0,
        std: 1.0,
        background: 0.0,
    }; 4];
    let mut normalised = Vec::with_capacity(4);
    for (((m, volume), outcome), stats) in Modality::ALL
        .iter()
        .zip(case.images)
        .zip(&mut clipping)
        .zip(&mut normalisation)
    {
        let mut values = into_nifti_order(volume.data);
        (*outcome, *stats) =
            clip_and_normalise(&mut values, threshold, &mut union).ok_or_else(|| {
                DataError::EmptyVolume {
                    case: case.id.clone(),
                    modality: m.display_name().to_owned(),
                }
            })?;
        normalised.push(values);
    }
    let (lo, hi) = bounding_box_zxy(&union, dims_xyz).expect("each modality has foreground");
    drop(union);
    let shape = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let cropped_voxels: usize = shape.iter().product();
    let mut images = Vec::with_capacity(4 * cropped_voxels);
    for values in normalised {
        crop_to_zxy(&values, dims_xyz, lo, hi, &mut images);
    }
    let labelled = case.labels.is_some();
    let mut labels = Vec::with_capacity(cropped_voxels);
    match &case.labels {
        Some(l) => crop_to_zxy(&in_nifti_order(l.view()), dims_xyz, lo, hi, &mut labels),
        None => labels.resize(cropped_voxels, 0),
    }
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
        normalisation: Some(normalisation),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_regions_override_earlier_ones_and_labels_round_trip() {
        assert_eq!(label_of_regions(0), 0);
        assert_eq!(label_of_regions(REGION_WT), 2);
        assert_eq!(label_of_regions(REGION_WT | REGION_TC), 1);
        assert_eq!(label_of_regions(REGION_WT | REGION_TC | REGION_ET), 4);
        // An ET voxel outside the predicted core is still enhancing tumour.
        assert_eq!(label_of_regions(REGION_ET), 4);
        for label in [0, 1, 2, 4] {
            assert_eq!(label_of_regions(regions_of_label(label)), label);
        }
    }
}
