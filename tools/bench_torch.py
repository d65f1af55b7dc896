#!/usr/bin/env python3
"""Times forward + backward of the 3D ops with PyTorch on the CPU, for `metakd bench ops`.

Reads a JSON list of cases on standard input, each {"name", "op", "input": [n, c, d, h, w],
"out_channels", "kernel", "stride", "padding", "size"}, and prints {"name": median milliseconds}.
Usage: python3 tools/bench_torch.py --threads 2 --runs 5 < cases.json
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def step(case):
    x = torch.randn(case["input"], requires_grad=True)
    op = case["op"]
    if op == "conv3d":
        k = case["kernel"]
        w = torch.randn(case["out_channels"], case["input"][1], k, k, k, requires_grad=True)
        return lambda: F.conv3d(x, w, stride=case["stride"], padding=case["padding"]).sum().backward()
    if op == "conv_transpose3d":
        k = case["kernel"]
        w = torch.randn(case["input"][1], case["out_channels"], k, k, k, requires_grad=True)
        return lambda: F.conv_transpose3d(x, w, stride=case["stride"]).sum().backward()
    if op == "upsample_trilinear3d":
        return lambda: F.interpolate(x, size=tuple(case["size"]), mode="trilinear", align_corners=False).sum().backward()
    raise ValueError(op)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timings = {}
    for case in json.load(sys.stdin):
        run = step(case)
        run()
        samples = []
        for _ in range(args.runs):
            start = time.perf_counter()
            run()
            samples.append((time.perf_counter() - start) * 1e3)
        timings[case["name"]] = sorted(samples)[len(samples) // 2]
    json.dump({"torch": torch.__version__, "timings": timings}, sys.stdout)


main()
