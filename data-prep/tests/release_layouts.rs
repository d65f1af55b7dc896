//! Every official release layout, as the synthetic generator writes it, prepared and checked
//! field by field: release and split detection, case ids, grades, CSV metadata, label maps (and
//! their absence), plain and gzip NIfTI, and BraTS2020's misnamed label file.

use metakd_data::prepare::{prepare_brats, PrepareEvent, PrepareOptions};
use metakd_data::release::{Grade, Release, ReleaseSplit};
use metakd_data::shards::ShardSet;
use metakd_data::synth::{write_dataset, Layout, SynthConfig, MISNAMED_SEG_FILE};

const CASES: usize = 5;

fn write(layout: Layout) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        layout,
        ..SynthConfig::new(CASES, [20, 24, 24], 3)
    };
    write_dataset(&cfg, dir.path(), || {}).unwrap();
    dir
}

fn layouts() -> Vec<Layout> {
    let mut all = Vec::new();
    for release in Release::ALL {
        for split in [ReleaseSplit::Training, ReleaseSplit::Validation] {
            for gzip in [true, false] {
                all.push(Layout {
                    release,
                    split,
                    gzip,
                });
            }
        }
    }
    all
}

#[test]
fn folders_and_files_follow_the_official_layouts() {
    let check = |layout: Layout, relative: &str| {
        let dir = write(layout);
        assert!(
            dir.path().join(relative).is_file(),
            "{layout:?}: no {relative}"
        );
    };
    let train = |release, gzip| Layout {
        release,
        split: ReleaseSplit::Training,
        gzip,
    };
    let valid = |release| Layout {
        release,
        split: ReleaseSplit::Validation,
        gzip: true,
    };
    check(
        train(Release::Brats2018, true),
        "HGG/Brats18_2013_1_1/Brats18_2013_1_1_t1ce.nii.gz",
    );
    check(
        train(Release::Brats2018, false),
        "LGG/Brats18_TCIA08_4_1/Brats18_TCIA08_4_1_seg.nii",
    );
    check(train(Release::Brats2018, true), "survival_data.csv");
    check(
        train(Release::Brats2019, true),
        "HGG/BraTS19_CBICA_2_1/BraTS19_CBICA_2_1_flair.nii.gz",
    );
    check(train(Release::Brats2019, true), "name_mapping.csv");
    check(
        train(Release::Brats2020, true),
        "BraTS20_Training_001/BraTS20_Training_001_seg.nii.gz",
    );
    check(
        train(Release::Brats2020, true),
        &format!("BraTS20_Training_005/{MISNAMED_SEG_FILE}"),
    );
    check(train(Release::Brats2020, true), "survival_info.csv");
    check(
        valid(Release::Brats2020),
        "BraTS20_Validation_003/BraTS20_Validation_003_t2.nii.gz",
    );
    check(
        valid(Release::Brats2020),
        "name_mapping_validation_data.csv",
    );
    check(
        valid(Release::Brats2018),
        "Brats18_TCIA01_3_1/Brats18_TCIA01_3_1_t1.nii.gz",
    );
    let dir = write(valid(Release::Brats2019));
    let case = dir.path().join("BraTS19_2013_1_1");
    assert!(!case.join("BraTS19_2013_1_1_seg.nii.gz").exists());
}

/// What a caller hears, in order: `found N (W warnings)`, then `done <id>` per case.
fn events_of(src: &std::path::Path, out: &std::path::Path) -> Vec<String> {
    let heard = std::sync::Mutex::new(Vec::new());
    prepare_brats(src, out, &PrepareOptions::default(), |event| {
        heard.lock().unwrap().push(match event {
            PrepareEvent::Found { cases, warnings } => {
                format!("found {cases}: {}", warnings.join("; "))
            }
            PrepareEvent::CaseDone { id } => format!("done {id}"),
        })
    })
    .unwrap();
    heard.into_inner().unwrap()
}

