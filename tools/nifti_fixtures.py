"""Writes the NIfTI reader's fixtures (data-prep/tests/fixtures/nibabel/): a few of nibabel's own
test files (big-endian, NIfTI-2, 4-D; MIT licence, from the nibabel wheel's nibabel/tests/data) plus
files made here with nibabel (scl_slope/scl_inter, uint8, float64, big-endian gzip, NIfTI-2 3-D), and
for each the array, affine and voxel sizes nibabel reads (`expected.json`, values as float32 .bin).

    pip download nibabel --no-deps -d /tmp/nib && unzip -o /tmp/nib/nibabel-*.whl 'nibabel/tests/data/*' -d /tmp/nib
    python tools/nifti_fixtures.py --nibabel-data /tmp/nib/nibabel/tests/data
"""

import argparse
import json
import os
import shutil

import nibabel as nib
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "data-prep", "tests", "fixtures", "nibabel")
COPIED = ["anatomical.nii", "example_nifti2.nii.gz", "functional.nii"]


def made_files(out):
    rng = np.random.default_rng(3)
    affine = np.array([[-1.2, 0, 0, 30], [0, 0.9, 0.1, -20], [0, 0, 2.5, 5], [0, 0, 0, 1]])
    made = []
    data = rng.integers(-300, 3000, size=(9, 7, 5)).astype(np.int16)
    img = nib.Nifti1Image(data, affine)
    img.header.set_slope_inter(2.5, -10.0)
    nib.save(img, os.path.join(out, "scaled_int16.nii.gz"))
    made.append("scaled_int16.nii.gz")
    labels = rng.choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=(6, 8, 4))
    nib.save(nib.Nifti1Image(labels, affine), os.path.join(out, "labels_uint8.nii"))
    made.append("labels_uint8.nii")
    values = rng.normal(size=(5, 6, 7))
    nib.save(nib.Nifti1Image(values.astype(np.float64), affine), os.path.join(out, "float64.nii.gz"))
    made.append("float64.nii.gz")
    big = nib.Nifti1Image(
        rng.normal(size=(4, 5, 6)).astype(">f4"), affine, header=nib.Nifti1Header(endianness=">")
    )
    nib.save(big, os.path.join(out, "big_endian_float32.nii.gz"))
    made.append("big_endian_float32.nii.gz")
    two = nib.Nifti2Image(rng.integers(0, 1000, size=(8, 6, 5)).astype(np.int16), affine)
    nib.save(two, os.path.join(out, "nifti2_int16.nii"))
    made.append("nifti2_int16.nii")
    return made


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nibabel-data", required=True)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    for name in COPIED:
        shutil.copy(os.path.join(args.nibabel_data, name), os.path.join(OUT, name))
    names = COPIED + made_files(OUT)
    expected = {}
    for name in names:
        img = nib.load(os.path.join(OUT, name))
        data = np.asarray(img.get_fdata(dtype=np.float32))
        stem = name.split(".")[0]
        data.ravel(order="F").astype("<f4").tofile(os.path.join(OUT, stem + ".bin"))
        expected[name] = {
            "shape": list(data.shape),
            "values": stem + ".bin",
            "affine": img.affine[:3].tolist(),
            "zooms": [float(z) for z in img.header.get_zooms()[:3]],
            "nifti2": isinstance(img, nib.Nifti2Image),
            "big_endian": img.header.endianness == ">",
        }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"nibabel": nib.__version__, "files": expected}, f, indent=1)


if __name__ == "__main__":
    main()
