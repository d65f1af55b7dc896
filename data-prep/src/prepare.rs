//! The `prepare` stage: every case of a BraTS release folder read, preprocessed and written into
//! checksummed shards. A case that cannot be used is skipped with the reason and the others are
//! written. Re-running resumes: shards whose digests still verify are kept, their cases are not
//! prepared again. Cases are prepared in parallel, a bounded number at a time, so memory stays
//! under the budget whatever the size of the release.

use std::collections::HashSet;
use std::path::Path;

use rayon::prelude::*;

use crate::brats::{discover, load_case_within, CaseFiles, Discovery, SkippedCase};
use crate::error::{DataError, Result};
use crate::lock::Lock;
use crate::modality::Modality;
use crate::nifti_io::MAX_VOXELS;
use crate::preprocess::{prepare_case, PreparedCase, PreprocessSettings};
use crate::release::Release;
use crate::shards::{
    verify_file, CaseEntry, FinishedShard, ImageDtype, Manifest, PrepareSettings, ShardEntry,
    ShardWriter, FORMAT_VERSION,
};

/// Default target size of a shard.
pub const DEFAULT_SHARD_BYTES: u64 = 256 << 20;
/// Default bound on the memory the cases in flight may take.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1536 << 20;
/// Bytes of memory one case in flight needs per voxel of one volume: its peak while prepared
/// (raw and normalised volumes of four modalities, masks, the cropped copy), plus the prepared
/// cases queued for and being written.
const WORKING_BYTES_PER_VOXEL: u64 = 74;

/// How to prepare a folder.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    /// The release, when it should not be detected from the case ids.
    pub release: Option<Release>,
    /// Target shard size in bytes.
    pub shard_bytes: u64,
    /// Element type of the stored images.
    pub dtype: ImageDtype,
    /// Bound on the working memory of the cases in flight.
    pub memory_budget: u64,
    /// Delete the shards of another source found in the output folder instead of refusing it.
    pub overwrite: bool,
    /// A skipped case fails the preparation: the manifest is left incomplete, so no later stage
    /// reads the shards as a whole release.
    pub strict: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            release: None,
            shard_bytes: DEFAULT_SHARD_BYTES,
            dtype: ImageDtype::Float32,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            overwrite: false,
            strict: false,
        }
    }
}

/// What a preparation run did.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReport {
    /// The finished manifest.
    pub manifest: Manifest,
    /// Cases prepared by this run.
    pub prepared: usize,
    /// Cases kept from shards of an earlier run whose digests verified.
    pub reused: usize,
    /// Shards of an earlier run that failed verification and were rebuilt.
    pub rebuilt_shards: Vec<String>,
}

/// Shards and cases kept from an earlier run into the same folder.
struct Kept {
    shards: Vec<ShardEntry>,
    cases: Vec<CaseEntry>,
    rebuilt: Vec<String>,
}

