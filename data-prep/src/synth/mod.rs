//! Synthetic BraTS-like cases written in the official layouts of the BraTS 2018, 2019 and 2020
//! training and validation releases ([`Layout`]): int16 images and uint8 labels (0, 1, 2, 4) with
//! real NIfTI-1 headers, grade folders, the release's CSV tables, and BraTS2020's one training case
//! whose label map has another file name. The default is the 2020 training layout, the embedded
//! data set of the demo.

mod contrast;
mod field;
mod layout;
mod phantom;

use std::path::{Path, PathBuf};

use ndarray::Array3;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

pub use contrast::Tissue;
pub use layout::{Layout, MISNAMED_SEG_FILE};
pub use phantom::tissue_map;

use crate::error::{DataError, Result};
use crate::modality::Modality;
use crate::nifti_io::{brats_affine, write_volume, StoredType, Volume};
use field::SmoothField;

/// Settings of a synthetic data set.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of cases.
    pub cases: usize,
    /// Volume extents (D, H, W) = (z, x, y) in 1 mm voxels.
    pub shape: [usize; 3],
    /// Seed; case i uses a generator derived from (seed, i), so any case can be regenerated alone.
    pub seed: u64,
    /// The release layout to write.
    pub layout: Layout,
}

impl SynthConfig {
    /// `cases` cases of `shape` in the BraTS2020 training layout, gzip-compressed.
    pub fn new(cases: usize, shape: [usize; 3], seed: u64) -> Self {
        Self {
            cases,
            shape,
            seed,
            layout: Layout::default(),
        }
    }
}

/// Standard deviation of the Gaussian noise, relative to white matter in T1.
const NOISE_SIGMA: f32 = 0.035;
/// Amplitude of the smooth bias field (log scale).
const BIAS_AMPLITUDE: f32 = 0.12;
/// Amplitude of the texture inside the tumour.
const TUMOUR_TEXTURE: f32 = 0.08;
/// Intensity units of the stored int16 images per unit of relative intensity.
const INTENSITY_SCALE: f32 = 1000.0;

/// The id of case `index` (0-based) in the default layout: `BraTS20_Training_001`, ...
pub fn case_id(index: usize) -> String {
    Layout::default().case_id(index)
}

/// One generated case: the four images and the label map, all `[d, h, w]`.
#[derive(Debug, Clone)]
pub struct SynthCase {
    /// Images in channel order (FLAIR, T1, T1ce, T2).
    pub images: [Array3<f32>; 4],
    /// BraTS labels 0, 1, 2, 4.
    pub labels: Array3<u8>,
}

/// Generates case `index` of the data set `config`.
pub fn generate_case(config: &SynthConfig, index: usize) -> SynthCase {
    let mut rng =
        StdRng::seed_from_u64(config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let tissues = tissue_map(config.shape, &mut rng);
    let labels = tissues.mapv(|t| Tissue::ALL[t as usize].brats_label());
    let size = config.shape[1] as f32;
    let texture = SmoothField::new(&mut rng, 8, 3.0, 10.0);
    let images = Modality::ALL.map(|modality| {
        let bias = SmoothField::new(&mut rng, 4, 1.5 * size, 4.0 * size);
        let gain = rng.random_range(0.8..1.25);
        let noise = Normal::new(0.0f32, NOISE_SIGMA).expect("valid sigma");
        let mut image = Array3::<f32>::zeros(tissues.raw_dim());
        for (((z, x, y), t), v) in tissues.indexed_iter().zip(image.iter_mut()) {
            let tissue = Tissue::ALL[*t as usize];
            if tissue == Tissue::Background {
                continue;
            }
            let p = [z as f32, x as f32, y as f32];
            let mut mean = tissue.intensity(modality);
            if tissue.brats_label() != 0 {
                mean *= 1.0 + TUMOUR_TEXTURE * texture.at(p);
            }
            let value = mean * (BIAS_AMPLITUDE * bias.at(p)).exp() + noise.sample(&mut rng);
            *v = (value * gain * INTENSITY_SCALE).max(1.0);
        }
        image
    });
    SynthCase { images, labels }
}

/// Writes case `index` into its folder under `out`.
fn write_case(config: &SynthConfig, index: usize, out: &Path) -> Result<PathBuf> {
    let layout = &config.layout;
    let case = generate_case(config, index);
    let id = layout.case_id(index);
    let dir = out.join(layout.case_folder(index, config.cases));
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let spacing = [1.0; 3];
    let affine = brats_affine(config.shape, spacing);
    let ext = layout.extension();
    for (modality, image) in Modality::ALL.iter().zip(case.images) {
        let path = dir.join(format!("{id}_{}.{ext}", modality.suffix()));
        let volume = Volume {
            data: image,
            spacing,
            affine,
        };
        write_volume(&path, &volume, StoredType::Int16)?;
    }
    if let Some(seg_name) = layout.seg_file_name(index, config.cases) {
        let seg = Volume {
            data: case.labels.mapv(f32::from),
            spacing,
            affine,
        };
        write_volume(&dir.join(seg_name), &seg, StoredType::Uint8)?;
    }
    Ok(dir)
}

/// Writes the data set `config` into `out` in its release layout, with the release's CSV tables,
/// calling `progress` after each case.
pub fn write_dataset(
    config: &SynthConfig,
    out: &Path,
    progress: impl Fn() + Sync,
) -> Result<Vec<PathBuf>> {
    if config.cases == 0 {
        return Err(DataError::InvalidArgument(
            "--cases must be at least 1".into(),
        ));
    }
    if config.shape.iter().any(|&s| s < 16) {
        return Err(DataError::InvalidArgument(format!(
            "--shape {:?}: every extent must be at least 16 voxels",
            config.shape
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let dirs = (0..config.cases)
        .into_par_iter()
        .map(|i| {
            let dir = write_case(config, i, out);
            progress();
            dir
        })
        .collect::<Result<Vec<_>>>()?;
    for (name, text) in config.layout.tables(config.cases, config.seed) {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))?;
    }
    Ok(dirs)
}
