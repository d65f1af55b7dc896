//! Training in bf16 mixed precision (`train.precision = "bf16"`): a step stays close to the f32
//! step from the same weights and batch without equalling it, repeats exactly, inference follows
//! `eval.precision`, and the configuration names the precision.

mod common;

use candle_core::{Device, Tensor};
use metakd_data::shards::ShardSet;
use metakd_experiments::eval::inference::Inference;
use metakd_experiments::run::checkpoint::named_vars;
use metakd_experiments::run::config::{EvalConfig, RunConfig, TrainConfig};
use metakd_experiments::run::model::Model;
use metakd_experiments::train::step::{training_step, StepOutcome};
use metakd_model::method::Subset;
use metakd_model::nets::SegmenterConfig;
use metakd_model::ops::Precision;
use metakd_model::optim::SgdNesterov;

/// Named parameter values.
type Parameters = Vec<(String, Tensor)>;

/// The parameters of a network by name, copied.
fn parameters(model: &Model) -> Parameters {
    named_vars(model)
        .into_iter()
        .map(|(name, v)| (name, v.as_tensor().copy().unwrap()))
        .collect()
}

/// One training step of a small network (seed 7) on a fixed batch: the outcome, the parameters
/// before and after it.
fn one_step(precision: Precision) -> (StepOutcome, Parameters, Parameters) {
    let model = Model::new(&SegmenterConfig::small(), 7, &Device::Cpu).unwrap();
    let (x, y) = fixed_batch([1, 4, 16, 16, 16]);
    let t = TrainConfig {
        precision,
        ..TrainConfig::default()
    };
    let before = parameters(&model);
    let vars = named_vars(&model).into_iter().map(|(_, v)| v).collect();
    let mut sgd = SgdNesterov::new(vars, t.momentum, 0.0);
    let outcome = training_step(&model, &mut sgd, (&x, &y), &[true; 4], &t, t.lr).unwrap();
    (outcome, before, parameters(&model))
}

/// Images `[n, m, d, h, w]` in [-1, 1) and 30 % positive targets `[n, 3, d, h, w]` from fixed
/// formulas.
fn fixed_batch([n, m, d, h, w]: [usize; 5]) -> (Tensor, Tensor) {
    let voxels = n * d * h * w;
    let images: Vec<f32> = (0..voxels * m)
        .map(|i| ((i as f32) * 0.618_034).fract() * 2.0 - 1.0)
        .collect();
    let targets: Vec<f32> = (0..voxels * 3)
        .map(|i| f32::from(u8::from((i * 7919) % 10 < 3)))
        .collect();
    (
        Tensor::from_vec(images, (n, m, d, h, w), &Device::Cpu).unwrap(),
        Tensor::from_vec(targets, (n, 3, d, h, w), &Device::Cpu).unwrap(),
    )
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

#[test]
fn a_bf16_step_stays_close_to_the_f32_step_without_equalling_it() {
    let (exact, initial, exact_params) = one_step(Precision::F32);
    let (mixed, _, mixed_params) = one_step(Precision::Bf16);

    let loss_change = (mixed.loss - exact.loss).abs() / exact.loss;
    assert!(
        loss_change > 0.0 && loss_change < 1e-2,
        "loss {} in bf16 vs {} in f32",
        mixed.loss,
        exact.loss
    );
    let logits_change = max_abs(&(&mixed.logits - &exact.logits).unwrap()) / max_abs(&exact.logits);
    assert!(
        logits_change > 1e-4 && logits_change < 5e-2,
        "logits differ by {logits_change:e} of their largest magnitude"
    );
    // The update itself. At initialisation the gradients of the deeper layers are sensitive:
    // rounding only the images to bf16 moves a f32 update by about 10 % of its norm, and
    // rounding every convolution's operands compounds through the instance norms towards the
    // input. The classifier, next to the loss, shows the rounding alone.
    let sq = |t: &Tensor| -> f64 {
        f64::from(
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        )
    };
    assert!(initial
        .iter()
        .any(|(n, _)| n == "decoder.classifier.weight"));
    let (mut moved, mut disagreement) = (0.0f64, 0.0f64);
    for (((name, start), (_, e)), (_, m)) in initial.iter().zip(&exact_params).zip(&mixed_params) {
        let step_exact = (e - start).unwrap();
        let difference = sq(&(&(m - start).unwrap() - &step_exact).unwrap());
        if name == "decoder.classifier.weight" {
            let relative = (difference / sq(&step_exact)).sqrt();
            assert!(
                relative > 0.0 && relative < 1e-2,
                "the classifier's bf16 update differs by {relative:e} of its norm"
            );
        }
        moved += sq(&step_exact);
        disagreement += difference;
    }
    let relative = (disagreement / moved).sqrt();
    assert!(
        moved > 0.0 && relative > 0.0 && relative < 0.35,
        "the bf16 update differs from the f32 one by {relative:e} of its norm"
    );
}

#[test]
fn a_bf16_step_repeats_exactly() {
    let (first, _, first_params) = one_step(Precision::Bf16);
    let (second, _, second_params) = one_step(Precision::Bf16);
    assert_eq!(first.loss, second.loss);
    for ((_, a), (_, b)) in first_params.iter().zip(&second_params) {
        assert_eq!(max_abs(&(a - b).unwrap()), 0.0);
    }
}

#[test]
fn inference_runs_its_convolutions_in_the_evaluation_precision() {
    let dir = tempfile::tempdir().unwrap();
    let shards = ShardSet::open(&common::synthetic_shards(dir.path(), 1, 11)).unwrap();
    let case = shards.read_cases(|_| true).unwrap().remove(0);
    let model = Model::new(&SegmenterConfig::small(), 5, &Device::Cpu).unwrap();
    let subsets = Subset::all(4);
    let predict = |precision: Precision| {
        let eval = EvalConfig {
            precision,
            ..EvalConfig::default()
        };
        let inference = Inference {
            model: &model,
            tile: [16, 16, 16],
            eval: &eval,
            device: &Device::Cpu,
        };
        let probabilities = inference.predict_naive(&case, &subsets[14..]).unwrap();
        probabilities.concat()
    };
    let (exact, mixed) = (predict(Precision::F32), predict(Precision::Bf16));
    let worst = exact
        .iter()
        .zip(&mixed)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst > 1e-4 && worst < 5e-2,
        "bf16 moves a probability by at most {worst}"
    );
    assert_eq!(mixed, predict(Precision::Bf16));
}

#[test]
fn the_configuration_names_the_precision_of_training_and_evaluation() {
    let cfg = RunConfig::from_toml(
        "[train]\nprecision = \"bf16\"\n[eval]\nprecision = \"bf16\"\n",
        "run.toml",
    )
    .unwrap();
    assert_eq!(cfg.train.precision, Precision::Bf16);
    assert_eq!(cfg.eval.precision, Precision::Bf16);
    assert_eq!(RunConfig::default().train.precision, Precision::F32);
    assert!(cfg.to_toml().contains("precision = \"bf16\""));
    let err = RunConfig::from_toml("[train]\nprecision = \"fp16\"\n", "run.toml").unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("run.toml") && message.contains("fp16"),
        "{message}"
    );
}
