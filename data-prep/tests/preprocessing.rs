//! Preprocessing against numpy doing what the reference implementation does (fixtures from
//! `tools/preprocess_fixture.py`), and properties of clipping, normalisation and cropping.

use std::path::{Path, PathBuf};

use metakd_data::brats::{load_case, CaseFiles};
use metakd_data::metadata::CaseMetadata;
use metakd_data::preprocess::{
    bounding_box_zxy, clip_and_normalise, clip_upper_tail, crop_to_zxy, prepare_case,
    zscore_foreground, ClipOutcome, PreprocessSettings,
};
use proptest::prelude::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

fn floats(name: &str) -> Vec<f32> {
    std::fs::read(fixtures().join(name))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn clipping_and_zscore_match_numpy() {
    let expected = expected();
    for (name, want) in expected["samples"].as_object().unwrap() {
        let mut values = floats(want["file"].as_str().unwrap());
        let original = values.clone();
        let outcome = clip_upper_tail(&mut values, 50);
        let level = want["level"].as_f64().unwrap() as f32;
        assert_eq!(
            outcome,
            ClipOutcome::Clipped {
                level,
                voxels: want["changed"].as_u64().unwrap() as usize
            },
            "{name}"
        );
        for (v, o) in values.iter().zip(&original) {
            assert_eq!(*v, o.min(level), "{name}");
        }
        let background = values[0];
        let mut foreground = vec![false; values.len()];
        let stats = zscore_foreground(&mut values, background, &mut foreground).unwrap();
        let (mean, std) = (
            want["mean"].as_f64().unwrap(),
            want["std"].as_f64().unwrap(),
        );
        for ((v, c), f) in values.iter().zip(&original).zip(&foreground) {
            let clipped = f64::from(c.min(level));
            let want = if clipped == f64::from(background) {
                0.0
            } else {
                (clipped - mean) / std
            };
            assert_eq!(*f, clipped != f64::from(background), "{name}");
            assert!(
                (f64::from(*v) - want).abs() < 1e-5,
                "{name}: {v} vs numpy {want}"
            );
        }
        // The recorded normalisation is numpy's, and restores the clipped intensities.
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-6 * b.abs().max(1.0);
        assert!(
            close(stats.mean, mean),
            "{name}: mean {} vs {mean}",
            stats.mean
        );
        assert!(close(stats.std, std), "{name}: std {} vs {std}", stats.std);
        assert_eq!(stats.background, background);
        let restored = stats.restore(&values, |i| foreground[i]);
        for (r, c) in restored.iter().zip(&original) {
            let clipped = c.min(level);
            assert!(
                (r - clipped).abs() < 1e-3 * clipped.abs().max(1.0),
                "{name}: {r} vs {clipped}"
            );
        }
    }
}

#[test]
fn a_whole_case_matches_numpy() {
    let expected = expected();
    let want = &expected["case"];
    let dir = fixtures().join("case");
    let files = CaseFiles {
        id: "case".into(),
        images: ["flair", "t1", "t1ce", "t2"].map(|m| dir.join(format!("case_{m}.nii.gz"))),
        seg: Some(dir.join("case_seg.nii.gz")),
        dir,
        grade: None,
        metadata: CaseMetadata::new(),
        warnings: Vec::new(),
    };
    let raw = load_case(&files).unwrap();
    let raw_labels = raw.labels.clone().unwrap();
    let case = prepare_case(raw, &PreprocessSettings::default()).unwrap();
    let to3 = |v: &Value| -> [usize; 3] {
        let v: Vec<usize> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        [v[0], v[1], v[2]]
    };
    assert_eq!(case.original_shape, to3(&want["shape_zxy"]));
    let (lo, hi) = (to3(&want["crop_lo"]), to3(&want["crop_hi"]));
    assert_eq!(case.crop_offset, lo);
    assert_eq!(case.shape, [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]]);
    let numpy = floats(want["images"].as_str().unwrap());
    assert_eq!(case.images.len(), numpy.len());
    for (i, (a, b)) in case.images.iter().zip(&numpy).enumerate() {
        assert!((a - b).abs() < 1e-5, "voxel {i}: {a} vs numpy {b}");
    }
    let label_sum: u64 = case.labels.iter().map(|&l| u64::from(l)).sum();
    assert_eq!(label_sum, want["labels_sum"].as_u64().unwrap());

    // Put back on the whole grid, the labels are the file's and the images are zero outside
    // the box and the box's values inside it.
    let whole = case.clone().on_whole_volume();
    assert_eq!(whole.shape, case.original_shape);
    assert_eq!(whole.crop_offset, [0; 3]);
    assert_eq!(whole.labels, raw_labels.iter().copied().collect::<Vec<_>>());
    let [d, h, w] = whole.shape;
    let v = d * h * w;
    let inside = |z: usize, y: usize, x: usize| {
        (lo[0]..hi[0]).contains(&z) && (lo[1]..hi[1]).contains(&y) && (lo[2]..hi[2]).contains(&x)
    };
    for m in 0..4 {
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let value = whole.images[m * v + (z * h + y) * w + x];
                    if inside(z, y, x) {
                        let (bz, by, bx) = (z - lo[0], y - lo[1], x - lo[2]);
                        let [_, bh, bw] = case.shape;
                        let stored = case.images[m * case.voxels() + (bz * bh + by) * bw + bx];
                        assert_eq!(value, stored);
                    } else {
                        assert_eq!(value, 0.0);
                    }
                }
            }
        }
    }
    assert!(case
        .clipping
        .iter()
        .all(|c| matches!(c, ClipOutcome::Clipped { .. })));
}

