//! `metakd` under misuse and faults, through the binary: run folders, shard folders, sweeps and
//! their tables, configuration ranges, damaged NIfTI files and the messages a user reads
//! (docs/integrity.md). One test binary, so the suite links once.

#[path = "../common/mod.rs"]
mod common;

mod config_ranges;
mod messages;
mod nifti_limits;
mod run_folders;
mod shard_folders;
mod sweeps;
