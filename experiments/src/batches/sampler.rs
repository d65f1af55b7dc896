//! Training crops: random crops, a share of them centred on a foreground voxel of a random tumour
//! region, randomly scaled and flipped; targets in the network's channel order (ET, WT, TC).
//! Crops are cut from any [`VoxelSource`]: a case in memory or a case read in place from its
//! memory-mapped shard, which touches only the rows of the box a crop needs.
//!
//! Two crop rules ([`CropRule`]): the reference's (`BraTSDataSet.locate_bbx_wScale`), which places
//! crops in the whole original volume (the stored brain box put back in its zero background) with
//! margins of 15 and 10 voxels in H and W and flips by the dataset's rule; and the brain-box rule,
//! which places them inside the stored box and flips each axis with probability 1/2.

use anyhow::Result;
use metakd_data::preprocess::{PreparedCase, REGION_ET, REGION_TC, REGION_WT};
use metakd_data::shards::CaseView;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::batches::augment::AugmentConfig;

/// Where crops are placed and how they are flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CropRule {
    /// The reference's: in the whole original volume; the box is the crop scaled by s and
    /// truncated (`int(crop · s)`); a foreground-centred box spans `centre ± size/2` and is shifted
    /// back inside the volume; a random box starts at d ∈ [0, D − d], h ∈ [15, H − 15 − h],
    /// w ∈ [10, W − 10 − w] (margins shrink where the volume is too small for them); then no flip
    /// with probability 0.3, else one of the 7 flip combinations (0.1 each).
    #[default]
    WholeVolume,
    /// Inside the stored brain box: the box is `crop / s` rounded, centred on the foreground
    /// voxel or uniform, each axis flipped with probability 1/2.
    BrainBox,
}

/// Margins (d, h, w) of the reference's random crops from the volume's edges.
pub const RANDOM_CROP_MARGINS: [usize; 3] = [0, 15, 10];

/// Region bits in the network's output-channel order (ET, WT, TC).
pub const OUTPUT_REGIONS: [u8; 3] = [REGION_ET, REGION_WT, REGION_TC];

/// Foreground voxels kept per region for centring crops (a uniform sample where a region is
/// larger, as nnU-Net keeps its class locations).
pub const FOREGROUND_SAMPLES: usize = 10_000;

/// One crop: images `[m, d, h, w]` and binary targets `[3, d, h, w]`, flattened.
#[derive(Debug, Clone)]
pub struct Crop {
    /// Images of every modality.
    pub images: Vec<f32>,
    /// Region targets in output-channel order.
    pub targets: Vec<f32>,
}

/// A box of a case, zero (no modality signal, no region) outside the volume.
#[derive(Debug, Clone)]
pub struct VoxelBox {
    /// Extents of the box.
    pub size: [usize; 3],
    /// Images `[4, d, h, w]`, flattened.
    pub images: Vec<f32>,
    /// Region bits `[d, h, w]`.
    pub regions: Vec<u8>,
}

/// A volume crops can be cut from.
pub trait VoxelSource {
    /// Extents (d, h, w).
    fn shape(&self) -> [usize; 3];
    /// The box `start .. start + size` (which may reach outside the volume).
    fn read_box(&self, start: [i64; 3], size: [usize; 3]) -> Result<VoxelBox>;
    /// Region bits of every voxel, `None` for an unlabelled case.
    fn region_bits(&self) -> Result<Option<&[u8]>>;
    /// The extents of the whole original volume and where this volume's first voxel lies in it.
    fn placement(&self) -> ([usize; 3], [usize; 3]);
}

/// A volume seen in the grid of its whole original volume: zero outside the stored box.
struct WholeVolume<'a, S> {
    inner: &'a S,
    shape: [usize; 3],
    offset: [usize; 3],
}

impl<'a, S: VoxelSource> WholeVolume<'a, S> {
    fn of(inner: &'a S) -> Self {
        let (shape, offset) = inner.placement();
        Self {
            inner,
            shape,
            offset,
        }
    }
}

