#!/usr/bin/env python3
"""Reference outputs and gradients of the 3D ops, computed with PyTorch on the CPU.

Writes model/tests/fixtures/ops.safetensors (tensors) and model/tests/fixtures/ops.json (the
cases and their parameters), which `model/tests/torch_parity.rs` compares against
`metakd_model::ops`. For each case it stores the inputs, a random cotangent `r`, the output `y` and
the gradients of sum(y * r) with respect to every input.

It also writes model/tests/fixtures/mixed_precision.{safetensors,json}: the convolutions in bf16
as cuDNN runs them under `torch.autocast` (operands rounded to bf16, exact accumulation, the
result rounded to bf16; each gradient likewise from the rounded cotangent), computed in float64
on the rounded operands, which `model/tests/torch_parity.rs` compares against `metakd_model::ops`
inside an autocast scope. (PyTorch's own bf16 convolutions on the CPU accumulate their gradients
in lower precision, so they are not the reference.)

    python3 -m pip install torch safetensors numpy
    python3 tools/torch_fixtures.py
"""
import json
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "model" / "tests" / "fixtures"
torch.manual_seed(0)
tensors = {}
cases = []


def exact(t):
    return t.clone()


def rounded_to_bf16(t):
    """The values of t rounded to bf16, in float64 (for exact arithmetic on them)."""
    return t.bfloat16().double()


def record(name, op, params, inputs, fn, operand=exact, result=exact):
    """Runs fn on the inputs, stores inputs, output and gradients of sum(y * r). `operand` maps
    the inputs and the cotangent r before use, `result` the output and gradients before they are
    stored (for the bf16 cases: rounded operands, exact arithmetic, rounded results)."""
    leaves = [operand(t).requires_grad_(True) for t in inputs]
    y = fn(*leaves)
    r = torch.randn(y.shape)
    (y * operand(r)).sum().backward()
    names = ["x", "w", "b"][: len(inputs)]
    for n, t, leaf in zip(names, inputs, leaves):
        tensors[f"{name}.{n}"] = t.detach().clone().contiguous()
        tensors[f"{name}.d{n}"] = result(leaf.grad).float().contiguous()
    tensors[f"{name}.r"] = r.contiguous()
    tensors[f"{name}.y"] = result(y.detach()).float().contiguous()
    cases.append({"name": name, "op": op, "params": params})


CONV_GRID = [
    # x dims, out channels, kernel, stride, padding, dilation, groups
    ([2, 3, 7, 9, 5], 4, 3, 1, 1, 1, 1),
    ([2, 3, 7, 9, 5], 4, 3, 2, 1, 1, 1),
    ([1, 2, 9, 8, 7], 3, 3, 2, 0, 1, 1),
    ([1, 2, 11, 9, 13], 3, 3, 1, 2, 2, 1),
    ([1, 2, 13, 11, 9], 2, 3, 1, 4, 4, 1),
    ([1, 1, 19, 17, 18], 2, 3, 1, 2, 8, 1),
    ([1, 2, 5, 6, 7], 2, 3, 1, 8, 8, 1),
    ([2, 4, 5, 6, 7], 4, 3, 1, 1, 1, 4),
    ([1, 8, 9, 9, 9], 16, 3, 2, 2, 2, 2),
    ([2, 64, 5, 6, 7], 64, 3, 1, 1, 1, 1),
    ([2, 1, 9, 8, 7], 64, 3, 2, 1, 1, 1),
    ([2, 64, 6, 5, 7], 1, 1, 1, 0, 1, 1),
    ([2, 3, 7, 6, 5], 5, 7, 2, 3, 1, 1),
]

CONV_TRANSPOSE_GRID = [
    # x dims, out channels per group, kernel, stride, padding, output padding, groups
    ([2, 4, 3, 4, 5], 3, 2, 2, 0, 0, 1),
    ([1, 3, 4, 3, 5], 2, 3, 2, 1, 1, 1),
    ([2, 4, 3, 3, 4], 2, 3, 1, 1, 0, 2),
    ([2, 64, 3, 4, 3], 32, 2, 2, 0, 0, 1),
    ([1, 2, 5, 4, 3], 3, 3, 2, 2, 1, 1),
]


