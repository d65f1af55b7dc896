//! The NIfTI reader against nibabel on nibabel's own test files and on files nibabel wrote:
//! big-endian, NIfTI-2, 4-D, scl_slope/scl_inter, uint8 and float64, value for value.

use std::path::{Path, PathBuf};

use metakd_data::nifti_io::{read_image, read_volume, NiftiVersion};
use metakd_data::DataError;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nibabel")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(name: &str) -> Vec<f32> {
    std::fs::read(fixtures().join(name))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn every_fixture_reads_as_nibabel_reads_it() {
    let expected = expected();
    let files = expected["files"].as_object().unwrap();
    assert_eq!(files.len(), 8);
    for (name, want) in files {
        let image = read_image(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(image.data.shape(), shape.as_slice(), "{name}");
        let values = floats(want["values"].as_str().unwrap());
        // nibabel's values in Fortran order; the reader's array is Fortran-ordered too.
        let ours: Vec<f32> = image.data.t().iter().copied().collect();
        assert_eq!(ours.len(), values.len(), "{name}");
        for (i, (a, b)) in ours.iter().zip(&values).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{name}: voxel {i}: {a} vs nibabel {b}"
            );
        }
        let affine = image.affine();
        for (r, row) in want["affine"].as_array().unwrap().iter().enumerate() {
            for (c, v) in row.as_array().unwrap().iter().enumerate() {
                let v = v.as_f64().unwrap() as f32;
                assert!(
                    (affine[r][c] - v).abs() < 1e-4 * v.abs().max(1.0),
                    "{name}: affine[{r}][{c}] {} vs nibabel {v}",
                    affine[r][c]
                );
            }
        }
        for (ours, z) in image
            .spacing()
            .iter()
            .zip(want["zooms"].as_array().unwrap())
        {
            assert!(
                (ours - z.as_f64().unwrap() as f32).abs() < 1e-5,
                "{name}: zooms"
            );
        }
        let two = want["nifti2"].as_bool().unwrap();
        assert_eq!(image.version == NiftiVersion::Two, two, "{name}");
        let big = want["big_endian"].as_bool().unwrap();
        assert_eq!(
            image.header.endianness == nifti::Endianness::Big,
            big,
            "{name}"
        );
    }
}

#[test]
fn the_edge_cases_are_what_their_names_say() {
    let expected = expected();
    let files = &expected["files"];
    assert!(files["anatomical.nii"]["big_endian"].as_bool().unwrap());
    assert!(files["big_endian_float32.nii.gz"]["big_endian"]
        .as_bool()
        .unwrap());
    assert!(files["example_nifti2.nii.gz"]["nifti2"].as_bool().unwrap());
    assert!(files["nifti2_int16.nii"]["nifti2"].as_bool().unwrap());
    let scaled = read_image(&fixtures().join("scaled_int16.nii.gz")).unwrap();
    assert_eq!(scaled.header.scl_slope, 2.5);
    assert_eq!(scaled.header.scl_inter, -10.0);
    // Scaled values are 2.5 * int - 10: every value minus the intercept is a multiple of 2.5.
    assert!(scaled
        .data
        .iter()
        .all(|v| ((v + 10.0) / 2.5).fract() == 0.0));
}

#[test]
fn a_4d_file_is_not_a_volume() {
    let path = fixtures().join("functional.nii");
    let err = read_volume(&path).unwrap_err();
    assert!(matches!(err, DataError::NotAVolume { .. }), "{err}");
    assert!(err.to_string().contains("functional.nii"), "{err}");
    assert!(err.to_string().contains("[17, 21, 3, 20]"), "{err}");
}

#[test]
fn a_volume_is_indexed_z_x_y() {
    let path = fixtures().join("nifti2_int16.nii");
    let image = read_image(&path).unwrap();
    let volume = read_volume(&path).unwrap();
    assert_eq!(volume.shape(), [5, 8, 6]);
    for ((x, y, z), v) in image
        .data
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap()
        .indexed_iter()
    {
        assert_eq!(volume.data[[z, x, y]], *v);
    }
}
