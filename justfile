# metakd: the user's entry points. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Run every stage on fresh synthetic data (CPU) and print where the report is.
demo workdir="work/demo":
    cargo run --release -- demo --workdir {{workdir}}

# Run the test suite.
test:
    cargo test --workspace --release

# Fuzz the NIfTI reader, the shard reader and the configuration loader, `seconds` each (not in CI).
fuzz seconds="60":
    METAKD_FUZZ_SECONDS={{seconds}} cargo test --workspace --release --test fuzz -- --ignored --nocapture --test-threads 1

# What CI runs: formatting, lints, tests, the MLflow check and the demo regressed against its baseline.
ci:
    bash .ci/run

# Rewrite the baseline that CI regresses its fixed-seed demo against (after an intended change).
ci-baseline:
    rm -rf work/ci-regress
    cargo build --release
    RAYON_NUM_THREADS=2 target/release/metakd demo --workdir work/ci-regress --cases 16 --shape 32,48,48 --iterations 200 --seed 0
    cp work/ci-regress/report/subsets.csv .ci/baseline-demo-subsets.csv

# Compare a run's results (sweep table, unit folder or subsets.csv) with a baseline.
regress baseline results:
    cargo run --release -- regress --baseline {{baseline}} --results {{results}}

# A training step of a network preset beside its PyTorch twin (a Python with torch and safetensors).
bench-train preset="reference" python="python3":
    cargo run --release -- bench train --preset {{preset}} --python {{python}}

# Generate a synthetic BraTS-like data set in the BraTS2020 layout.
synth out="work/synth" cases="32":
    cargo run --release -- synth brats --out {{out}} --cases {{cases}}

# Usage: `just reproduce-brats2018 DATA=/path [SPLITS=dir] [CONFIG=file] [WORK=dir]` (tools/reproduce.sh).
# BraTS2018 table from a downloaded training release, three locally scored folds (resumable).
reproduce-brats2018 *args:
    bash tools/reproduce.sh brats2018 {{args}}

# The same for BraTS2019.
reproduce-brats2019 *args:
    bash tools/reproduce.sh brats2019 {{args}}

# The same for BraTS2020.
reproduce-brats2020 *args:
    bash tools/reproduce.sh brats2020 {{args}}

# Usage: `just reproduce-avmnist [FSDD=../shared/data/fsdd/recordings] [MNIST=../shared/data/mnist5k/mnist_5k.csv.gz] [WORK=work/avmnist] [MULTIBENCH=<MultiBench avmnist folder>]`.
# AV-MNIST: prepare, every audio and visual rate × 3 seeds × MetaKD, ablations and baselines (resumable), report.
reproduce-avmnist *args:
    bash tools/reproduce-avmnist.sh {{args}}

# Usage: `just reproduce-adni TABLES=<folder of Flex-MoE-style ADNI tables> [WORK=work/adni] [SEEDS=0,1,2]`.
# ADNI modality tables with their real missingness: prepare, 3 seeds × MetaKD, ablations and late fusion, every subset, report.
reproduce-adni *args:
    bash tools/reproduce-tables.sh adni {{args}}

# Usage: `just reproduce-ad-csf [CSV=../shared/data/ad-csf/ad_data.csv.gz] [WORK=work/ad-csf]`: the same on the real stand-in.
reproduce-ad-csf *args:
    bash tools/reproduce-tables.sh ad-csf {{args}}

# Usage: `just gpu-check [metakd-gpu-check options]`.
# Builds the CUDA check here (nvcc from PyPI wheels) into gpu-bundle/ and runs it when a GPU is present:
# every 3D op on CUDA against the CPU, a timed reference and small training step at 80×160×160 beside PyTorch.
gpu-check *args:
    bash tools/gpu-check.sh {{args}}
