#!/usr/bin/env bash
# AV-MNIST end to end: prepare (FSDD + MNIST) → the protocol (audio and visual rates 5–20 %,
# 3 seeds, MetaKD, no KD, no meta, late fusion, image only, audio only) → report.
# Arguments: KEY=VALUE pairs (FSDD, MNIST, WORK, CONFIG, SEEDS; MULTIBENCH=<MultiBench's avmnist
# folder> prepares from its .npy layout instead of FSDD and MNIST). Every stage resumes.
set -euo pipefail

FSDD=../shared/data/fsdd/recordings
MNIST=../shared/data/mnist5k/mnist_5k.csv.gz
WORK=work/avmnist
CONFIG=
SEEDS=0,1,2
MULTIBENCH=
for arg in "$@"; do
    case "$arg" in
        FSDD=*|MNIST=*|WORK=*|CONFIG=*|SEEDS=*|MULTIBENCH=*) declare "$arg" ;;
        *) echo "reproduce-avmnist: unknown argument '$arg' (FSDD=, MNIST=, WORK=, CONFIG=, SEEDS=, MULTIBENCH=)" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet
METAKD=${METAKD:-target/release/metakd}
mkdir -p "$WORK"
if [ ! -f "$WORK/data/manifest.json" ]; then
    if [ -n "$MULTIBENCH" ]; then
        "$METAKD" prepare avmnist --multibench "$MULTIBENCH" --out "$WORK/data"
    else
        "$METAKD" prepare avmnist --fsdd "$FSDD" --mnist "$MNIST" --out "$WORK/data"
    fi
else
    echo "prepare: finished earlier ($WORK/data)"
fi
config_args=()
[ -n "$CONFIG" ] && config_args=(--config "$CONFIG")
"$METAKD" avmnist run --data "$WORK/data" --out "$WORK/run" --seeds "$SEEDS" "${config_args[@]}"
"$METAKD" report --sweep "$WORK/run/results.parquet" --out "$WORK/report"
