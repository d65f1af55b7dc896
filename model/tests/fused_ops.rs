//! Instance norm, group norm and LeakyReLU (alone, after instance norm, after a residual sum):
//! outputs and gradients against finite differences and the composed Candle ops.

use candle_core::{Device, Tensor, Var, D};
use metakd_model::ops::{
    add_leaky_relu, group_norm, instance_norm3d, instance_norm3d_leaky_relu, leaky_relu,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

/// Group norm composed from Candle's own differentiable ops.
fn composed_group_norm(x: &Tensor, groups: usize, gamma: &Tensor, beta: &Tensor) -> Tensor {
    let dims = x.dims().to_vec();
    let (n, c) = (dims[0], dims[1]);
    let grouped = x.reshape((n, groups, ())).unwrap();
    let centred = grouped
        .broadcast_sub(&grouped.mean_keepdim(D::Minus1).unwrap())
        .unwrap();
    let var = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    let normed = centred
        .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
        .unwrap()
        .reshape((n, c, ()))
        .unwrap();
    normed
        .broadcast_mul(&gamma.reshape((1, c, 1)).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape((1, c, 1)).unwrap())
        .unwrap()
        .reshape(dims)
        .unwrap()
}

/// An input, affine parameters and the weights `r` of the loss `sum(y · r)`.
struct NormCase {
    x: Var,
    gamma: Var,
    beta: Var,
    r: Tensor,
}

impl NormCase {
    /// Random values in [-2, 2), the input's shifted by `offset`.
    fn new(dims: (usize, usize, usize, usize, usize), offset: f32, seed: u64) -> Self {
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(seed);
        let (len, c) = (dims.0 * dims.1 * dims.2 * dims.3 * dims.4, dims.1);
        let xs: Vec<f32> = random(&mut rng, len).iter().map(|v| v + offset).collect();
        Self {
            x: Var::from_slice(&xs, dims, &dev).unwrap(),
            gamma: Var::from_slice(&random(&mut rng, c), c, &dev).unwrap(),
            beta: Var::from_slice(&random(&mut rng, c), c, &dev).unwrap(),
            r: Tensor::from_slice(&random(&mut rng, len), dims, &dev).unwrap(),
        }
    }

    /// Checks `fused` against `composed`: outputs within `tol_y`, the gradients of x, γ and β
    /// within `tol_grad`.
    fn assert_same(&self, fused: &Tensor, composed: &Tensor, tol_y: f32, tol_grad: f32) {
        assert_close(&flat(fused), &flat(composed), tol_y, "y");
        let backward = |y: &Tensor| {
            (y * &self.r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (g1, g2) = (backward(fused), backward(composed));
        for (var, name) in [
            (&self.x, "dx"),
            (&self.gamma, "dgamma"),
            (&self.beta, "dbeta"),
        ] {
            assert_close(
                &flat(g1.get(var).unwrap()),
                &flat(g2.get(var).unwrap()),
                tol_grad,
                name,
            );
        }
    }
}

/// Checks the fused norm (`groups` groups; `None` for instance norm) against the composed one,
/// output and every gradient.
fn check_against_composed(
    dims: (usize, usize, usize, usize, usize),
    groups: Option<usize>,
    seed: u64,
) {
    let case = NormCase::new(dims, 0.0, seed);
    let (x, gamma, beta) = (&case.x, &case.gamma, &case.beta);
    let fused = match groups {
        Some(g) => group_norm(x, g, gamma, beta, 1e-5).unwrap(),
        None => instance_norm3d(x, gamma, beta, 1e-5).unwrap(),
    };
    let composed = composed_group_norm(x, groups.unwrap_or(dims.1), gamma, beta);
    case.assert_same(&fused, &composed, 1e-5, 1e-4);
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn instance_norm_gradients_match_composed_ops() {
    check_against_composed((2, 3, 3, 4, 5), None, 1);
}

#[test]
fn instance_norm_input_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(2);
    let xs = random(&mut rng, 2 * 2 * 2 * 3 * 3);
    let gamma = Tensor::new(&[1.5f32, -0.7], &dev).unwrap();
    let beta = Tensor::new(&[0.2f32, 0.1], &dev).unwrap();
    let weights = random(&mut rng, xs.len());
    let loss = |xs: &[f32]| -> f64 {
        let x = Tensor::from_slice(xs, (2, 2, 2, 3, 3), &dev).unwrap();
        let y = instance_norm3d(&x, &gamma, &beta, 1e-5).unwrap();
        let w = Tensor::from_slice(&weights, (2, 2, 2, 3, 3), &dev).unwrap();
        f64::from(
            (y.sqr().unwrap() * w)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        )
    };
    let x = Var::from_slice(&xs, (2, 2, 2, 3, 3), &dev).unwrap();
    let w = Tensor::from_slice(&weights, (2, 2, 2, 3, 3), &dev).unwrap();
    let y = instance_norm3d(&x, &gamma, &beta, 1e-5).unwrap();
    let grads = (y.sqr().unwrap() * w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = flat(grads.get(&x).unwrap());
    let eps = 1e-3f32;
    for i in [0, 5, 17, 30, 35] {
        let (mut p, mut m) = (xs.clone(), xs.clone());
        p[i] += eps;
        m[i] -= eps;
        let fd = (loss(&p) - loss(&m)) / (2.0 * f64::from(eps));
        assert!(
            (fd - f64::from(g[i])).abs() < 2e-2 * (1.0 + fd.abs()),
            "dx[{i}]: {fd} vs {}",
            g[i]
        );
    }
}

#[test]
fn leaky_relu_matches_definition_and_gradient() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(3);
    let xs = random(&mut rng, 100);
    let x = Var::from_slice(&xs, (4, 25), &dev).unwrap();
    let y = leaky_relu(&x, 0.01).unwrap();
    let expected: Vec<f32> = xs
        .iter()
        .map(|&v| if v > 0.0 { v } else { 0.01 * v })
        .collect();
    assert_eq!(flat(&y), expected);
    let grads = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
    let g = flat(grads.get(&x).unwrap());
    for (gi, &v) in g.iter().zip(&xs) {
        assert!((gi - if v > 0.0 { 3.0 } else { 0.03 }).abs() < 1e-6);
    }
}

#[test]
fn group_norm_matches_composed_ops_forward_and_backward() {
    check_against_composed((2, 4, 3, 2, 3), Some(2), 4);
}

#[test]
fn group_norm_with_large_spans_and_offset_mean_matches_composed_ops() {
    // Spans longer than the reduction lanes with a remainder, and values far from zero.
    let case = NormCase::new((2, 6, 5, 7, 9), 40.0, 5);
    let (x, gamma, beta) = (&case.x, &case.gamma, &case.beta);
    let fused = group_norm(x, 3, gamma, beta, 1e-5).unwrap();
    let composed = composed_group_norm(x, 3, gamma, beta);
    case.assert_same(&fused, &composed, 1e-4, 1e-3);
}

#[test]
fn fused_instance_norm_leaky_relu_equals_the_two_ops() {
    let case = NormCase::new((2, 3, 4, 5, 6), 0.0, 6);
    let (x, gamma, beta) = (&case.x, &case.gamma, &case.beta);
    let fused = instance_norm3d_leaky_relu(x, gamma, beta, 1e-5, 0.01).unwrap();
    let composed = leaky_relu(&composed_group_norm(x, 3, gamma, beta), 0.01).unwrap();
    let negative = flat(&composed).iter().filter(|&&v| v < 0.0).count();
    assert!(
        negative > composed.elem_count() / 10,
        "the activation's negative side is exercised"
    );
    case.assert_same(&fused, &composed, 1e-5, 1e-4);
}

#[test]
fn fused_residual_leaky_relu_equals_sum_then_activation() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(7);
    let a = Var::from_slice(&random(&mut rng, 120), (2, 3, 20), &dev).unwrap();
    let b = Var::from_slice(&random(&mut rng, 120), (2, 3, 20), &dev).unwrap();
    let r = Tensor::from_slice(&random(&mut rng, 120), (2, 3, 20), &dev).unwrap();
    let fused = add_leaky_relu(&a, &b, 0.01).unwrap();
    let sum = (a.as_tensor() + b.as_tensor()).unwrap();
    let expected: Vec<f32> = flat(&sum)
        .iter()
        .map(|&v| if v > 0.0 { v } else { 0.01 * v })
        .collect();
    assert_eq!(flat(&fused), expected);
    let grads = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let factor: Vec<f32> = flat(&sum)
        .iter()
        .zip(flat(&r))
        .map(|(&v, r)| if v > 0.0 { r } else { 0.01 * r })
        .collect();
    assert_close(&flat(grads.get(&a).unwrap()), &factor, 1e-7, "da");
    assert_close(&flat(grads.get(&b).unwrap()), &factor, 1e-7, "db");
    assert!(add_leaky_relu(&a, &r.narrow(2, 0, 10).unwrap(), 0.01).is_err());
}
