//! Gradient accumulation of the autograd the networks train with (Candle's, with the patch in
//! vendor/README.md): a node with one consumer receives its gradient as it is, a node with several
//! consumers the sum of theirs, and a first gradient that arrives as a strided view is stored as
//! an ordinary tensor. Checked against hand-derived gradients.

use candle_core::{Device, Tensor, Var};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (k, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
            "{what}[{k}]: {a} vs {e}"
        );
    }
}

#[test]
fn fan_in_gradients_are_summed_and_single_ones_kept() {
    let data: Vec<f32> = (0..6).map(|k| 0.25 * k as f32 - 0.5).collect();
    let x = Var::from_slice(&data, (2, 3), &Device::Cpu).unwrap();
    // L = Σ 3x + Σ exp(x) + Σ x·x: x reaches L through four edges (3x, exp, both factors of x·x).
    let three_x = (x.as_tensor() * 3.0).unwrap();
    let exp = x.as_tensor().exp().unwrap();
    let square = (x.as_tensor() * x.as_tensor()).unwrap();
    let loss = ((three_x.sum_all().unwrap() + exp.sum_all().unwrap()).unwrap()
        + square.sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let expected: Vec<f32> = data.iter().map(|&v| 3.0 + v.exp() + 2.0 * v).collect();
    assert_close(&values(grads.get(&x).unwrap()), &expected, "dL/dx");
}

#[test]
fn a_strided_first_gradient_is_stored_contiguous_and_correct() {
    let data: Vec<f32> = (0..12).map(|k| k as f32).collect();
    let x = Var::from_slice(&data, (3, 4), &Device::Cpu).unwrap();
    // The gradient reaching x through the transpose is a transposed (strided) view.
    let weights: Vec<f32> = (0..12).map(|k| (k % 5) as f32 - 2.0).collect();
    let w = Tensor::from_slice(&weights, (4, 3), &Device::Cpu).unwrap();
    let loss = (x.as_tensor().t().unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let dx = grads.get(&x).unwrap();
    assert!(dx.is_contiguous());
    let expected: Vec<f32> = (0..3)
        .flat_map(|i| (0..4).map(move |j| (i, j)))
        .map(|(i, j)| weights[j * 3 + i])
        .collect();
    assert_close(&values(dx), &expected, "dL/dx through a transpose");

    // A second edge into the same node adds to the stored view.
    let loss = ((x.as_tensor().t().unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        + (x.as_tensor() * 2.0).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let with_second: Vec<f32> = expected.iter().map(|g| g + 2.0).collect();
    assert_close(
        &values(grads.get(&x).unwrap()),
        &with_second,
        "dL/dx with two edges",
    );
}
