//! Every 3D op against PyTorch: outputs and the gradients of sum(y · r) for every input, from
//! fixtures that `tools/torch_fixtures.py` generates with `torch.nn.functional` on the CPU.

mod common;

use common::assert_close;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use metakd_model::ops::{
    avg_pool3d, conv3d, conv_transpose3d, global_avg_pool3d, group_norm, leaky_relu, max_pool3d,
    resample3d, standardize_weight, Conv3dParams, ConvTranspose3dParams, Pool3dParams,
    ResampleMode, ResampleTo,
};
use serde_json::Value;

fn fixtures() -> (Vec<Value>, HashMap<String, Tensor>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ops.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("ops.safetensors"), &Device::Cpu).unwrap();
    (manifest["cases"].as_array().unwrap().clone(), tensors)
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
    let (cases, tensors) = fixtures();
    assert!(cases.len() >= 40, "fixtures hold {} cases", cases.len());
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let op = case["op"].as_str().unwrap();
        let input_names: Vec<&str> = ["x", "w", "b"]
            .into_iter()
            .filter(|n| tensors.contains_key(&format!("{name}.{n}")))
            .collect();
        let vars: Vec<Var> = input_names
            .iter()
            .map(|n| Var::from_tensor(&tensors[&format!("{name}.{n}")]).unwrap())
            .collect();
        let inputs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = apply(op, &case["params"], &inputs);
        assert_close(
            &y,
            &tensors[&format!("{name}.y")],
            &format!("{name}: output"),
        );
        let grads = (&y * &tensors[&format!("{name}.r")])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (n, var) in input_names.iter().zip(&vars) {
            let got = grads
                .get(var)
                .unwrap_or_else(|| panic!("{name}: no gradient for {n}"));
            assert_close(
                got,
                &tensors[&format!("{name}.d{n}")],
                &format!("{name}: gradient of {n}"),
            );
        }
    }
}
