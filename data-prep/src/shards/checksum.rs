//! BLAKE3 checksums of shard files: computed while a shard is written, verified before a shard is
//! read.

use std::io::Write;
use std::path::Path;

use crate::error::{DataError, Result};

/// A writer that hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        }
    }

    /// The hex digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            self.hasher.finalize().to_hex().to_string(),
            self.bytes,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The BLAKE3 hex digest of a file (memory-mapped, hashed on all cores).
pub fn file_blake3(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_mmap_rayon(path)
        .map_err(|e| DataError::io(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Checks that `path` has the recorded size and BLAKE3 digest.
pub fn verify_file(path: &Path, bytes: u64, blake3: &str) -> Result<()> {
    let found = std::fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if found != bytes {
        return Err(DataError::Checksum {
            path: path.to_owned(),
            problem: format!("{found} bytes, the manifest records {bytes}"),
        });
    }
    let digest = file_blake3(path)?;
    if digest != blake3 {
        return Err(DataError::Checksum {
            path: path.to_owned(),
            problem: format!("BLAKE3 {digest}, the manifest records {blake3}"),
        });
    }
    Ok(())
}