impl<S: VoxelSource> VoxelSource for WholeVolume<'_, S> {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn read_box(&self, start: [i64; 3], size: [usize; 3]) -> Result<VoxelBox> {
        let local = std::array::from_fn(|a| start[a] - self.offset[a] as i64);
        self.inner.read_box(local, size)
    }

    fn region_bits(&self) -> Result<Option<&[u8]>> {
        anyhow::bail!("the region bits of a whole volume are not stored")
    }

    fn placement(&self) -> ([usize; 3], [usize; 3]) {
        (self.shape, [0; 3])
    }
}

/// The part of the box `start .. start + size` inside `shape`: its start and size, and its offset
/// within the box; `None` when they do not overlap.
fn overlap(
    start: [i64; 3],
    size: [usize; 3],
    shape: [usize; 3],
) -> Option<([usize; 3], [usize; 3], [usize; 3])> {
    let mut inside = [0; 3];
    let mut extent = [0; 3];
    let mut offset = [0; 3];
    for a in 0..3 {
        let lo = start[a].max(0);
        let hi = (start[a] + size[a] as i64).min(shape[a] as i64);
        if hi <= lo {
            return None;
        }
        inside[a] = lo as usize;
        extent[a] = (hi - lo) as usize;
        offset[a] = (lo - start[a]) as usize;
    }
    Some((inside, extent, offset))
}

/// A zero box of `size` at `start` with the part inside `shape` filled from `read_overlap`, which
/// returns images `[4, …]` and region bits of the overlap given its start and extents.
fn assemble(
    start: [i64; 3],
    size: [usize; 3],
    shape: [usize; 3],
    read_overlap: impl FnOnce([usize; 3], [usize; 3]) -> Result<(Vec<f32>, Vec<u8>)>,
) -> Result<VoxelBox> {
    let voxels: usize = size.iter().product();
    let mut out = VoxelBox {
        size,
        images: vec![0.0; 4 * voxels],
        regions: vec![0; voxels],
    };
    let Some((inside, extent, offset)) = overlap(start, size, shape) else {
        return Ok(out);
    };
    let (images, regions) = read_overlap(inside, extent)?;
    let part: usize = extent.iter().product();
    for z in 0..extent[0] {
        for y in 0..extent[1] {
            let src = (z * extent[1] + y) * extent[2];
            let dst = ((z + offset[0]) * size[1] + y + offset[1]) * size[2] + offset[2];
            for m in 0..4 {
                out.images[m * voxels + dst..m * voxels + dst + extent[2]]
                    .copy_from_slice(&images[m * part + src..m * part + src + extent[2]]);
            }
            out.regions[dst..dst + extent[2]].copy_from_slice(&regions[src..src + extent[2]]);
        }
    }
    Ok(out)
}

impl VoxelSource for PreparedCase {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn read_box(&self, start: [i64; 3], size: [usize; 3]) -> Result<VoxelBox> {
        let [_, h, w] = self.shape;
        let voxels: usize = self.shape.iter().product();
        assemble(start, size, self.shape, |at, extent| {
            let part: usize = extent.iter().product();
            let mut images = Vec::with_capacity(4 * part);
            let mut regions = Vec::with_capacity(part);
            for m in 0..4 {
                for z in at[0]..at[0] + extent[0] {
                    for y in at[1]..at[1] + extent[1] {
                        let first = m * voxels + (z * h + y) * w + at[2];
                        images.extend_from_slice(&self.images[first..first + extent[2]]);
                    }
                }
            }
            for z in at[0]..at[0] + extent[0] {
                for y in at[1]..at[1] + extent[1] {
                    let first = (z * h + y) * w + at[2];
                    regions.extend_from_slice(&self.regions[first..first + extent[2]]);
                }
            }
            Ok((images, regions))
        })
    }

