#!/usr/bin/env python3
"""Reference segmentation metrics for `experiments/tests/metrics_reference.rs`.

Draws random masks (unions of ellipsoids with scattered voxels, some touching the grid's edge, a
single voxel, a thin sheet) on small grids with anisotropic voxel spacing, and writes for each pair
medpy's `hd95` (medpy.metric.binary.hd95, when medpy is installed) and the same definition written
out with scipy (surface = mask XOR its binary erosion with the 6-neighbourhood; Euclidean distance
transform with the spacing; both directions pooled; numpy's 95th percentile), plus Dice,
sensitivity and specificity from the voxel counts. The two HD95 computations must agree before a
case is written.

Masks are stored as hex strings of numpy.packbits over the C-ordered (d, h, w) grid.

    python3 -m venv venv && venv/bin/pip install numpy scipy medpy
    venv/bin/python tools/hd95_reference.py experiments/tests/fixtures/metrics_reference.json
"""

import json
import sys

import numpy as np
from scipy import ndimage

try:
    from medpy.metric.binary import hd95 as medpy_hd95
except ImportError:  # medpy is optional: scipy's version of the same definition is always written
    medpy_hd95 = None


def surface_distances(result, reference, spacing):
    footprint = ndimage.generate_binary_structure(3, 1)
    result_border = result ^ ndimage.binary_erosion(result, structure=footprint, iterations=1)
    reference_border = reference ^ ndimage.binary_erosion(
        reference, structure=footprint, iterations=1
    )
    dt = ndimage.distance_transform_edt(~reference_border, sampling=spacing)
    return dt[result_border]


def scipy_hd95(result, reference, spacing):
    pooled = np.hstack(
        (
            surface_distances(result, reference, spacing),
            surface_distances(reference, result, spacing),
        )
    )
    return float(np.percentile(pooled, 95))


def random_mask(rng, shape, kind):
    d, h, w = shape
    z, y, x = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    mask = np.zeros(shape, dtype=bool)
    if kind == "voxel":
        mask[tuple(rng.integers(0, s) for s in shape)] = True
        return mask
    if kind == "sheet":
        mask[rng.integers(0, d), :, rng.integers(1, w // 2) :] = True
        return mask
    for _ in range(rng.integers(1, 4)):
        centre = rng.uniform([0, 0, 0], shape)
        radii = rng.uniform(1.5, 0.45 * np.array(shape))
        mask |= (((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                 + ((x - centre[2]) / radii[2]) ** 2) <= 1.0
    mask |= rng.random(shape) < 0.01
    if kind == "edge":
        mask[0, :, :3] = True
    return mask


def main(out):
    rng = np.random.default_rng(2405)
    kinds = ["blob", "blob", "edge", "blob", "voxel", "sheet", "blob", "edge", "blob", "blob"]
    cases = []
    for i, kind in enumerate(kinds):
        shape = tuple(int(s) for s in rng.integers(8, 22, size=3))
        spacing = [float(s) for s in np.round(rng.uniform(0.4, 3.0, size=3), 3)]
        a = random_mask(rng, shape, kind)
        b = random_mask(rng, shape, "blob" if kind in ("voxel", "sheet") else kind)
        reference = scipy_hd95(a, b, spacing)
        if medpy_hd95 is not None:
            from_medpy = float(medpy_hd95(a, b, voxelspacing=spacing))
            assert abs(from_medpy - reference) <= 1e-12 * max(1.0, reference), (i, from_medpy)
        tp = int(np.sum(a & b))
        fp = int(np.sum(a & ~b))
        fn = int(np.sum(~a & b))
        tn = int(np.sum(~a & ~b))
        cases.append(
            {
                "name": f"{i}-{kind}",
                "shape": list(shape),
                "spacing": spacing,
                "predicted": np.packbits(a.ravel()).tobytes().hex(),
                "reference": np.packbits(b.ravel()).tobytes().hex(),
                "hd95": reference,
                "dice": 2 * tp / (2 * tp + fp + fn),
                "sensitivity": tp / (tp + fn),
                "specificity": tn / (tn + fp),
            }
        )
    document = {
        "source": "tools/hd95_reference.py",
        "hd95_checked_against_medpy": medpy_hd95 is not None,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases written to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
