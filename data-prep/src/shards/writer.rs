//! Writing prepared cases into shards of about a target size. A shard is written under a
//! temporary name, hashed as it is written, then renamed, so a killed run never leaves a
//! half-written shard under its final name.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_ipc::writer::FileWriter;
use arrow_schema::Schema;

use super::checksum::HashingWriter;
use super::manifest::{CaseEntry, ImageDtype, ShardEntry};
use super::schema::{case_batch, case_bytes, shard_schema};
use crate::error::{DataError, Result};
use crate::files::partial_path;
use crate::preprocess::PreparedCase;

/// A shard that was closed and renamed into place, with the cases it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedShard {
    /// The shard's manifest entry.
    pub entry: ShardEntry,
    /// Its cases, in batch order.
    pub cases: Vec<CaseEntry>,
}

/// The file name of shard number `index`.
pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.arrow")
}

/// Writes prepared cases into shards of at most `shard_bytes` (at least one case each).
pub struct ShardWriter {
    dir: PathBuf,
    shard_bytes: u64,
    dtype: ImageDtype,
    schema: Arc<Schema>,
    current: Option<OpenShard>,
    next_index: usize,
}

struct OpenShard {
    file: String,
    temp: PathBuf,
    writer: FileWriter<HashingWriter<BufWriter<File>>>,
    bytes: u64,
    cases: Vec<CaseEntry>,
}

fn arrow_error(path: &Path) -> impl FnOnce(arrow_schema::ArrowError) -> DataError + '_ {
    move |source| DataError::Arrow {
        path: path.to_owned(),
        source,
    }
}

impl ShardWriter {
    /// A writer into folder `dir` whose first shard is number `first_index`.
    pub fn new(dir: &Path, shard_bytes: u64, dtype: ImageDtype, first_index: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            shard_bytes,
            dtype,
            schema: Arc::new(shard_schema(dtype)),
            current: None,
            next_index: first_index,
        }
    }

    fn open(&mut self) -> Result<OpenShard> {
        let file = shard_file_name(self.next_index);
        self.next_index += 1;
        let temp = partial_path(&self.dir.join(&file));
        let out = File::create(&temp).map_err(|e| DataError::io(&temp, e))?;
        let writer = FileWriter::try_new(HashingWriter::new(BufWriter::new(out)), &self.schema)
            .map_err(arrow_error(&temp))?;
        Ok(OpenShard {
            file,
            temp,
            writer,
            bytes: 0,
            cases: Vec::new(),
        })
    }

    /// Appends one case, returning the shard that was closed to make room for it, if any.
    pub fn write(&mut self, case: PreparedCase) -> Result<Option<FinishedShard>> {
        let bytes = case_bytes(&case, self.dtype);
        let full = self
            .current
            .as_ref()
            .is_some_and(|open| open.bytes + bytes > self.shard_bytes);
        let finished = if full { self.close()? } else { None };
        if self.current.is_none() {
            self.current = Some(self.open()?);
        }
        let open = self.current.as_mut().expect("opened above");
        let entry = CaseEntry {
            id: case.id.clone(),
            shard: open.file.clone(),
            batch: open.cases.len(),
            shape: case.shape,
            original_shape: case.original_shape,
            crop_offset: case.crop_offset,
            spacing: case.spacing,
            labelled: case.labelled,
            grade: case.grade,
            normalisation: case.normalisation,
        };
        let batch = case_batch(case, &self.schema, self.dtype).map_err(arrow_error(&open.temp))?;
        open.writer.write(&batch).map_err(arrow_error(&open.temp))?;
        open.cases.push(entry);
        open.bytes += bytes;
        Ok(finished)
    }

    /// Closes the open shard: finishes the Arrow file, syncs it and renames it into place.
    pub fn close(&mut self) -> Result<Option<FinishedShard>> {
        let Some(mut open) = self.current.take() else {
            return Ok(None);
        };
        open.writer.finish().map_err(arrow_error(&open.temp))?;
        let hashing = open.writer.into_inner().map_err(arrow_error(&open.temp))?;
        let (blake3, bytes, buffered) = hashing.finish();
        // No fsync: a shard damaged by a crash fails its digest and is rebuilt on the next run.
        drop(
            buffered
                .into_inner()
                .map_err(|e| DataError::io(&open.temp, e.into_error()))?,
        );
        let path = self.dir.join(&open.file);
        std::fs::rename(&open.temp, &path).map_err(|e| DataError::io(&path, e))?;
        Ok(Some(FinishedShard {
            entry: ShardEntry {
                file: open.file,
                bytes,
                blake3,
                cases: open.cases.len(),
            },
            cases: open.cases,
        }))
    }
}