/// numpy's histogram bin of `x`, by searching the edges `linspace(first, last, bins + 1)`.
fn naive_bin(x: f64, first: f64, last: f64, bins: usize) -> usize {
    let step = (last - first) / bins as f64;
    let edges: Vec<f64> = (0..=bins)
        .map(|i| {
            if i == bins {
                last
            } else {
                first + i as f64 * step
            }
        })
        .collect();
    (0..bins).rev().find(|&i| x >= edges[i]).unwrap_or(0)
}

/// The reference clip written plainly: every voxel binned by edge search.
fn naive_clip_level(values: &[f32], min_voxels: usize) -> Option<f32> {
    let max = values.iter().cloned().fold(f32::MIN, f32::max);
    let min = values.iter().cloned().fold(f32::MAX, f32::min);
    let bins = max.trunc();
    if bins < 1.0 {
        return None;
    }
    let bins = bins as usize;
    let (mut first, mut last) = (f64::from(min), f64::from(max));
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[naive_bin(f64::from(v), first, last, bins)] += 1;
    }
    let k = counts.iter().rposition(|&c| c >= min_voxels)? as f32;
    (k > values[0]).then_some(k)
}

fn volume() -> impl Strategy<Value = Vec<f32>> {
    (1usize..4, 0u32..2).prop_flat_map(|(scale, integral)| {
        prop::collection::vec(0f32..(300.0 * scale as f32), 50..600).prop_map(move |v| {
            let mut v: Vec<f32> = if integral == 1 {
                v.into_iter().map(f32::round).collect()
            } else {
                v
            };
            v[0] = 0.0;
            v
        })
    })
}

