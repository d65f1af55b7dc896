"""Data preparation the way the MetaKD reference implementation does it, in Python (nibabel +
numpy), for `metakd bench prepare` to time against: for every case folder under --src, read the four
modalities (and the label map), clip the upper intensity tail at the index of the last histogram bin
holding at least 50 voxels, z-score over the voxels that differ from the value at voxel [0,0,0],
transpose to (z, x, y), crop to the union bounding box of the foreground and save the arrays.
Prints {"seconds": ..., "cases": ...} as JSON.
"""

import argparse
import json
import os
import time

import nibabel as nib
import numpy as np

MODALITIES = ("flair", "t1", "t1ce", "t2")


def clip_and_normalise(image):
    bins = int(image.max())
    hist, _ = np.histogram(image, bins=bins)
    k = np.where(hist >= 50)[0][-1]
    image[image >= k] = k
    background = image[0, 0, 0]
    mask = image != background
    values = image[mask].astype(np.float64)
    out = np.zeros(image.shape, dtype=np.float32)
    out[mask] = (values - values.mean()) / values.std()
    return out, mask


def prepare_case(folder, case_id):
    images, masks = [], []
    for m in MODALITIES:
        path = os.path.join(folder, f"{case_id}_{m}.nii.gz")
        if not os.path.exists(path):
            path = path[: -len(".gz")]
        data = np.asanyarray(nib.load(path).dataobj).astype(np.float32)
        normalised, mask = clip_and_normalise(data)
        images.append(normalised.transpose(2, 0, 1))
        masks.append(mask.transpose(2, 0, 1))
    union = np.any(masks, axis=0)
    nz = np.nonzero(union)
    box = tuple(slice(a.min(), a.max() + 1) for a in nz)
    stacked = np.stack([im[box] for im in images])
    seg_path = os.path.join(folder, f"{case_id}_seg.nii.gz")
    labels = None
    if os.path.exists(seg_path):
        labels = np.asanyarray(nib.load(seg_path).dataobj).astype(np.uint8).transpose(2, 0, 1)[box]
    return stacked, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    folders = []
    for root, dirs, files in os.walk(args.src):
        name = os.path.basename(root)
        if any(f.startswith(name + "_flair") for f in files):
            folders.append((root, name))
    started = time.perf_counter()
    for folder, case_id in sorted(folders):
        images, labels = prepare_case(folder, case_id)
        np.save(os.path.join(args.out, f"{case_id}_images.npy"), images)
        if labels is not None:
            np.save(os.path.join(args.out, f"{case_id}_labels.npy"), labels)
    print(json.dumps({"seconds": time.perf_counter() - started, "cases": len(folders)}))


if __name__ == "__main__":
    main()