    fn region_bits(&self) -> Result<Option<&[u8]>> {
        Ok(self.labelled.then_some(self.regions.as_slice()))
    }

    fn placement(&self) -> ([usize; 3], [usize; 3]) {
        (self.original_shape, self.crop_offset)
    }
}

impl VoxelSource for CaseView {
    fn shape(&self) -> [usize; 3] {
        CaseView::shape(self)
    }

    fn read_box(&self, start: [i64; 3], size: [usize; 3]) -> Result<VoxelBox> {
        assemble(start, size, CaseView::shape(self), |at, extent| {
            let crop = self.crop(at, extent)?;
            Ok((crop.images, crop.regions))
        })
    }

    fn region_bits(&self) -> Result<Option<&[u8]>> {
        Ok(self.regions()?)
    }

    fn placement(&self) -> ([usize; 3], [usize; 3]) {
        let entry = self.entry();
        (entry.original_shape, entry.crop_offset)
    }
}

/// Where each region's foreground lies in a case: up to [`FOREGROUND_SAMPLES`] voxel indices per
/// region, in output-channel order.
#[derive(Debug, Clone, Default)]
pub struct ForegroundIndex {
    regions: [Vec<u32>; 3],
}

impl ForegroundIndex {
    /// Indexes `source`'s foreground; which voxels are kept of a large region is drawn from a
    /// generator seeded with `seed`.
    pub fn of(source: &impl VoxelSource, seed: u64) -> Result<Self> {
        let Some(bits) = source.region_bits()? else {
            return Ok(Self::default());
        };
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let regions = OUTPUT_REGIONS.map(|region| {
            let all: Vec<u32> = bits
                .iter()
                .enumerate()
                .filter(|(_, &r)| r & region != 0)
                .map(|(i, _)| i as u32)
                .collect();
            if all.len() <= FOREGROUND_SAMPLES {
                all
            } else {
                let mut kept: Vec<u32> = sample(&mut rng, all.len(), FOREGROUND_SAMPLES)
                    .into_iter()
                    .map(|i| all[i])
                    .collect();
                kept.sort_unstable();
                kept
            }
        });
        Ok(Self { regions })
    }

    /// Number of voxels kept per region, in output-channel order.
    pub fn region_sizes(&self) -> [usize; 3] {
        self.regions.each_ref().map(Vec::len)
    }

    /// The voxel indices kept for region `c` (output-channel order), ascending.
    pub fn voxels(&self, c: usize) -> &[u32] {
        &self.regions[c]
    }

    /// A random voxel of a random region, or `None` if that region is empty.
    fn draw(&self, shape: [usize; 3], rng: &mut impl Rng) -> Option<[usize; 3]> {
        let voxels = &self.regions[rng.random_range(0..OUTPUT_REGIONS.len())];
        if voxels.is_empty() {
            return None;
        }
        let index = voxels[rng.random_range(0..voxels.len())] as usize;
        let [_, h, w] = shape;
        Some([index / (h * w), (index / w) % h, index % w])
    }
}

/// Where crops are cut, how they are scaled and how they are flipped.
#[derive(Debug, Clone)]
pub struct CropSampler {
    crop: [usize; 3],
    foreground_probability: f64,
    flips: bool,
    augment: Option<AugmentConfig>,
    rule: CropRule,
}

impl CropSampler {
    /// A sampler of `crop`-sized crops inside the brain box, scaled as `augment` says (not at
    /// all without it).
    pub fn new(
        crop: [usize; 3],
        foreground_probability: f64,
        flips: bool,
        augment: Option<AugmentConfig>,
    ) -> Self {
        Self {
            crop,
            foreground_probability,
            flips,
            augment,
            rule: CropRule::BrainBox,
        }
    }

    /// The same sampler with crops placed by `rule`.
    pub fn with_rule(self, rule: CropRule) -> Self {
        Self { rule, ..self }
    }