def conv_cases(grid=CONV_GRID, prefix="conv3d", **rounding):
    for i, (dims, co, k, s, p, d, g) in enumerate(grid):
        x = torch.randn(dims)
        w = torch.randn(co, dims[1] // g, k, k, k) / (dims[1] * k**3) ** 0.5
        params = {"stride": s, "padding": p, "dilation": d, "groups": g}
        record(f"{prefix}_{i}", "conv3d", params, [x, w],
               lambda x, w: F.conv3d(x, w, stride=s, padding=p, dilation=d, groups=g),
               **rounding)


def conv_transpose_cases(grid=CONV_TRANSPOSE_GRID, prefix="conv_transpose3d", **rounding):
    for i, (dims, cog, k, s, p, op, g) in enumerate(grid):
        x = torch.randn(dims)
        w = torch.randn(dims[1], cog, k, k, k) / (dims[1] * k**3) ** 0.5
        params = {"stride": s, "padding": p, "output_padding": op, "groups": g}
        record(f"{prefix}_{i}", "conv_transpose3d", params, [x, w],
               lambda x, w: F.conv_transpose3d(x, w, stride=s, padding=p, output_padding=op, groups=g),
               **rounding)


def pool_cases():
    grid = [([2, 3, 7, 8, 9], 3, 2, 1), ([1, 2, 8, 6, 4], 2, 2, 0), ([2, 2, 5, 7, 6], 3, 1, 1), ([1, 64, 5, 4, 6], 2, 1, 0)]
    for i, (dims, k, s, p) in enumerate(grid):
        x = torch.randn(dims)
        params = {"kernel": k, "stride": s, "padding": p}
        record(f"max_pool3d_{i}", "max_pool3d", params, [x], lambda x: F.max_pool3d(x, k, s, p))
        record(f"avg_pool3d_{i}", "avg_pool3d", params, [x], lambda x: F.avg_pool3d(x, k, s, p))
    record("global_avg_pool3d_0", "global_avg_pool3d", {}, [torch.randn(2, 5, 3, 4, 5)],
           lambda x: F.adaptive_avg_pool3d(x, 1))


def resample_cases():
    grid = [
        ([2, 3, 4, 5, 3], {"size": [8, 10, 6]}, "trilinear", True),
        ([2, 3, 4, 5, 3], {"size": [8, 10, 6]}, "trilinear", False),
        ([1, 2, 3, 4, 5], {"size": [7, 5, 11]}, "trilinear", False),
        ([1, 2, 3, 4, 5], {"scale": [2.0, 2.0, 2.0]}, "trilinear", False),
        ([1, 2, 1, 1, 1], {"size": [5, 6, 7]}, "trilinear", True),
        ([1, 2, 6, 8, 10], {"size": [3, 4, 5]}, "trilinear", False),
        ([2, 3, 3, 4, 2], {"scale": [2.0, 2.0, 2.0]}, "nearest", False),
        ([1, 2, 3, 4, 5], {"size": [7, 5, 11]}, "nearest", False),
    ]
    for i, (dims, to, mode, align) in enumerate(grid):
        x = torch.randn(dims)
        kwargs = {"size": tuple(to["size"])} if "size" in to else {"scale_factor": tuple(to["scale"])}
        if mode == "trilinear":
            kwargs["align_corners"] = align
        params = dict(to, mode=mode, align_corners=align)
        record(f"resample3d_{i}", "resample3d", params, [x],
               lambda x: F.interpolate(x, mode=mode, **kwargs))


def norm_cases():
    for i, (dims, groups) in enumerate([([2, 3, 4, 5, 6], 3), ([2, 8, 3, 4, 5], 2), ([1, 64, 3, 3, 2], 64), ([2, 6, 2, 3, 2], 1)]):
        x = torch.randn(dims) * 3 + 1
        gamma = torch.randn(dims[1])
        beta = torch.randn(dims[1])
        record(f"group_norm_{i}", "group_norm", {"groups": groups}, [x, gamma, beta],
               lambda x, g, b: F.group_norm(x, groups, g, b, eps=1e-5))
    w = torch.randn(6, 4, 3, 3, 3)

    def standardise(w):
        flat = w.reshape(w.shape[0], -1)
        mean = flat.mean(dim=1, keepdim=True)
        var = flat.var(dim=1, keepdim=True, unbiased=True)
        return ((flat - mean) / torch.sqrt(var + 1e-12)).reshape(w.shape)

    record("standardize_weight_0", "standardize_weight", {}, [w], standardise)
    record("leaky_relu_0", "leaky_relu", {"slope": 0.01}, [torch.randn(2, 3, 4, 5, 6)],
           lambda x: F.leaky_relu(x, 0.01))


def bf16_cases():
    """Convolutions of bf16-rounded operands, results rounded to bf16."""
    rounding = {"operand": rounded_to_bf16, "result": rounded_to_bf16}
    conv_cases([
        ([2, 8, 6, 7, 5], 8, 3, 1, 1, 1, 1),
        ([1, 4, 9, 8, 7], 6, 3, 2, 1, 1, 1),
        ([1, 16, 5, 6, 7], 8, 1, 1, 0, 1, 1),
        ([1, 4, 7, 7, 7], 4, 3, 1, 2, 2, 2),
    ], "conv3d_bf16", **rounding)
    conv_transpose_cases([([2, 8, 3, 4, 5], 4, 2, 2, 0, 0, 1)], "conv_transpose3d_bf16",
                         **rounding)


def write(stem):
    """Writes the recorded cases as `stem`.safetensors and `stem`.json, and starts a new set."""
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / f"{stem}.safetensors"))
    manifest = {"torch": torch.__version__, "cases": cases}
    (OUT / f"{stem}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum(t.numel() for t in tensors.values()) * 4 / 1e6
    print(f"{stem}: {len(cases)} cases, {size:.2f} MB")
    tensors.clear()
    cases.clear()


conv_cases()
conv_transpose_cases()
pool_cases()
resample_cases()
norm_cases()
write("ops")
bf16_cases()
write("mixed_precision")
