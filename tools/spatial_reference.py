#!/usr/bin/env python3
"""Crops transformed by batchgenerators' SpatialTransform as the reference's `get_train_transform`
configures it, for `experiments/tests/spatial_reference.rs`. batchgenerators 0.21 is the version
the reference pins (its requirements.txt); later versions resample region masks another way.

For each case the spatial transform's random draws are fixed (elastic α and σ and the noise fields
that `elastic_deform_coordinates` draws, the three angles, the scale, the patch centre), and
batchgenerators' own functions build the coordinates (`create_zero_centered_coordinate_mesh`,
`elastic_deform_coordinates`, `rotate_coords_3d`, `scale_coords`) and interpolate (`interpolate_img`:
images cubic with 0 outside, region masks linear with −1 outside, each label kept where it
reaches 0.5), as `augment_spatial` does.

Writes experiments/tests/fixtures/spatial.safetensors (`<case>.images`, `<case>.targets`,
`<case>.fields` (float64), `<case>.images_out`, `<case>.targets_out`) and spatial.json (the
draws).

    python3 -m pip install numpy scipy safetensors
    python3 -m pip install --no-deps batchgenerators==0.21   # the reference's pinned version
    python3 tools/spatial_reference.py
"""
import json
import pathlib

import numpy as np
from batchgenerators.augmentations.utils import (create_zero_centered_coordinate_mesh,
                                                 elastic_deform_coordinates, interpolate_img,
                                                 rotate_coords_3d, scale_coords)
from safetensors.numpy import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "tests" / "fixtures"

CASES = [
    # name, patch (d, h, w), elastic (alpha, sigma) or None, angles (x, y, z) in degrees or None,
    # scale or None, seed of the noise fields
    ("all", (10, 12, 14), (600.0, 3.0), (12.0, -7.0, 4.0), 1.15, 1),
    ("rotation", (8, 10, 12), None, (-15.0, 9.0, 14.0), None, 2),
    ("scale_odd", (9, 11, 13), None, None, 0.88, 3),
    ("elastic", (10, 12, 14), (900.0, 2.5), None, None, 4),
]


def main():
    rng = np.random.default_rng(0)
    tensors, cases = {}, []
    for name, patch, elastic, angles, scale, seed in CASES:
        images = rng.standard_normal((2, *patch)).astype(np.float32)
        targets = (rng.random((2, *patch)) < 0.4).astype(np.float32)
        targets[1] = 0  # a region without foreground
        coords = create_zero_centered_coordinate_mesh(patch)
        fields = np.zeros((3, *patch))
        if elastic is not None:
            np.random.seed(seed)
            fields = np.array([np.random.random(patch) for _ in range(3)])
            np.random.seed(seed)
            coords = elastic_deform_coordinates(coords, elastic[0], elastic[1])
        if angles is not None:
            coords = rotate_coords_3d(coords, *[a / 360 * 2 * np.pi for a in angles])
        if scale is not None:
            coords = scale_coords(coords, scale)
        # random_crop with patch_center_dist_from_border = patch // 2 and the patch as the data:
        # uniform(p // 2, p − p // 2), drawn here.
        centre = [float(np.random.default_rng(seed).uniform(p // 2, p - p // 2)) for p in patch]
        for d in range(3):
            coords[d] += centre[d]
        images_out = np.stack([interpolate_img(c, coords, 3, "constant", cval=0) for c in images])
        targets_out = np.stack([interpolate_img(c, coords, 1, "constant", cval=-1, is_seg=True)
                                for c in targets])
        tensors.update({
            f"{name}.images": images, f"{name}.targets": targets, f"{name}.fields": fields,
            f"{name}.images_out": images_out.astype(np.float32),
            f"{name}.targets_out": targets_out.astype(np.float32),
        })
        cases.append({"name": name, "patch": patch, "elastic": elastic, "angles": angles,
                      "scale": scale, "centre": centre})
    save_file(tensors, str(OUT / "spatial.safetensors"))
    (OUT / "spatial.json").write_text(json.dumps({"cases": cases}, indent=2) + "\n")


if __name__ == "__main__":
    main()
