//! Modality tables: the AD CSF cohort (`../shared/data/ad-csf`) written as Flex-MoE-style tables
//! with seeded missing rates and read back (one-hot genotype, every subject keeping a
//! modality, values as in the source), the prepared Arrow file's round trip, and bad tables
//! refused with the file and row named.

use std::path::{Path, PathBuf};

use metakd_data::adni::{
    ad_csf_tables, read, read_tables, write, ADNI_CLASSES, ADNI_MODALITIES, AD_CSF_CLASSES,
    AD_CSF_MODALITIES,
};

fn cohort() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ad-csf/ad_data.csv.gz")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metakd-adni-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_stand_in_becomes_modality_tables_with_its_missing_rates() {
    let dir = temp("stand-in");
    let tables = dir.join("tables");
    assert_eq!(
        ad_csf_tables(&cohort(), &tables, [0.3, 0.2, 0.4], 7).unwrap(),
        333
    );
    let data = read_tables(&tables, "ad-csf", &AD_CSF_MODALITIES, &AD_CSF_CLASSES).unwrap();
    let m = &data.manifest;
    assert_eq!(m.subjects, 333);
    // round(0.3 · 333) = 100 subjects lose the genotype, 67 the clinical data, 133 the proteins.
    assert_eq!(m.present, vec![233, 266, 200]);
    assert!(data
        .subjects
        .iter()
        .all(|s| s.values.iter().any(Option::is_some)));
    // Genotype one-hot over its six values; age and male; the 127 other measurements.
    assert_eq!(m.features[0].len(), 6);
    assert_eq!(m.features[0][0], "Genotype=E2E2");
    assert_eq!(m.features[1], vec!["age", "male"]);
    assert_eq!(m.features[2].len(), 127);
    let impaired = data.subjects.iter().filter(|s| s.label == 1).count();
    assert_eq!(impaired, 91);
    for s in &data.subjects {
        if let Some(g) = &s.values[0] {
            assert_eq!(g.iter().sum::<f32>(), 1.0, "one genotype per subject");
        }
    }
    // The first subject's values, as in the source's first row.
    let first = &data.subjects[0];
    assert_eq!(first.id, "S0001");
    if let Some(proteins) = &first.values[2] {
        assert!((proteins[0] - 2.003_100_3).abs() < 1e-6, "{}", proteins[0]);
    }

    // Another seed removes other subjects' modalities.
    let other = dir.join("other");
    ad_csf_tables(&cohort(), &other, [0.3, 0.2, 0.4], 8).unwrap();
    let again = read_tables(&other, "ad-csf", &AD_CSF_MODALITIES, &AD_CSF_CLASSES).unwrap();
    assert_ne!(
        data.subjects
            .iter()
            .map(|s| s.values[0].is_some())
            .collect::<Vec<_>>(),
        again
            .subjects
            .iter()
            .map(|s| s.values[0].is_some())
            .collect::<Vec<_>>()
    );

    let prepared = dir.join("prepared");
    write(&prepared, &data).unwrap();
    assert_eq!(read(&prepared).unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adni_layout_tables_join_on_subject_ids() {
    let dir = temp("layout");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    file(
        "labels.csv",
        "subject_id,diagnosis\n002_S_0001,CN\n002_S_0002,AD\n002_S_0003,MCI\n002_S_0004,CN\n",
    );
    // Subject 3 has no image row; subject 4 has an empty one; subject 2's second value is empty.
    file(
        "image.csv",
        "subject_id,hippocampus,ventricles\n002_S_0001,1.5,2.0\n002_S_0002,2.5,\n002_S_0004,,\n",
    );
    file(
        "clinical.csv",
        "subject_id,age,sex\n002_S_0001,70,F\n002_S_0003,80,M\n002_S_0004,75,M\n",
    );
    let data = read_tables(&dir, "adni", &ADNI_MODALITIES, &ADNI_CLASSES).unwrap();
    assert_eq!(data.manifest.modalities, vec!["image", "clinical"]);
    assert_eq!(data.manifest.features[1], vec!["age", "sex=F", "sex=M"]);
    let labels: Vec<u8> = data.subjects.iter().map(|s| s.label).collect();
    assert_eq!(labels, vec![0, 2, 1, 0]);
    assert_eq!(
        data.subjects[1].values[0],
        Some(vec![2.5, 2.0]),
        "mean of the present ventricles"
    );
    assert_eq!(data.manifest.imputed, vec![1, 0]);
    assert_eq!(data.subjects[2].values[0], None);
    assert_eq!(data.subjects[3].values[0], None);
    assert_eq!(data.subjects[2].values[1], Some(vec![80.0, 0.0, 1.0]));

    file(
        "labels.csv",
        "subject_id,diagnosis\n002_S_0001,CN\n002_S_0002,Dementia\n",
    );
    let err = read_tables(&dir, "adni", &ADNI_MODALITIES, &ADNI_CLASSES)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels.csv") && err.contains("row 3") && err.contains("Dementia"),
        "{err}"
    );

    file("labels.csv", "subject_id,diagnosis\n002_S_0001,CN\n");
    file(
        "clinical.csv",
        "subject_id,age\n002_S_0001,70\n002_S_0001,71\n",
    );
    let err = read_tables(&dir, "adni", &ADNI_MODALITIES, &ADNI_CLASSES)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("clinical.csv") && err.contains("appears twice"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
