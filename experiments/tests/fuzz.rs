//! Property-based fuzzing of the three readers of untrusted files: the NIfTI reader, the shard
//! reader and the run-configuration loader. Each target mutates a valid input (byte flips,
//! truncations, header fields set to arbitrary values, numeric keys set to arbitrary values) and
//! asserts that reading returns a value or an error, never a panic, and that what is accepted is
//! usable: a volume within the voxel bound, a case whose voxels decode, a configuration whose
//! augmentation runs.
//!
//! As tests, each target runs a small fixed number of cases. `just fuzz` runs the `#[ignore]`d
//! long versions, each for `METAKD_FUZZ_SECONDS` seconds (default 60), and prints how many
//! inputs it tried.

mod common;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use metakd_data::nifti_io::{read_volume, write_volume, StoredType, Volume, MAX_VOXELS};
use metakd_data::shards::{Manifest, ShardSet};
use metakd_experiments::run::config::RunConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rand::SeedableRng;

/// How long a target runs: a number of cases, or a time budget in chunks of cases.
#[derive(Clone, Copy)]
enum Budget {
    Cases(u32),
    Time(Duration),
}

/// Runs `property` on inputs of `strategy` within `budget`; returns the number of inputs tried.
fn fuzz<S: Strategy>(
    name: &str,
    budget: Budget,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64 {
    let (chunk, deadline) = match budget {
        Budget::Cases(n) => (n, None),
        Budget::Time(t) => (256, Some(Instant::now() + t)),
    };
    let mut tried = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: chunk,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &property) {
            panic!("{name}: {e}");
        }
        tried += u64::from(chunk);
        if deadline.is_none_or(|d| Instant::now() >= d) {
            return tried;
        }
    }
}

/// The long run's budget per target.
fn long_budget() -> Budget {
    let seconds = std::env::var("METAKD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Budget::Time(Duration::from_secs(seconds))
}

/// Calls `f`, turning a panic into a test failure that shows `what`.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| TestCaseError::fail(format!("panicked on {what}")))
}

/// A change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at (position mod length) with a value.
    Flip(usize, u8),
    /// Cut the file at (position mod length).
    Truncate(usize),
    /// Write a little-endian integer of `width` bytes at (position mod length).
    Overwrite(usize, i64, usize),
}

fn mutation(header_bytes: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..header_bytes, 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        any::<usize>().prop_map(|at| Mutation::Flip(at, 0x40)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            0..header_bytes / 2,
            any::<i64>(),
            prop_oneof![Just(2usize), Just(4), Just(8)]
        )
            .prop_map(|(at, v, w)| Mutation::Overwrite(at * 2, v, w)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if bytes.is_empty() {
            return;
        }
        let n = bytes.len();
        match *m {
            Mutation::Flip(at, x) => bytes[at % n] ^= x,
            Mutation::Truncate(at) => bytes.truncate(at % n),
            Mutation::Overwrite(at, v, w) => {
                let at = at % n;
                let end = (at + w).min(n);
                bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
        }
    }
}

/// A small valid volume written plain and gzip-compressed into `dir`.
fn nifti_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let data = ndarray::Array3::from_shape_fn((6, 7, 8), |(z, x, y)| (z * 56 + x * 8 + y) as f32);
    let volume = Volume {
        data,
        spacing: [1.0, 1.0, 1.0],
        affine: metakd_data::nifti_io::brats_affine([6, 7, 8], [1.0; 3]),
    };
    ["v.nii", "v.nii.gz"]
        .iter()
        .flat_map(|name| {
            [StoredType::Int16, StoredType::Float32].map(|stored| {
                let path = dir.join(name);
                write_volume(&path, &volume, stored).unwrap();
                std::fs::read(&path).unwrap()
            })
        })
        .collect()
}