proptest! {
    #[test]
    fn clipping_matches_the_plain_reference(values in volume(), min_voxels in 1usize..6) {
        let mut clipped = values.clone();
        let outcome = clip_upper_tail(&mut clipped, min_voxels);
        match naive_clip_level(&values, min_voxels) {
            Some(level) => {
                let changed = values.iter().filter(|&&v| v > level).count();
                prop_assert_eq!(outcome, ClipOutcome::Clipped { level, voxels: changed });
                for (c, v) in clipped.iter().zip(&values) {
                    prop_assert_eq!(*c, v.min(level));
                }
            }
            None => {
                prop_assert_eq!(outcome, ClipOutcome::Unclipped);
                prop_assert_eq!(&clipped, &values);
            }
        }
    }

    #[test]
    fn the_one_pass_clip_and_zscore_equals_the_two_steps(values in volume(), min_voxels in 1usize..6) {
        let mut two_steps = values.clone();
        let clipped = clip_upper_tail(&mut two_steps, min_voxels);
        let mut mask_two = vec![false; values.len()];
        let background = two_steps[0];
        let any = zscore_foreground(&mut two_steps, background, &mut mask_two).is_some();
        let mut fused = values.clone();
        let mut mask_fused = vec![false; values.len()];
        let outcome = clip_and_normalise(&mut fused, min_voxels, &mut mask_fused).map(|(o, _)| o);
        prop_assert_eq!(outcome.is_some(), any);
        if let Some(outcome) = outcome {
            prop_assert_eq!(outcome, clipped);
            prop_assert_eq!(&mask_fused, &mask_two);
            for (a, b) in fused.iter().zip(&two_steps) {
                prop_assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{} vs {}", a, b);
            }
        }
    }

    #[test]
    fn zscore_gives_zero_mean_unit_variance_over_the_foreground(values in volume()) {
        let mut z = values.clone();
        let mut foreground = vec![false; values.len()];
        let any = zscore_foreground(&mut z, values[0], &mut foreground).is_some();
        let fg: Vec<f64> = z.iter().zip(&foreground).filter(|(_, &f)| f).map(|(&v, _)| f64::from(v)).collect();
        prop_assert_eq!(any, !fg.is_empty());
        for ((v, f), o) in z.iter().zip(&foreground).zip(&values) {
            prop_assert_eq!(*f, *o != values[0]);
            if !f {
                prop_assert_eq!(*v, 0.0);
            }
        }
        if fg.len() > 1 {
            let n = fg.len() as f64;
            let mean = fg.iter().sum::<f64>() / n;
            let var = fg.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            prop_assert!(mean.abs() < 1e-4, "mean {}", mean);
            let constant = values.iter().zip(&foreground).filter(|(_, &f)| f).all(|(v, _)| *v == values[1.min(values.len() - 1)]);
            prop_assert!(constant || (var - 1.0).abs() < 1e-3, "var {}", var);
        }
    }

    #[test]
    fn cropping_keeps_every_foreground_voxel_and_maps_back(
        dims in (1usize..9, 1usize..9, 1usize..9),
        marks in prop::collection::vec((0usize..64, 0usize..64, 0usize..64), 0..6),
    ) {
        let (nx, ny, nz) = dims;
        let mut mask = vec![false; nx * ny * nz];
        for (x, y, z) in &marks {
            mask[(z % nz * ny + y % ny) * nx + x % nx] = true;
        }
        let values: Vec<u32> = (0..mask.len() as u32).collect();
        match bounding_box_zxy(&mask, [nx, ny, nz]) {
            None => prop_assert!(marks.is_empty()),
            Some((lo, hi)) => {
                // The box is the tightest one holding every marked voxel.
                for (x, y, z) in &marks {
                    let p = [z % nz, x % nx, y % ny];
                    for a in 0..3 {
                        prop_assert!(lo[a] <= p[a] && p[a] < hi[a]);
                    }
                }
                for a in 0..3 {
                    let coord = |(x, y, z): &(usize, usize, usize)| [z % nz, x % nx, y % ny][a];
                    prop_assert_eq!(lo[a], marks.iter().map(coord).min().unwrap());
                    prop_assert_eq!(hi[a], marks.iter().map(coord).max().unwrap() + 1);
                }
                let mut out = Vec::new();
                crop_to_zxy(&values, [nx, ny, nz], lo, hi, &mut out);
                let (h, w) = (hi[1] - lo[1], hi[2] - lo[2]);
                prop_assert_eq!(out.len(), (hi[0] - lo[0]) * h * w);
                for (i, &v) in out.iter().enumerate() {
                    let (z, x, y) = (lo[0] + i / (h * w), lo[1] + (i / w) % h, lo[2] + i % w);
                    prop_assert_eq!(v as usize, (z * ny + y) * nx + x);
                }
            }
        }
    }
}
