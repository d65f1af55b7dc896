//! Every 3D op against PyTorch: outputs and the gradients of sum(y · r) for every input, from
//! fixtures that `tools/torch_fixtures.py` generates with `torch.nn.functional` on the CPU; and
//! the convolutions in bf16 (inside an autocast scope) against PyTorch's bf16 convolutions.

mod common;

use common::{assert_close, largest_error};

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use metakd_model::ops::{
    autocast, avg_pool3d, conv3d, conv_transpose3d, global_avg_pool3d, group_norm, leaky_relu,
    max_pool3d, resample3d, standardize_weight, Conv3dParams, ConvTranspose3dParams, Pool3dParams,
    Precision, ResampleMode, ResampleTo,
};
use serde_json::Value;

/// The cases and tensors of fixture set `stem` (`ops`, `mixed_precision`).
fn fixtures(stem: &str) -> (Vec<Value>, HashMap<String, Tensor>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap())
            .unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join(format!("{stem}.safetensors")), &Device::Cpu)
            .unwrap();
    (manifest["cases"].as_array().unwrap().clone(), tensors)
}

/// A case's inputs as variables, with their names (`x`, `w`, `b`).
fn case_inputs<'a>(name: &str, tensors: &HashMap<String, Tensor>) -> Vec<(&'a str, Var)> {
    ["x", "w", "b"]
        .into_iter()
        .filter(|n| tensors.contains_key(&format!("{name}.{n}")))
        .map(|n| {
            (
                n,
                Var::from_tensor(&tensors[&format!("{name}.{n}")]).unwrap(),
            )
        })
        .collect()
}

/// The case's output and the gradients of sum(y · r) with respect to every input, in order.
fn output_and_gradients(
    case: &Value,
    inputs: &[(&str, Var)],
    tensors: &HashMap<String, Tensor>,
    precision: Precision,
) -> (Tensor, Vec<Tensor>) {
    let name = case["name"].as_str().unwrap();
    let values: Vec<Tensor> = inputs.iter().map(|(_, v)| v.as_tensor().clone()).collect();
    let y = {
        let _scope = autocast(precision);
        apply(case["op"].as_str().unwrap(), &case["params"], &values)
    };
    // The backward pass runs outside the scope: each op keeps its own precision.
    let grads = (&y * &tensors[&format!("{name}.r")])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let grads = inputs
        .iter()
        .map(|(n, var)| {
            grads
                .get(var)
                .unwrap_or_else(|| panic!("{name}: no gradient for {n}"))
                .clone()
        })
        .collect();
    (y, grads)
}

fn usize_param(params: &Value, key: &str) -> usize {
    params[key]
        .as_u64()
        .unwrap_or_else(|| panic!("parameter {key}")) as usize
}

