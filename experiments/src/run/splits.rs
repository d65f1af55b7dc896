//! Which cases train, meta-validate, validate and test: the split file (`split.json`) a run folder
//! holds, and the protocols `metakd split` writes — Protocol A (every training case, a
//! meta-validation set taken out), Protocol B (seeded train/val/test splits, or RFNet-style split
//! lists) and the seeded meta-validation selection inside any training set.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use metakd_data::shards::Manifest;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::run::config::DataConfig;
use metakd_data::files::write_atomic;

/// Case ids of each split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Splits {
    /// How the split was made (`seeded`, `protocol-a`, `protocol-b fold 2`, `rfnet`, ...).
    #[serde(default)]
    pub protocol: String,
    /// Cases the network trains on.
    pub train: Vec<String>,
    /// Cases the importance weights are meta-learned on (taken out of the training set).
    pub meta_val: Vec<String>,
    /// Validation cases for model selection (Protocol B), not trained on.
    #[serde(default)]
    pub val: Vec<String>,
    /// Held-out cases of the sweep.
    pub test: Vec<String>,
    /// Which fold of a protocol with several (Protocol B, RFNet's lists), counted from 1.
    #[serde(default)]
    pub fold: Option<usize>,
}

fn shuffled(ids: &[String], seed: u64) -> Vec<String> {
    let mut order = ids.to_vec();
    order.sort();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    order
}

