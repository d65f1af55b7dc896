//! `metakd split`: writes split files for the published protocols from a shard folder's labelled
//! cases. Each file is a [`Splits`] in JSON, named in a run configuration as `data.split`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use metakd_data::shards::Manifest;

use crate::run::splits::{read_id_list, Splits};

/// How the meta-validation set is chosen inside the training set.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct MetaValChoice {
    /// Training cases drawn as the meta-validation set when no list is given.
    #[arg(long = "meta-val", id = "meta_val_count", default_value_t = 5)]
    pub count: usize,
    /// A file listing the meta-validation cases, one id per line (such as MetaKD's
    /// `BraTS18_metaVal.txt`).
    #[arg(long = "meta-val-list", id = "meta_val_list")]
    pub list: Option<PathBuf>,
    /// Seed of the draw.
    #[arg(long = "meta-val-seed", id = "meta_val_seed", default_value_t = 0)]
    pub seed: u64,
}

/// A split request (the `metakd split` subcommands).
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum SplitRequest {
    /// Protocol A: every labelled case trains, the meta-validation set taken out; the test cases
    /// are those of another shard folder (the validation release, scored online), if given.
    ProtocolA {
        /// The training release's shards.
        #[arg(long)]
        shards: PathBuf,
        /// Shards of the validation release, listed as the test cases.
        #[arg(long)]
        test_shards: Option<PathBuf>,
        /// The split file to write.
        #[arg(long)]
        out: PathBuf,
        /// Meta-validation choice.
        #[command(flatten)]
        meta_val: MetaValChoice,
    },
    /// Protocol B: seeded train/val/test splits (RFNet's proportions by default), written as
    /// `split1.json`, `split2.json`, ...
    ProtocolB {
        /// The training release's shards.
        #[arg(long)]
        shards: PathBuf,
        /// Folder of the split files.
        #[arg(long)]
        out_dir: PathBuf,
        /// Number of splits.
        #[arg(long, default_value_t = 3)]
        splits: usize,
        /// Seed of the shuffles.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Fraction of the cases for validation.
        #[arg(long, default_value_t = 0.1)]
        val_fraction: f64,
        /// Fraction of the cases for testing.
        #[arg(long, default_value_t = 0.2)]
        test_fraction: f64,
        /// Meta-validation choice.
        #[command(flatten)]
        meta_val: MetaValChoice,
    },
    /// Read RFNet-style split lists (`train1.txt`, `val1.txt`, `test1.txt`, ...).
    Rfnet {
        /// Folder of the lists.
        #[arg(long)]
        lists: PathBuf,
        /// Which numbered split; leave out for `train.txt`, `val.txt`, `test.txt`.
        #[arg(long)]
        fold: Option<usize>,
        /// The shards the lists refer to.
        #[arg(long)]
        shards: PathBuf,
        /// The split file to write.
        #[arg(long)]
        out: PathBuf,
        /// Meta-validation choice.
        #[command(flatten)]
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
