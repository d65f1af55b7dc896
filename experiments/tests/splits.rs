//! Split files: Protocol A and B from prepared shards, RFNet-style lists (the published BraTS
//! splits in `../shared/data/brats-splits`), the meta-validation selection, and a run trained from
//! a split file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use metakd_data::prepare::{prepare_brats, PrepareOptions};
use metakd_data::synth::{write_dataset, SynthConfig};
use metakd_experiments::run::split_files::{write_splits, MetaValChoice, SplitRequest};
use metakd_experiments::run::splits::{read_id_list, Splits};

fn shared_splits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/brats-splits")
}

fn shards(cases: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_dataset(&SynthConfig::new(cases, [16, 20, 20], 4), &src, || {}).unwrap();
    let out = dir.path().join("shards");
    prepare_brats(&src, &out, &PrepareOptions::default(), |_| {}).unwrap();
    (dir, out)
}

fn draw(count: usize) -> MetaValChoice {
    MetaValChoice {
        count,
        list: None,
        seed: 0,
    }
}

fn disjoint(s: &Splits) {
    let mut seen = HashSet::new();
    for id in s
        .train
        .iter()
        .chain(&s.meta_val)
        .chain(&s.val)
        .chain(&s.test)
    {
        assert!(seen.insert(id.clone()), "{id} is in two splits");
    }
}

#[test]
fn the_published_rfnet_splits_read_with_their_sizes() {
    for fold in 1..=3 {
        let s = Splits::read_rfnet(&shared_splits().join("rfnet-brats2018"), Some(fold)).unwrap();
        assert_eq!(
            (s.train.len(), s.val.len(), s.test.len()),
            (199, 29, 57),
            "split {fold}"
        );
        assert!(s.train.iter().all(|id| id.starts_with("Brats18_")));
        disjoint(&s);
    }
    let s = Splits::read_rfnet(&shared_splits().join("rfnet-brats2020"), None).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (219, 50, 100));
    assert!(
        s.train.iter().all(|id| id.starts_with("BraTS20_Training_")),
        "{:?}",
        &s.train[..3]
    );
    disjoint(&s);
}

#[test]
fn metakd_protocol_a_lists_take_five_meta_validation_cases_out() {
    let dir = shared_splits().join("metakd-brats2018");
    let all = read_id_list(&dir.join("BraTS18_train_all.txt")).unwrap();
    let meta = read_id_list(&dir.join("BraTS18_metaVal.txt")).unwrap();
    assert_eq!((all.len(), meta.len()), (285, 5));
    let mut s = Splits::protocol_a(&all, Vec::new());
    s.take_meta_val(0, Some(&meta), 0).unwrap();
    let mut train = s.train.clone();
    train.sort();
    let mut published = read_id_list(&dir.join("BraTS18_metaTrain.txt")).unwrap();
    published.sort();
    assert_eq!(train, published);
    assert_eq!(s.meta_val, meta);
}

#[test]
fn protocol_a_and_b_split_the_labelled_cases() {
    let (_dir, shards) = shards(12);
    let out = shards.parent().unwrap().join("splits");
    let a = write_splits(&SplitRequest::ProtocolA {
        shards: shards.clone(),
        test_shards: None,
        out: out.join("a.json"),
        meta_val: draw(2),
    })
    .unwrap();
    let (_, a) = &a[0];
    assert_eq!((a.train.len(), a.meta_val.len(), a.test.len()), (10, 2, 0));
    disjoint(a);
    assert_eq!(Splits::read(&out.join("a.json")).unwrap(), *a);

    let b = write_splits(&SplitRequest::ProtocolB {
        shards: shards.clone(),
        out_dir: out.clone(),
        splits: 3,
        seed: 7,
        val_fraction: 0.25,
        test_fraction: 0.25,
        meta_val: draw(1),
    })
    .unwrap();
    assert_eq!(b.len(), 3);
    let tests: Vec<&Vec<String>> = b.iter().map(|(_, s)| &s.test).collect();
    assert_ne!(tests[0], tests[1], "splits differ");
    for (path, s) in &b {
        assert!(path.ends_with(format!(
            "split{}.json",
            b.iter().position(|(p, _)| p == path).unwrap() + 1
        )));
        assert_eq!(
            (s.train.len(), s.meta_val.len(), s.val.len(), s.test.len()),
            (5, 1, 3, 3)
        );
        disjoint(s);
    }
    // The same seed gives the same splits.
    let again = Splits::protocol_b(
        &b[0]
            .1
            .train
            .iter()
            .chain(&b[0].1.meta_val)
            .chain(&b[0].1.val)
            .chain(&b[0].1.test)
            .cloned()
            .collect::<Vec<_>>(),
        1,
        7,
        0.25,
        0.25,
    )
    .unwrap();
    assert_eq!(
        again.test.iter().collect::<HashSet<_>>(),
        b[0].1.test.iter().collect::<HashSet<_>>()
    );
}

