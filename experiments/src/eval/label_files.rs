//! `metakd eval-labels`: scores predicted BraTS label maps against reference label maps as the
//! BraTS evaluator does — labels 1 (necrotic core), 2 (oedema) and 4 (enhancing tumour) make the
//! regions ET = {4}, TC = {1, 4} and WT = {1, 2, 4}; each region gets Dice, HD95 (mm, through the
//! reference's voxel spacing), sensitivity and specificity with the conventions of [`metrics`].
//!
//! Either two files, or two folders searched recursively for NIfTI files (`.nii`, `.nii.gz`).
//! A file's case id is its name without the extension and without a trailing `_seg`; a reference
//! folder in the official release layout also holds the images, so when it contains label files
//! (`seg` in the name) only those are read, each named by its case folder. A pair that cannot be scored (unreadable file, a label outside
//! {0, 1, 2, 4}, different grids) is skipped with the file and the reason, and the others are
//! scored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::metrics::{case_metrics, Grid, RegionMetrics, REGIONS};
use metakd_data::nifti_io::read_volume;
use metakd_data::preprocess::regions_of_label;

/// One predicted label map and the reference it is scored against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPair {
    /// Case id.
    pub id: String,
    /// Predicted label map.
    pub predicted: PathBuf,
    /// Reference label map.
    pub reference: PathBuf,
}

/// The metrics of one case, per region name (`ET`, `TC`, `WT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseScore {
    /// Case id.
    pub id: String,
    /// Metrics per region.
    pub regions: BTreeMap<String, RegionMetrics>,
}

/// A pair that could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPair {
    /// Case id.
    pub id: String,
    /// The file at fault.
    pub file: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

/// Everything `metakd eval-labels` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelEvaluation {
    /// Per-case metrics, by case id.
    pub cases: Vec<CaseScore>,
    /// Mean of each metric per region over the scored cases (absent when none was scored).
    pub mean: BTreeMap<String, RegionMetrics>,
    /// Pairs that could not be scored.
    pub skipped: Vec<SkippedPair>,
    /// Reference cases without a prediction.
    pub missing_predictions: Vec<String>,
    /// Predictions without a reference.
    pub unmatched_predictions: Vec<String>,
}

/// The case id of a label-map file name: the name without `.nii`/`.nii.gz` and a trailing `_seg`.
pub fn case_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))?;
    Some(stem.strip_suffix("_seg").unwrap_or(stem).to_owned())
}

/// NIfTI files under `dir`, recursively, in name order.
fn nifti_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if case_id(&path).is_some() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Files by case id (`id_of` each); a duplicate id is an error naming both files.
fn by_id_with(
    files: Vec<PathBuf>,
    id_of: impl Fn(&Path) -> String,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut map = BTreeMap::new();
    for file in files {
        let id = id_of(&file);
        if let Some(previous) = map.insert(id.clone(), file.clone()) {
            bail!(
                "case {id} has two files: {} and {}",
                previous.display(),
                file.display()
            )
        }
    }
    Ok(map)
}

/// Files by the case id of their names.
fn by_id(files: Vec<PathBuf>) -> Result<BTreeMap<String, PathBuf>> {
    by_id_with(files, |f| case_id(f).expect("filtered to NIfTI names"))
}

/// The label maps of a reference folder by case id. In a release layout (files whose name
/// contains `seg`, in one folder per case) only those are label maps, and the case folder names
/// the case, whatever the file is called (BraTS 2020's case 355 holds `W39_1998.09.19_Segm.nii`);
/// otherwise every NIfTI file is a label map named by its case id.
fn reference_label_files(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let files = nifti_files(root)?;
    let is_seg = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.to_lowercase().contains("seg"))
    };
    if !files.iter().any(is_seg) {
        return by_id(files);
    }
    by_id_with(files.into_iter().filter(is_seg).collect(), |f| {
        match f.parent() {
            Some(folder) if folder != root => folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => case_id(f).expect("filtered to NIfTI names"),
        }
    })
}

/// The pairs to score, the reference cases without a prediction and the predictions without a
/// reference.
pub fn pair_files(
    predicted: &Path,
    reference: &Path,
) -> Result<(Vec<LabelPair>, Vec<String>, Vec<String>)> {
    match (predicted.is_dir(), reference.is_dir()) {
        (false, false) => {
            let id = case_id(predicted).with_context(|| {
                format!(
                    "{} is not a NIfTI file (.nii, .nii.gz)",
                    predicted.display()
                )
            })?;
            Ok((
                vec![LabelPair {
                    id,
                    predicted: predicted.to_owned(),
                    reference: reference.to_owned(),
                }],
                Vec::new(),
                Vec::new(),
            ))
        }
        (true, true) => {
            let predictions = by_id(nifti_files(predicted)?)?;
            let references = reference_label_files(reference)?;
            let pairs = references
                .iter()
                .filter_map(|(id, r)| {
                    predictions.get(id).map(|p| LabelPair {
                        id: id.clone(),
                        predicted: p.clone(),
                        reference: r.clone(),
                    })
                })
                .collect();
            let missing = references
                .keys()
                .filter(|id| !predictions.contains_key(*id))
                .cloned()
                .collect();
            let unmatched = predictions
                .keys()
                .filter(|id| !references.contains_key(*id))
                .cloned()
                .collect();
            Ok((pairs, missing, unmatched))
        }
        _ => bail!(
            "--pred {} and --ref {} must both be files or both be folders",
            predicted.display(),
            reference.display()
        ),
    }
}