fn fuzz_nifti(budget: Budget) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let seeds = nifti_seeds(dir.path());
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(352), 1..4));
    fuzz("nifti", budget, strategy, |(seed, mutations)| {
        let mut bytes = seeds[seed].clone();
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        if gzip {
            // Mutate the decompressed image, then compress it again (and sometimes the stream).
            let mut plain = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(bytes.as_slice()),
                &mut plain,
            )
            .unwrap();
            apply(&mut plain, &mutations);
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, &plain).unwrap();
            bytes = encoder.finish().unwrap();
            if mutations.len() > 2 {
                apply(&mut bytes, &mutations[2..]);
            }
        } else {
            apply(&mut bytes, &mutations);
        }
        let path = dir.path().join(if gzip { "f.nii.gz" } else { "f.nii" });
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(volume) = no_panic("a mutated NIfTI file", || read_volume(&path))? {
            let voxels: usize = volume.shape().iter().product();
            prop_assert!(voxels as u64 <= MAX_VOXELS);
            prop_assert!(volume.data.iter().all(|v| v.is_finite()));
        }
        Ok(())
    })
}

/// A prepared shard folder of two small synthetic cases.
fn shard_seed(dir: &Path) -> PathBuf {
    common::synthetic_shards(dir, 2, 3)
}

/// Copies the shard folder `from` into `to` with the shard file mutated and the manifest's
/// size and digest of it updated, so that the reader gets past its checksum to the contents.
fn mutated_shards(from: &Path, to: &Path, mutations: &[Mutation], manifest_too: bool) {
    std::fs::create_dir_all(to).unwrap();
    let mut manifest = Manifest::read(from).unwrap();
    for shard in &mut manifest.shards {
        let mut bytes = std::fs::read(from.join(&shard.file)).unwrap();
        apply(&mut bytes, mutations);
        std::fs::write(to.join(&shard.file), &bytes).unwrap();
        shard.bytes = bytes.len() as u64;
        shard.blake3 = blake3::hash(&bytes).to_hex().to_string();
    }
    let mut json = serde_json::to_string_pretty(&manifest)
        .unwrap()
        .into_bytes();
    if manifest_too {
        apply(&mut json, mutations);
    }
    std::fs::write(Manifest::path(to), json).unwrap();
}

fn fuzz_shards(budget: Budget) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let seed = shard_seed(dir.path());
    let shard_len = std::fs::read_dir(&seed)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "arrow"))
        .map(|e| e.metadata().unwrap().len() as usize)
        .max()
        .unwrap();
    let strategy = (
        prop::collection::vec(mutation(shard_len), 1..4),
        any::<bool>(),
    );
    let counter = std::sync::atomic::AtomicUsize::new(0);
    fuzz("shards", budget, strategy, |(mutations, manifest_too)| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = dir.path().join(format!("m{n}"));
        mutated_shards(&seed, &out, &mutations, manifest_too);
        no_panic("a mutated shard folder", || {
            let Ok(set) = ShardSet::open(&out) else {
                return;
            };
            let ids: Vec<String> = set.manifest().cases.iter().map(|c| c.id.clone()).collect();
            for id in ids {
                if let Ok(case) = set.case(&id).and_then(|v| v.to_prepared()) {
                    let _ = case.on_whole_volume();
                }
            }
        })?;
        std::fs::remove_dir_all(&out).unwrap();
        Ok(())
    })
}

/// Numeric keys of a run configuration and the TOML tables they live in.
const NUMERIC_KEYS: [(&str, &str); 24] = [
    ("train", "iterations"),
    ("train", "warmup_iterations"),
    ("train", "batch_size"),
    ("train", "lr"),
    ("train", "momentum"),
    ("train", "weight_decay"),
    ("train", "poly_power"),
    ("train", "foreground_probability"),
    ("train", "kd_weight"),
    ("train", "checkpoint_every"),
    ("train", "loader_threads"),
    ("meta", "every"),
    ("meta", "samples"),
    ("meta", "lr"),
    ("data", "meta_val_cases"),
    ("eval", "overlap"),
    ("eval", "threshold"),
    ("eval", "tile_batch"),
    ("augment", "gamma_probability"),
    ("augment", "noise_variance"),
    ("augment", "rotation_degrees"),
    ("augment", "elastic_probability"),
    ("augment", "additive_brightness_sigma"),
    ("augment", "mirror_probability"),
];

