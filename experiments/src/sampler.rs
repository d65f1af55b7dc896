//! Training crops from prepared cases: random crops, half of them centred on a foreground voxel
//! of a random tumour region, with random flips; targets in the network's channel order
//! (ET, WT, TC).

use metakd_data::preprocess::{PreparedCase, REGION_ET, REGION_TC, REGION_WT};
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

/// Where crops are cut and how they are flipped.
#[derive(Debug, Clone)]
pub struct CropSampler {
    crop: [usize; 3],
    foreground_probability: f64,
    flips: bool,
}

impl CropSampler {
    /// A sampler of `crop`-sized crops.
    pub fn new(crop: [usize; 3], foreground_probability: f64, flips: bool) -> Self {
        Self {
            crop,
            foreground_probability,
            flips,
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
        let start = if rng.random_bool(self.foreground_probability) {
            self.foreground_centre(case, rng)
        } else {
            None
        }
        .map(|c| std::array::from_fn(|a| Self::start_around(shape[a], self.crop[a], c[a])))
        .unwrap_or_else(|| {
            std::array::from_fn(|a| rng.random_range(0..=shape[a].saturating_sub(self.crop[a])))
        });
        let flip: [bool; 3] = std::array::from_fn(|_| self.flips && rng.random_bool(0.5));
        extract(case, start, self.crop, flip)
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
