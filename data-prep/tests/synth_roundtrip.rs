//! Synthetic cases through NIfTI and back, their anatomy and contrasts, and prepared cases.

use metakd_data::brats::{discover, load_case};
use metakd_data::nifti_io::read_volume;
use metakd_data::preprocess::{prepare_case, PreprocessSettings, REGION_ET, REGION_TC, REGION_WT};
use metakd_data::synth::{case_id, generate_case, tissue_map, write_dataset, SynthConfig, Tissue};
use metakd_data::Modality;
use rand::SeedableRng;

fn config(cases: usize) -> SynthConfig {
    SynthConfig::new(cases, [24, 32, 32], 5)
}

#[test]
fn synthetic_cases_survive_nifti_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2);
    write_dataset(&cfg, dir.path(), || {}).unwrap();
    let cases = discover(dir.path(), None).unwrap().cases;
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].id, "BraTS20_Training_001");
    assert!(cases[0].images[2].ends_with("BraTS20_Training_001/BraTS20_Training_001_t1ce.nii.gz"));
    assert!(dir.path().join("name_mapping.csv").is_file());

    let generated = generate_case(&cfg, 1);
    let raw = load_case(&cases[1]).unwrap();
    for (m, image) in Modality::ALL.iter().zip(&raw.images) {
        assert_eq!(image.shape(), cfg.shape, "{m:?}");
        assert_eq!(image.spacing, [1.0; 3]);
        assert_eq!(image.affine[0], [-1.0, 0.0, 0.0, 0.0]);
        assert_eq!(image.affine[1], [0.0, -1.0, 0.0, 31.0]);
        let expected = generated.images[m.index()].mapv(|v| v.round());
        assert_eq!(image.data, expected, "{m:?} differs after the round trip");
    }
    assert_eq!(raw.labels.unwrap(), generated.labels);
}

#[test]
fn stored_types_are_brats_types() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&config(2), dir.path(), || {}).unwrap();
    let case = dir.path().join(case_id(0));
    let header = |name: &str| {
        use nifti::NiftiObject;
        nifti::ReaderOptions::new()
            .read_file(case.join(format!("{}_{name}.nii.gz", case_id(0))))
            .unwrap()
            .header()
            .clone()
    };
    assert_eq!(header("t1").datatype, nifti::NiftiType::Int16 as i16);
    assert_eq!(header("seg").datatype, nifti::NiftiType::Uint8 as i16);
    assert_eq!(header("flair").dim[1..4], [32, 32, 24]);
    assert_eq!(header("flair").sform_code, 1);
}

#[test]
fn phantoms_have_anatomy_and_all_tumour_labels() {
    for seed in 0..6u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let map = tissue_map([40, 48, 48], &mut rng);
        let count = |t: Tissue| map.iter().filter(|&&v| v == t as u8).count();
        for t in Tissue::ALL {
            assert!(count(t) > 0, "seed {seed}: no {}", t.name());
        }
        assert!(count(Tissue::WhiteMatter) > count(Tissue::Enhancing));
        assert!(count(Tissue::Edema) > count(Tissue::Necrosis) / 2);
    }
}

#[test]
fn tumour_position_and_shape_vary_between_cases() {
    let cfg = SynthConfig::new(4, [32, 40, 40], 1);
    let centroids: Vec<[f64; 3]> = (0..4)
        .map(|i| {
            let labels = generate_case(&cfg, i).labels;
            let (mut sum, mut n) = ([0.0; 3], 0.0);
            for ((z, x, y), &l) in labels.indexed_iter() {
                if l != 0 {
                    sum[0] += z as f64;
                    sum[1] += x as f64;
                    sum[2] += y as f64;
                    n += 1.0;
                }
            }
            sum.map(|s| s / n)
        })
        .collect();
    for i in 0..4 {
        for j in i + 1..4 {
            let d: f64 = (0..3)
                .map(|a| (centroids[i][a] - centroids[j][a]).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(d > 1.0, "cases {i} and {j} have tumours at the same place");
        }
    }
}

#[test]
fn contrasts_follow_mri() {
    let cfg = SynthConfig::new(1, [40, 48, 48], 9);
    let case = generate_case(&cfg, 0);
    let mean = |m: Modality, label: u8| {
        let (mut s, mut n) = (0.0f64, 0usize);
        for (v, &l) in case.images[m.index()].iter().zip(case.labels.iter()) {
            if l == label && *v > 0.0 {
                s += f64::from(*v);
                n += 1;
            }
        }
        s / n as f64
    };
    // Enhancing rim bright only in T1ce; edema bright in FLAIR; necrosis dark in T1ce, bright in T2.
    assert!(mean(Modality::T1ce, 4) > 1.8 * mean(Modality::T1ce, 2));
    assert!(mean(Modality::T1ce, 4) > 3.0 * mean(Modality::T1ce, 1));
    assert!((mean(Modality::Flair, 4) / mean(Modality::Flair, 2) - 1.0).abs() < 0.15);
    assert!(mean(Modality::T2, 1) > mean(Modality::T2, 2));
}

#[test]
fn prepared_cases_are_cropped_and_zscored() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&config(1), dir.path(), || {}).unwrap();
    let files = &discover(dir.path(), None).unwrap().cases[0];
    let raw = load_case(files).unwrap();
    let original = raw.labels.clone().unwrap();
    let case = prepare_case(raw, &PreprocessSettings::default()).unwrap();
    assert!(case
        .shape
        .iter()
        .zip(case.original_shape)
        .all(|(c, o)| *c < o));
    for m in Modality::ALL {
        let brain: Vec<f64> = case
            .image(m)
            .iter()
            .filter(|v| **v != 0.0)
            .map(|&v| f64::from(v))
            .collect();
        let mean = brain.iter().sum::<f64>() / brain.len() as f64;
        let var = brain.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / brain.len() as f64;
        assert!(
            mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-3,
            "{m:?}: mean {mean}, var {var}"
        );
    }
    // The crop keeps every tumour voxel and the offsets map it back into the original grid.
    let tumour_in_original = original.iter().filter(|&&l| l != 0).count();
    assert_eq!(
        case.labels.iter().filter(|&&l| l != 0).count(),
        tumour_in_original
    );
    let [_, h, w] = case.shape;
    let o = case.crop_offset;
    for (i, &l) in case.labels.iter().enumerate() {
        assert_eq!(
            original[[o[0] + i / (h * w), o[1] + (i / w) % h, o[2] + i % w]],
            l
        );
    }
    for (&l, &r) in case.labels.iter().zip(&case.regions) {
        assert_eq!(r & REGION_ET != 0, l == 4);
        assert_eq!(r & REGION_TC != 0, l == 1 || l == 4);
        assert_eq!(r & REGION_WT != 0, l != 0);
    }
}

#[test]
fn reading_a_missing_folder_names_it() {
    let err = discover(std::path::Path::new("/no/such/brats"), None).unwrap_err();
    assert!(err.to_string().contains("/no/such/brats"), "{err}");
    let err = read_volume(std::path::Path::new("/no/such/file.nii.gz")).unwrap_err();
    assert!(err.to_string().contains("/no/such/file.nii.gz"), "{err}");
}
