//! The `prepare` stage: every case of a BraTS folder read, preprocessed and written into shards.
//! A case that cannot be read is skipped and listed in the manifest with the reason; the others
//! are written.

use std::path::Path;

use rayon::prelude::*;

use crate::brats::{discover_cases, load_case};
use crate::error::Result;
use crate::preprocess::prepare_case;
use crate::shards::{Manifest, ShardWriter, SkippedCase};

/// Cases read in parallel before they are written in order.
const CASES_IN_FLIGHT: usize = 8;

/// Prepares every case under `src` into shards of about `max_shard_bytes` in `out`, calling
/// `progress(case_id, cases_in_total)` after each case.
pub fn prepare_brats(
    src: &Path,
    out: &Path,
    max_shard_bytes: usize,
    progress: impl Fn(&str, usize) + Sync,
) -> Result<Manifest> {
    let cases = discover_cases(src)?;
    let total = cases.len();
    let mut writer = ShardWriter::new(out, max_shard_bytes)?;
    let mut skipped = Vec::new();
    for chunk in cases.chunks(CASES_IN_FLIGHT) {
        let prepared: Vec<_> = chunk
            .par_iter()
            .map(|files| {
                let result = load_case(files).and_then(|raw| prepare_case(&raw));
                progress(&files.id, total);
                result
            })
            .collect();
        for (files, result) in chunk.iter().zip(prepared) {
            match result {
                Ok(case) => writer.write(&case)?,
                Err(e) => {
                    tracing::warn!("skipping case {}: {e}", files.id);
                    skipped.push(SkippedCase {
                        id: files.id.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    writer.finish(&src.display().to_string(), skipped)
}
