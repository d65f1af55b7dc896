//! Training crops from prepared cases: random crops, half of them centred on a foreground voxel
//! of a random tumour region, with random flips; targets in the network's channel order
//! (ET, WT, TC).

use metakd_data::preprocess::{PreparedCase, REGION_ET, REGION_TC, REGION_WT};

use crate::augment::AugmentConfig;
use rand::Rng;

/// Region bits in the network's output-channel order (ET, WT, TC).
pub const OUTPUT_REGIONS: [u8; 3] = [REGION_ET, REGION_WT, REGION_TC];

/// One crop: images `[m, d, h, w]` and binary targets `[3, d, h, w]`, flattened.
#[derive(Debug, Clone)]
pub struct Crop {
    /// Images of every modality.
    pub images: Vec<f32>,
    /// Region targets in output-channel order.
    pub targets: Vec<f32>,
}

/// Where crops are cut, how they are scaled and how they are flipped.
#[derive(Debug, Clone)]
pub struct CropSampler {
    crop: [usize; 3],
    foreground_probability: f64,
    flips: bool,
    augment: Option<AugmentConfig>,
}

impl CropSampler {
    /// A sampler of `crop`-sized crops, scaled as `augment` says (not at all without it).
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
        }
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

    /// A crop of `case`.
    pub fn sample(&self, case: &PreparedCase, rng: &mut impl Rng) -> Crop {
        let shape = case.shape;
        let scale = self.augment.as_ref().map_or(1.0, |a| a.draw_scale(rng));
        // The box the crop is cut from: `crop / scale`, resampled to `crop`.
        let source: [usize; 3] =
            std::array::from_fn(|a| ((self.crop[a] as f32 / scale).round() as usize).max(1));
        let start = if rng.random_bool(self.foreground_probability) {
            self.foreground_centre(case, rng)
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

    /// A random voxel of a random non-empty region, or `None` if the case has no tumour.
    fn foreground_centre(&self, case: &PreparedCase, rng: &mut impl Rng) -> Option<[usize; 3]> {
        let region = OUTPUT_REGIONS[rng.random_range(0..OUTPUT_REGIONS.len())];
        let count = case.regions.iter().filter(|&&r| r & region != 0).count();
        if count == 0 {
            return None;
        }
        let pick = rng.random_range(0..count);
        let index = case
            .regions
            .iter()
            .enumerate()
            .filter(|(_, &r)| r & region != 0)
            .nth(pick)
            .map(|(i, _)| i)?;
        let [_, h, w] = case.shape;
        Some([index / (h * w), (index / w) % h, index % w])
    }
}

/// Resamples the box `start .. start + source` to `crop` voxels (trilinear for images, nearest for
/// the regions; zero outside the volume), flipped along the axes in `flip`.
pub fn extract_resampled(
    case: &PreparedCase,
    start: [usize; 3],
    source: [usize; 3],
    crop: [usize; 3],
    flip: [bool; 3],
) -> Crop {
    let [d, h, w] = case.shape;
    let shape = [d, h, w];
    let voxels = d * h * w;
    let crop_voxels: usize = crop.iter().product();
    let mut images = vec![0f32; 4 * crop_voxels];
    let mut targets = vec![0f32; 3 * crop_voxels];
    // Source coordinate of output index i along axis a (voxel centres aligned).
    let coordinate = |a: usize, i: usize| {
        let o = if flip[a] { crop[a] - 1 - i } else { i };
        start[a] as f32 + (o as f32 + 0.5) * source[a] as f32 / crop[a] as f32 - 0.5
    };
    let inside = |p: [i64; 3]| (0..3).all(|a| p[a] >= 0 && (p[a] as usize) < shape[a]);
    let index = |p: [i64; 3]| (p[0] as usize * h + p[1] as usize) * w + p[2] as usize;
    for cz in 0..crop[0] {
        for cy in 0..crop[1] {
            for cx in 0..crop[2] {
                let s = [coordinate(0, cz), coordinate(1, cy), coordinate(2, cx)];
                let dst = (cz * crop[1] + cy) * crop[2] + cx;
                let nearest = s.map(|v| v.round() as i64);
                if inside(nearest) {
                    let r = case.regions[index(nearest)];
                    for (c, bit) in OUTPUT_REGIONS.iter().enumerate() {
                        if r & bit != 0 {
                            targets[c * crop_voxels + dst] = 1.0;
                        }
                    }
                }
                let base = s.map(|v| v.floor() as i64);
                let frac: [f32; 3] = std::array::from_fn(|a| s[a] - base[a] as f32);
                for corner in 0..8 {
                    let p: [i64; 3] = std::array::from_fn(|a| base[a] + ((corner >> (2 - a)) & 1));
                    if !inside(p) {
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
                        images[m * crop_voxels + dst] += weight * case.images[m * voxels + src];
                    }
                }
            }
        }
    }
    Crop { images, targets }
}

/// Copies the crop at `start` (zero outside the volume), flipped along the axes in `flip`.
pub fn extract(case: &PreparedCase, start: [usize; 3], crop: [usize; 3], flip: [bool; 3]) -> Crop {
    let [d, h, w] = case.shape;
    let voxels = d * h * w;
    let crop_voxels: usize = crop.iter().product();
    let mut images = vec![0f32; 4 * crop_voxels];
    let mut targets = vec![0f32; 3 * crop_voxels];
    for cz in 0..crop[0] {
        let z = start[0] + if flip[0] { crop[0] - 1 - cz } else { cz };
        if z >= d {
            continue;
        }
        for cy in 0..crop[1] {
            let y = start[1] + if flip[1] { crop[1] - 1 - cy } else { cy };
            if y >= h {
                continue;
            }
            for cx in 0..crop[2] {
                let x = start[2] + if flip[2] { crop[2] - 1 - cx } else { cx };
                if x >= w {
                    continue;
                }
                let src = (z * h + y) * w + x;
                let dst = (cz * crop[1] + cy) * crop[2] + cx;
                for m in 0..4 {
                    images[m * crop_voxels + dst] = case.images[m * voxels + src];
                }
                let r = case.regions[src];
                for (c, bit) in OUTPUT_REGIONS.iter().enumerate() {
                    if r & bit != 0 {
                        targets[c * crop_voxels + dst] = 1.0;
                    }
                }
            }
        }
    }
    Crop { images, targets }
}

#[cfg(test)]
mod tests {
    use metakd_data::metadata::CaseMetadata;
    use metakd_data::preprocess::{regions_of_label, ClipOutcome};

    use super::*;

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
        PreparedCase {
            id: "ramp".into(),
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
        }
    }

    #[test]
    fn resampling_a_box_of_the_crop_size_is_the_plain_crop() {
        let case = ramp_case([10, 12, 14]);
        for flip in [[false; 3], [true, false, true]] {
            let plain = extract(&case, [1, 2, 3], [8, 8, 8], flip);
            let resampled = extract_resampled(&case, [1, 2, 3], [8, 8, 8], [8, 8, 8], flip);
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
        let scaled = extract_resampled(&case, start, source, crop, [false; 3]);
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

    #[test]
    fn scaling_draws_nothing_when_switched_off() {
        use rand::SeedableRng;
        let case = ramp_case([12, 12, 12]);
        let plain = CropSampler::new([8, 8, 8], 0.5, true, None);
        let off = CropSampler::new([8, 8, 8], 0.5, true, Some(AugmentConfig::none()));
        let (mut a, mut b) = (
            rand_chacha::ChaCha12Rng::seed_from_u64(3),
            rand_chacha::ChaCha12Rng::seed_from_u64(3),
        );
        for _ in 0..5 {
            assert_eq!(
                plain.sample(&case, &mut a).images,
                off.sample(&case, &mut b).images
            );
        }
        let always = AugmentConfig {
            scale_probability: 1.0,
            scale_range: [0.8, 0.8],
            ..AugmentConfig::none()
        };
        let scaled = CropSampler::new([8, 8, 8], 0.0, false, Some(always));
        let crop = scaled.sample(&case, &mut a);
        assert_eq!(crop.images.len(), 4 * 512);
    }
}
