//! Assignment of prepared cases to meta-train, meta-validation and test splits, written into the
//! run folder as `split.json`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::config::DataConfig;
use crate::files::write_atomic;

/// Case ids of each split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Splits {
    /// Cases the network trains on.
    pub train: Vec<String>,
    /// Cases the importance weights are meta-learned on.
    pub meta_val: Vec<String>,
    /// Held-out cases of the sweep.
    pub test: Vec<String>,
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
            train: order,
            meta_val,
            test,
        })
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a split file", path.display()))
    }
}
