# metakd: the user's entry points. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The downloaded release for the reproduce-* recipes: `just reproduce-brats2020 DATA=/path`.
DATA := ""

# Run every stage on fresh synthetic data (CPU) and print where the report is.
demo workdir="work/demo":
    cargo run --release -- demo --workdir {{workdir}}

# Run the test suite.
test:
    cargo test --workspace --release

# What CI runs: formatting, lints, tests, and the end-to-end MLflow tracking check.
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

# Reproduce the paper's BraTS2018 table from the downloaded training release.
reproduce-brats2018 data=DATA:
    @just _reproduce brats2018 "{{data}}"

# Reproduce the paper's BraTS2019 table from the downloaded training release.
reproduce-brats2019 data=DATA:
    @just _reproduce brats2019 "{{data}}"

# Reproduce the paper's BraTS2020 table from the downloaded training release.
reproduce-brats2020 data=DATA:
    @just _reproduce brats2020 "{{data}}"

_reproduce release data:
    #!/usr/bin/env bash
    set -euo pipefail
    data="{{data}}"
    data="${data#DATA=}"
    if [ -z "$data" ]; then
        echo "usage: just reproduce-{{release}} DATA=/path/to/the/downloaded/release" >&2
        exit 2
    fi
    if [ ! -f "configs/{{release}}.toml" ]; then
        echo "reproduce-{{release}}: configs/{{release}}.toml (the reference preset and schedule of the paper) is not available yet;" >&2
        echo "it needs the reference network, the release-specific readers and GPU training. Until then run: just demo" >&2
        exit 2
    fi
    cargo run --release -- prepare brats --src "$data" --out "work/{{release}}/shards"
    cargo run --release -- train --config "configs/{{release}}.toml" --shards "work/{{release}}/shards" --out "work/{{release}}/run"
    cargo run --release -- sweep --run "work/{{release}}/run"
    cargo run --release -- report --sweep "work/{{release}}/run/sweep.parquet" --out "work/{{release}}/report"
