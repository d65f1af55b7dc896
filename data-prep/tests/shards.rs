//! Shards written and read back through the memory map: whole cases, crops, float16, checksums
//! that refuse a damaged shard, and preparation that resumes where a killed run stopped.

use std::path::Path;

use metakd_data::brats::{discover, load_case};
use metakd_data::prepare::{prepare_brats, PrepareOptions, PrepareReport};
use metakd_data::preprocess::{prepare_case, PreparedCase, PreprocessSettings};
use metakd_data::shards::{ImageDtype, ImageValues, Manifest, ShardSet};
use metakd_data::synth::{write_dataset, SynthConfig};
use metakd_data::{DataError, Modality};
use rand::SeedableRng;

fn dataset(cases: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&SynthConfig::new(cases, [20, 24, 28], 8), dir.path(), || {}).unwrap();
    dir
}

fn prepare(src: &Path, out: &Path, options: &PrepareOptions) -> PrepareReport {
    prepare_brats(src, out, options, |_| {}).unwrap()
}

/// A shard size that puts every case into a shard of its own.
fn one_case_per_shard() -> PrepareOptions {
    PrepareOptions {
        shard_bytes: 1,
        ..PrepareOptions::default()
    }
}

fn prepared_directly(src: &Path) -> Vec<PreparedCase> {
    discover(src, None)
        .unwrap()
        .cases
        .iter()
        .map(|files| {
            prepare_case(load_case(files).unwrap(), &PreprocessSettings::default()).unwrap()
        })
        .collect()
}

/// Every case of `src` reads back from the shards in `out` as it prepares directly.
fn assert_reads_as_prepared(src: &Path, out: &Path) {
    let set = ShardSet::open(out).unwrap();
    for expected in prepared_directly(src) {
        let read = set.case(&expected.id).unwrap().to_prepared().unwrap();
        assert_eq!(read.images, expected.images, "{}", expected.id);
    }
}

#[test]
fn cases_read_back_as_they_were_prepared() {
    let src = dataset(5);
    let out = tempfile::tempdir().unwrap();
    let report = prepare(src.path(), out.path(), &one_case_per_shard());
    let m = &report.manifest;
    assert_eq!(report.prepared, 5);
    assert_eq!(m.shards.len(), 5, "{:?}", m.shards);
    assert_eq!(m.shards.iter().map(|s| s.cases).sum::<usize>(), 5);
    assert_eq!(Manifest::read(out.path()).unwrap(), *m);
    let set = ShardSet::open(out.path()).unwrap();
    for expected in prepared_directly(src.path()) {
        let view = set.case(&expected.id).unwrap();
        assert_eq!(view.dtype().unwrap(), ImageDtype::Float32);
        let read = view.to_prepared().unwrap();
        assert_eq!(read.images, expected.images, "{}", expected.id);
        assert_eq!(read.labels, expected.labels);
        assert_eq!(read.regions, expected.regions);
        assert_eq!(read.shape, expected.shape);
        assert_eq!(read.original_shape, expected.original_shape);
        assert_eq!(read.crop_offset, expected.crop_offset);
        assert_eq!(read.affine, expected.affine);
        assert_eq!(read.spacing, expected.spacing);
        // The manifest entry agrees with the shard.
        let entry = m.case(&expected.id).unwrap();
        assert_eq!(entry.shape, expected.shape);
        assert_eq!(entry.crop_offset, expected.crop_offset);
    }
    let some = set.read_cases(|id| id.ends_with("002")).unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(some[0].id, "BraTS20_Training_002");
}

