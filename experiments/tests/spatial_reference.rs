//! The spatial transform against batchgenerators' own functions (`tools/spatial_reference.py`):
//! with the same draws (elastic α, σ and noise fields, angles, scale, the patch centre), the
//! resampled images match within float32 rounding and the resampled region masks voxel for voxel;
//! and the random draws have the reference's rates and ranges.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use metakd_experiments::batches::augment::spatial::{Elastic, SpatialDraw};
use metakd_experiments::batches::augment::AugmentConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde_json::Value;

fn fixtures() -> (HashMap<String, Tensor>, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tensors =
        candle_core::safetensors::load(dir.join("spatial.safetensors"), &Device::Cpu).unwrap();
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("spatial.json")).unwrap()).unwrap();
    (tensors, json)
}

fn values<T: candle_core::WithDType>(t: &Tensor) -> Vec<T> {
    t.flatten_all().unwrap().to_vec1::<T>().unwrap()
}

#[test]
fn resampling_matches_batchgenerators() {
    let (tensors, json) = fixtures();
    for case in json["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let get = |part: &str| &tensors[&format!("{name}.{part}")];
        let patch: [usize; 3] = serde_json::from_value(case["patch"].clone()).unwrap();
        let voxels: usize = patch.iter().product();
        let fields: Vec<f64> = values(&get("fields").to_dtype(DType::F64).unwrap());
        let elastic = case["elastic"].as_array().map(|e| Elastic {
            alpha: e[0].as_f64().unwrap(),
            sigma: e[1].as_f64().unwrap(),
            fields: std::array::from_fn(|a| fields[a * voxels..(a + 1) * voxels].to_vec()),
        });
        let angles = case["angles"]
            .as_array()
            .map(|a| std::array::from_fn(|i| a[i].as_f64().unwrap().to_radians()));
        let draw = SpatialDraw {
            elastic,
            angles,
            scale: case["scale"].as_f64(),
            centre: serde_json::from_value(case["centre"].clone()).unwrap(),
        };
        let mut images: Vec<f32> = values(get("images"));
        let mut targets: Vec<f32> = values(get("targets"));
        draw.apply(&mut images, &mut targets, patch);
        let want_images: Vec<f32> = values(get("images_out"));
        let scale = want_images.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (v, (a, b)) in images.iter().zip(&want_images).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{name}: voxel {v}: {a} vs {b}"
            );
        }
        let want_targets: Vec<f32> = values(get("targets_out"));
        assert_eq!(targets, want_targets, "{name}: region masks");
        // Not a transform that leaves the crop as it was.
        assert_ne!(images, values::<f32>(get("images")), "{name}");
    }
}

#[test]
fn draws_have_the_reference_rates_and_ranges() {
    // The defaults are the reference's: p 0.2 each, α ∈ [0, 900], σ ∈ [9, 13], ±15°, 0.85–1.25.
    let settings = AugmentConfig::default().spatial_settings();
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    let draws = 20_000;
    let (mut elastic, mut rotated, mut scaled, mut below, mut none) = (0, 0, 0, 0, 0);
    for _ in 0..draws {
        let Some(d) = SpatialDraw::draw(&settings, [2, 2, 2], &mut rng) else {
            none += 1;
            continue;
        };
        if let Some(e) = &d.elastic {
            elastic += 1;
            assert!((0.0..900.0).contains(&e.alpha) && (9.0..13.0).contains(&e.sigma));
            assert!(e.fields.iter().flatten().all(|u| (0.0..1.0).contains(u)));
        }
        if let Some(a) = d.angles {
            rotated += 1;
            assert!(a.iter().all(|a| a.abs() <= 15f64.to_radians()));
        }
        if let Some(s) = d.scale {
            scaled += 1;
            below += usize::from(s < 1.0);
            assert!((0.85..1.25).contains(&s));
        }
        assert_eq!(d.centre, [1.0; 3]);
    }
    let rate = |n: usize| n as f64 / draws as f64;
    // Five standard errors of a rate of 0.2 over 20,000 draws: 0.014.
    for (what, n) in [
        ("elastic", elastic),
        ("rotation", rotated),
        ("scale", scaled),
    ] {
        assert!((rate(n) - 0.2).abs() < 0.014, "{what}: {}", rate(n));
    }
    assert!(
        (rate(none) - 0.512).abs() < 0.018,
        "no transform: {}",
        rate(none)
    );
    assert!(
        (below as f64 / scaled as f64 - 0.5).abs() < 0.04,
        "{below} of {scaled} below 1"
    );
}
