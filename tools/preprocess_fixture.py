"""Writes the preprocessing fixtures (data-prep/tests/fixtures/preprocess/) with numpy doing what the
MetaKD reference implementation does, as an independent check of the Rust port:

- `clip_*.f32`: 1-D intensity samples; `expected.json` holds numpy's histogram clip level
  (`bins = int(max)`, last bin with >= 50 voxels, `v[v >= k] = k`) and the z-score mean and std over
  the voxels that differ from the first value.
- `case/`: one small case of four int16 NIfTI volumes (and a label map) written with nibabel, and the
  whole preprocessing of it (clip, z-score, transpose to (z, x, y), union-bounding-box crop) as
  float32 (`case_images.f32`) with the crop box.

    python tools/preprocess_fixture.py
"""

import json
import os

import nibabel as nib
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "data-prep", "tests", "fixtures", "preprocess")


def clip_level(values, min_voxels):
    hist, _ = np.histogram(values, bins=int(values.max()))
    return int(np.where(hist >= min_voxels)[0][-1])


def zscore(values):
    background = values.flat[0]
    mask = values != background
    fg = values[mask].astype(np.float64)
    out = np.zeros(values.shape, dtype=np.float32)
    out[mask] = (fg - fg.mean()) / fg.std()
    return out, mask, float(fg.mean()), float(fg.std())


def clip_samples(rng):
    ints = np.concatenate([
        np.zeros(12000),
        np.round(rng.normal(800, 150, 17000)),
        np.round(rng.uniform(1500, 4000, 1000)),
    ]).astype(np.float32)
    floats = np.concatenate([
        np.full(6000, 3.25),
        rng.normal(300.5, 80, 13000),
        rng.uniform(600, 2000, 1000),
    ]).astype(np.float32)
    rng.shuffle(ints[1:])
    rng.shuffle(floats[1:])
    return {"integers": ints, "floats": floats}


def main():
    rng = np.random.default_rng(11)
    os.makedirs(os.path.join(OUT, "case"), exist_ok=True)
    expected = {"clip_min_voxels": 50, "samples": {}}
    for name, values in clip_samples(rng).items():
        values.astype("<f4").tofile(os.path.join(OUT, f"clip_{name}.f32"))
        k = clip_level(values.copy(), 50)
        clipped = values.copy()
        clipped[clipped >= k] = k
        _, _, mean, std = zscore(clipped)
        expected["samples"][name] = {
            "file": f"clip_{name}.f32",
            "level": k,
            "changed": int((values > k).sum()),
            "mean": mean,
            "std": std,
        }

    shape = (14, 12, 10)  # x, y, z
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    brain = np.zeros(shape, dtype=bool)
    brain[3:11, 2:10, 2:8] = True
    brain[5, 1, 4] = True  # one voxel of one modality widens the box
    images, masks = [], []
    for i, m in enumerate(("flair", "t1", "t1ce", "t2")):
        data = np.zeros(shape, dtype=np.int16)
        on = brain if i == 2 else (brain & ~(np.indices(shape)[1] == 1))
        data[on] = np.round(rng.normal(500 + 100 * i, 60, on.sum())).clip(1, None)
        data[7, 5, 4] = 3000 + i  # a bright outlier
        nib.save(nib.Nifti1Image(data, affine), os.path.join(OUT, "case", f"case_{m}.nii.gz"))
        values = data.astype(np.float32)
        k = clip_level(values.copy(), 1)
        values[values >= k] = k
        out, mask, _, _ = zscore(values)
        images.append(out.transpose(2, 0, 1))
        masks.append(mask.transpose(2, 0, 1))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[6:9, 4:7, 3:6] = 2
    labels[7, 5, 4] = 4
    nib.save(nib.Nifti1Image(labels, affine), os.path.join(OUT, "case", "case_seg.nii.gz"))
    union = np.any(masks, axis=0)
    nz = np.nonzero(union)
    lo = [int(a.min()) for a in nz]
    hi = [int(a.max()) + 1 for a in nz]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    np.stack([im[box] for im in images]).astype("<f4").tofile(os.path.join(OUT, "case_images.f32"))
    expected["case"] = {
        "clip_min_voxels": 1,
        "shape_zxy": [shape[2], shape[0], shape[1]],
        "crop_lo": lo,
        "crop_hi": hi,
        "images": "case_images.f32",
        "labels_sum": int(labels.transpose(2, 0, 1)[box].astype(int).sum()),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
