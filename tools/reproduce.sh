#!/usr/bin/env bash
# Reproduce the paper's table on a downloaded BraTS training release, locally scored (Protocol B):
# prepare → split → train (stage 1, then stage 2 from its checkpoint) per fold → sweep per fold →
# one report over the folds (mean ± std), beside the published numbers of the same release.
#
#   tools/reproduce.sh RELEASE DATA=/path/to/release [CONFIG=configs/RELEASE.toml]
#       [SPLITS=/path/to/rfnet-lists] [WORK=work/RELEASE]
#
# SPLITS: a folder of RFNet-style lists (`train1.txt`, `val1.txt`, `test1.txt`, ... for three
# folds, or `train.txt`, `val.txt`, `test.txt` for one); without it three seeded Protocol B splits
# are drawn. Every stage resumes: prepared shards, split files, finished stages and sweep units
# are kept, and an interrupted training stage continues from its last checkpoint.
# METAKD names the program to run (default: `cargo run --release --`).
set -euo pipefail

release="${1:-}"
shift || true
case "$release" in
brats2018 | brats2019 | brats2020) ;;
*)
    echo "usage: $0 brats2018|brats2019|brats2020 DATA=/path [CONFIG=file] [SPLITS=dir] [WORK=dir]" >&2
    exit 2
    ;;
esac
data="" config="configs/$release.toml" splits="" work="work/$release"
for arg in "$@"; do
    case "$arg" in
    DATA=*) data="${arg#DATA=}" ;;
    CONFIG=*) config="${arg#CONFIG=}" ;;
    SPLITS=*) splits="${arg#SPLITS=}" ;;
    WORK=*) work="${arg#WORK=}" ;;
    *)
        echo "reproduce-$release: unknown argument '$arg' (DATA=, CONFIG=, SPLITS=, WORK=)" >&2
        exit 2
        ;;
    esac
done
if [ -z "$data" ]; then
    echo "usage: just reproduce-$release DATA=/path/to/the/downloaded/training/release" >&2
    exit 2
fi
if [ ! -d "$data" ]; then
    echo "reproduce-$release: DATA=$data is not a folder" >&2
    exit 2
fi
if [ ! -f "$config" ]; then
    echo "reproduce-$release: the configuration $config does not exist" >&2
    exit 2
fi
read -r -a metakd <<<"${METAKD:-cargo run --release --}"

echo "== prepare: $data → $work/shards"
"${metakd[@]}" prepare brats --src "$data" --out "$work/shards" --release "$release"

echo "== split"
mkdir -p "$work/splits"
split_files=()
if [ -n "$splits" ]; then
    if [ -f "$splits/train1.txt" ]; then
        for fold in 1 2 3; do
            file="$work/splits/split$fold.json"
            [ -f "$file" ] || "${metakd[@]}" split rfnet --lists "$splits" --fold "$fold" \
                --shards "$work/shards" --out "$file"
            split_files+=("$file")
        done
    else
        file="$work/splits/split1.json"
        [ -f "$file" ] || "${metakd[@]}" split rfnet --lists "$splits" --shards "$work/shards" --out "$file"
        split_files+=("$file")
    fi
else
    [ -f "$work/splits/split1.json" ] || "${metakd[@]}" split protocol-b --shards "$work/shards" \
        --out-dir "$work/splits" --splits 3
    split_files=("$work/splits"/split*.json)
fi

# Trains stage $3 (warmup or missing) of split $2 into $1 unless it finished; resumes it when it
# was interrupted (a resumed stage 2 continues from its own checkpoint, not stage 1's).
train_stage() {
    local run="$1" split="$2" stage="$3" from="${4:-}"
    if [ -f "$run/train_summary.json" ]; then
        echo "   $run finished earlier"
        return
    fi
    local args=(--split "$split" --stage "$stage")
    if [ -f "$run/checkpoint.safetensors" ]; then
        args+=(--resume)
    elif [ -n "$from" ]; then
        args+=(--from "$from")
    fi
    "${metakd[@]}" train --config "$config" --shards "$work/shards" --out "$run" "${args[@]}"
}

tables=()
for split in "${split_files[@]}"; do
    fold="$(basename "$split" .json)"
    fold="fold${fold#split}"
    echo "== $fold: stage 1 (all modalities)"
    train_stage "$work/runs/$fold-stage1" "$split" warmup
    echo "== $fold: stage 2 (random missing modalities)"
    train_stage "$work/runs/$fold" "$split" missing "$work/runs/$fold-stage1"
    echo "== $fold: sweep"
    "${metakd[@]}" sweep --run "$work/runs/$fold"
    tables+=(--sweep "$work/runs/$fold/sweep.parquet")
done

echo "== report"
"${metakd[@]}" report "${tables[@]}" --out "$work/report"
