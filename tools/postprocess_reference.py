#!/usr/bin/env python3
"""Label maps post-processed by the reference's `postprocess.py` (its `continues_region_extract`),
for `experiments/tests/postprocess_reference.rs`.

The function below is the reference's, with changes that keep its behaviour on today's libraries:
scikit-image 0.17.2 let `neighbors=4` override `connectivity=2`, giving 6-connected components;
`neighbors` is gone since, so `connectivity=1` says the same; numpy 2 takes `reshape`'s shape
positionally. Its prints are dropped.
OpenCV's k-means draws its random centres from OpenCV's generator, seeded here.

Writes experiments/tests/fixtures/postprocess.safetensors: per case `<case>.labels` (the input
label map), `<case>.t1ce` (T1ce intensities, integers stored as float16) and `<case>.expected`
(the reference's output), all in the project's (z, x, y) C order (the reference works on the
NIfTI array's (x, y, z) order).

    python3 -m pip install numpy scikit-image opencv-python-headless safetensors
    python3 tools/postprocess_reference.py
"""
import pathlib

import cv2
import numpy as np
from safetensors.numpy import save_file
from skimage.measure import label as LAB

OUT = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "tests" / "fixtures"


def continues_region_extract(label, MR):
    regions = np.where(label >= 1, np.ones_like(label), np.zeros_like(label))
    L, n = LAB(regions, background=0, connectivity=1, return_num=True)

    max_num = 0
    for i in range(0, n + 1):
        if np.sum(L == i) > max_num and i != 0:
            max_num = np.sum(L == i)

    vol_e = np.where(label == 4, np.ones_like(label), np.zeros_like(label))
    vol_t = np.where(label >= 1, np.ones_like(label), np.zeros_like(label))
    for i in range(1, n + 1):
        if np.sum(L == i) < min(2000, max_num * 0.1) or np.where(L == i)[2].max() <= 25:
            label = np.where(L == i, np.zeros_like(label), label)
            continue

        label_i = np.where(L == i, label, np.zeros_like(label))
        vol_e_i = np.where(label_i == 4, label_i, np.zeros_like(label_i))
        vol_t_i = np.where(label_i >= 1, label_i, np.zeros_like(label_i))
        if (vol_e.sum() / vol_t.sum() < 0.12 and vol_e_i.sum() / vol_t_i.sum() < 0.05
                and vol_e_i.sum() < 450 and (np.sum(label == 1) < 10000)):
            MR_edema = np.where(label_i == 2, MR, np.zeros_like(MR))
            MR_edema_ = np.float32(np.reshape(MR_edema, (-1)))
            criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
            num_clusters = 3
            ret, matrix, center = cv2.kmeans(MR_edema_, num_clusters, None, criteria, num_clusters,
                                             cv2.KMEANS_RANDOM_CENTERS)
            matrix = np.reshape(matrix, MR_edema.shape)
            center[np.argmax(center)] = np.min(center)
            index = np.argmax(center)
            matrix_convert = np.where(matrix == index, np.ones_like(matrix), np.zeros_like(matrix))
            label = np.where(matrix_convert == 1, 1 * np.ones_like(label), label)

    NUM_pixels = 500
    number_4 = np.sum(label == 4)
    if number_4 < NUM_pixels:
        label = np.where(label == 4, 1, label)
    return label


SHAPE_XYZ = (36, 32, 40)


def box(a, value, x, y, z):
    a[x[0]:x[1], y[0]:y[1], z[0]:z[1]] = value


def brain(rng):
    """T1ce intensities: integers in a brain-like box, 0 around it."""
    mr = np.zeros(SHAPE_XYZ, dtype=np.float32)
    mr[2:34, 2:30, 1:39] = rng.integers(300, 700, size=(32, 28, 38))
    return mr


def components_case(rng):
    """Components that the size rule, the edge-slice rule and 6-connectivity decide."""
    label = np.zeros(SHAPE_XYZ, dtype=np.uint8)
    box(label, 2, (4, 22), (4, 22), (20, 38))    # 18·18·18 = 5832 voxels, kept
    box(label, 1, (6, 10), (6, 10), (22, 26))
    box(label, 4, (6, 18), (6, 18), (24, 36))    # ET 1728: the case's ET share is above 0.12
    box(label, 2, (26, 33), (4, 11), (4, 12))    # 392 voxels < 583.2: removed by size
    box(label, 2, (24, 34), (26, 32), (2, 26))   # 1440 voxels, top z index 25: removed
    box(label, 2, (26, 34), (20, 30), (32, 40))  # 640 voxels: kept
    box(label, 4, (22, 26), (22, 26), (26, 30))  # 64 voxels touching the big component along
    #   an edge only ((21, 21) and (22, 22) in x, y): a 6-connected component of its own,
    #   removed by size; 26-connected it would join the big one
    return label, brain(rng)


def kmeans_case(rng):
    """One component with little ET, whose oedema holds a dark and a bright group in T1ce."""
    label = np.zeros(SHAPE_XYZ, dtype=np.uint8)
    box(label, 2, (4, 28), (4, 26), (14, 38))    # 24·22·24 = 12672 voxels
    box(label, 4, (14, 16), (14, 16), (24, 26))  # 8 ET voxels
    mr = brain(rng)
    oedema = label == 2
    dark = oedema & (np.indices(SHAPE_XYZ)[0] < 12)
    mr[oedema] = rng.integers(1500, 1700, size=oedema.sum())
    mr[dark] = rng.integers(900, 1000, size=dark.sum())
    return label, mr


def main():
    cv2.setRNGSeed(0)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, make in [("components", components_case), ("kmeans", kmeans_case)]:
        label, mr = make(rng)
        expected = continues_region_extract(label.copy(), mr)
        zxy = lambda a: np.ascontiguousarray(np.transpose(a, (2, 0, 1)))
        tensors[f"{name}.labels"] = zxy(label).astype(np.uint8)
        assert mr.max() <= 2048 and (mr == np.round(mr)).all()  # exact in float16
        tensors[f"{name}.t1ce"] = zxy(mr).astype(np.float16)
        tensors[f"{name}.expected"] = zxy(expected).astype(np.uint8)
        counts = {int(v): int((expected == v).sum()) for v in (0, 1, 2, 4)}
        print(f"{name}: in {np.bincount(label.ravel(), minlength=5)}, out {counts}")
    save_file(tensors, str(OUT / "postprocess.safetensors"))


if __name__ == "__main__":
    main()
