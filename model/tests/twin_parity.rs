//! The `small` and `reference` networks against their PyTorch twin (`tools/metakd_twin.py`, built
//! from the method spec): the same parameter names and shapes, and from the twin's random weights
//! and batch the same fused bottleneck features and logits with a missing modality, the same
//! distillation loss and the same loss and gradient of the importance logits w in a meta step of
//! each stage (stage 1: all modalities; stage 2: a subset, missing inputs zeroed, no fill), with
//! the reference's per-sample Dice (and the pooled Dice's value).

mod common;

use common::assert_close;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use metakd_model::losses::{segmentation_loss, DiceReduction};
use metakd_model::method::{
    fill_missing, pairwise_kd_loss, ImportanceWeights, KdDistance, KdPairs, TaskLoss,
};
use metakd_model::nets::{MetaKdSegmenter, SegmenterConfig};
use serde_json::Value;

struct Case {
    name: String,
    config: SegmenterConfig,
    available: Vec<bool>,
    meta_available: Vec<bool>,
    parameters: usize,
    tensors: HashMap<String, Tensor>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("twin.json")).unwrap()).unwrap();
    manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let file = case["file"].as_str().unwrap();
            Case {
                name: file.to_owned(),
                config: serde_json::from_value(case["model"].clone()).unwrap(),
                available: serde_json::from_value(case["available"].clone()).unwrap(),
                meta_available: serde_json::from_value(case["meta_available"].clone()).unwrap(),
                parameters: case["parameters"].as_u64().unwrap() as usize,
                tensors: candle_core::safetensors::load(dir.join(file), &Device::Cpu).unwrap(),
            }
        })
        .collect()
}

#[test]
fn parameter_names_and_shapes_match_the_pytorch_twin() {
    for case in cases() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        MetaKdSegmenter::new(&case.config, vb).unwrap();
        let ours: HashMap<String, Vec<usize>> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(name, var)| (name.clone(), var.dims().to_vec()))
            .collect();
        let theirs: HashMap<String, Vec<usize>> = case
            .tensors
            .iter()
            .filter(|(name, _)| !name.starts_with("parity."))
            .map(|(name, t)| (name.clone(), t.dims().to_vec()))
            .collect();
        assert_eq!(ours, theirs, "{}", case.name);
        let count: usize = ours.values().map(|d| d.iter().product::<usize>()).sum();
        assert_eq!(count, case.parameters, "{}", case.name);
    }
}

#[test]
fn forward_kd_and_meta_gradient_match_the_pytorch_twin() {
    for case in cases() {
        let t = |name: &str| case.tensors[&format!("parity.{name}")].clone();
        let vb = VarBuilder::from_tensors(case.tensors.clone(), DType::F32, &Device::Cpu);
        let net = MetaKdSegmenter::new(&case.config, vb).unwrap();
        let (x, target) = (t("x"), t("target"));
        let w: Vec<f32> = t("w").to_vec1().unwrap();

        let masked = |available: &[bool]| {
            let mask: Vec<f32> = available.iter().map(|&a| f32::from(u8::from(a))).collect();
            let mask = Tensor::from_vec(mask, (1, 4, 1, 1, 1), &Device::Cpu).unwrap();
            x.broadcast_mul(&mask).unwrap()
        };
        let features = net.encode(&masked(&case.available)).unwrap();
        let filled = fill_missing(&features.bottleneck, &case.available).unwrap();
        // [n, m, c, d, h, w] → the channel concatenation [n, m·c, d, h, w] of the twin.
        let mut fused_dims = filled.dims().to_vec();
        fused_dims[1] *= fused_dims.remove(2);
        let what = |part: &str| format!("{}: {part}", case.name);
        assert_close(
            &filled.reshape(fused_dims).unwrap(),
            &t("fused"),
            &what("fused features"),
        );
        let logits = net.decode(&features, &case.available).unwrap();
        assert_close(&logits, &t("logits"), &what("logits"));
        let kd = pairwise_kd_loss(
            &features.modality_bottlenecks().unwrap(),
            &case.available,
            &w,
            KdDistance::L1,
            KdPairs::All,
        )
        .unwrap();
        assert_close(&kd, &t("kd"), &what("distillation loss"));

        let importance = ImportanceWeights::from_logits(&w, &Device::Cpu).unwrap();
        let all = net.encode(&x).unwrap().detach();
        let meta_logits = net
            .decode_weighted(&all, &importance.omega().unwrap())
            .unwrap();
        let meta_loss = segmentation_loss(&meta_logits, &target, DiceReduction::PerSample)
            .unwrap()
            .total()
            .unwrap();
        assert_close(&meta_loss, &t("meta_loss"), &what("meta loss"));
        let pooled = segmentation_loss(&meta_logits, &target, DiceReduction::Pooled)
            .unwrap()
            .total()
            .unwrap();
        assert_close(
            &pooled,
            &t("meta_loss_pooled"),
            &what("meta loss, pooled Dice"),
        );
        let grads = meta_loss.backward().unwrap();
        let w_grad = grads.get(importance.logits()).unwrap();
        assert_close(w_grad, &t("w_grad"), &what("gradient of w"));

        let importance = ImportanceWeights::from_logits(&w, &Device::Cpu).unwrap();
        let partial = net.encode(&masked(&case.meta_available)).unwrap().detach();
        let missing_logits = net
            .decode_weighted(&partial, &importance.omega().unwrap())
            .unwrap();
        let missing_loss = segmentation_loss(&missing_logits, &target, DiceReduction::PerSample)
            .unwrap()
            .total()
            .unwrap();
        assert_close(
            &missing_loss,
            &t("missing_meta_loss"),
            &what("stage-2 meta loss"),
        );
        let grads = missing_loss.backward().unwrap();
        let w_grad = grads.get(importance.logits()).unwrap();
        assert_close(w_grad, &t("missing_w_grad"), &what("stage-2 gradient of w"));
    }
}

#[test]
fn the_reference_preset_has_the_reference_size() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    MetaKdSegmenter::new(&SegmenterConfig::reference(), vb).unwrap();
    let count: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    // The PyTorch twin of the full reference network has 43,656,672 parameters (no classifier
    // bias).
    assert_eq!(count, 43_656_672);
}
