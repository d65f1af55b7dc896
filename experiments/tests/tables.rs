//! MetaKD on modality tables with real missingness, on the AD CSF stand-in
//! (`../shared/data/ad-csf`): every subset of the three modalities is scored on the subjects
//! that have part of it, the CSF proteins carry the diagnosis well above the majority class,
//! units resume, and the rows land in the common result table.

use std::path::Path;

use metakd_data::adni::{ad_csf_tables, read_tables, AD_CSF_CLASSES, AD_CSF_MODALITIES};
use metakd_experiments::classify::tables::{
    run_tables, train_and_evaluate, TabularTrainConfig, TabularVariant,
};

#[test]
fn the_stand_in_is_learned_and_every_subset_is_scored() {
    let cohort =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ad-csf/ad_data.csv.gz");
    let dir = std::env::temp_dir().join(format!("metakd-tables-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ad_csf_tables(&cohort, &dir.join("tables"), [0.3, 0.2, 0.4], 0).unwrap();
    let data = read_tables(
        &dir.join("tables"),
        "ad-csf",
        &AD_CSF_MODALITIES,
        &AD_CSF_CLASSES,
    )
    .unwrap();

    let cfg = TabularTrainConfig {
        iterations: 300,
        ..Default::default()
    };
    let result = train_and_evaluate(&data, &cfg).unwrap();
    assert_eq!(
        result.scores.len(),
        7,
        "every non-empty subset of three modalities"
    );
    // 20 % of each class (48 of 242, 18 of 91) is tested; a subset scores those having part of it.
    let all = result.scores.iter().find(|s| s.mask == 7).unwrap();
    assert_eq!(all.subjects, 66);
    let proteins = result
        .scores
        .iter()
        .find(|s| s.subset == "biospecimen")
        .unwrap();
    assert!(proteins.subjects < all.subjects);
    // The majority class is 242 / 333 = 72.7 %: the proteins must do better.
    assert!(proteins.scores.accuracy > 0.8, "{result:?}");
    assert!(all.scores.accuracy > 0.8, "{result:?}");
    assert!((result.omega.iter().sum::<f32>() - 1.0).abs() < 1e-5);

    let out = dir.join("run");
    let variants = [TabularVariant::MetaKd, TabularVariant::Fusion];
    let small = TabularTrainConfig {
        iterations: 50,
        ..Default::default()
    };
    let first = run_tables(&data, &small, &[0, 1], &variants, &out, false).unwrap();
    assert_eq!((first.trained, first.already_done), (4, 0));
    let again = run_tables(&data, &small, &[0, 1], &variants, &out, false).unwrap();
    assert_eq!((again.trained, again.already_done), (0, 4));
    let read = metakd_reports::results::read_tables(std::slice::from_ref(&first.table)).unwrap();
    assert_eq!(read.df.height(), 4 * 7);
    let reports =
        metakd_reports::write_reports(std::slice::from_ref(&first.table), &dir.join("report"))
            .unwrap();
    let md = std::fs::read_to_string(reports.classification.unwrap().report).unwrap();
    assert!(
        md.contains("AD CSF cohort (stand-in, not ADNI), real missingness"),
        "{md}"
    );
    assert!(md.contains("| genomic+clinical+biospecimen |"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
}
