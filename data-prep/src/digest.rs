//! BLAKE3 digests beside the files a later stage trusts (checkpoints, models, result tables):
//! `<file>.blake3` holds `<hex digest>  <file name>` lines, as `b3sum` writes them.
//!
//! A file is replaced in three steps, so that a process killed at any point leaves a file that
//! matches its digest file: the new version is written under a temporary name, the digest file
//! is rewritten listing the new digest and the current one, the new version is renamed into
//! place, and the digest file is rewritten with the new digest alone. [`verify`] accepts a file
//! whose digest is any of the listed ones.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::files::{partial_path, write_atomic};
use crate::shards::file_blake3;

/// The digest file of `path`: `model.safetensors` → `model.safetensors.blake3`.
pub fn digest_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".blake3");
    path.with_file_name(name)
}

/// The digests listed in the digest file of `path`; empty when it has none.
fn listed_digests(path: &Path) -> Result<Vec<String>> {
    let sidecar = digest_path(path);
    let text = match std::fs::read_to_string(&sidecar) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DataError::io(&sidecar, e)),
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

fn write_digests(path: &Path, digests: &[&str]) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let text: String = digests.iter().map(|d| format!("{d}  {name}\n")).collect();
    write_atomic(&digest_path(path), text.as_bytes())
}

/// Writes `path` through `write`, which fills the temporary file it is given, and records the
/// new version's digest beside it (see the module documentation for the order of the steps).
pub fn write_with_digest<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    E: From<DataError>,
{
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let temp = partial_path(path);
    write(&temp)?;
    let new = file_blake3(&temp)?;
    let current = if path.is_file() {
        listed_digests(path)?
    } else {
        Vec::new()
    };
    let mut both: Vec<&str> = vec![&new];
    both.extend(current.iter().map(String::as_str).filter(|d| *d != new));
    write_digests(path, &both)?;
    std::fs::rename(&temp, path).map_err(|e| DataError::io(path, e))?;
    write_digests(path, &[&new])?;
    Ok(())
}

/// Records the digest of the file at `path` as it is now.
pub fn record(path: &Path) -> Result<()> {
    let digest = file_blake3(path)?;
    write_digests(path, &[&digest])
}

/// Checks `path` against its digest file. A mismatch is an error naming the file, both digests
/// and `remedy`, the step that rebuilds the file. A file without a digest file (written before
/// digests were kept) is accepted with a warning.
pub fn verify(path: &Path, remedy: &str) -> Result<()> {
    let listed = listed_digests(path)?;
    if listed.is_empty() {
        if !path.exists() {
            return Err(DataError::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        tracing::warn!(
            "{}: no digest file ({}) to check it against",
            path.display(),
            digest_path(path).display()
        );
        return Ok(());
    }
    let found = file_blake3(path)?;
    if listed.contains(&found) {
        return Ok(());
    }
    Err(DataError::Digest {
        path: path.to_owned(),
        problem: format!(
            "its BLAKE3 digest is {found}, but {} records {}; the file was damaged or changed after it was written ({remedy})",
            digest_path(path).display(),
            listed[0]
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_text(path: &Path, text: &str) -> Result<()> {
        write_with_digest(path, |temp| {
            std::fs::write(temp, text).map_err(|e| DataError::io(temp, e))
        })
    }

    #[test]
    fn a_written_file_verifies_and_a_flipped_bit_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_text(&path, "weights").unwrap();
        verify(&path, "retrain").unwrap();
        let sidecar = std::fs::read_to_string(digest_path(&path)).unwrap();
        assert_eq!(
            sidecar,
            format!("{}  model.safetensors\n", blake3::hash(b"weights").to_hex())
        );
        std::fs::write(&path, "weighta").unwrap();
        let message = verify(&path, "retrain the run").unwrap_err().to_string();
        assert!(message.contains("model.safetensors"), "{message}");
        assert!(message.contains("retrain the run"), "{message}");
        assert!(message.contains("model.safetensors.blake3"), "{message}");
    }

    #[test]
    fn a_write_cut_between_its_steps_leaves_a_verifiable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        write_text(&path, "old").unwrap();
        // Killed after the digest file listed both versions, before the rename.
        let old = blake3::hash(b"old").to_hex().to_string();
        let new = blake3::hash(b"new").to_hex().to_string();
        write_digests(&path, &[&new, &old]).unwrap();
        verify(&path, "resume").unwrap();
        // ... or after the rename, before the digest file was rewritten.
        std::fs::write(&path, "new").unwrap();
        verify(&path, "resume").unwrap();
        std::fs::write(&path, "neither").unwrap();
        assert!(verify(&path, "resume").is_err());
    }

    #[test]
    fn a_file_without_digest_is_accepted_and_a_missing_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        assert!(verify(&path, "x").is_err());
        std::fs::write(&path, "table").unwrap();
        verify(&path, "x").unwrap();
        record(&path).unwrap();
        std::fs::write(&path, "tablf").unwrap();
        assert!(verify(&path, "x").is_err());
    }
}
