//! Helpers shared by the experiment tests.

use std::path::{Path, PathBuf};

use metakd_data::prepare::{prepare_brats, PrepareOptions};
use metakd_data::synth::{write_dataset, SynthConfig};

/// Writes `cases` synthetic 24×32×32 cases drawn with `seed` under `dir/src`, prepares them into
/// `dir/shards` and returns that folder.
pub fn synthetic_shards(dir: &Path, cases: usize, seed: u64) -> PathBuf {
    let src = dir.join("src");
    write_dataset(&SynthConfig::new(cases, [24, 32, 32], seed), &src, || {}).unwrap();
    let shards = dir.join("shards");
    prepare_brats(&src, &shards, &PrepareOptions::default(), |_| {}).unwrap();
    shards
}
