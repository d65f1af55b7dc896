//! Finding and loading BraTS cases in the official release layouts: case folders holding
//! `<id>_{flair,t1,t1ce,t2}.nii[.gz]` and, in training releases, `<id>_seg.nii[.gz]`, directly in
//! the release folder (2020) or in `HGG/` and `LGG/` grade folders (2018, 2019).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::metadata::{read_metadata, CaseMetadata};
use crate::modality::Modality;
use crate::nifti_io::{read_volume_within, Volume};
use crate::release::{detect_release, Grade, Release, ReleaseSplit};

/// A case left out of the shards, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedCase {
    /// The case id.
    pub id: String,
    /// The error that stopped it.
    pub reason: String,
}

/// How deep below the source folder case folders are looked for.
const SEARCH_DEPTH: usize = 3;

/// The files of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFiles {
    /// The case id (its folder name).
    pub id: String,
    /// The case folder.
    pub dir: PathBuf,
    /// The image files in channel order (a missing one is reported when the case is loaded).
    pub images: [PathBuf; 4],
    /// The label file, absent in validation releases.
    pub seg: Option<PathBuf>,
    /// The grade, from an `HGG`/`LGG` parent folder or a `Grade` column.
    pub grade: Option<Grade>,
    /// Columns of the release's CSV tables for this case.
    pub metadata: CaseMetadata,
    /// Things worth telling the user that do not stop the case (a renamed label file).
    pub warnings: Vec<String>,
}

/// Everything found in a source folder.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The release, detected from the case ids or given.
    pub release: Option<Release>,
    /// Training (labelled) or validation data.
    pub split: ReleaseSplit,
    /// Usable case folders, sorted by id.
    pub cases: Vec<CaseFiles>,
    /// Folders that look like cases but cannot be used (empty, duplicated ids), with the reason.
    pub rejected: Vec<SkippedCase>,
    /// The metadata tables read.
    pub metadata_files: Vec<PathBuf>,
    /// Problems that leave every case usable (an unreadable CSV table).
    pub warnings: Vec<String>,
}

/// `dir/<id>_<suffix>.nii.gz` or `.nii`, whichever exists.
fn find_volume(dir: &Path, id: &str, suffix: &str) -> Option<PathBuf> {
    ["nii.gz", "nii"]
        .iter()
        .map(|ext| dir.join(format!("{id}_{suffix}.{ext}")))
        .find(|p| p.is_file())
}

fn is_nifti_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".nii") || lower.ends_with(".nii.gz")
}

