"""Reference MFCCs of AV-MNIST's audio (SMIL's protocol) computed with librosa.

The protocol: load the 8 kHz FSDD wave as float, keep every third sample, compute 20 MFCCs with
librosa's defaults while declaring sr = 8000 (n_fft 2048, hop 512, Hann window, centred frames
with reflect padding as librosa 0.7 had it, 128 Slaney mel bands, power to dB with ref 1.0 and
top_db 80, orthonormal DCT-II), then zero-pad or cut the time axis to 20 frames.

Writes the features of a few recordings (the shortest and the longest of the protocol's three
speakers among them) as JSON for `data-prep/tests/avmnist_mfcc.rs`.

    python tools/avmnist_mfcc_reference.py ../shared/data/fsdd/recordings \
        data-prep/tests/fixtures/avmnist_mfcc.json

Needs numpy, librosa and soundfile (PyPI).
"""

import json
import os
import sys

import librosa
import numpy as np

SPEAKERS = ("jackson", "nicolas", "theo")
FRAMES = 20


def smil_mfcc(path):
    wave, rate = librosa.load(path, sr=None)
    assert rate == 8000, rate
    decimated = wave[::3]
    mfcc = librosa.feature.mfcc(y=decimated, sr=8000, n_mfcc=20, pad_mode="reflect")
    out = np.zeros((20, FRAMES), dtype=np.float64)
    frames = min(FRAMES, mfcc.shape[1])
    out[:, :frames] = mfcc[:, :frames]
    return len(decimated), mfcc.shape[1], out


def main(recordings, fixture):
    names = sorted(
        n for n in os.listdir(recordings) if n.endswith(".wav") and n.split("_")[1] in SPEAKERS
    )
    sizes = {n: os.path.getsize(os.path.join(recordings, n)) for n in names}
    chosen = ["0_jackson_0.wav", "5_nicolas_23.wav", "9_theo_49.wav"]
    chosen += [min(names, key=sizes.get), max(names, key=sizes.get)]
    cases = []
    for name in chosen:
        samples, frames, mfcc = smil_mfcc(os.path.join(recordings, name))
        cases.append(
            {
                "file": name,
                "decimated_samples": samples,
                "frames": frames,
                "mfcc": mfcc.reshape(-1).tolist(),
            }
        )
    with open(fixture, "w") as f:
        json.dump({"librosa": librosa.__version__, "cases": cases}, f)
    print(f"{fixture}: {len(cases)} recordings, librosa {librosa.__version__}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
