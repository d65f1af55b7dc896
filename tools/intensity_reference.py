#!/usr/bin/env python3
"""The deterministic intensity steps of the reference's batchgenerators pipeline (batchgenerators
0.21, the version the reference pins), for `experiments/tests/intensity_reference.rs`: gamma
keeping mean and standard deviation, contrast keeping the range, simulated low resolution (nearest
down, cubic up, scikit-image's resize) and Gaussian blur, each with its draw fixed (a range of one
value).

Writes experiments/tests/fixtures/intensity.safetensors: `input` (2 channels of 10×12×14) and one
output per step.

    python3 -m pip install numpy scipy scikit-image safetensors
    python3 -m pip install --no-deps batchgenerators==0.21
    python3 tools/intensity_reference.py
"""
import pathlib

import numpy as np
from batchgenerators.augmentations.color_augmentations import augment_contrast, augment_gamma
from batchgenerators.augmentations.noise_augmentations import augment_gaussian_blur
from batchgenerators.augmentations.resample_augmentations import augment_linear_downsampling_scipy
from safetensors.numpy import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "tests" / "fixtures"


def main():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, 10, 12, 14)).astype(np.float32)
    data[1] = np.abs(data[1]) * 3 + 1
    outputs = {
        "gamma": augment_gamma(data.copy(), (1.3, 1.3), per_channel=True, retain_stats=True),
        "contrast": augment_contrast(data.copy(), (1.2, 1.2), preserve_range=True,
                                     per_channel=True),
        "low_resolution": augment_linear_downsampling_scipy(
            data.copy(), zoom_range=(0.6, 0.6), per_channel=True, p_per_channel=1,
            order_downsample=0, order_upsample=3),
        "blur": augment_gaussian_blur(data.copy(), (0.7, 0.7), per_channel=True),
    }
    tensors = {"input": data}
    tensors.update({k: v.astype(np.float32) for k, v in outputs.items()})
    save_file(tensors, str(OUT / "intensity.safetensors"))


if __name__ == "__main__":
    main()