/// The files and subfolders of `dir`, each sorted.
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_dir() {
            dirs.push(path);
        } else {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The label file of a case: `<id>_seg.nii[.gz]`, or else the one NIfTI file whose name contains
/// `seg` (BraTS2020 ships one training case's labels under another name).
fn find_seg(dir: &Path, id: &str, files: &[PathBuf]) -> (Option<PathBuf>, Vec<String>) {
    if let Some(seg) = find_volume(dir, id, "seg") {
        return (Some(seg), Vec::new());
    }
    let candidates: Vec<&PathBuf> = files
        .iter()
        .filter(|p| {
            let name = file_name(p);
            is_nifti_name(&name) && name.to_ascii_lowercase().contains("seg")
        })
        .collect();
    match candidates.as_slice() {
        [] => (None, Vec::new()),
        [lone] => (
            Some((*lone).clone()),
            vec![format!(
                "label map read from the non-standard file {} (expected {id}_seg.nii.gz)",
                lone.display()
            )],
        ),
        several => (
            None,
            vec![format!(
                "{} files look like label maps ({}); none used",
                several.len(),
                several
                    .iter()
                    .map(|p| file_name(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
        ),
    }
}

/// What a folder is to the search.
enum Folder {
    /// A case folder.
    Case(Box<CaseFiles>),
    /// A folder named like a case that holds no NIfTI file.
    EmptyCase(PathBuf),
    /// Something else: its subfolders are searched.
    Other(Vec<PathBuf>),
}

fn classify(dir: &Path, grade: Option<Grade>, release: Option<Release>) -> Result<Folder> {
    let id = file_name(dir);
    let (files, subdirs) = list_dir(dir)?;
    let prefix = format!("{id}_");
    let holds_case_file = files.iter().any(|p| {
        let name = file_name(p);
        name.starts_with(&prefix) && is_nifti_name(&name)
    });
    let named_like_case = match release {
        Some(r) => id.starts_with(r.id_prefix()),
        None => Release::of_case_id(&id).is_some(),
    };
    if !holds_case_file {
        let holds_nifti = files.iter().any(|p| is_nifti_name(&file_name(p)));
        return Ok(if named_like_case && !holds_nifti && subdirs.is_empty() {
            Folder::EmptyCase(dir.to_owned())
        } else {
            Folder::Other(subdirs)
        });
    }
    let images = Modality::ALL.map(|m| {
        find_volume(dir, &id, m.suffix())
            .unwrap_or_else(|| dir.join(format!("{id}_{}.nii.gz", m.suffix())))
    });
    let (seg, mut warnings) = find_seg(dir, &id, &files);
    if seg.is_none() && id.contains("_Training_") {
        warnings.push(format!(
            "a training case without a label map ({id}_seg.nii.gz); it is stored unlabelled, so \
             it is neither trained on nor scored"
        ));
    }
    Ok(Folder::Case(Box::new(CaseFiles {
        id,
        dir: dir.to_owned(),
        images,
        seg,
        grade,
        metadata: CaseMetadata::new(),
        warnings,
    })))
}

/// Finds every case folder under `src` (up to three levels down, so release folders with `HGG/`
/// and `LGG/` subfolders work too), reads the release's CSV tables, and detects the release and
/// split unless `release` is given.
pub fn discover(src: &Path, release: Option<Release>) -> Result<Discovery> {
    if !src.is_dir() {
        return Err(DataError::io(
            src,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let mut cases = Vec::new();
    let mut rejected = Vec::new();
    let mut frontier = vec![(src.to_owned(), 0, None)];
    // Folders already searched, by their real path: a symbolic link back up the tree (or to
    // another folder of the release) is searched once.
    let mut searched = HashSet::new();
    while let Some((dir, depth, grade)) = frontier.pop() {
        let classified = match dir.canonicalize() {
            Ok(real) if !searched.insert(real.clone()) => continue,
            Ok(_) => classify(&dir, grade, release),
            Err(e) => Err(DataError::io(&dir, e)),
        };
        let folder = match classified {
            Ok(folder) => folder,
            Err(e) if dir != src => {
                rejected.push(SkippedCase {
                    id: file_name(&dir),
                    reason: format!("unreadable folder: {e}"),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        match folder {
            Folder::Case(case) => cases.push(*case),
            Folder::EmptyCase(dir) => rejected.push(SkippedCase {
                id: file_name(&dir),
                reason: format!("{}: empty case folder (no NIfTI files)", dir.display()),
            }),
            Folder::Other(subdirs) if depth < SEARCH_DEPTH => {
                for sub in subdirs.into_iter().rev() {
                    let grade = Grade::parse(&file_name(&sub)).or(grade);
                    frontier.push((sub, depth + 1, grade));
                }
            }
            Folder::Other(_) => {}
        }
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.dir.cmp(&b.dir)));
    let cases = drop_duplicate_ids(cases, &mut rejected);
    if cases.is_empty() && rejected.is_empty() {
        return Err(DataError::NoCases {
            path: src.to_owned(),
        });
    }
    let release = release.or_else(|| detect_release(cases.iter().map(|c| c.id.as_str())));
    let split = if cases.iter().any(|c| c.seg.is_some())
        || cases.iter().any(|c| c.id.contains("_Training_"))
    {
        ReleaseSplit::Training
    } else {
        ReleaseSplit::Validation
    };
    let mut discovery = Discovery {
        release,
        split,
        cases,
        rejected,
        metadata_files: Vec::new(),
        warnings: Vec::new(),
    };
    attach_metadata(src, &mut discovery)?;
    Ok(discovery)
}

/// Removes every case whose id appears in more than one folder, recording why.
fn drop_duplicate_ids(cases: Vec<CaseFiles>, rejected: &mut Vec<SkippedCase>) -> Vec<CaseFiles> {
    let mut folders: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for case in &cases {
        folders
            .entry(case.id.clone())
            .or_default()
            .push(case.dir.clone());
    }
    for (id, dirs) in folders.iter().filter(|(_, d)| d.len() > 1) {
        rejected.push(SkippedCase {
            id: id.clone(),
            reason: format!(
                "duplicate case id in {} folders: {}",
                dirs.len(),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    cases
        .into_iter()
        .filter(|c| folders[&c.id].len() == 1)
        .collect()
}

/// Reads the CSV tables in `src` and in each grade folder's parent, attaching their columns (and a
/// `Grade` column's grade) to the cases.
fn attach_metadata(src: &Path, discovery: &mut Discovery) -> Result<()> {
    let ids: HashSet<&str> = discovery.cases.iter().map(|c| c.id.as_str()).collect();
    let mut roots: Vec<PathBuf> = vec![src.to_owned()];
    for case in &discovery.cases {
        if let Some(parent) = case.dir.parent() {
            let root = if Grade::parse(&file_name(parent)).is_some() {
                parent.parent().unwrap_or(parent)
            } else {
                parent
            };
            if !roots.iter().any(|r| r == root) {
                roots.push(root.to_owned());
            }
        }
    }
    let mut all = Vec::new();
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    for root in roots {
        let tables = read_metadata(&root, &ids)?;
        files.extend(tables.files);
        warnings.extend(tables.warnings);
        all.push(tables.cases);
    }
    for case in &mut discovery.cases {
        for tables in &all {
            if let Some(columns) = tables.get(&case.id) {
                case.metadata.extend(columns.clone());
            }
        }
        if case.grade.is_none() {
            case.grade = case.metadata.get("Grade").and_then(|g| Grade::parse(g));
        }
    }
    discovery.metadata_files = files;
    discovery.warnings = warnings;
    Ok(())
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

/// Largest difference between two modalities' affine entries still taken as the same grid (mm).
const AFFINE_TOLERANCE: f32 = 1e-3;

/// Reads the images and labels of `files`, checking that every volume has the same shape and
/// affine (and, through [`read_volume`], finite voxels) and that the labels are BraTS labels.
pub fn load_case(files: &CaseFiles) -> Result<RawCase> {
    load_case_within(files, crate::nifti_io::MAX_VOXELS)
}

/// [`load_case`] of volumes of at most `max_voxels` voxels each; a file declaring more is refused
/// from its header.
pub fn load_case_within(files: &CaseFiles, max_voxels: u64) -> Result<RawCase> {
    let mut images: Vec<Volume> = Vec::with_capacity(4);
    for (m, path) in Modality::ALL.iter().zip(&files.images) {
        if !path.is_file() {
            return Err(DataError::MissingFile {
                case: files.id.clone(),
                file: path.clone(),
            });
        }
        let volume = read_volume_within(path, max_voxels)?;
        if let Some(first) = images.first() {
            check_same_grid(&files.id, first, &volume, m.display_name(), path)?;
        }
        images.push(volume);
    }
    let images: [Volume; 4] = images.try_into().expect("four modalities");
    let labels = match &files.seg {
        None => None,
        Some(path) => {
            let seg = read_volume_within(path, max_voxels)?;
            check_same_grid(&files.id, &images[0], &seg, "seg", path)?;
            let values = seg
                .data
                .as_slice_memory_order()
                .expect("volumes read from files are contiguous");
            if let Some(&bad) = values
                .iter()
                .find(|&&v| v != 0.0 && v != 1.0 && v != 2.0 && v != 4.0)
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

fn check_same_grid(
    case: &str,
    reference: &Volume,
    other: &Volume,
    what: &str,
    path: &Path,
) -> Result<()> {
    if reference.shape() != other.shape() {
        return Err(DataError::ShapeMismatch {
            case: case.to_owned(),
            what: format!("{what} ({})", path.display()),
            reference: Modality::Flair.display_name().to_owned(),
            expected: reference.shape(),
            found: other.shape(),
        });
    }
    let differs = reference
        .affine
        .iter()
        .flatten()
        .zip(other.affine.iter().flatten())
        .any(|(a, b)| (a - b).abs() > AFFINE_TOLERANCE);
    if differs {
        return Err(DataError::BadCase {
            case: case.to_owned(),
            problem: format!(
                "{what} ({}) has affine {:?}, but {} has {:?}",
                path.display(),
                other.affine,
                Modality::Flair.display_name(),
                reference.affine
            ),
        });
    }
    Ok(())
}
