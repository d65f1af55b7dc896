#!/usr/bin/env bash
# Rebuilds vendor/candle-core from a crates.io release of candle-core and vendor/candle-core.patch.
#
#   bash vendor/update.sh 0.11.1          # re-create the vendored copy (the release it tracks)
#   bash vendor/update.sh 0.11.1 --check  # only check that the copy is that release plus the patch
#   bash vendor/update.sh 0.12.0          # move to a new release: a rejected hunk is a rebase to do
#
# The release is trimmed as the copy is (tests, benches and examples removed; the patch drops
# their entries from Cargo.toml), then the patch is applied with `patch -p1`.
set -euo pipefail
version=${1:?usage: bash vendor/update.sh VERSION [--check]}
mode=${2:-}
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -sSfL "https://static.crates.io/crates/candle-core/candle-core-$version.crate" \
    | tar xz -C "$work"
src="$work/candle-core-$version"
rm -rf "$src"/{tests,benches,examples,.cargo_vcs_info.json,Cargo.toml.orig,Cargo.lock}
patch --quiet --no-backup-if-mismatch -d "$src" -p1 <"$here/candle-core.patch"
if [[ "$mode" == --check ]]; then
    if diff -r "$src" "$here/candle-core" >/dev/null; then
        echo "vendor/candle-core is candle-core $version with vendor/candle-core.patch applied"
    else
        echo "vendor/candle-core differs from candle-core $version + vendor/candle-core.patch:" >&2
        diff -rq "$src" "$here/candle-core" >&2 || true
        exit 1
    fi
else
    rm -rf "$here/candle-core"
    mv "$src" "$here/candle-core"
    echo "vendor/candle-core is now candle-core $version with vendor/candle-core.patch applied"
fi