/// Removes temporary files a killed run left behind.
fn remove_partial_files(out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(out).map_err(|e| DataError::io(out, e))? {
        let path = entry.map_err(|e| DataError::io(out, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with('.') && n.ends_with(".partial")) {
            std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Makes sure the shard folder `out` holds shards of `src` or none: the shards of another source
/// are refused (naming both), or deleted with `overwrite`.
fn claim_for_source(src: &Path, out: &Path, overwrite: bool) -> Result<()> {
    if !Manifest::path(out).is_file() {
        return Ok(());
    }
    let previous = Manifest::read_any(out)?;
    let recorded = Path::new(&previous.source);
    if crate::files::same_folder(recorded, src) {
        return Ok(());
    }
    if !overwrite {
        return Err(DataError::InvalidArgument(format!(
            "{}: holds the shards of {} ({} cases), not of {}; prepare {} into another --out, or \
             pass --overwrite to delete these shards first",
            out.display(),
            recorded.display(),
            previous.cases.len(),
            src.display(),
            src.display()
        )));
    }
    for entry in std::fs::read_dir(out).map_err(|e| DataError::io(out, e))? {
        let path = entry.map_err(|e| DataError::io(out, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let ours = name == "manifest.json"
            || (name.starts_with("shard-") && name.ends_with(".arrow"))
            || name.ends_with(".partial");
        if ours {
            std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
        }
    }
    tracing::info!(
        "{}: deleted the shards of {}",
        out.display(),
        recorded.display()
    );
    Ok(())
}

/// The verified shards of an earlier run into `out`, if there was one with the same settings.
fn keep_verified_shards(out: &Path, settings: &PrepareSettings) -> Result<Kept> {
    let mut kept = Kept {
        shards: Vec::new(),
        cases: Vec::new(),
        rebuilt: Vec::new(),
    };
    if !Manifest::path(out).is_file() {
        return Ok(kept);
    }
    let previous = Manifest::read_any(out)?;
    if &previous.settings != settings {
        return Err(DataError::InvalidArgument(format!(
            "{}: holds shards prepared with other settings ({:?}, {} MiB shards); use another \
             --out folder, or delete this one to prepare it again",
            out.display(),
            previous.settings.dtype,
            previous.settings.shard_bytes >> 20
        )));
    }
    for shard in previous.shards {
        let path = out.join(&shard.file);
        match verify_file(&path, shard.bytes, &shard.blake3) {
            Ok(()) => {
                kept.cases.extend(
                    previous
                        .cases
                        .iter()
                        .filter(|c| c.shard == shard.file)
                        .cloned(),
                );
                kept.shards.push(shard);
            }
            Err(e) => {
                tracing::warn!("{e}; its cases are prepared again");
                if path.exists() {
                    std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
                }
                kept.rebuilt.push(shard.file);
            }
        }
    }
    Ok(kept)
}

/// Voxels of one volume of `case`, estimated from its FLAIR file without reading it: the
/// uncompressed size a gzip trailer records, or the file size.
fn estimated_voxels(case: &CaseFiles) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let path = &case.images[Modality::Flair.index()];
    let bytes = std::fs::File::open(path).and_then(|mut file| {
        let size = file.metadata()?.len();
        let mut magic = [0u8; 2];
        file.read_exact(&mut magic)?;
        if magic != [0x1f, 0x8b] || size < 4 {
            return Ok(size);
        }
        let mut trailer = [0u8; 4];
        file.seek(SeekFrom::End(-4))?;
        file.read_exact(&mut trailer)?;
        Ok(u64::from(u32::from_le_bytes(trailer)))
    });
    // BraTS images are 16-bit: the largest voxel count the bytes can hold.
    bytes.map_or(240 * 240 * 155, |b| b / 2)
}

/// How many cases may be in flight at once within `budget`.
fn cases_in_flight(cases: &[&CaseFiles], budget: u64) -> usize {
    let largest = cases
        .iter()
        .take(8)
        .map(|c| estimated_voxels(c))
        .max()
        .unwrap_or(1);
    let fit = (budget / (largest.max(1) * WORKING_BYTES_PER_VOXEL)).max(1) as usize;
    fit.min(rayon::current_num_threads().max(1))
}

/// Reads and preprocesses one case, with its release, grade and metadata attached.
fn prepare_one(
    files: &CaseFiles,
    release: Option<Release>,
    settings: &PreprocessSettings,
    memory_budget: u64,
) -> Result<PreparedCase> {
    let max_voxels = (memory_budget / WORKING_BYTES_PER_VOXEL).min(MAX_VOXELS);
    let mut case = prepare_case(load_case_within(files, max_voxels)?, settings)?;
    case.release = release;
    case.grade = files.grade;
    case.metadata = files.metadata.clone();
    Ok(case)
}

/// What discovery noticed that leaves the cases usable: the folder's warnings, then each case's
/// (as `case <id>: <warning>`).
fn discovery_warnings(discovery: &Discovery) -> Vec<String> {
    let mut warnings = discovery.warnings.clone();
    for case in &discovery.cases {
        warnings.extend(
            case.warnings
                .iter()
                .map(|w| format!("case {}: {w}", case.id)),
        );
    }
    warnings
}

/// What [`prepare_brats`] tells its caller as it goes.
#[derive(Debug, Clone, Copy)]
pub enum PrepareEvent<'a> {
    /// The source folder was read: `cases` cases will be prepared or kept, and `warnings` are
    /// what it noticed that leaves them usable (a renamed label map, an unreadable table).
    Found {
        /// Cases to prepare or keep.
        cases: usize,
        /// The warnings, also recorded in the manifest.
        warnings: &'a [String],
    },
    /// One case was prepared, or kept from an earlier run.
    CaseDone {
        /// Its id.
        id: &'a str,
    },
}

/// The manifest of `discovery` prepared into `shards`/`cases` so far.
fn manifest_of(
    src: &Path,
    discovery: &Discovery,
    settings: &PrepareSettings,
    shards: &[ShardEntry],
    cases: &[CaseEntry],
    skipped: &[SkippedCase],
    complete: bool,
) -> Manifest {
    let mut cases = cases.to_vec();
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    let warnings = discovery_warnings(discovery);
    Manifest {
        format_version: FORMAT_VERSION,
        complete,
        source: src.display().to_string(),
        release: discovery.release,
        split: discovery.split,
        modalities: Modality::ALL
            .iter()
            .map(|m| m.display_name().to_owned())
            .collect(),
        checksum: "blake3".into(),
        settings: settings.clone(),
        metadata_files: discovery
            .metadata_files
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        shards: shards.to_vec(),
        cases,
        skipped: skipped.to_vec(),
        warnings,
    }
}

/// Prepares every case under `src` into shards in `out`, telling `progress` what was found before
/// any work and each case when it is done (kept ones included).
pub fn prepare_brats(
    src: &Path,
    out: &Path,
    options: &PrepareOptions,
    progress: impl Fn(PrepareEvent) + Sync,
) -> Result<PrepareReport> {
    let discovery = discover(src, options.release)?;
    progress(PrepareEvent::Found {
        cases: discovery.cases.len(),
        warnings: &discovery_warnings(&discovery),
    });
    let settings = PrepareSettings {
        dtype: options.dtype,
        shard_bytes: options.shard_bytes,
        preprocessing: PreprocessSettings::default(),
    };
    let _lock = Lock::folder(out, "shard folder")?;
    claim_for_source(src, out, options.overwrite)?;
    remove_partial_files(out)?;
    let kept = keep_verified_shards(out, &settings)?;
    let done: HashSet<&str> = kept.cases.iter().map(|c| c.id.as_str()).collect();
    let total = discovery.cases.len();
    for case in discovery
        .cases
        .iter()
        .filter(|c| done.contains(c.id.as_str()))
    {
        progress(PrepareEvent::CaseDone { id: &case.id });
    }
    let todo: Vec<&CaseFiles> = discovery
        .cases
        .iter()
        .filter(|c| !done.contains(c.id.as_str()))
        .collect();
    let reused = total - todo.len();
    let mut shards = kept.shards.clone();
    let mut cases = kept.cases.clone();
    let mut skipped = discovery.rejected.clone();
    let next_index = shards
        .iter()
        .filter_map(|s| {
            s.file
                .strip_prefix("shard-")?
                .strip_suffix(".arrow")?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |i| i + 1);
    let mut writer = ShardWriter::new(out, options.shard_bytes, options.dtype, next_index);
    let in_flight = cases_in_flight(&todo, options.memory_budget);
    let mut prepared = 0;
    let record = |finished: Option<FinishedShard>,
                  shards: &mut Vec<ShardEntry>,
                  cases: &mut Vec<CaseEntry>,
                  skipped: &[SkippedCase]|
     -> Result<()> {
        if let Some(finished) = finished {
            shards.push(finished.entry);
            cases.extend(finished.cases);
            manifest_of(src, &discovery, &settings, shards, cases, skipped, false).write(out)?;
        }
        Ok(())
    };
    // Workers prepare a chunk of cases while this thread writes the previous one.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(&CaseFiles, Result<PreparedCase>)>(1);
    let written: Result<()> = std::thread::scope(|scope| {
        scope.spawn(|| {
            for chunk in todo.chunks(in_flight) {
                let results: Vec<Result<PreparedCase>> = chunk
                    .par_iter()
                    .map(|files| {
                        let result = prepare_one(
                            files,
                            discovery.release,
                            &settings.preprocessing,
                            options.memory_budget,
                        );
                        progress(PrepareEvent::CaseDone { id: &files.id });
                        result
                    })
                    .collect();
                for (files, result) in chunk.iter().zip(results) {
                    if sender.send((*files, result)).is_err() {
                        return;
                    }
                }
            }
            drop(sender);
        });
        for (files, result) in receiver {
            match result {
                Ok(case) => {
                    let finished = writer.write(case)?;
                    prepared += 1;
                    record(finished, &mut shards, &mut cases, &skipped)?;
                }
                Err(e) => {
                    // Reported once, with the other skipped cases, when preparation ends.
                    tracing::debug!("skipping case {}: {e}", files.id);
                    skipped.push(SkippedCase {
                        id: files.id.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    });
    written?;
    let finished = writer.close()?;
    record(finished, &mut shards, &mut cases, &skipped)?;
    // A folder without a case, or with a skipped case under `strict`, is not a release to train
    // on: its manifest stays incomplete, which every reader refuses.
    let failed = cases.is_empty() || (options.strict && !skipped.is_empty());
    let manifest = manifest_of(
        src, &discovery, &settings, &shards, &cases, &skipped, !failed,
    );
    manifest.write(out)?;
    if cases.is_empty() {
        return Err(DataError::InvalidArgument(format!(
            "{}: no case could be prepared ({} skipped; see {}); the manifest is marked incomplete",
            src.display(),
            skipped.len(),
            Manifest::path(out).display()
        )));
    }
    if failed {
        return Err(DataError::InvalidArgument(format!(
            "{}: {} cases were skipped (--strict), so the manifest is marked incomplete: {}",
            src.display(),
            skipped.len(),
            skipped
                .iter()
                .map(|s| format!("{}: {}", s.id, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(PrepareReport {
        manifest,
        prepared,
        reused,
        rebuilt_shards: kept.rebuilt,
    })
}
