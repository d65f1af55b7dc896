//! `metakd split`: writes split files for the published protocols from a shard folder's labelled
//! cases. Each file is a [`Splits`] in JSON, named in a run configuration as `data.split`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use metakd_data::shards::Manifest;

use crate::splits::{read_id_list, Splits};

/// How the meta-validation set is chosen inside the training set.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaValChoice {
    /// Cases drawn when no list is given.
    pub count: usize,
    /// A file listing the meta-validation cases (such as MetaKD's `BraTS18_metaVal.txt`).
    pub list: Option<PathBuf>,
    /// Seed of the draw.
    pub seed: u64,
}

/// A split request.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitRequest {
    /// Protocol A: every labelled case trains, the meta-validation set taken out; the test cases
    /// are those of another shard folder (the validation release, scored online), if given.
    ProtocolA {
        /// The training shards.
        shards: PathBuf,
        /// Shards of the validation release.
        test_shards: Option<PathBuf>,
        /// The split file.
        out: PathBuf,
        /// Meta-validation choice.
        meta_val: MetaValChoice,
    },
    /// Protocol B: `splits` seeded train/val/test splits, written as `split{k}.json`.
    ProtocolB {
        /// The training shards.
        shards: PathBuf,
        /// Folder of the split files.
        out_dir: PathBuf,
        /// Number of splits.
        splits: usize,
        /// Seed.
        seed: u64,
        /// Fraction of cases for validation.
        val_fraction: f64,
        /// Fraction of cases for testing.
        test_fraction: f64,
        /// Meta-validation choice.
        meta_val: MetaValChoice,
    },
    /// An RFNet-style list folder (`train1.txt`, `val1.txt`, `test1.txt`, ...).
    Rfnet {
        /// The folder of lists.
        lists: PathBuf,
        /// Which split (`None` for unnumbered `train.txt`, ...).
        fold: Option<usize>,
        /// The shards the lists refer to.
        shards: PathBuf,
        /// The split file.
        out: PathBuf,
        /// Meta-validation choice.
        meta_val: MetaValChoice,
    },
}

fn labelled_ids(manifest: &Manifest) -> Vec<String> {
    manifest
        .cases
        .iter()
        .filter(|c| c.labelled)
        .map(|c| c.id.clone())
        .collect()
}

fn take_meta_val(splits: &mut Splits, choice: &MetaValChoice) -> Result<()> {
    let listed = choice.list.as_deref().map(read_id_list).transpose()?;
    splits.take_meta_val(choice.count, listed.as_deref(), choice.seed)
}

/// Checks that every case a split names is in the shards.
fn check_all_present(splits: &Splits, manifest: &Manifest, shards: &Path) -> Result<()> {
    let missing: Vec<&String> = splits
        .train
        .iter()
        .chain(&splits.val)
        .chain(&splits.test)
        .filter(|id| manifest.case(id).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} listed cases are not in {}: {}",
            missing.len(),
            shards.display(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
    Ok(())
}

/// Writes the split files of `request`, returning each path with its splits.
pub fn write_splits(request: &SplitRequest) -> Result<Vec<(PathBuf, Splits)>> {
    let mut written = Vec::new();
    match request {
        SplitRequest::ProtocolA {
            shards,
            test_shards,
            out,
            meta_val,
        } => {
            let manifest = Manifest::read(shards)?;
            let test = match test_shards {
                Some(dir) => Manifest::read(dir)?
                    .cases
                    .iter()
                    .map(|c| c.id.clone())
                    .collect(),
                None => Vec::new(),
            };
            let mut splits = Splits::protocol_a(&labelled_ids(&manifest), test);
            take_meta_val(&mut splits, meta_val)?;
            written.push((out.clone(), splits));
        }
        SplitRequest::ProtocolB {
            shards,
            out_dir,
            splits,
            seed,
            val_fraction,
            test_fraction,
            meta_val,
        } => {
            let manifest = Manifest::read(shards)?;
            let ids = labelled_ids(&manifest);
            std::fs::create_dir_all(out_dir)?;
            for fold in 1..=*splits {
                let mut split =
                    Splits::protocol_b(&ids, fold, *seed, *val_fraction, *test_fraction)?;
                take_meta_val(&mut split, meta_val)?;
                written.push((out_dir.join(format!("split{fold}.json")), split));
            }
        }
        SplitRequest::Rfnet {
            lists,
            fold,
            shards,
            out,
            meta_val,
        } => {
            let manifest = Manifest::read(shards)?;
            let mut splits = Splits::read_rfnet(lists, *fold)?;
            check_all_present(&splits, &manifest, shards)?;
            take_meta_val(&mut splits, meta_val)?;
            written.push((out.clone(), splits));
        }
    }
    for (path, splits) in &written {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        splits.write(path)?;
    }
    Ok(written)
}
