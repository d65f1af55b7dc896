#!/usr/bin/env bash
# `just gpu-check`: builds the GPU check here (CUDA 13.0 from PyPI wheels, no GPU needed) into
# gpu-bundle/ (the stripped `metakd-gpu-check`, libcudart, the PyTorch twin) and
# gpu-bundle.tar.gz (about 15 MB), then runs it when this machine has a GPU. On a machine without
# one, carry gpu-bundle.tar.gz to a GPU machine with PyTorch and run there
# `tar xzf gpu-bundle.tar.gz && bash gpu-bundle/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/cuda-toolchain.sh .cuda >/dev/null
# shellcheck disable=SC1091
source .cuda/env.sh
cargo build --release --features cuda --bin metakd-gpu-check
rm -rf gpu-bundle
mkdir -p gpu-bundle/lib gpu-bundle/tools
strip -o gpu-bundle/metakd-gpu-check target/release/metakd-gpu-check
cp -L "$CUDA_HOME"/lib/libcudart.so.13 gpu-bundle/lib/
cp tools/metakd_twin.py gpu-bundle/tools/
cat > gpu-bundle/run.sh <<'RUN'
#!/usr/bin/env bash
# Runs the GPU check: every op against the CPU, the timed steps beside PyTorch, a table last.
# PyTorch's CUDA libraries (cuBLAS, cuDNN, NVRTC) are loaded from its nvidia/ wheels.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
libs="$here/lib"
nvidia=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__) if nvidia.__file__ else list(nvidia.__path__)[0])' 2>/dev/null || true)
if [ -n "$nvidia" ]; then
    for d in "$nvidia"/*/lib "$nvidia"/cu13/lib; do
        [ -d "$d" ] && libs="$libs:$d"
    done
fi
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$here/metakd-gpu-check" --twin-script "$here/tools/metakd_twin.py" "$@"
RUN
chmod +x gpu-bundle/run.sh
tar czf gpu-bundle.tar.gz gpu-bundle
du -sh gpu-bundle gpu-bundle.tar.gz
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    bash gpu-bundle/run.sh "$@"
else
    echo "gpu-check: no GPU here; carry gpu-bundle.tar.gz to a GPU machine and run:"
    echo "  tar xzf gpu-bundle.tar.gz && bash gpu-bundle/run.sh"
fi