/// Applies the case's op to its inputs.
fn apply(op: &str, p: &Value, inputs: &[Tensor]) -> Tensor {
    let x = &inputs[0];
    match op {
        "conv3d" => {
            let params = Conv3dParams::uniform(
                usize_param(p, "stride"),
                usize_param(p, "padding"),
                usize_param(p, "dilation"),
            )
            .with_groups(usize_param(p, "groups"));
            conv3d(x, &inputs[1], params).unwrap()
        }
        "conv_transpose3d" => {
            let params = ConvTranspose3dParams {
                padding: [usize_param(p, "padding"); 3],
                output_padding: [usize_param(p, "output_padding"); 3],
                groups: usize_param(p, "groups"),
                ..ConvTranspose3dParams::stride(usize_param(p, "stride"))
            };
            conv_transpose3d(x, &inputs[1], params).unwrap()
        }
        "max_pool3d" | "avg_pool3d" => {
            let params = Pool3dParams::cubic(
                usize_param(p, "kernel"),
                usize_param(p, "stride"),
                usize_param(p, "padding"),
            );
            if op == "max_pool3d" {
                max_pool3d(x, params).unwrap()
            } else {
                avg_pool3d(x, params).unwrap()
            }
        }
        "global_avg_pool3d" => global_avg_pool3d(x).unwrap(),
        "resample3d" => {
            let to = if let Some(size) = p.get("size") {
                let s: Vec<usize> = size
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                ResampleTo::Size([s[0], s[1], s[2]])
            } else {
                let s: Vec<f64> = p["scale"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                ResampleTo::Scale([s[0], s[1], s[2]])
            };
            let mode = match p["mode"].as_str().unwrap() {
                "nearest" => ResampleMode::Nearest,
                _ => ResampleMode::Trilinear {
                    align_corners: p["align_corners"].as_bool().unwrap(),
                },
            };
            resample3d(x, to, mode).unwrap()
        }
        "group_norm" => {
            group_norm(x, usize_param(p, "groups"), &inputs[1], &inputs[2], 1e-5).unwrap()
        }
        "standardize_weight" => standardize_weight(x, 1e-12).unwrap(),
        "leaky_relu" => leaky_relu(x, p["slope"].as_f64().unwrap()).unwrap(),
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn every_op_matches_pytorch_forward_and_backward() {
    let (cases, tensors) = fixtures("ops");
    assert!(cases.len() >= 40, "fixtures hold {} cases", cases.len());
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let inputs = case_inputs(name, &tensors);
        let (y, grads) = output_and_gradients(case, &inputs, &tensors, Precision::F32);
        assert_close(
            &y,
            &tensors[&format!("{name}.y")],
            &format!("{name}: output"),
        );
        for ((n, _), got) in inputs.iter().zip(&grads) {
            assert_close(
                got,
                &tensors[&format!("{name}.d{n}")],
                &format!("{name}: gradient of {n}"),
            );
        }
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn mean_abs_difference(a: &[f32], b: &[f32]) -> f64 {
    let total: f64 = a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).sum();
    total / a.len() as f64
}

/// Checks a bf16 result `got` against the reference `want` (float64 arithmetic on the rounded
/// operands, rounded to bf16), given the f32 result `exact` of the same inputs: every value of
/// `got` is a bf16 value, none is further from `want` than one bf16 step at the largest
/// magnitude, and on average `got` lies far closer to `want` than `exact` does.
fn assert_bf16_close(got: &Tensor, exact: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: dims");
    let (got, exact, want) = (values(got), values(exact), values(want));
    let not_bf16 = got.iter().filter(|v| v.to_bits() & 0xffff != 0).count();
    assert_eq!(not_bf16, 0, "{what}: {not_bf16} values are not bf16 values");
    let (worst, scale) = largest_error(&got, &want);
    assert!(
        worst <= scale * 2f32.powi(-7),
        "{what}: max error {worst:e} at scale {scale:e}"
    );
    let (ours, rounding) = (
        mean_abs_difference(&got, &want),
        mean_abs_difference(&exact, &want),
    );
    assert!(
        rounding > 0.0 && ours <= 0.25 * rounding,
        "{what}: mean error {ours:e}, while the f32 result is {rounding:e} away"
    );
}

#[test]
fn convolutions_in_bf16_match_the_float64_reference_on_rounded_operands() {
    let (cases, tensors) = fixtures("mixed_precision");
    assert_eq!(cases.len(), 5, "mixed-precision fixtures");
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let inputs = case_inputs(name, &tensors);
        let (y, grads) = output_and_gradients(case, &inputs, &tensors, Precision::Bf16);
        let (y32, grads32) = output_and_gradients(case, &inputs, &tensors, Precision::F32);
        let want = |n: &str| &tensors[&format!("{name}.{n}")];
        assert_bf16_close(&y, &y32, want("y"), &format!("{name}: output"));
        for (((n, _), got), exact) in inputs.iter().zip(&grads).zip(&grads32) {
            let what = format!("{name}: gradient of {n}");
            assert_bf16_close(got, exact, want(&format!("d{n}")), &what);
        }
    }
}