#[test]
fn the_caller_hears_the_case_count_and_warnings_before_any_case() {
    let layout = Layout {
        release: Release::Brats2020,
        split: ReleaseSplit::Training,
        gzip: true,
    };
    let src = write(layout);
    let out = tempfile::tempdir().unwrap();
    let events = events_of(src.path(), out.path());
    assert_eq!(events.len(), 1 + CASES, "{events:?}");
    assert!(
        events[0].starts_with(&format!("found {CASES}: case ")),
        "{events:?}"
    );
    assert!(events[0].contains(MISNAMED_SEG_FILE), "{events:?}");
    let mut done: Vec<&str> = events[1..]
        .iter()
        .map(|e| e.strip_prefix("done ").unwrap())
        .collect();
    done.sort();
    let mut ids: Vec<String> = (0..CASES).map(|i| layout.case_id(i)).collect();
    ids.sort();
    assert_eq!(done, ids);
    // A second preparation keeps every case and says so the same way.
    let again = events_of(src.path(), out.path());
    assert_eq!(again[0], events[0]);
    assert_eq!(again.len(), 1 + CASES);
}

#[test]
fn every_layout_is_detected_and_prepared_with_its_fields() {
    for layout in layouts() {
        let src = write(layout);
        let out = tempfile::tempdir().unwrap();
        let report = prepare_brats(src.path(), out.path(), &PrepareOptions::default(), |_| {})
            .unwrap_or_else(|e| panic!("{layout:?}: {e}"));
        let m = &report.manifest;
        assert!(m.complete);
        assert_eq!(m.release, Some(layout.release), "{layout:?}");
        assert_eq!(m.split, layout.split, "{layout:?}");
        assert_eq!(m.cases.len(), CASES, "{layout:?}: {:?}", m.skipped);
        assert!(m.skipped.is_empty(), "{layout:?}: {:?}", m.skipped);
        let mut ids: Vec<String> = (0..CASES).map(|i| layout.case_id(i)).collect();
        ids.sort();
        let listed: Vec<&str> = m.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(listed, ids, "{layout:?}");
        let training = layout.split == ReleaseSplit::Training;
        let set = ShardSet::open(out.path()).unwrap();
        for i in 0..CASES {
            let id = layout.case_id(i);
            let entry = m.case(&id).unwrap();
            assert_eq!(entry.labelled, training, "{layout:?} {id}");
            let expected_grade = training.then(|| layout.grade(i));
            assert_eq!(entry.grade, expected_grade, "{layout:?} {id}");
            let case = set.case(&id).unwrap().to_prepared().unwrap();
            assert_eq!(case.release, Some(layout.release));
            assert_eq!(case.grade, expected_grade);
            assert_eq!(case.labelled, training);
            assert_eq!(case.original_shape, [20, 24, 24]);
            if training {
                assert!(case.labels.contains(&4), "{layout:?} {id}: no ET");
            } else {
                assert!(case.labels.iter().all(|&l| l == 0));
            }
            // Metadata columns of the release's tables, as the generator wrote them.
            let md = &case.metadata;
            match (layout.release, layout.split) {
                (Release::Brats2018, ReleaseSplit::Training) => {
                    assert_eq!(md.contains_key("Survival"), layout.grade(i) == Grade::Hgg);
                }
                (Release::Brats2019 | Release::Brats2020, ReleaseSplit::Training) => {
                    assert_eq!(md["Grade"], layout.grade(i).as_str(), "{layout:?} {id}");
                    if layout.grade(i) == Grade::Hgg {
                        assert!(md.contains_key("Age"), "{layout:?} {id}: {md:?}");
                    }
                }
                (_, ReleaseSplit::Validation) => {
                    assert!(md.contains_key("Age"), "{layout:?} {id}: {md:?}");
                    assert!(
                        md.contains_key("ResectionStatus"),
                        "{layout:?} {id}: {md:?}"
                    );
                }
            }
        }
        let misnamed = m
            .warnings
            .iter()
            .filter(|w| w.contains(MISNAMED_SEG_FILE))
            .count();
        let expects_misnamed = layout.release == Release::Brats2020 && training;
        assert_eq!(
            misnamed,
            usize::from(expects_misnamed),
            "{layout:?}: {:?}",
            m.warnings
        );
    }
}

#[test]
fn the_release_option_overrides_detection() {
    let src = write(Layout {
        release: Release::Brats2019,
        split: ReleaseSplit::Training,
        gzip: true,
    });
    let out = tempfile::tempdir().unwrap();
    let options = PrepareOptions {
        release: Some(Release::Brats2018),
        ..PrepareOptions::default()
    };
    let report = prepare_brats(src.path(), out.path(), &options, |_| {}).unwrap();
    assert_eq!(report.manifest.release, Some(Release::Brats2018));
    assert_eq!(report.manifest.cases.len(), CASES);
}
