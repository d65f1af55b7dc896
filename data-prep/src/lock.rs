//! Advisory locks that give a folder (a run, a shard set) or a file (a sweep table) to one
//! process at a time.
//!
//! The lock is a file (`.metakd.lock` in a folder, `<file>.lock` beside a file) that its holder
//! keeps locked with the operating system's advisory lock (`flock` on Unix) and that names the
//! holder: process id, command line and start time. The system releases the lock when the holder
//! exits, however it exits; a holder that ends normally also empties the file. A second process
//! is refused with the holder's process id. A file still naming a holder whose lock the system
//! has released is a stale lock from a process that was killed: it is taken over, with a warning.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The lock file of a folder.
pub const FOLDER_LOCK_FILE: &str = ".metakd.lock";

/// A held lock; released when dropped (and by the system when the process ends).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

/// The lock file that guards the file `path`: `sweep.parquet` → `sweep.parquet.lock`.
pub fn file_lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

impl Lock {
    /// Locks the folder `dir` (creating it) for `role`, the holder's purpose named in a refusal
    /// ("run folder", "shard folder").
    pub fn folder(dir: &Path, role: &str) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(DataError::InvalidArgument(format!(
                "{}: the {role} is a file, not a folder; choose another folder",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        Self::acquire(&dir.join(FOLDER_LOCK_FILE), dir, role)
    }

    /// Locks the file `path` (which need not exist yet) for `role` ("sweep table").
    pub fn file(path: &Path, role: &str) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        Self::acquire(&file_lock_path(path), path, role)
    }

    fn acquire(lock_path: &Path, guarded: &Path, role: &str) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .map_err(|e| DataError::io(lock_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(DataError::Locked {
                    path: guarded.to_owned(),
                    problem: format!(
                        "this {role} is in use by {} (lock file {}); wait for it to finish, or \
                         stop it, or choose another folder",
                        holder.as_deref().unwrap_or("another process"),
                        lock_path.display()
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(DataError::io(lock_path, e)),
        }
        if let Some(stale) = read_holder(&mut file) {
            tracing::warn!(
                "{}: taking over the lock of {stale}, which is no longer running",
                guarded.display()
            );
        }
        let command: Vec<String> = std::env::args().collect();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = format!(
            "pid {}\ncommand {}\nstarted {started}\n",
            std::process::id(),
            command.join(" ")
        );
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| DataError::io(lock_path, e))?;
        Ok(Self {
            file,
            path: lock_path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // An empty lock file marks a lock released in order; the system lock goes with the file
        // handle.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// "process 1234 (metakd train ...)" from a lock file's text; `None` when it is empty.
fn read_holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
    };
    let pid = field("pid ")?;
    Some(match field("command ") {
        Some(command) => format!("process {pid} (`{command}`)"),
        None => format!("process {pid}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::folder(dir.path(), "run folder").unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert!(text.starts_with(&format!("pid {}\n", std::process::id())));
        let refused = Lock::folder(dir.path(), "run folder")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("this run folder is in use by process"),
            "{refused}"
        );
        assert!(
            refused.contains(&std::process::id().to_string()),
            "{refused}"
        );
        drop(first);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FOLDER_LOCK_FILE)).unwrap(),
            ""
        );
        Lock::folder(dir.path(), "run folder").unwrap();
    }

    #[test]
    fn a_stale_lock_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("sweep.parquet");
        std::fs::write(file_lock_path(&table), "pid 999999\ncommand metakd sweep\n").unwrap();
        let lock = Lock::file(&table, "sweep table").unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert!(text.contains(&format!("pid {}", std::process::id())));
    }
}