#[test]
fn crops_are_the_same_box_of_the_whole_case() {
    let src = dataset(2);
    let out = tempfile::tempdir().unwrap();
    prepare(src.path(), out.path(), &PrepareOptions::default());
    let set = ShardSet::open(out.path()).unwrap();
    let view = set.case("BraTS20_Training_001").unwrap();
    let whole = view.to_prepared().unwrap();
    let [d, h, w] = whole.shape;
    let (start, size) = ([2, 3, 1], [d - 4, h - 5, w - 3]);
    let crop = view.crop(start, size).unwrap();
    let voxels: usize = size.iter().product();
    assert_eq!(crop.images.len(), 4 * voxels);
    for m in Modality::ALL {
        for z in 0..size[0] {
            for y in 0..size[1] {
                for x in 0..size[2] {
                    let i = (z * size[1] + y) * size[2] + x;
                    let j = ((start[0] + z) * h + start[1] + y) * w + start[2] + x;
                    assert_eq!(crop.images[m.index() * voxels + i], whole.image(m)[j]);
                    if m == Modality::Flair {
                        assert_eq!(crop.labels[i], whole.labels[j]);
                        assert_eq!(crop.regions[i], whole.regions[j]);
                    }
                }
            }
        }
    }
    let err = view.crop([0, 0, 0], [d + 1, h, w]).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");

    // Random crops are boxes of the case at some position.
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for _ in 0..5 {
        let crop = view.random_crop([8, 8, 8], &mut rng).unwrap();
        assert_eq!(crop.size, [8, 8, 8]);
        let found = (0..=d - 8).any(|z| {
            (0..=h - 8)
                .any(|y| (0..=w - 8).any(|x| view.crop([z, y, x], [8, 8, 8]).unwrap() == crop))
        });
        assert!(found);
    }
    let whole_box = view.random_crop([d + 5, h, w], &mut rng).unwrap();
    assert_eq!(whole_box.size, [d, h, w]);
}

#[test]
fn shards_are_plain_arrow_ipc_files() {
    use arrow_array::cast::AsArray;
    let src = dataset(3);
    let out = tempfile::tempdir().unwrap();
    let report = prepare(src.path(), out.path(), &PrepareOptions::default());
    let shard = out.path().join(&report.manifest.shards[0].file);
    // arrow's own reader, reading the file from the start: no memory map, no manifest.
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::fs::File::open(&shard).unwrap(), None).unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "release",
            "grade",
            "metadata",
            "shape",
            "original_shape",
            "crop_offset",
            "spacing",
            "affine",
            "flair",
            "t1",
            "t1ce",
            "t2",
            "label",
            "regions"
        ]
    );
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    let set = ShardSet::open(out.path()).unwrap();
    for batch in &batches {
        assert_eq!(batch.num_rows(), 1);
        let id = batch.column(0).as_string::<i32>().value(0).to_owned();
        let expected = set.case(&id).unwrap().to_prepared().unwrap();
        let flair = batch
            .column_by_name("flair")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        let flair = flair.as_primitive::<arrow_array::types::Float32Type>();
        assert_eq!(flair.values().as_ref(), expected.image(Modality::Flair));
        let metadata = batch
            .column_by_name("metadata")
            .unwrap()
            .as_string::<i32>()
            .value(0);
        assert!(metadata.contains("Grade"), "{metadata}");
    }
}

#[test]
fn half_precision_images_are_float16_within_its_precision() {
    let src = dataset(2);
    let (full, half) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    prepare(src.path(), full.path(), &PrepareOptions::default());
    let options = PrepareOptions {
        dtype: ImageDtype::Float16,
        ..PrepareOptions::default()
    };
    prepare(src.path(), half.path(), &options);
    let (full, half) = (
        ShardSet::open(full.path()).unwrap(),
        ShardSet::open(half.path()).unwrap(),
    );
    let bytes = |s: &ShardSet| s.manifest().shards.iter().map(|e| e.bytes).sum::<u64>();
    assert!(
        bytes(&half) * 10 < bytes(&full) * 6,
        "{} vs {}",
        bytes(&half),
        bytes(&full)
    );
    let (a, b) = (
        full.case("BraTS20_Training_002").unwrap(),
        half.case("BraTS20_Training_002").unwrap(),
    );
    assert!(matches!(
        b.image(Modality::T2).unwrap(),
        ImageValues::F16(_)
    ));
    let (a, b) = (a.to_prepared().unwrap(), b.to_prepared().unwrap());
    for (x, y) in a.images.iter().zip(&b.images) {
        assert!((x - y).abs() <= 1e-3 * x.abs().max(1.0), "{x} vs {y}");
    }
    assert_eq!(a.labels, b.labels);
}

