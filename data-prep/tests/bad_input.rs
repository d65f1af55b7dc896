//! Bad input: each problem case is skipped with a message naming the file and the problem, every
//! good case is still written, and the manifest lists what was skipped.

use std::path::{Path, PathBuf};

use metakd_data::nifti_io::{brats_affine, read_volume, write_volume, StoredType, Volume};
use metakd_data::prepare::{prepare_brats, PrepareOptions};
use metakd_data::shards::{Manifest, ShardSet};
use metakd_data::synth::{case_id, write_dataset, SynthConfig};
use ndarray::{Array3, Array4};
use nifti::writer::WriterOptions;

const SHAPE: [usize; 3] = [16, 20, 20];

fn file(src: &Path, case: usize, suffix: &str) -> PathBuf {
    src.join(case_id(case))
        .join(format!("{}_{suffix}.nii.gz", case_id(case)))
}

fn volume(data: Array3<f32>) -> Volume {
    Volume {
        data,
        spacing: [1.0; 3],
        affine: brats_affine(SHAPE, [1.0; 3]),
    }
}

/// Breaks case `index` of `src` in one way; returns what the skip reason must mention.
fn break_case(src: &Path, index: usize) -> (&'static str, Vec<String>) {
    let t1 = file(src, index, "t1");
    let flair = read_volume(&file(src, index, "flair")).unwrap();
    match index {
        0 => {
            let bytes = std::fs::read(&t1).unwrap();
            std::fs::write(&t1, &bytes[..bytes.len() / 2]).unwrap();
            ("truncated gzip", vec!["_t1.nii.gz".into(), "gzip".into()])
        }
        1 => {
            let mut bytes = std::fs::read(&t1).unwrap();
            for b in &mut bytes[30..60] {
                *b ^= 0x5a;
            }
            std::fs::write(&t1, bytes).unwrap();
            ("corrupt gzip", vec!["_t1.nii.gz".into()])
        }
        2 => {
            std::fs::remove_file(file(src, index, "t2")).unwrap();
            (
                "missing modality",
                vec!["missing".into(), "_t2.nii.gz".into()],
            )
        }
        3 => {
            let four = Array4::<f32>::zeros((SHAPE[1], SHAPE[2], SHAPE[0], 2));
            WriterOptions::new(&t1).write_nifti(&four).unwrap();
            ("4-D file", vec!["_t1.nii.gz".into(), "3D volume".into()])
        }
        4 => {
            let other = volume(Array3::from_elem([SHAPE[0], SHAPE[1] - 2, SHAPE[2]], 5.0));
            write_volume(&t1, &other, StoredType::Int16).unwrap();
            (
                "mismatched shape",
                vec!["T1".into(), "shape".into(), "_t1.nii.gz".into()],
            )
        }
        5 => {
            let mut moved = volume(flair.to_zxy());
            moved.affine[0][3] += 7.0;
            write_volume(&t1, &moved, StoredType::Int16).unwrap();
            (
                "mismatched affine",
                vec!["affine".into(), "_t1.nii.gz".into()],
            )
        }
        6 => {
            let mut data = flair.to_zxy();
            data[[3, 4, 5]] = f32::NAN;
            data[[4, 4, 5]] = f32::INFINITY;
            write_volume(&t1, &volume(data), StoredType::Float32).unwrap();
            (
                "NaN voxels",
                vec!["_t1.nii.gz".into(), "2 voxels are NaN".into()],
            )
        }
        7 => {
            let seg = file(src, index, "seg");
            let mut labels = read_volume(&seg).unwrap().to_zxy();
            labels[[8, 10, 10]] = 3.0;
            write_volume(&seg, &volume(labels), StoredType::Uint8).unwrap();
            (
                "label 3",
                vec!["_seg.nii.gz".into(), "label value 3".into()],
            )
        }
        8 => {
            std::fs::remove_file(&t1).unwrap();
            std::fs::create_dir(&t1).unwrap();
            ("unreadable file", vec!["_t1.nii.gz".into()])
        }
        _ => unreachable!(),
    }
}

const BROKEN: usize = 9;
const GOOD: usize = 3;

#[test]
fn every_bad_case_is_skipped_with_its_reason_and_the_rest_is_written() {
    let src = tempfile::tempdir().unwrap();
    // One more case than broken + good: the last one is BraTS2020's misnamed-label case.
    write_dataset(
        &SynthConfig::new(BROKEN + GOOD, SHAPE, 2),
        src.path(),
        || {},
    )
    .unwrap();
    let mut wanted = Vec::new();
    for i in 0..BROKEN {
        let (what, mentions) = break_case(src.path(), i);
        wanted.push((case_id(i), what, mentions));
    }
    // An empty folder named like a case, and a case id present twice.
    std::fs::create_dir(src.path().join("BraTS20_Training_900")).unwrap();
    let copy = src.path().join("copies").join(case_id(BROKEN));
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(src.path().join(case_id(BROKEN))).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }

    let out = tempfile::tempdir().unwrap();
    let report = prepare_brats(src.path(), out.path(), &PrepareOptions::default(), |_| {}).unwrap();
    let m = &report.manifest;
    let good: Vec<String> = (BROKEN + 1..BROKEN + GOOD).map(case_id).collect();
    let written: Vec<&str> = m.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(written, good, "skipped: {:#?}", m.skipped);
    for (id, what, mentions) in &wanted {
        let skipped = m
            .skipped
            .iter()
            .find(|s| &s.id == id)
            .unwrap_or_else(|| panic!("{what}: case {id} not skipped"));
        for word in mentions {
            assert!(
                skipped.reason.contains(word.as_str()),
                "{what}: reason `{}` does not mention `{word}`",
                skipped.reason
            );
        }
    }
    let reason = |id: &str| &m.skipped.iter().find(|s| s.id == id).unwrap().reason;
    assert!(reason("BraTS20_Training_900").contains("empty case folder"));
    let duplicate = reason(&case_id(BROKEN));
    assert!(
        duplicate.contains("duplicate case id in 2 folders"),
        "{duplicate}"
    );
    assert!(duplicate.contains("copies"), "{duplicate}");
    assert_eq!(m.skipped.len(), BROKEN + 2);
    // The good cases read back.
    let set = ShardSet::open(out.path()).unwrap();
    for id in &good {
        assert!(set.case(id).unwrap().to_prepared().is_ok());
    }
}

#[test]
fn a_folder_without_cases_is_an_error_naming_it() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("notes")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err =
        prepare_brats(empty.path(), out.path(), &PrepareOptions::default(), |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains(&empty.path().display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("no BraTS case folders"), "{err}");
}

#[test]
fn a_release_whose_every_case_is_bad_fails_and_leaves_an_incomplete_manifest() {
    let src = tempfile::tempdir().unwrap();
    write_dataset(&SynthConfig::new(2, SHAPE, 2), src.path(), || {}).unwrap();
    break_case(src.path(), 0);
    break_case(src.path(), 2 - 1);
    let out = tempfile::tempdir().unwrap();
    let err = prepare_brats(src.path(), out.path(), &PrepareOptions::default(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no case could be prepared (2 skipped"),
        "{err}"
    );
    let manifest = Manifest::read_any(out.path()).unwrap();
    assert!(!manifest.complete);
    assert_eq!(manifest.skipped.len(), 2);
    let refused = ShardSet::open(out.path()).err().unwrap().to_string();
    assert!(refused.contains("did not finish"), "{refused}");
}
