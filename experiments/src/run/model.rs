//! Building the network of a run and saving or loading its parameters: one safetensors file
//! holding every network parameter by its hierarchical name (`encoder.levels.0.0.conv.weight`,
//! ...) and the importance logits (`importance.logits`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use metakd_model::method::ImportanceWeights;
use metakd_model::nets::{init::reinitialize_seeded, MetaKdSegmenter, SegmenterConfig};

/// Name of the importance logits inside a checkpoint.
pub const IMPORTANCE_KEY: &str = "importance.logits";

/// A network with its parameters and importance weights.
pub struct Model {
    /// The network.
    pub net: MetaKdSegmenter,
    /// Its trainable parameters.
    pub varmap: VarMap,
    /// The importance logits w.
    pub importance: ImportanceWeights,
}

impl Model {
    /// A freshly initialised model, repeatable for a given seed.
    pub fn new(cfg: &SegmenterConfig, seed: u64, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let net = MetaKdSegmenter::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        reinitialize_seeded(&varmap, seed)?;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed);
        let logits: Vec<f32> = (0..cfg.modalities)
            .map(|_| rand::Rng::random_range(&mut rng, 0.0f32..1.0))
            .collect();
        let importance = ImportanceWeights::from_logits(&logits, device)?;
        Ok(Self {
            net,
            varmap,
            importance,
        })
    }

    /// Number of trainable network parameters (the importance logits not included).
    pub fn parameter_count(&self) -> usize {
        self.varmap
            .data()
            .lock()
            .expect("the var map lock is not poisoned")
            .values()
            .map(|v| v.elem_count())
            .sum()
    }

    /// Loads a model saved by [`Model::save`].
    pub fn load(path: &Path, cfg: &SegmenterConfig, device: &Device) -> Result<Self> {
        metakd_data::digest::verify(
            path,
            "restore it from a copy, or train the run again into a fresh `--out`",
        )?;
        let mut model = Self::new(cfg, 0, device)?;
        model
            .varmap
            .load(path)
            .with_context(|| format!("{}: cannot load the model", path.display()))?;
        let tensors = candle_core::safetensors::load(path, device)
            .with_context(|| format!("{}: cannot load the model", path.display()))?;
        let logits = tensors
            .get(IMPORTANCE_KEY)
            .with_context(|| format!("{}: no `{IMPORTANCE_KEY}`", path.display()))?;
        model.importance = ImportanceWeights::from_logits(&logits.to_vec1::<f32>()?, device)?;
        Ok(model)
    }

    /// Every parameter and the importance logits, by name.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut tensors: HashMap<String, Tensor> = self
            .varmap
            .data()
            .lock()
            .expect("the var map lock is not poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        tensors.insert(
            IMPORTANCE_KEY.to_owned(),
            self.importance.logits().as_tensor().clone(),
        );
        tensors
    }

    /// Saves every parameter and the importance logits to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_tensors(&self.tensors(), path)
    }
}

/// Writes `tensors` as a safetensors file at `path`, through a temporary file and a rename,
/// with its BLAKE3 digest beside it ([`metakd_data::digest`]).
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    metakd_data::digest::write_with_digest(path, |temp| {
        candle_core::safetensors::save(tensors, temp)
            .with_context(|| format!("{}: cannot write", temp.display()))
    })
}