#[test]
fn a_damaged_shard_is_refused_with_its_name() {
    let src = dataset(3);
    let out = tempfile::tempdir().unwrap();
    let report = prepare(src.path(), out.path(), &one_case_per_shard());
    let shard = out.path().join(&report.manifest.shards[0].file);
    let mut bytes = std::fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();
    let set = ShardSet::open(out.path()).unwrap();
    let err = set.case("BraTS20_Training_001").err().unwrap();
    assert!(matches!(err, DataError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("shard-00000.arrow"), "{err}");
    // Cases of the other shard still read.
    assert!(set.case("BraTS20_Training_003").is_ok());
}

#[test]
fn a_second_run_keeps_verified_shards_and_rebuilds_damaged_ones() {
    let src = dataset(5);
    let out = tempfile::tempdir().unwrap();
    let first = prepare(src.path(), out.path(), &one_case_per_shard());
    let again = prepare(src.path(), out.path(), &one_case_per_shard());
    assert_eq!((again.prepared, again.reused), (0, 5));
    assert_eq!(again.manifest.shards, first.manifest.shards);

    let damaged = out.path().join(&first.manifest.shards[1].file);
    std::fs::write(&damaged, b"damaged").unwrap();
    let rebuilt = prepare(src.path(), out.path(), &one_case_per_shard());
    assert_eq!(
        rebuilt.rebuilt_shards,
        vec![first.manifest.shards[1].file.clone()]
    );
    assert_eq!((rebuilt.prepared, rebuilt.reused), (1, 4));
    assert_eq!(rebuilt.manifest.cases.len(), 5);
    assert_reads_as_prepared(src.path(), out.path());
}

#[test]
fn a_killed_run_is_resumed_and_leaves_no_partial_shard() {
    let src = dataset(5);
    let out = tempfile::tempdir().unwrap();
    let full = prepare(src.path(), out.path(), &one_case_per_shard());
    // What a run killed while writing its second shard leaves: the manifest written after the
    // first shard (not complete) and a partial file.
    let mut killed = full.manifest.clone();
    killed.complete = false;
    killed.shards.truncate(1);
    let kept: Vec<String> = killed
        .cases
        .iter()
        .filter(|c| c.shard == killed.shards[0].file)
        .map(|c| c.id.clone())
        .collect();
    killed.cases.retain(|c| kept.contains(&c.id));
    for shard in &full.manifest.shards[1..] {
        std::fs::remove_file(out.path().join(&shard.file)).unwrap();
    }
    std::fs::write(
        out.path().join(".shard-00001.arrow.partial"),
        b"half a shard",
    )
    .unwrap();
    killed.write(out.path()).unwrap();
    let err = ShardSet::open(out.path()).err().unwrap();
    assert!(err.to_string().contains("did not finish"), "{err}");

    let resumed = prepare(src.path(), out.path(), &one_case_per_shard());
    assert_eq!((resumed.prepared, resumed.reused), (4, 1));
    assert!(resumed.manifest.complete);
    assert!(!out.path().join(".shard-00001.arrow.partial").exists());
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
    assert_reads_as_prepared(src.path(), out.path());
}

#[test]
fn a_folder_prepared_with_other_settings_is_not_mixed_in() {
    let src = dataset(2);
    let out = tempfile::tempdir().unwrap();
    prepare(src.path(), out.path(), &PrepareOptions::default());
    let half = PrepareOptions {
        dtype: ImageDtype::Float16,
        ..PrepareOptions::default()
    };
    let err = prepare_brats(src.path(), out.path(), &half, |_| {}).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
    assert!(
        ShardSet::open(out.path()).is_ok(),
        "the earlier shards are untouched"
    );
}
