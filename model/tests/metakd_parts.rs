//! Fill, pairwise KD, losses and norms against direct computations of the spec's formulas.

use candle_core::{DType, Device, Tensor, Var};
use metakd_model::losses::{bce_with_logits, soft_dice_loss, DiceReduction};
use metakd_model::method::{fill_missing, pairwise_kd_loss, KdDistance, KdPairs};
use metakd_model::ops::{instance_norm3d, standardize_weight};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn features(rng: &mut StdRng, m: usize) -> (Vec<Vec<f32>>, Vec<Var>) {
    let values: Vec<Vec<f32>> = (0..m).map(|_| random(rng, 2 * 3 * 2 * 2 * 2)).collect();
    let vars = values
        .iter()
        .map(|v| Var::from_slice(v, (2, 3, 2, 2, 2), &Device::Cpu).unwrap())
        .collect();
    (values, vars)
}

#[test]
fn kd_loss_matches_the_formula_and_its_gradient_reaches_only_students() {
    let mut rng = StdRng::seed_from_u64(1);
    let (values, vars) = features(&mut rng, 4);
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let logits = [0.3f32, -0.2, 0.9, 0.1];
    let available = [true, false, true, true];
    for (distance, pairs) in [
        (KdDistance::L1, KdPairs::All),
        (KdDistance::L2, KdPairs::All),
        (KdDistance::L1, KdPairs::TeacherMoreImportant),
    ] {
        let loss = pairwise_kd_loss(&tensors, &available, &logits, distance, pairs).unwrap();
        let mut expected = 0.0f64;
        let mut grad = vec![vec![0.0f64; values[0].len()]; 4];
        let omega: Vec<f64> = {
            let e: Vec<f64> = logits.iter().map(|&w| f64::from(w).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        for i in 0..4 {
            for j in 0..4 {
                if i == j || !available[i] || !available[j] {
                    continue;
                }
                if pairs == KdPairs::TeacherMoreImportant && omega[i] <= omega[j] {
                    continue;
                }
                let ratio = omega[i] / omega[j];
                let n = values[i].len() as f64;
                for k in 0..values[i].len() {
                    let d = f64::from(values[i][k] - values[j][k]);
                    match distance {
                        KdDistance::L1 => {
                            expected += ratio * d.abs() / n;
                            grad[j][k] -= ratio * d.signum() / n;
                        }
                        KdDistance::L2 => {
                            expected += ratio * d * d / n;
                            grad[j][k] -= ratio * 2.0 * d / n;
                        }
                    }
                }
            }
        }
        let got = f64::from(loss.to_scalar::<f32>().unwrap());
        assert!(
            (got - expected).abs() < 1e-4 * (1.0 + expected),
            "{distance:?} {pairs:?}: {got} vs {expected}"
        );
        let grads = loss.backward().unwrap();
        for (m, var) in vars.iter().enumerate() {
            let g = grads
                .get(var)
                .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            let g = g.unwrap_or_else(|| vec![0.0; values[m].len()]);
            for (a, b) in g.iter().zip(&grad[m]) {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-4,
                    "{distance:?} {pairs:?} modality {m}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn kd_loss_is_zero_with_one_modality() {
    let mut rng = StdRng::seed_from_u64(2);
    let (_, vars) = features(&mut rng, 4);
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let loss = pairwise_kd_loss(
        &tensors,
        &[false, false, true, false],
        &[0.0; 4],
        KdDistance::L1,
        KdPairs::All,
    )
    .unwrap();
    assert_eq!(loss.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn missing_features_take_the_mean_of_the_available_ones() {
    let mut rng = StdRng::seed_from_u64(3);
    let (values, vars) = features(&mut rng, 4);
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    // [n, m, c, d, h, w] with modality i of sample s at [s, i].
    let stacked = Tensor::stack(&tensors, 1).unwrap();
    let available = [true, false, false, true];
    let filled = fill_missing(&stacked, &available).unwrap();
    assert_eq!(filled.dims(), stacked.dims());
    let modality = |t: &Tensor, i: usize| {
        t.narrow(1, i, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(modality(&filled, 0), values[0]);
    assert_eq!(modality(&filled, 3), values[3]);
    for m in [1, 2] {
        for (k, v) in modality(&filled, m).iter().enumerate() {
            assert!((v - (values[0][k] + values[3][k]) / 2.0).abs() < 1e-6);
        }
    }

    // The gradient of Σ c·filled reaches each available modality once directly and 1/2 through
    // each of the two fills: c_i + (c_1 + c_2)/2, and nothing reaches a missing one.
    let weights: Vec<f32> = (0..filled.elem_count())
        .map(|k| (k % 7) as f32 - 3.0)
        .collect();
    let weights = Tensor::from_vec(weights, filled.dims(), &Device::Cpu).unwrap();
    let grads = (&filled * &weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (i, var) in vars.iter().enumerate() {
        let grad = grads
            .get(var)
            .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let expected: Vec<f32> = if available[i] {
            let (own, fill_1, fill_2) = (
                modality(&weights, i),
                modality(&weights, 1),
                modality(&weights, 2),
            );
            (0..own.len())
                .map(|k| own[k] + (fill_1[k] + fill_2[k]) / 2.0)
                .collect()
        } else {
            vec![0.0; values[i].len()]
        };
        let grad = grad.unwrap_or_else(|| vec![0.0; expected.len()]);
        for (g, e) in grad.iter().zip(&expected) {
            assert!(
                (g - e).abs() < 1e-6,
                "modality {i}: gradient {g}, expected {e}"
            );
        }
    }
    assert!(fill_missing(&stacked, &[false; 4]).is_err());
    assert!(fill_missing(&stacked, &[true; 3]).is_err());
}

#[test]
fn segmentation_losses_match_direct_computation() {
    let mut rng = StdRng::seed_from_u64(4);
    let n = 2 * 3 * 4 * 4 * 4;
    let logits: Vec<f32> = random(&mut rng, n);
    let target: Vec<f32> = (0..n)
        .map(|_| f32::from(u8::from(rng.random_bool(0.3))))
        .collect();
    let lt = Tensor::from_slice(&logits, (2, 3, 4, 4, 4), &Device::Cpu).unwrap();
    let tt = Tensor::from_slice(&target, (2, 3, 4, 4, 4), &Device::Cpu).unwrap();
    let per = 4 * 4 * 4;
    let (mut dice, mut bce) = (0.0f64, 0.0f64);
    for c in 0..3 {
        let (mut inter, mut sp, mut st, mut b) = (0.0, 0.0, 0.0, 0.0);
        for s in 0..2 {
            for v in 0..per {
                let i = (s * 3 + c) * per + v;
                let x = f64::from(logits[i]);
                let t = f64::from(target[i]);
                let p = 1.0 / (1.0 + (-x).exp());
                inter += p * t;
                sp += p;
                st += t;
                b -= t * p.ln() + (1.0 - t) * (1.0 - p).ln();
            }
        }
        dice += (2.0 * inter + 1.0) / (sp + st + 1.0) / 3.0;
        bce += b / (2 * per) as f64;
    }
    let got_dice = f64::from(
        soft_dice_loss(&lt, &tt, DiceReduction::Pooled)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
    );
    let got_bce = f64::from(
        bce_with_logits(&lt, &tt)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
    );
    assert!(
        (got_dice - (1.0 - dice)).abs() < 1e-5,
        "{got_dice} vs {}",
        1.0 - dice
    );
    assert!((got_bce - bce).abs() < 1e-4, "{got_bce} vs {bce}");
}

/// The reference's per-sample Dice, in a naive loop: per (sample, channel)
/// 1 − 2Σpt / (Σp + Σt + 1), averaged over all pairs; and its gradient with respect to the logits.
fn per_sample_dice_naive(logits: &[f32], target: &[f32], pairs: usize) -> (f64, Vec<f64>) {
    let per = logits.len() / pairs;
    let mut loss = 0.0;
    let mut grad = vec![0.0; logits.len()];
    for k in 0..pairs {
        let range = k * per..(k + 1) * per;
        let p: Vec<f64> = logits[range.clone()]
            .iter()
            .map(|&x| 1.0 / (1.0 + (-f64::from(x)).exp()))
            .collect();
        let t: Vec<f64> = target[range.clone()]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let inter: f64 = p.iter().zip(&t).map(|(p, t)| p * t).sum();
        let denominator = p.iter().sum::<f64>() + t.iter().sum::<f64>() + 1.0;
        loss += (1.0 - 2.0 * inter / denominator) / pairs as f64;
        for (i, (p, t)) in p.iter().zip(&t).enumerate() {
            // d/dp of −2I/S: −2(t·S − I)/S², times σ' = p(1 − p).
            let d = -2.0 * (t * denominator - inter) / (denominator * denominator);
            grad[k * per + i] = d * p * (1.0 - p) / pairs as f64;
        }
    }
    (loss, grad)
}

#[test]
fn per_sample_dice_matches_the_reference_formula_and_an_empty_region_gives_loss_one_without_gradient(
) {
    let mut rng = StdRng::seed_from_u64(6);
    let (n, c, per) = (2, 3, 4 * 4 * 4);
    let logits: Vec<f32> = random(&mut rng, n * c * per);
    let mut target: Vec<f32> = (0..n * c * per)
        .map(|_| f32::from(u8::from(rng.random_bool(0.3))))
        .collect();
    // Sample 1, channel 2 has no foreground.
    let empty = (c + 2) * per..(c + 3) * per;
    target[empty.clone()].iter_mut().for_each(|v| *v = 0.0);
    let (expected, expected_grad) = per_sample_dice_naive(&logits, &target, n * c);

    let var = Var::from_slice(&logits, (n, c, 4, 4, 4), &Device::Cpu).unwrap();
    let tt = Tensor::from_slice(&target, (n, c, 4, 4, 4), &Device::Cpu).unwrap();
    let loss = soft_dice_loss(var.as_tensor(), &tt, DiceReduction::PerSample).unwrap();
    let got = f64::from(loss.to_scalar::<f32>().unwrap());
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    let grad = loss
        .backward()
        .unwrap()
        .get(&var)
        .unwrap()
        .flatten_all()
        .unwrap();
    let grad = grad.to_vec1::<f32>().unwrap();
    for (i, (g, e)) in grad.iter().zip(&expected_grad).enumerate() {
        assert!((f64::from(*g) - e).abs() < 1e-6, "voxel {i}: {g} vs {e}");
    }
    assert!(grad[empty].iter().all(|g| *g == 0.0));

    // One sample whose only channel is empty: loss exactly 1, whatever the prediction.
    let lone = Tensor::from_slice(&logits[..per], (1, 1, 4, 4, 4), &Device::Cpu).unwrap();
    let zero = lone.zeros_like().unwrap();
    let lone_loss = soft_dice_loss(&lone, &zero, DiceReduction::PerSample).unwrap();
    assert_eq!(lone_loss.to_scalar::<f32>().unwrap(), 1.0);
}

#[test]
fn instance_norm_normalises_and_keeps_beta_over_one_voxel() {
    let mut rng = StdRng::seed_from_u64(5);
    let x = Tensor::from_vec(
        random(&mut rng, 2 * 3 * 3 * 4 * 5),
        (2, 3, 3, 4, 5),
        &Device::Cpu,
    )
    .unwrap();
    let gamma = Tensor::new(&[1.0f32, 2.0, 0.5], &Device::Cpu).unwrap();
    let beta = Tensor::new(&[0.0f32, 1.0, -1.0], &Device::Cpu).unwrap();
    let y = instance_norm3d(&x, &gamma, &beta, 1e-5).unwrap();
    let y = y.reshape((2, 3, 60)).unwrap();
    let mean = y.mean(2).unwrap().to_vec2::<f32>().unwrap();
    let var = y
        .broadcast_sub(&y.mean_keepdim(2).unwrap())
        .unwrap()
        .sqr()
        .unwrap()
        .mean(2)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for s in 0..2 {
        for (c, (g, b)) in [(1.0f32, 0.0f32), (2.0, 1.0), (0.5, -1.0)]
            .iter()
            .enumerate()
        {
            assert!((mean[s][c] - b).abs() < 1e-5);
            assert!((var[s][c] - g * g).abs() < 1e-3 * g * g);
        }
    }
    let single = Tensor::from_vec(vec![3.0f32, -7.0, 0.5], (1, 3, 1, 1, 1), &Device::Cpu).unwrap();
    let out = instance_norm3d(&single, &gamma, &beta, 1e-5)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(out, vec![0.0, 1.0, -1.0]);
}

#[test]
fn weight_standardisation_gives_zero_mean_unit_unbiased_variance() {
    let mut rng = StdRng::seed_from_u64(6);
    let w = Tensor::from_vec(random(&mut rng, 4 * 3 * 27), (4, 3, 3, 3, 3), &Device::Cpu).unwrap();
    let s = standardize_weight(&w, 1e-12)
        .unwrap()
        .reshape((4, 81))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    for row in s.to_vec2::<f64>().unwrap() {
        let mean = row.iter().sum::<f64>() / 81.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 80.0;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "{mean} {var}"
        );
    }
}