/// A label map as region bits per voxel in (z, x, y) C order, with its grid.
pub fn read_label_regions(path: &Path) -> Result<(Vec<u8>, Grid)> {
    let volume = read_volume(path).with_context(|| format!("cannot read {}", path.display()))?;
    let [d, h, w] = volume.shape();
    let mut regions = Vec::with_capacity(d * h * w);
    for &value in volume.to_zxy().iter() {
        let label = value as u8;
        if f32::from(label) != value || !matches!(label, 0 | 1 | 2 | 4) {
            bail!(
                "{}: label {value} is not a BraTS label (0, 1, 2, 4)",
                path.display()
            )
        }
        regions.push(regions_of_label(label));
    }
    Ok((regions, Grid::of_zxy_volume([d, h, w], volume.spacing)))
}

/// Scores one pair; the error names the file at fault.
fn score_pair(pair: &LabelPair) -> std::result::Result<CaseScore, SkippedPair> {
    let skip = |file: &Path, reason: String| SkippedPair {
        id: pair.id.clone(),
        file: file.to_owned(),
        reason,
    };
    let (reference, grid) =
        read_label_regions(&pair.reference).map_err(|e| skip(&pair.reference, format!("{e:#}")))?;
    let (predicted, predicted_grid) =
        read_label_regions(&pair.predicted).map_err(|e| skip(&pair.predicted, format!("{e:#}")))?;
    if predicted_grid.shape != grid.shape {
        return Err(skip(
            &pair.predicted,
            format!(
                "grid {:?} differs from the reference's {:?}",
                predicted_grid.shape, grid.shape
            ),
        ));
    }
    let spacing_differs = predicted_grid
        .spacing
        .iter()
        .zip(&grid.spacing)
        .any(|(p, r)| (p - r).abs() > 1e-4 * r.abs().max(1.0));
    if spacing_differs {
        return Err(skip(
            &pair.predicted,
            format!(
                "voxel spacing {:?} differs from the reference's {:?}",
                predicted_grid.spacing, grid.spacing
            ),
        ));
    }
    let metrics = case_metrics(&predicted, &reference, &grid, 0);
    Ok(CaseScore {
        id: pair.id.clone(),
        regions: REGIONS
            .iter()
            .zip(metrics)
            .map(|((_, name), m)| ((*name).to_owned(), m))
            .collect(),
    })
}

/// Mean of each metric per region over `cases`.
fn mean_over(cases: &[CaseScore]) -> BTreeMap<String, RegionMetrics> {
    let mut out = BTreeMap::new();
    if cases.is_empty() {
        return out;
    }
    let n = cases.len() as f64;
    for (_, name) in REGIONS {
        let mean = |f: fn(&RegionMetrics) -> f64| {
            cases.iter().map(|c| f(&c.regions[name])).sum::<f64>() / n
        };
        out.insert(
            name.to_owned(),
            RegionMetrics {
                dice: mean(|m| m.dice),
                hd95: mean(|m| m.hd95),
                sensitivity: mean(|m| m.sensitivity),
                specificity: mean(|m| m.specificity),
            },
        );
    }
    out
}

/// Scores every pair of `predicted` against `reference` (files or folders), calling `progress`
/// after each case.
pub fn evaluate_labels(
    predicted: &Path,
    reference: &Path,
    mut progress: impl FnMut(&str, usize),
) -> Result<LabelEvaluation> {
    let (pairs, missing_predictions, unmatched_predictions) = pair_files(predicted, reference)?;
    let (mut cases, mut skipped) = (Vec::new(), Vec::new());
    for pair in &pairs {
        match score_pair(pair) {
            Ok(score) => cases.push(score),
            Err(skip) => skipped.push(skip),
        }
        progress(&pair.id, pairs.len());
    }
    Ok(LabelEvaluation {
        mean: mean_over(&cases),
        cases,
        skipped,
        missing_predictions,
        unmatched_predictions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_ids_drop_extension_and_seg_suffix() {
        let id = |s: &str| case_id(Path::new(s));
        assert_eq!(
            id("a/BraTS20_Training_001_seg.nii.gz").as_deref(),
            Some("BraTS20_Training_001")
        );
        assert_eq!(
            id("BraTS20_Validation_007.nii").as_deref(),
            Some("BraTS20_Validation_007")
        );
        assert_eq!(id("notes.txt"), None);
    }
}