    /// The start of a crop along one axis so that it contains `centre` where possible; volumes
    /// smaller than the crop start at 0 and are zero-padded.
    fn start_around(extent: usize, crop: usize, centre: usize) -> usize {
        if extent <= crop {
            0
        } else {
            centre.saturating_sub(crop / 2).min(extent - crop)
        }
    }

    /// A crop of `case`, whose foreground is indexed by `foreground`.
    pub fn sample(
        &self,
        case: &impl VoxelSource,
        foreground: &ForegroundIndex,
        rng: &mut impl Rng,
    ) -> Result<Crop> {
        match self.rule {
            CropRule::WholeVolume => self.sample_whole_volume(case, foreground, rng),
            CropRule::BrainBox => self.sample_brain_box(case, foreground, rng),
        }
    }

    /// The reference's crop ([`CropRule::WholeVolume`]).
    fn sample_whole_volume(
        &self,
        case: &impl VoxelSource,
        foreground: &ForegroundIndex,
        rng: &mut impl Rng,
    ) -> Result<Crop> {
        let whole = WholeVolume::of(case);
        let shape = whole.shape;
        let scale = self.augment.as_ref().map_or(1.0, |a| a.draw_scale(rng));
        let size: [usize; 3] =
            std::array::from_fn(|a| ((self.crop[a] as f32 * scale) as usize).max(1));
        let centre = if rng.random_bool(self.foreground_probability) {
            foreground.draw(case.shape(), rng)
        } else {
            None
        };
        let (start, extent) = match centre {
            Some(c) => {
                let centre: [usize; 3] = std::array::from_fn(|a| c[a] + whole.offset[a]);
                let boxes = std::array::from_fn(|a| centred_box(shape[a], size[a], centre[a]));
                (boxes.map(|(s, _)| s), boxes.map(|(_, e)| e))
            }
            None => (
                std::array::from_fn(|a| {
                    random_start(shape[a], size[a], RANDOM_CROP_MARGINS[a], rng)
                }),
                size,
            ),
        };
        let flip = if self.flips {
            reference_flip(rng)
        } else {
            [false; 3]
        };
        if extent == self.crop {
            extract(&whole, start, self.crop, flip)
        } else {
            extract_resampled(&whole, start, extent, self.crop, flip)
        }
    }

    /// The brain-box crop ([`CropRule::BrainBox`]).
    fn sample_brain_box(
        &self,
        case: &impl VoxelSource,
        foreground: &ForegroundIndex,
        rng: &mut impl Rng,
    ) -> Result<Crop> {
        let shape = case.shape();
        let scale = self.augment.as_ref().map_or(1.0, |a| a.draw_scale(rng));
        // The box the crop is cut from: `crop / scale`, resampled to `crop`.
        let source: [usize; 3] =
            std::array::from_fn(|a| ((self.crop[a] as f32 / scale).round() as usize).max(1));
        let start = if rng.random_bool(self.foreground_probability) {
            foreground.draw(shape, rng)
        } else {
            None
        }
        .map(|c| std::array::from_fn(|a| Self::start_around(shape[a], source[a], c[a])))
        .unwrap_or_else(|| {
            std::array::from_fn(|a| rng.random_range(0..=shape[a].saturating_sub(source[a])))
        });
        let flip: [bool; 3] = std::array::from_fn(|_| self.flips && rng.random_bool(0.5));
        if source == self.crop {
            extract(case, start, self.crop, flip)
        } else {
            extract_resampled(case, start, source, self.crop, flip)
        }
    }
}

/// The reference's foreground-centred box along one axis of `extent` voxels: `centre − size/2 ..
/// centre + size/2` (integer halves, so an odd size loses a voxel), shifted back inside the volume
/// and clipped to it. Returns its start and length.
fn centred_box(extent: usize, size: usize, centre: usize) -> (usize, usize) {
    let half = (size / 2) as i64;
    let (extent, centre) = (extent as i64, centre as i64);
    let (mut lo, mut hi) = (centre - half, centre + half);
    if lo < 0 {
        hi -= lo;
        lo = 0;
    }
    if hi > extent {
        lo -= hi - extent;
        hi = extent;
    }
    let lo = lo.max(0);
    (lo as usize, (hi - lo).max(1) as usize)
}