/// Range keys of the augmentation (two numbers each).
const RANGE_KEYS: [&str; 6] = [
    "gamma_range",
    "scale_range",
    "blur_sigma",
    "elastic_sigma",
    "elastic_alpha",
    "low_resolution_zoom",
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|v| format!("{v:?}")),
        (-3i64..300).prop_map(|v| v.to_string()),
        (0.0..1.5f64).prop_map(|v| format!("{v:?}")),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        Just("-0.0".to_owned()),
        Just("1e308".to_owned()),
    ]
}

fn fuzz_config(budget: Budget) -> u64 {
    let numeric = (0..NUMERIC_KEYS.len(), number());
    let range = (0..RANGE_KEYS.len(), number(), number());
    let strategy = (
        prop::collection::vec(numeric, 1..5),
        prop::collection::vec(range, 0..3),
        any::<u64>(),
    );
    fuzz("config", budget, strategy, |(values, ranges, seed)| {
        let mut tables: Vec<(&str, Vec<String>)> = ["data", "train", "meta", "eval", "augment"]
            .iter()
            .map(|t| (*t, Vec::new()))
            .collect();
        let mut set = std::collections::HashSet::new();
        for (key, value) in &values {
            let (table, name) = NUMERIC_KEYS[*key];
            if set.insert(name) {
                let entry = tables.iter_mut().find(|(t, _)| *t == table).unwrap();
                entry.1.push(format!("{name} = {value}"));
            }
        }
        for (key, low, high) in &ranges {
            if set.insert(RANGE_KEYS[*key]) {
                let entry = tables.iter_mut().find(|(t, _)| *t == "augment").unwrap();
                entry
                    .1
                    .push(format!("{} = [{low}, {high}]", RANGE_KEYS[*key]));
            }
        }
        let text: String = tables
            .iter()
            .map(|(t, lines)| format!("[{t}]\n{}\n", lines.join("\n")))
            .collect();
        let loaded = no_panic(&text, || RunConfig::from_toml(&text, "fuzz.toml"))?;
        if let Ok(cfg) = loaded {
            // What is accepted can be used: the augmentation runs on a crop.
            let shape = [8, 8, 8];
            let mut images: Vec<f32> = (0..4 * 512).map(|i| (i % 17) as f32 / 17.0).collect();
            let mut targets = vec![0.0f32; 3 * 512];
            let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
            no_panic(&text, || {
                cfg.augment
                    .augment_crop(&mut images, &mut targets, shape, &mut rng)
            })?;
            prop_assert!(cfg.train.checkpoint_every > 0 && cfg.train.lr.is_finite());
        }
        Ok(())
    })
}

#[test]
fn nifti_reader_survives_mutated_files() {
    fuzz_nifti(Budget::Cases(64));
}

#[test]
fn shard_reader_survives_mutated_shards() {
    fuzz_shards(Budget::Cases(24));
}

#[test]
fn config_loader_survives_arbitrary_numbers() {
    fuzz_config(Budget::Cases(128));
}

#[test]
#[ignore = "long fuzzing run: `just fuzz`"]
fn fuzz_nifti_reader() {
    let tried = fuzz_nifti(long_budget());
    println!("fuzz nifti: {tried} inputs, no failure");
}

#[test]
#[ignore = "long fuzzing run: `just fuzz`"]
fn fuzz_shard_reader() {
    let tried = fuzz_shards(long_budget());
    println!("fuzz shards: {tried} inputs, no failure");
}

#[test]
#[ignore = "long fuzzing run: `just fuzz`"]
fn fuzz_config_loader() {
    let tried = fuzz_config(long_budget());
    println!("fuzz config: {tried} inputs, no failure");
}

/// Found by the NIfTI target: an integer volume whose scale slope overflows f32 read as infinite
/// voxels.
#[test]
fn an_overflowing_scale_slope_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = nifti_seeds(dir.path())[0].clone();
    bytes[112..116].copy_from_slice(&3.0e38f32.to_le_bytes());
    let path = dir.path().join("slope.nii");
    std::fs::write(&path, bytes).unwrap();
    let message = read_volume(&path).unwrap_err().to_string();
    assert!(message.contains("NaN or infinite"), "{message}");
}
