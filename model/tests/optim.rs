//! SGD with Nesterov momentum and weight decay against a naive loop of PyTorch's update rule.

use candle_core::{Device, Tensor, Var};
use metakd_model::optim::SgdNesterov;

/// PyTorch's `SGD(momentum=μ, nesterov=True, weight_decay=λ)` for one parameter, in `f64`:
/// g ← g + λp; b ← g on the first step, else μb + g; p ← p − lr·(g + μb).
struct NaiveSgd {
    p: Vec<f64>,
    b: Option<Vec<f64>>,
}

impl NaiveSgd {
    fn step(&mut self, grad: &[f64], (lr, momentum, decay): (f64, f64, f64)) {
        let g: Vec<f64> = grad
            .iter()
            .zip(&self.p)
            .map(|(g, p)| g + decay * p)
            .collect();
        let b = match self.b.take() {
            None => g.clone(),
            Some(b) => b.iter().zip(&g).map(|(b, g)| momentum * b + g).collect(),
        };
        for ((p, g), b) in self.p.iter_mut().zip(&g).zip(&b) {
            *p -= lr * (g + momentum * b);
        }
        self.b = Some(b);
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn nesterov_steps_match_pytorchs_rule_and_skip_parameters_without_gradient() {
    let dev = Device::Cpu;
    let n = 70_000; // more than one parallel work item
    let start: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let scale: Vec<f32> = (0..n).map(|i| 0.5 + (i % 7) as f32 / 3.0).collect();
    let p = Var::from_slice(&start, (7, n / 7), &dev).unwrap();
    let untouched = Var::from_slice(&[1f32, 2.0, 3.0], 3, &dev).unwrap();
    let a = Tensor::from_slice(&scale, (7, n / 7), &dev).unwrap();
    let hyper = (0.05, 0.99, 5e-4);
    let mut sgd = SgdNesterov::new(vec![p.clone(), untouched.clone()], hyper.1, hyper.2);
    let mut naive = NaiveSgd {
        p: start.iter().map(|&v| f64::from(v)).collect(),
        b: None,
    };
    for lr in [hyper.0, hyper.0 * 0.7, hyper.0 * 0.3] {
        // loss = Σ a·p², gradient 2·a·p: a different gradient every step.
        let loss = (p.as_tensor().sqr().unwrap() * &a)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let grad = values(grads.get(&p).unwrap());
        sgd.step(&grads, lr).unwrap();
        naive.step(&grad, (lr, hyper.1, hyper.2));
        for (i, (got, want)) in values(p.as_tensor()).iter().zip(&naive.p).enumerate() {
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "p[{i}] at lr {lr}: {got} vs {want}"
            );
        }
    }
    let buffer = sgd.momentum_buffers()[0]
        .as_ref()
        .expect("a momentum buffer");
    for (got, want) in values(buffer).iter().zip(naive.b.as_ref().unwrap()) {
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }
    assert!(sgd.momentum_buffers()[1].is_none());
    assert_eq!(values(untouched.as_tensor()), vec![1.0, 2.0, 3.0]);
}
