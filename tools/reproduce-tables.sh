#!/usr/bin/env bash
# Modality tables end to end: prepare → every seed × variant (resumable units) → report.
#   tools/reproduce-tables.sh adni TABLES=<folder> [WORK=work/adni] [SEEDS=0,1,2] [CONFIG=file]
#   tools/reproduce-tables.sh ad-csf [CSV=../shared/data/ad-csf/ad_data.csv.gz] [WORK=work/ad-csf]
set -euo pipefail

kind="${1:-}"
shift || true
case "$kind" in
adni | ad-csf) ;;
*)
    echo "usage: $0 adni TABLES=<dir> | ad-csf [CSV=file] [WORK=dir] [SEEDS=0,1,2] [CONFIG=file]" >&2
    exit 2
    ;;
esac
TABLES=
CSV=../shared/data/ad-csf/ad_data.csv.gz
WORK="work/$kind"
SEEDS=0,1,2
CONFIG=
for arg in "$@"; do
    case "$arg" in
    TABLES=* | CSV=* | WORK=* | SEEDS=* | CONFIG=*) declare "$arg" ;;
    *)
        echo "reproduce-$kind: unknown argument '$arg'" >&2
        exit 2
        ;;
    esac
done

cargo build --release --quiet
METAKD=${METAKD:-target/release/metakd}
if [ ! -f "$WORK/data/manifest.json" ]; then
    if [ "$kind" = adni ]; then
        [ -n "$TABLES" ] || { echo "reproduce-adni: TABLES=<folder of modality tables> is required" >&2; exit 2; }
        "$METAKD" prepare adni --tables "$TABLES" --out "$WORK/data"
    else
        "$METAKD" prepare ad-csf --csv "$CSV" --out "$WORK/data"
    fi
else
    echo "prepare: finished earlier ($WORK/data)"
fi
config_args=()
[ -n "$CONFIG" ] && config_args=(--config "$CONFIG")
"$METAKD" tables --data "$WORK/data" --out "$WORK/run" --seeds "$SEEDS" "${config_args[@]}"
"$METAKD" report --sweep "$WORK/run/results.parquet" --out "$WORK/report"
