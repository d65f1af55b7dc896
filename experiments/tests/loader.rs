//! Crops cut in place from memory-mapped shards equal crops of the case read into memory, the
//! foreground index keeps only foreground, and background batches do not depend on the number of
//! threads or on where a run starts.

use std::sync::Arc;

mod common;

use metakd_data::shards::ShardSet;
use metakd_experiments::batches::augment::AugmentConfig;
use metakd_experiments::batches::loader::{BatchLoader, BatchPlan, CaseSet};
use metakd_experiments::batches::sampler::{
    extract, extract_resampled, CropSampler, ForegroundIndex, VoxelSource, FOREGROUND_SAMPLES,
    OUTPUT_REGIONS,
};

fn shards(dir: &std::path::Path) -> ShardSet {
    ShardSet::open(&common::synthetic_shards(dir, 3, 4)).unwrap()
}

#[test]
fn crops_from_the_memory_map_equal_crops_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let id = shards.manifest().cases[0].id.clone();
    let view = shards.case(&id).unwrap();
    let memory = view.to_prepared().unwrap();
    let shape = VoxelSource::shape(&view);
    // Inside, at a corner, reaching past the far border, flipped, scaled up and down.
    let starts = [
        [2, 3, 4],
        [0, 0, 0],
        [shape[0] - 5, shape[1] - 3, shape[2] - 7],
    ];
    for start in starts {
        for flip in [[false; 3], [true, false, true]] {
            let a = extract(&view, start, [8, 8, 8], flip).unwrap();
            let b = extract(&memory, start, [8, 8, 8], flip).unwrap();
            assert_eq!(a.images, b.images);
            assert_eq!(a.targets, b.targets);
            for source in [[7, 9, 8], [10, 10, 10]] {
                let a = extract_resampled(&view, start, source, [8, 8, 8], flip).unwrap();
                let b = extract_resampled(&memory, start, source, [8, 8, 8], flip).unwrap();
                assert_eq!(a.images, b.images);
                assert_eq!(a.targets, b.targets);
            }
        }
    }
    // Outside the volume everything is zero.
    let far = extract(&view, shape, [4, 4, 4], [false; 3]).unwrap();
    assert!(far.images.iter().chain(&far.targets).all(|&v| v == 0.0));
}

#[test]
fn the_foreground_index_holds_region_voxels_and_at_most_its_sample_size() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let mut case = shards
        .case(&shards.manifest().cases[0].id)
        .unwrap()
        .to_prepared()
        .unwrap();
    // Enlarge the tumour so one region exceeds the sample size.
    let voxels = case.regions.len();
    assert!(voxels > FOREGROUND_SAMPLES + 1000);
    for r in case.regions.iter_mut().take(FOREGROUND_SAMPLES + 1000) {
        *r |= OUTPUT_REGIONS[1];
    }
    let index = ForegroundIndex::of(&case, 7).unwrap();
    let sizes = index.region_sizes();
    assert_eq!(sizes[1], FOREGROUND_SAMPLES);
    for (c, &bit) in OUTPUT_REGIONS.iter().enumerate() {
        let in_region = case.regions.iter().filter(|&&r| r & bit != 0).count();
        assert_eq!(sizes[c], in_region.min(FOREGROUND_SAMPLES), "region {c}");
        assert!(index
            .voxels(c)
            .iter()
            .all(|&i| case.regions[i as usize] & bit != 0));
    }
    // Foreground-centred crops always hold foreground.
    let sampler = CropSampler::new([8, 8, 8], 1.0, false, None);
    let mut rng = <rand_chacha::ChaCha12Rng as rand::SeedableRng>::seed_from_u64(1);
    for _ in 0..20 {
        let crop = sampler.sample(&case, &index, &mut rng).unwrap();
        assert!(crop.targets.iter().any(|&t| t > 0.0));
    }
}

#[test]
fn background_batches_are_the_same_for_any_thread_count_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let ids: Vec<String> = shards
        .manifest()
        .cases
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let plan = BatchPlan {
        cases: Arc::new(CaseSet::open(&shards, &ids).unwrap()),
        sampler: CropSampler::new([8, 16, 16], 0.5, true, Some(AugmentConfig::default())),
        augment: AugmentConfig::default(),
        batch_size: 2,
        crop: [8, 16, 16],
        seed: 5,
    };
    let device = candle_core::Device::Cpu;
    let take = |threads: usize, first: usize, n: usize| -> Vec<Vec<f32>> {
        let mut loader = BatchLoader::start(plan.clone(), first, threads, 3);
        (0..n)
            .map(|_| {
                let (x, _) = loader.next_batch().unwrap().into_tensors(&device).unwrap();
                x.flatten_all().unwrap().to_vec1().unwrap()
            })
            .collect()
    };
    let one = take(1, 0, 8);
    assert_eq!(one, take(3, 0, 8));
    assert_eq!(&one[5..], &take(2, 5, 3)[..]);
    assert_ne!(one[0], one[1], "consecutive batches differ");
    let direct: Vec<f32> = plan
        .batch(4)
        .unwrap()
        .into_tensors(&device)
        .unwrap()
        .0
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(one[4], direct);
}