impl Splits {
    /// Shuffles `ids` with the configured seed and cuts off the test and meta-validation cases.
    pub fn assign(ids: &[String], cfg: &DataConfig) -> Result<Self> {
        if ids.len() < cfg.test_cases + cfg.meta_val_cases + 1 {
            bail!(
                "{} cases cannot give {} test, {} meta-validation and at least one training case",
                ids.len(),
                cfg.test_cases,
                cfg.meta_val_cases
            )
        }
        let mut order = ids.to_vec();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.split_seed));
        let test = order.split_off(order.len() - cfg.test_cases);
        let meta_val = order.split_off(order.len() - cfg.meta_val_cases);
        Ok(Self {
            protocol: "seeded".into(),
            fold: None,
            train: order,
            meta_val,
            val: Vec::new(),
            test,
        })
    }

    /// The splits of a run: the configured split file (checked against the shards), or a seeded
    /// assignment of the labelled cases.
    pub fn for_run(cfg: &DataConfig, manifest: &Manifest) -> Result<Self> {
        match &cfg.split {
            Some(path) => {
                let splits = Self::read(path)?;
                splits.check_against(manifest, path)?;
                Ok(splits)
            }
            None => {
                let ids: Vec<String> = manifest
                    .cases
                    .iter()
                    .filter(|c| c.labelled)
                    .map(|c| c.id.clone())
                    .collect();
                Self::assign(&ids, cfg)
            }
        }
    }

    /// Checks that every training and meta-validation case is a labelled case of `manifest`.
    pub fn check_against(&self, manifest: &Manifest, path: &Path) -> Result<()> {
        let labelled: HashSet<&str> = manifest
            .cases
            .iter()
            .filter(|c| c.labelled)
            .map(|c| c.id.as_str())
            .collect();
        let missing: Vec<&str> = self
            .train
            .iter()
            .chain(&self.meta_val)
            .map(String::as_str)
            .filter(|id| !labelled.contains(id))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}: {} training or meta-validation cases are not labelled cases of the shards: {}",
                path.display(),
                missing.len(),
                missing.join(", ")
            )
        }
        Ok(())
    }

    /// Moves `n` seeded-random training cases (or the listed ones) into the meta-validation set.
    pub fn take_meta_val(&mut self, n: usize, listed: Option<&[String]>, seed: u64) -> Result<()> {
        let chosen: Vec<String> = match listed {
            Some(list) => {
                let absent: Vec<&String> =
                    list.iter().filter(|id| !self.train.contains(id)).collect();
                if !absent.is_empty() {
                    bail!(
                        "meta-validation cases not in the training set: {}",
                        absent
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                list.to_vec()
            }
            None => {
                if n >= self.train.len() {
                    bail!(
                        "cannot take {n} meta-validation cases out of {} training cases",
                        self.train.len()
                    )
                }
                shuffled(&self.train, seed ^ 0x3E7A)[..n].to_vec()
            }
        };
        let chosen_set: HashSet<&String> = chosen.iter().collect();
        self.train.retain(|id| !chosen_set.contains(id));
        self.meta_val = chosen;
        Ok(())
    }

    /// A warning when the meta-validation set takes most of the training cases (more meta-validation
    /// cases than are left to train on), as a small release with the default count does.
    pub fn meta_val_warning(&self) -> Option<String> {
        let (meta, train) = (self.meta_val.len(), self.train.len());
        (meta > train).then(|| {
            format!(
                "the meta-validation set takes {meta} of the {} training cases, leaving {train} to train \
                 on (fewer with --meta-val N, or a list with --meta-val-list FILE)",
                meta + train
            )
        })
    }

    /// Protocol A: every labelled case trains (less the meta-validation set); `test` lists the
    /// cases scored elsewhere (the validation release).
    pub fn protocol_a(labelled: &[String], test: Vec<String>) -> Self {
        let mut train = labelled.to_vec();
        train.sort();
        Self {
            protocol: "protocol-a".into(),
            fold: None,
            train,
            meta_val: Vec::new(),
            val: Vec::new(),
            test,
        }
    }

    /// Protocol B, split `fold` (1-based): a seeded shuffle of the labelled cases cut into
    /// test (`test_fraction`), validation (`val_fraction`) and training cases, as RFNet's splits
    /// are (57 / 29 / 199 of BraTS2018's 285).
    pub fn protocol_b(
        labelled: &[String],
        fold: usize,
        seed: u64,
        val_fraction: f64,
        test_fraction: f64,
    ) -> Result<Self> {
        let n = labelled.len();
        let n_test = (n as f64 * test_fraction).round() as usize;
        let n_val = (n as f64 * val_fraction).round() as usize;
        if n_test + n_val >= n {
            bail!("{n} cases cannot give {n_test} test, {n_val} validation and a training case")
        }
        let mut order = shuffled(labelled, seed.wrapping_add(fold as u64));
        let test = order.split_off(n - n_test);
        let val = order.split_off(n - n_test - n_val);
        order.sort();
        Ok(Self {
            protocol: format!("protocol-b split {fold} (seed {seed})"),
            fold: Some(fold),
            train: order,
            meta_val: Vec::new(),
            val,
            test,
        })
    }

    /// An RFNet-style split: `train{fold}.txt`, `val{fold}.txt`, `test{fold}.txt` in `dir`
    /// (or `train.txt`, ... when `fold` is `None`).
    pub fn read_rfnet(dir: &Path, fold: Option<usize>) -> Result<Self> {
        let suffix = fold.map(|f| f.to_string()).unwrap_or_default();
        let list = |name: &str| read_id_list(&dir.join(format!("{name}{suffix}.txt")));
        Ok(Self {
            protocol: format!(
                "rfnet {}{}",
                dir.display(),
                fold.map_or(String::new(), |f| format!(" split {f}"))
            ),
            fold,
            train: list("train")?,
            meta_val: Vec::new(),
            val: list("val")?,
            test: list("test")?,
        })
    }

    /// The protocol as result tables name it: `A` (every training case trains; the validation
    /// release is scored online), `B` (local splits of the training cases: Protocol B, RFNet's
    /// lists) or `local` (a seeded split of the shards' labelled cases).
    pub fn protocol_label(&self) -> &'static str {
        if self.protocol.starts_with("protocol-a") {
            "A"
        } else if self.protocol.starts_with("protocol-b") || self.protocol.starts_with("rfnet") {
            "B"
        } else {
            "local"
        }
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        Ok(write_atomic(
            path,
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?)
    }

    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a split file", path.display()))
    }
}

/// A case id as split lists write it: `HG_BraTS20_Training_001` names the case folder after the
/// grade prefix.
pub fn case_id_from_list(entry: &str) -> &str {
    let entry = entry.trim();
    for prefix in ["HG_", "LG_", "HGG_", "LGG_"] {
        if let Some(rest) = entry.strip_prefix(prefix) {
            return rest;
        }
    }
    entry
}

/// Reads a list of case ids, one per line (blank lines and `#` comments ignored).
pub fn read_id_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the case list", path.display()))?;
    let ids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| case_id_from_list(l).to_owned())
        .collect();
    if ids.is_empty() {
        bail!("{}: the case list is empty", path.display())
    }
    Ok(ids)
}