/// The reference's random start along one axis: uniform in [margin, extent − margin − size]
/// (inclusive); where the volume is too small for the margins they shrink evenly, and a volume
/// smaller than the box starts at 0 (the rest is zero padding).
fn random_start(extent: usize, size: usize, margin: usize, rng: &mut impl Rng) -> usize {
    let Some(room) = extent.checked_sub(size) else {
        return 0;
    };
    let margin = margin.min(room / 2);
    rng.random_range(margin..=room - margin)
}

/// The reference dataset's flip rule over the axes (d, h, w): none with probability 0.3, else one
/// of the seven combinations, 0.1 each (w; h; d; h+w; d+w; d+h; all three).
fn reference_flip(rng: &mut impl Rng) -> [bool; 3] {
    const COMBINATIONS: [[bool; 3]; 7] = [
        [false, false, true],
        [false, true, false],
        [true, false, false],
        [false, true, true],
        [true, false, true],
        [true, true, false],
        [true, true, true],
    ];
    let u: f64 = rng.random();
    if u <= 0.3 {
        return [false; 3];
    }
    let k = (((u - 0.3) / 0.1).ceil() as usize).clamp(1, 7);
    COMBINATIONS[k - 1]
}

/// Sets the targets of voxel `dst` from region bits `r`.
fn set_targets(targets: &mut [f32], crop_voxels: usize, dst: usize, r: u8) {
    for (c, bit) in OUTPUT_REGIONS.iter().enumerate() {
        if r & bit != 0 {
            targets[c * crop_voxels + dst] = 1.0;
        }
    }
}

/// Resamples the box `start .. start + source` to `crop` voxels (trilinear for images, nearest for
/// the regions; zero outside the volume), flipped along the axes in `flip`.
pub fn extract_resampled(
    case: &impl VoxelSource,
    start: [usize; 3],
    source: [usize; 3],
    crop: [usize; 3],
    flip: [bool; 3],
) -> Result<Crop> {
    // Every trilinear corner and nearest voxel lies within one voxel of the box.
    let origin: [i64; 3] = start.map(|s| s as i64 - 1);
    let padded = source.map(|s| s + 2);
    let block = case.read_box(origin, padded)?;
    let [_, h, w] = padded;
    let voxels: usize = padded.iter().product();
    let crop_voxels: usize = crop.iter().product();
    let mut images = vec![0f32; 4 * crop_voxels];
    let mut targets = vec![0f32; 3 * crop_voxels];
    // Coordinate of output index i along axis a within the padded box (voxel centres aligned).
    let coordinate = |a: usize, i: usize| {
        let o = if flip[a] { crop[a] - 1 - i } else { i };
        1.0 + (o as f32 + 0.5) * source[a] as f32 / crop[a] as f32 - 0.5
    };
    let index = |p: [usize; 3]| (p[0] * h + p[1]) * w + p[2];
    for cz in 0..crop[0] {
        for cy in 0..crop[1] {
            for cx in 0..crop[2] {
                let s = [coordinate(0, cz), coordinate(1, cy), coordinate(2, cx)];
                let dst = (cz * crop[1] + cy) * crop[2] + cx;
                let nearest = s.map(|v| v.round() as usize);
                set_targets(
                    &mut targets,
                    crop_voxels,
                    dst,
                    block.regions[index(nearest)],
                );
                let base = s.map(|v| v.floor() as usize);
                let frac: [f32; 3] = std::array::from_fn(|a| s[a] - base[a] as f32);
                for corner in 0..8 {
                    let p: [usize; 3] =
                        std::array::from_fn(|a| base[a] + ((corner >> (2 - a)) & 1));
                    if p.iter().zip(padded).any(|(&v, n)| v >= n) {
                        continue;
                    }
                    let weight: f32 = (0..3)
                        .map(|a| {
                            if (corner >> (2 - a)) & 1 == 1 {
                                frac[a]
                            } else {
                                1.0 - frac[a]
                            }
                        })
                        .product();
                    let src = index(p);
                    for m in 0..4 {
                        images[m * crop_voxels + dst] += weight * block.images[m * voxels + src];
                    }
                }
            }
        }
    }
    Ok(Crop { images, targets })
}

