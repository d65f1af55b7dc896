//! Atomic file writes: a temporary file in the same folder, then a rename, so a reader never sees
//! a partial file and a killed run leaves the previous version in place.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The temporary name `path` is written under before it is renamed into place.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// The temporary name of `path` for writers that choose a format from the file name (NIfTI,
/// PNG, SVG): hidden, with `extension` as its only extension (`seg.nii.gz` with `nii.gz` →
/// `.seg_nii_gz_partial.nii.gz`), since such writers re-derive the extension from the name.
pub fn partial_path_with_extension(path: &Path, extension: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace('.', "_"))
        .unwrap_or_default();
    path.with_file_name(format!(".{name}_partial.{extension}"))
}

/// Writes `path` atomically: `write` writes the temporary file `temp` (a [`partial_path`], or
/// one made by the caller for writers that need an extension), which is then renamed into
/// place. Creates the folder if needed.
pub fn write_atomic_via<E>(
    path: &Path,
    temp: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    E: From<DataError>,
{
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    write(temp)?;
    std::fs::rename(temp, path).map_err(|e| DataError::io(path, e))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically, creating its folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_via(path, &partial_path(path), |temp| {
        let mut file = std::fs::File::create(temp).map_err(|e| DataError::io(temp, e))?;
        file.write_all(bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| DataError::io(temp, e))
    })
}

/// Whether `a` and `b` name the same folder: their real paths when both exist, else their
/// absolute paths.
pub fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}
