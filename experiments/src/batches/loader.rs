//! Training batches cut from the memory-mapped shards on background threads.
//!
//! Each case is opened in place ([`CaseView`]) and its foreground indexed once; a crop reads only
//! the rows of its box. The batch of iteration i is drawn from its own generator (the run's seed,
//! stream i), so batches do not depend on which thread made them or when, and a resumed run
//! draws the batches an uninterrupted run would have. Workers run ahead of training by a bounded
//! number of batches; the time training spends waiting for them is measured.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use candle_core::{Device, Tensor};
use metakd_data::shards::{CaseView, ShardSet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::batches::augment::AugmentConfig;
use crate::batches::sampler::{CropSampler, ForegroundIndex};

/// Mixed into the run's seed for the per-batch generators, so they differ from the run's main
/// generator.
const BATCH_STREAM_SALT: u64 = 0x00ba_7c4e_50fc_20b5;

/// Cases opened in their shards for cropping.
pub struct CaseSet {
    cases: Vec<(CaseView, ForegroundIndex)>,
}

impl CaseSet {
    /// Opens the cases `ids` of `shards` and indexes their foreground.
    pub fn open(shards: &ShardSet, ids: &[String]) -> Result<Self> {
        let cases = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let view = shards.case(id)?;
                let foreground = ForegroundIndex::of(&view, i as u64)
                    .with_context(|| format!("case {id}: cannot index its foreground"))?;
                Ok((view, foreground))
            })
            .collect::<Result<_>>()?;
        Ok(Self { cases })
    }

    /// Number of cases.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// `n` crops of random cases, each augmented by `augment` when given.
    pub fn batch(
        &self,
        sampler: &CropSampler,
        augment: Option<&AugmentConfig>,
        n: usize,
        crop: [usize; 3],
        rng: &mut impl Rng,
    ) -> Result<Batch> {
        let (mut images, mut targets) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (case, foreground) = &self.cases[rng.random_range(0..self.cases.len())];
            let mut c = sampler.sample(case, foreground, rng)?;
            if let Some(augment) = augment {
                augment.augment_crop(&mut c.images, &mut c.targets, crop, rng);
            }
            images.extend(c.images);
            targets.extend(c.targets);
        }
        Ok(Batch {
            n,
            crop,
            images,
            targets,
        })
    }
}

/// A batch of crops: images `[n, 4, d, h, w]` and targets `[n, 3, d, h, w]`, flattened.
#[derive(Debug, Clone)]
pub struct Batch {
    n: usize,
    crop: [usize; 3],
    images: Vec<f32>,
    targets: Vec<f32>,
}

impl Batch {
    /// The batch as tensors (images, targets).
    pub fn into_tensors(self, device: &Device) -> Result<(Tensor, Tensor)> {
        let [d, h, w] = self.crop;
        Ok((
            Tensor::from_vec(self.images, (self.n, 4, d, h, w), device)?,
            Tensor::from_vec(self.targets, (self.n, 3, d, h, w), device)?,
        ))
    }
}

/// How the background workers cut batches.
#[derive(Clone)]
pub struct BatchPlan {
    /// The cases.
    pub cases: Arc<CaseSet>,
    /// Crop placement and scaling.
    pub sampler: CropSampler,
    /// Intensity augmentation.
    pub augment: AugmentConfig,
    /// Crops per batch.
    pub batch_size: usize,
    /// Crop extents.
    pub crop: [usize; 3],
    /// The run's seed.
    pub seed: u64,
}

impl BatchPlan {
    /// The batch of iteration `index`, from its own generator.
    pub fn batch(&self, index: usize) -> Result<Batch> {
        let mut rng = ChaCha12Rng::seed_from_u64(self.seed ^ BATCH_STREAM_SALT);
        rng.set_stream(index as u64);
        self.cases.batch(
            &self.sampler,
            Some(&self.augment),
            self.batch_size,
            self.crop,
            &mut rng,
        )
    }
}

/// Background workers producing the batches of consecutive iterations.
pub struct BatchLoader {
    receiver: Option<Receiver<(usize, Result<Batch>)>>,
    arrived: BTreeMap<usize, Result<Batch>>,
    next: usize,
    waited: Duration,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl BatchLoader {
    /// Starts `threads` workers on the batches of iterations `first, first + 1, …`, at most
    /// `ahead` finished batches waiting to be taken.
    pub fn start(plan: BatchPlan, first: usize, threads: usize, ahead: usize) -> Self {
        let (sender, receiver) = sync_channel(ahead.max(1));
        let counter = Arc::new(AtomicUsize::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..threads.max(1))
            .map(|_| {
                let (plan, sender) = (plan.clone(), sender.clone());
                let (counter, stop) = (counter.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let index = counter.fetch_add(1, Ordering::Relaxed);
                        if sender.send((index, plan.batch(index))).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Self {
            receiver: Some(receiver),
            arrived: BTreeMap::new(),
            next: first,
            waited: Duration::ZERO,
            stop,
            workers,
        }
    }

    /// The next iteration's batch, waiting for it if it is not ready.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let receiver = self.receiver.as_ref().expect("the loader is running");
        while !self.arrived.contains_key(&self.next) {
            let started = Instant::now();
            let (index, batch) = receiver
                .recv()
                .map_err(|_| anyhow!("the batch workers stopped"))?;
            self.waited += started.elapsed();
            self.arrived.insert(index, batch);
        }
        let batch = self.arrived.remove(&self.next).expect("present");
        self.next += 1;
        batch
    }

    /// Total time spent waiting for batches.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver wakes workers blocked on a full queue.
        self.receiver = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