/// Copies the crop at `start` (zero outside the volume), flipped along the axes in `flip`.
pub fn extract(
    case: &impl VoxelSource,
    start: [usize; 3],
    crop: [usize; 3],
    flip: [bool; 3],
) -> Result<Crop> {
    let block = case.read_box(start.map(|s| s as i64), crop)?;
    let crop_voxels: usize = crop.iter().product();
    let mut images = vec![0f32; 4 * crop_voxels];
    let mut targets = vec![0f32; 3 * crop_voxels];
    for cz in 0..crop[0] {
        let z = if flip[0] { crop[0] - 1 - cz } else { cz };
        for cy in 0..crop[1] {
            let y = if flip[1] { crop[1] - 1 - cy } else { cy };
            for cx in 0..crop[2] {
                let x = if flip[2] { crop[2] - 1 - cx } else { cx };
                let src = (z * crop[1] + y) * crop[2] + x;
                let dst = (cz * crop[1] + cy) * crop[2] + cx;
                for m in 0..4 {
                    images[m * crop_voxels + dst] = block.images[m * crop_voxels + src];
                }
                set_targets(&mut targets, crop_voxels, dst, block.regions[src]);
            }
        }
    }
    Ok(Crop { images, targets })
}

#[cfg(test)]
mod tests {
    use metakd_data::preprocess::regions_of_label;

    use super::*;
    use crate::test_cases::labelled_case;

    /// A case whose modality m holds `m + 0.5·z + 0.25·y − 0.125·x` and labels 4 where x > 4.
    fn ramp_case(shape: [usize; 3]) -> PreparedCase {
        let [d, h, w] = shape;
        let voxels = d * h * w;
        let mut images = Vec::with_capacity(4 * voxels);
        for m in 0..4 {
            for z in 0..d {
                for y in 0..h {
                    for x in 0..w {
                        images.push(m as f32 + 0.5 * z as f32 + 0.25 * y as f32 - 0.125 * x as f32);
                    }
                }
            }
        }
        let labels: Vec<u8> = (0..voxels).map(|i| if i % w > 4 { 4 } else { 0 }).collect();
        labelled_case("ramp", shape, images, labels)
    }

