//! The `lookahead` meta gradient against central differences of the bilevel objective
//! F(w) = L_val(θ − α ∇θ L_train(θ, w)) computed by brute force.

use candle_core::{Device, Tensor};
use metakd_experiments::run::checkpoint::named_vars;
use metakd_experiments::run::config::TrainConfig;
use metakd_experiments::run::model::Model;
use metakd_experiments::train::step::SegmentationTask;
use metakd_model::losses::segmentation_loss;
use metakd_model::method::{lookahead_gradient, pairwise_kd_loss, TaskLoss};
use metakd_model::nets::SegmenterConfig;
use rand::{rngs::StdRng, Rng, SeedableRng};

const AVAILABLE: [bool; 4] = [true, true, false, true];
/// A small virtual step keeps F(w) smooth around w (a large one crosses LeakyReLU and L1 kinks).
const ALPHA: f64 = 0.01;

fn batch(seed: u64) -> (Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = 4 * 8 * 8 * 8;
    let x: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let y: Vec<f32> = (0..3 * 8 * 8 * 8)
        .map(|_| f32::from(u8::from(rng.random_bool(0.3))))
        .collect();
    (
        Tensor::from_vec(x, (1, 4, 8, 8, 8), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, (1, 3, 8, 8, 8), &Device::Cpu).unwrap(),
    )
}

fn model() -> Model {
    let mut cfg = SegmenterConfig::small();
    cfg.small.widths = vec![3, 4];
    Model::new(&cfg, 3, &Device::Cpu).unwrap()
}

fn train_config() -> TrainConfig {
    TrainConfig {
        kd_weight: 1.0,
        ..TrainConfig::default()
    }
}

/// F(w): one plain SGD step of size α on the training loss with importance logits `w`, then the
/// validation loss; the parameters are restored afterwards.
fn bilevel_objective(
    model: &Model,
    w: &[f32],
    train: &(Tensor, Tensor),
    val: &(Tensor, Tensor),
) -> f64 {
    let t = train_config();
    let vars: Vec<_> = named_vars(model).into_iter().map(|(_, v)| v).collect();
    let saved: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect();
    let mask = Tensor::from_vec(
        AVAILABLE.map(|a| f32::from(u8::from(a))).to_vec(),
        (1, 4, 1, 1, 1),
        &Device::Cpu,
    )
    .unwrap();
    let x = train.0.broadcast_mul(&mask).unwrap();
    let features = model.net.encode(&x).unwrap();
    let kd = pairwise_kd_loss(
        &features.modality_bottlenecks().unwrap(),
        &AVAILABLE,
        w,
        t.kd_distance,
        t.kd_pairs,
    )
    .unwrap();
    let logits = model.net.decode(&features, &AVAILABLE).unwrap();
    let loss = (segmentation_loss(&logits, &train.1, t.dice)
        .unwrap()
        .total()
        .unwrap()
        + (kd * t.kd_weight).unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    for v in &vars {
        if let Some(g) = grads.get(v) {
            v.set(&(v.as_tensor() - (g * ALPHA).unwrap()).unwrap())
                .unwrap();
        }
    }
    let val_features = model.net.encode(&val.0).unwrap();
    let val_logits = model.net.decode(&val_features, &[true; 4]).unwrap();
    let value = segmentation_loss(&val_logits, &val.1, t.dice)
        .unwrap()
        .total()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    for (v, s) in vars.iter().zip(&saved) {
        v.set(s).unwrap();
    }
    f64::from(value)
}

#[test]
fn lookahead_gradient_matches_central_differences_of_the_bilevel_objective() {
    let model = model();
    let train = batch(11);
    let val = batch(12);
    let before: Vec<Vec<f32>> = named_vars(&model)
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();

    let t = train_config();
    let got: Vec<f32> = lookahead_gradient(
        &SegmentationTask::new(&model, &t),
        &model.importance,
        ((&train.0, &train.1), &AVAILABLE),
        (&val.0, &val.1),
        &t.kd_settings(),
        ALPHA,
    )
    .unwrap()
    .to_vec1()
    .unwrap();

    let after: Vec<Vec<f32>> = named_vars(&model)
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    assert_eq!(before, after, "the network must be left as it was");

    let w = model.importance.logit_values().unwrap();
    let h = 0.1f32;
    let mut want = [0.0f64; 4];
    for k in 0..4 {
        let (mut plus, mut minus) = (w.clone(), w.clone());
        plus[k] += h;
        minus[k] -= h;
        want[k] = (bilevel_objective(&model, &plus, &train, &val)
            - bilevel_objective(&model, &minus, &train, &val))
            / (2.0 * f64::from(h));
    }
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 1e-5, "the objective must depend on w: {want:?}");
    // The missing modality has no distillation pairs, so no gradient.
    assert_eq!(got[2], 0.0);
    for k in 0..4 {
        let err = (f64::from(got[k]) - want[k]).abs();
        assert!(
            err <= 0.05 * scale,
            "component {k}: lookahead {got:?} vs central differences {want:?}"
        );
    }
}
