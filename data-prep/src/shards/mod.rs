//! Arrow IPC shards of prepared cases, one record batch (one row) per case, and the
//! `manifest.json` that indexes them with a BLAKE3 digest per shard. The schema is documented in
//! `docs/shards.md`; pyarrow and polars read the files as they are.

mod checksum;
mod manifest;
mod reader;
mod schema;
mod writer;

pub use checksum::{file_blake3, verify_file};
pub use manifest::{
    CaseEntry, ImageDtype, Manifest, PrepareSettings, ShardEntry, FORMAT_VERSION, MANIFEST_FILE,
};
pub use reader::{CaseView, Crop, ImageValues, ShardSet};
pub use schema::shard_schema;
pub use writer::{shard_file_name, FinishedShard, ShardWriter};

use std::path::Path;

use crate::error::Result;
use crate::preprocess::PreparedCase;

/// Reads every case of shard folder `dir` whose id passes `keep`, in manifest order.
pub fn read_cases(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PreparedCase>> {
    ShardSet::open(dir)?.read_cases(keep)
}
