//! Finding and loading BraTS cases: case folders holding `<id>_{flair,t1,t1ce,t2}.nii[.gz]` and,
//! for training releases, `<id>_seg.nii[.gz]`.

use std::path::{Path, PathBuf};

use ndarray::Array3;

use crate::error::{DataError, Result};
use crate::modality::Modality;
use crate::nifti_io::{read_volume, Volume};

/// The files of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFiles {
    /// The case id (its folder name).
    pub id: String,
    /// The case folder.
    pub dir: PathBuf,
    /// The image files in channel order.
    pub images: [PathBuf; 4],
    /// The label file, absent in validation releases.
    pub seg: Option<PathBuf>,
}

/// `dir/<id>_<suffix>.nii.gz` or `.nii`, whichever exists.
fn find_volume(dir: &Path, id: &str, suffix: &str) -> Option<PathBuf> {
    ["nii.gz", "nii"]
        .iter()
        .map(|ext| dir.join(format!("{id}_{suffix}.{ext}")))
        .find(|p| p.is_file())
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Finds every case folder under `src` (searching up to three levels down, so release folders
/// with `HGG/` and `LGG/` subfolders work too), sorted by id.
pub fn discover_cases(src: &Path) -> Result<Vec<CaseFiles>> {
    if !src.is_dir() {
        return Err(DataError::io(
            src,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let mut cases = Vec::new();
    let mut frontier = vec![(src.to_owned(), 0)];
    while let Some((dir, depth)) = frontier.pop() {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if find_volume(&dir, &id, Modality::Flair.suffix()).is_some() {
            let images = Modality::ALL.map(|m| {
                find_volume(&dir, &id, m.suffix())
                    .unwrap_or_else(|| dir.join(format!("{id}_{}.nii.gz", m.suffix())))
            });
            cases.push(CaseFiles {
                seg: find_volume(&dir, &id, "seg"),
                id,
                dir,
                images,
            });
        } else if depth < 3 {
            frontier.extend(sorted_subdirs(&dir)?.into_iter().map(|d| (d, depth + 1)));
        }
    }
    if cases.is_empty() {
        return Err(DataError::NoCases {
            path: src.to_owned(),
        });
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(cases)
}

/// A case read from disk.
#[derive(Debug, Clone)]
pub struct RawCase {
    /// The case id.
    pub id: String,
    /// The images in channel order, `[d, h, w]`.
    pub images: [Volume; 4],
    /// The label map (0, 1, 2, 4), when the release has one.
    pub labels: Option<Array3<u8>>,
}

/// Reads the images and labels of `files`, checking that every volume has the same shape and
/// that the labels are BraTS labels.
pub fn load_case(files: &CaseFiles) -> Result<RawCase> {
    let mut images = Vec::with_capacity(4);
    for (m, path) in Modality::ALL.iter().zip(&files.images) {
        if !path.is_file() {
            return Err(DataError::MissingFile {
                case: files.id.clone(),
                file: path.clone(),
            });
        }
        let volume = read_volume(path)?;
        if let Some(first) = images.first() {
            check_shape(&files.id, first, &volume, m.display_name())?;
        }
        images.push(volume);
    }
    let images: [Volume; 4] = images.try_into().expect("four modalities");
    let labels = match &files.seg {
        None => None,
        Some(path) => {
            let seg = read_volume(path)?;
            check_shape(&files.id, &images[0], &seg, "seg")?;
            if let Some(&bad) = seg
                .data
                .iter()
                .find(|&&v| ![0.0, 1.0, 2.0, 4.0].contains(&v))
            {
                return Err(DataError::BadLabel {
                    path: path.clone(),
                    value: bad,
                });
            }
            Some(seg.data.mapv(|v| v as u8))
        }
    };
    Ok(RawCase {
        id: files.id.clone(),
        images,
        labels,
    })
}

fn check_shape(case: &str, reference: &Volume, other: &Volume, what: &str) -> Result<()> {
    if reference.shape() != other.shape() {
        return Err(DataError::ShapeMismatch {
            case: case.to_owned(),
            what: what.to_owned(),
            reference: Modality::Flair.display_name().to_owned(),
            expected: reference.shape(),
            found: other.shape(),
        });
    }
    Ok(())
}
