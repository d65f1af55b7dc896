//! The cached sweep (encoder once per tile and modality, zero-image features for the missing
//! ones) equals the naive evaluation (one full forward pass per subset with the missing channels
//! zeroed) exactly, for all 15 subsets, both tile weightings and both ways of filling skips; the
//! whole-volume window predicts the original grid.

mod common;

use candle_core::Device;
use metakd_data::shards::ShardSet;
use metakd_experiments::eval::inference::{tile_weights, zero_features, Inference};
use metakd_experiments::run::config::{EvalConfig, EvalWindow, TileWeighting};
use metakd_experiments::run::model::Model;
use metakd_model::method::Subset;
use metakd_model::nets::{FillSkips, SegmenterConfig};

#[test]
fn cached_subset_predictions_equal_naive_ones_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let shards = ShardSet::open(&common::synthetic_shards(dir.path(), 1, 11)).unwrap();
    let case = shards.read_cases(|_| true).unwrap().remove(0);
    let device = Device::Cpu;
    // A tile smaller than the case, so that tiles overlap and the averaging is exercised.
    let tile = [16, 16, 16];
    let subsets = Subset::all(4);
    for fill_skips in [FillSkips::Zero, FillSkips::Mean] {
        let cfg = SegmenterConfig {
            fill_skips,
            ..SegmenterConfig::small()
        };
        let model = Model::new(&cfg, 5, &device).unwrap();
        let zero = zero_features(&model, tile, &device).unwrap();
        for weighting in [TileWeighting::Uniform, TileWeighting::Gaussian] {
            let eval = EvalConfig {
                weighting,
                ..EvalConfig::default()
            };
            let inference = Inference {
                model: &model,
                tile,
                eval: &eval,
                device: &device,
            };
            let cached = inference.predict(&case, &subsets, &zero).unwrap();
            let naive = inference.predict_naive(&case, &subsets).unwrap();
            assert_eq!(cached.len(), 15);
            for (k, (c, n)) in cached.iter().zip(&naive).enumerate() {
                assert_eq!(c.len(), 3 * case.voxels());
                let differing = c.iter().zip(n).filter(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(
                    differing.count(),
                    0,
                    "subset {} ({fill_skips:?}, {weighting:?})",
                    subsets[k].name(&metakd_data::Modality::DISPLAY_NAMES)
                );
            }
            // Subsets do differ from each other: the comparison is not between constants.
            assert_ne!(cached[0], cached[14]);
            // Tiles run one at a time, or three together, give the probabilities of the default
            // batches of two up to float rounding (batched products sum in another order; the
            // differences seen are about 1e-6).
            for tile_batch in [1, 3] {
                let eval = EvalConfig {
                    tile_batch,
                    ..eval.clone()
                };
                let batched = Inference {
                    eval: &eval,
                    ..inference
                }
                .predict(&case, &subsets, &zero)
                .unwrap();
                let worst = batched
                    .iter()
                    .flatten()
                    .zip(cached.iter().flatten())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "tile_batch {tile_batch} moves a probability by {worst} ({fill_skips:?}, \
                     {weighting:?})"
                );
            }
        }
        // Metrics come out for every subset and region, within their ranges.
        let inference = Inference {
            model: &model,
            tile,
            eval: &EvalConfig::default(),
            device: &device,
        };
        let scores = inference.evaluate(&case, &subsets, &zero).unwrap();
        assert_eq!(scores.len(), 15);
        assert!(scores.iter().all(|s| s.postprocessed.is_none()));
        for region in scores.iter().flat_map(|s| s.raw.iter()) {
            assert!((0.0..=1.0).contains(&region.dice));
            assert!(region.hd95 >= 0.0 && region.hd95 <= 373.13);
            assert!((0.0..=1.0).contains(&region.specificity));
        }
    }
}

#[test]
fn gaussian_tile_weights_peak_at_the_centre_and_stay_positive() {
    let w = tile_weights([8, 8, 8], TileWeighting::Gaussian);
    let at = |z: usize, y: usize, x: usize| w[(z * 8 + y) * 8 + x];
    assert!((at(3, 3, 3) - 1.0).abs() < 1e-6 && (at(4, 4, 4) - 1.0).abs() < 1e-6);
    assert!(at(0, 0, 0) > 0.0 && at(0, 0, 0) < at(1, 1, 1));
    // σ = 1 voxel and the centre at 3.5: from 0.5 to 1.5 voxels away scales by exp(−(1.5² − 0.5²)/2).
    assert!((at(3, 3, 2) / at(3, 3, 3) - (-1.0f32).exp()).abs() < 1e-5);
    assert!(tile_weights([4, 4, 4], TileWeighting::Uniform)
        .iter()
        .all(|&v| v == 1.0));
}

#[test]
fn the_whole_volume_window_covers_the_original_grid() {
    let dir = tempfile::tempdir().unwrap();
    let shards = ShardSet::open(&common::synthetic_shards(dir.path(), 1, 12)).unwrap();
    let case = shards.read_cases(|_| true).unwrap().remove(0);
    assert_ne!(
        case.shape, case.original_shape,
        "the case is stored as its brain box"
    );
    let device = Device::Cpu;
    let tile = [16, 16, 16];
    let model = Model::new(&SegmenterConfig::small(), 5, &device).unwrap();
    let zero = zero_features(&model, tile, &device).unwrap();
    let eval = EvalConfig::default();
    assert_eq!(eval.window, EvalWindow::WholeVolume);
    let inference = Inference {
        model: &model,
        tile,
        eval: &eval,
        device: &device,
    };
    let full = Subset::all(4)[14];
    let boxed = inference.predict(&case, &[full], &zero).unwrap().remove(0);
    let whole_case = EvalWindow::WholeVolume.place(case.clone());
    let whole = inference
        .predict(&whole_case, &[full], &zero)
        .unwrap()
        .remove(0);
    let voxels: usize = case.original_shape.iter().product();
    assert_eq!(whole.len(), 3 * voxels);
    assert_eq!(boxed.len(), 3 * case.voxels());
    // The whole grid is predicted, outside the box too: there the network sees a zero image,
    // whose response is not background-certain.
    let [_, h, w] = case.original_shape;
    let [oz, oy, ox] = case.crop_offset;
    let [bd, bh, bw] = case.shape;
    let outside: Vec<f32> = (0..voxels)
        .filter(|&v| {
            let (z, y, x) = (v / (h * w), (v / w) % h, v % w);
            !((oz..oz + bd).contains(&z)
                && (oy..oy + bh).contains(&y)
                && (ox..ox + bw).contains(&x))
        })
        .map(|v| whole[v])
        .collect();
    assert!(!outside.is_empty());
    assert!(outside.iter().all(|p| *p > 0.0 && *p < 1.0));
    // The brain box keeps the old behaviour: the case as stored.
    let kept = EvalWindow::BrainBox.place(case.clone());
    assert_eq!(kept, case);
}