    #[test]
    fn resampling_a_box_of_the_crop_size_is_the_plain_crop() {
        let case = ramp_case([10, 12, 14]);
        for flip in [[false; 3], [true, false, true]] {
            let plain = extract(&case, [1, 2, 3], [8, 8, 8], flip).unwrap();
            let resampled =
                extract_resampled(&case, [1, 2, 3], [8, 8, 8], [8, 8, 8], flip).unwrap();
            assert_eq!(plain.targets, resampled.targets);
            for (a, b) in plain.images.iter().zip(&resampled.images) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn a_scaled_crop_samples_the_ramp_at_the_mapped_coordinates() {
        let case = ramp_case([16, 16, 16]);
        let (start, source, crop) = ([2, 3, 1], [9, 9, 9], [8, 8, 8]);
        let scaled = extract_resampled(&case, start, source, crop, [false; 3]).unwrap();
        let n = 8 * 8 * 8;
        for cz in 0..8 {
            for cy in 0..8 {
                for cx in 0..8 {
                    let s = |a: usize, i: usize| {
                        start[a] as f32 + (i as f32 + 0.5) * source[a] as f32 / crop[a] as f32 - 0.5
                    };
                    let (z, y, x) = (s(0, cz), s(1, cy), s(2, cx));
                    let dst = (cz * 8 + cy) * 8 + cx;
                    for m in 0..4 {
                        let want = m as f32 + 0.5 * z + 0.25 * y - 0.125 * x;
                        let got = scaled.images[m * n + dst];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "({cz},{cy},{cx}) m{m}: {got} vs {want}"
                        );
                    }
                    let et = scaled.targets[dst];
                    assert_eq!(et, if x.round() > 4.0 { 1.0 } else { 0.0 });
                }
            }
        }
    }

    /// The reference's `locate_bbx_wScale` box along one axis around `centre`, transcribed.
    fn reference_centred_box(extent: i64, size: i64, centre: i64) -> (i64, i64) {
        let (mut lo, mut hi) = (centre - size / 2, centre + size / 2);
        if lo < 0 {
            let delta = lo;
            lo = 0;
            hi -= delta;
        }
        if hi > extent {
            let delta = hi - extent;
            lo -= delta;
            hi = extent;
        }
        (lo.max(0), hi.min(extent))
    }

    #[test]
    fn the_centred_box_is_the_references() {
        for extent in [20usize, 155, 240] {
            for size in [7usize, 16, 19, 80, 176] {
                for centre in (0..extent).step_by(3) {
                    let (lo, hi) = reference_centred_box(extent as i64, size as i64, centre as i64);
                    let (start, len) = centred_box(extent, size, centre);
                    assert_eq!(
                        (start as i64, (start + len) as i64),
                        (lo, hi),
                        "extent {extent}, size {size}, centre {centre}"
                    );
                }
            }
        }
    }

    #[test]
    fn random_starts_keep_the_reference_margins_and_cover_their_range() {
        let mut rng = ChaCha12Rng::seed_from_u64(8);
        // H = 240, h = 160: starts in [15, 65]; W: [10, 70]; D = 155, d = 80: [0, 75].
        for (extent, size, margin, range) in [
            (240, 160, 15, (15, 65)),
            (240, 160, 10, (10, 70)),
            (155, 80, 0, (0, 75)),
            // Too small for the margins: they shrink evenly; smaller than the box: 0.
            (40, 32, 15, (4, 4)),
            (24, 32, 10, (0, 0)),
        ] {
            let starts: Vec<usize> = (0..4000)
                .map(|_| random_start(extent, size, margin, &mut rng))
                .collect();
            let (lo, hi) = (starts.iter().min(), starts.iter().max());
            assert_eq!(
                (*lo.unwrap(), *hi.unwrap()),
                range,
                "{extent} {size} {margin}"
            );
        }
    }

    #[test]
    fn the_flip_rule_is_the_datasets() {
        let mut rng = ChaCha12Rng::seed_from_u64(9);
        let draws = 100_000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..draws {
            *counts.entry(reference_flip(&mut rng)).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 8);
        for (flip, count) in counts {
            let p = count as f64 / draws as f64;
            let expected = if flip == [false; 3] { 0.3 } else { 0.1 };
            // Five standard errors.
            let tolerance = 5.0 * (expected * (1.0 - expected) / draws as f64).sqrt();
            assert!((p - expected).abs() < tolerance, "{flip:?}: {p}");
        }
    }

    /// A 6×8×10 brain box at offset (2, 20, 30) of a 12×60×70 volume; modality 0 holds z + 1,
    /// 1 holds y + 1, 2 holds x + 1 (local coordinates), 3 holds 1; the whole box is ET.
    fn boxed_case() -> PreparedCase {
        let shape = [6, 8, 10];
        let mut case = ramp_case(shape);
        let voxels = 480;
        for i in 0..voxels {
            let (z, y, x) = (i / 80, (i / 10) % 8, i % 10);
            case.images[i] = z as f32 + 1.0;
            case.images[voxels + i] = y as f32 + 1.0;
            case.images[2 * voxels + i] = x as f32 + 1.0;
            case.images[3 * voxels + i] = 1.0;
        }
        case.labels = vec![4; voxels];
        case.regions = vec![regions_of_label(4); voxels];
        case.original_shape = [12, 60, 70];
        case.crop_offset = [2, 20, 30];
        case
    }

    #[test]
    fn whole_volume_crops_are_cut_from_the_original_grid() {
        let case = boxed_case();
        let foreground = ForegroundIndex::of(&case, 0).unwrap();
        let crop = [4, 16, 16];
        let n: usize = crop.iter().product();
        let mut rng = ChaCha12Rng::seed_from_u64(10);
        let random = CropSampler::new(crop, 0.0, false, None).with_rule(CropRule::WholeVolume);
        let mut outside = 0;
        for _ in 0..200 {
            let c = random.sample(&case, &foreground, &mut rng).unwrap();
            // Every voxel is either background or the box voxel its position says.
            let mut first = None;
            for i in 0..n {
                if c.images[3 * n + i] == 0.0 {
                    assert!((0..3).all(|m| c.images[m * n + i] == 0.0));
                    assert_eq!(c.targets[i], 0.0);
                    continue;
                }
                assert_eq!(c.targets[i], 1.0);
                let local = [0, 1, 2].map(|m| c.images[m * n + i] as i64 - 1);
                let at = [i / 256, (i / 16) % 16, i % 16].map(|v| v as i64);
                let start = std::array::from_fn::<i64, 3, _>(|a| local[a] - at[a]);
                assert_eq!(*first.get_or_insert(start), start);
            }
            match first {
                // The crop's start in the original grid, within the reference's margins.
                Some(start) => {
                    let global = [0, 1, 2].map(|a| start[a] + case.crop_offset[a] as i64);
                    assert!((0..=8).contains(&global[0]), "{global:?}");
                    assert!((15..=60 - 15 - 16).contains(&global[1]), "{global:?}");
                    assert!((10..=70 - 10 - 16).contains(&global[2]), "{global:?}");
                }
                None => outside += 1,
            }
        }
        // Some random crops of the whole volume miss the small brain box altogether.
        assert!((1..200).contains(&outside), "{outside}");

        // Foreground-centred crops always hold the box's tumour.
        let centred = CropSampler::new(crop, 1.0, true, None).with_rule(CropRule::WholeVolume);
        for _ in 0..50 {
            let c = centred.sample(&case, &foreground, &mut rng).unwrap();
            assert!(c.targets[..n].contains(&1.0));
        }
    }

    #[test]
    fn scaling_draws_nothing_when_switched_off() {
        use rand::SeedableRng;
        let case = ramp_case([12, 12, 12]);
        let foreground = ForegroundIndex::of(&case, 0).unwrap();
        let plain = CropSampler::new([8, 8, 8], 0.5, true, None);
        let off = CropSampler::new([8, 8, 8], 0.5, true, Some(AugmentConfig::none()));
        let (mut a, mut b) = (
            rand_chacha::ChaCha12Rng::seed_from_u64(3),
            rand_chacha::ChaCha12Rng::seed_from_u64(3),
        );
        for _ in 0..5 {
            assert_eq!(
                plain.sample(&case, &foreground, &mut a).unwrap().images,
                off.sample(&case, &foreground, &mut b).unwrap().images
            );
        }
        let always = AugmentConfig {
            scale_probability: 1.0,
            scale_range: [0.8, 0.8],
            ..AugmentConfig::none()
        };
        let scaled = CropSampler::new([8, 8, 8], 0.0, false, Some(always));
        let crop = scaled.sample(&case, &foreground, &mut a).unwrap();
        assert_eq!(crop.images.len(), 4 * 512);
    }
}