#[test]
fn rfnet_lists_are_checked_against_the_shards() {
    let (dir, shards) = shards(6);
    let lists = dir.path().join("lists");
    std::fs::create_dir(&lists).unwrap();
    std::fs::write(
        lists.join("train1.txt"),
        "HG_BraTS20_Training_001\nLG_BraTS20_Training_002\nBraTS20_Training_003\n\n",
    )
    .unwrap();
    std::fs::write(lists.join("val1.txt"), "BraTS20_Training_004\n").unwrap();
    std::fs::write(
        lists.join("test1.txt"),
        "BraTS20_Training_005\nBraTS20_Training_006\n",
    )
    .unwrap();
    let written = write_splits(&SplitRequest::Rfnet {
        lists: lists.clone(),
        fold: Some(1),
        shards: shards.clone(),
        out: dir.path().join("rfnet.json"),
        meta_val: draw(1),
    })
    .unwrap();
    let s = &written[0].1;
    assert_eq!(
        (s.train.len(), s.meta_val.len(), s.val.clone(), s.test.len()),
        (2, 1, vec!["BraTS20_Training_004".to_string()], 2)
    );

    std::fs::write(lists.join("test1.txt"), "BraTS20_Training_077\n").unwrap();
    let err = write_splits(&SplitRequest::Rfnet {
        lists,
        fold: Some(1),
        shards,
        out: dir.path().join("bad.json"),
        meta_val: draw(1),
    })
    .unwrap_err();
    assert!(err.to_string().contains("BraTS20_Training_077"), "{err}");
}

#[test]
fn a_meta_validation_list_must_name_training_cases() {
    let mut s = Splits::protocol_a(&["a".into(), "b".into(), "c".into()], Vec::new());
    let err = s.take_meta_val(0, Some(&["z".into()]), 0).unwrap_err();
    assert!(err.to_string().contains('z'), "{err}");
    let err = s.take_meta_val(3, None, 0).unwrap_err();
    assert!(err.to_string().contains("cannot take 3"), "{err}");
}

#[test]
fn a_run_takes_its_splits_from_the_configured_file() {
    let (dir, shards) = shards(6);
    let file = dir.path().join("a.json");
    let (_, written) = write_splits(&SplitRequest::ProtocolA {
        shards: shards.clone(),
        test_shards: None,
        out: file.clone(),
        meta_val: draw(1),
    })
    .unwrap()
    .remove(0);
    let manifest = metakd_data::shards::Manifest::read(&shards).unwrap();
    let mut cfg = metakd_experiments::run::config::DataConfig {
        shards: shards.clone(),
        split: Some(file.clone()),
        ..Default::default()
    };
    assert_eq!(Splits::for_run(&cfg, &manifest).unwrap(), written);
    let mut foreign = written.clone();
    foreign.train.push("Brats18_2013_1_1".into());
    foreign.write(&file).unwrap();
    let err = Splits::for_run(&cfg, &manifest).unwrap_err();
    assert!(err.to_string().contains("Brats18_2013_1_1"), "{err}");
    cfg.split = None;
    cfg.test_cases = 2;
    cfg.meta_val_cases = 1;
    assert_eq!(Splits::for_run(&cfg, &manifest).unwrap().protocol, "seeded");
}

#[test]
fn a_meta_validation_set_larger_than_what_is_left_to_train_is_warned_about() {
    let (_dir, shards) = shards(9);
    let out = shards.parent().unwrap().join("splits");
    let request = |count| SplitRequest::ProtocolB {
        shards: shards.clone(),
        out_dir: out.clone(),
        splits: 1,
        seed: 0,
        val_fraction: 0.1,
        test_fraction: 0.2,
        meta_val: draw(count),
    };
    // 9 cases: 2 test, 1 validation and 6 training cases, of which 5 go to meta-validation.
    let (_, five) = &write_splits(&request(5)).unwrap()[0];
    assert_eq!((five.train.len(), five.meta_val.len()), (1, 5));
    let warning = five.meta_val_warning().expect("a warning");
    assert!(
        warning.contains("takes 5 of the 6 training cases, leaving 1"),
        "{warning}"
    );
    // Half of them (3 of 6) still leaves as many to train on: no warning.
    let (_, three) = &write_splits(&request(3)).unwrap()[0];
    assert_eq!(three.meta_val_warning(), None);
    let (_, four) = &write_splits(&request(4)).unwrap()[0];
    assert!(four.meta_val_warning().is_some());
}
