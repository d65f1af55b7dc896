#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler from PyPI wheels (no GPU, no system CUDA needed) into DIR
# (default .cuda) and writes DIR/env.sh, which sets CUDA_HOME, NVCC, PATH and CUDA_COMPUTE_CAP
# for `cargo build --release --features cuda`. The CUDA libraries themselves (driver, cuBLAS,
# cuRAND, NVRTC, cuDNN) are loaded when a CUDA device is first used, not at link time: a binary
# built with the feature starts on machines without them and runs on the CPU there.
#
# Pinned to 13.0.x: nvcc of a later 13.x emits PTX that a CUDA 13.0 driver may refuse.
set -euo pipefail
DIR=${1:-.cuda}
CAP=${CUDA_COMPUTE_CAP:-90}
WHEELS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
)
if [ -x "$DIR/cuda/bin/nvcc" ] && [ -f "$DIR/env.sh" ]; then
    echo "cuda-toolchain: $DIR already holds nvcc ($("$DIR/cuda/bin/nvcc" --version | tail -1))"
    exit 0
fi
mkdir -p "$DIR/wheels" "$DIR/unpacked"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DIR/wheels" "${WHEELS[@]}"
for wheel in "$DIR"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$DIR/unpacked"
done
# The wheels put their parts under nvidia/cu13/: one CUDA_HOME holds them all.
root=$(cd "$DIR/unpacked/nvidia/cu13" && pwd)
rm -rf "$DIR/cuda"
ln -s "$root" "$DIR/cuda"
chmod +x "$root"/bin/* "$root"/nvvm/bin/* 2>/dev/null || true
if [ -f "$root/lib/libcudart.so.13" ] && [ ! -e "$root/lib/libcudart.so" ]; then
    ln -s libcudart.so.13 "$root/lib/libcudart.so"
fi
[ -e "$root/lib64" ] || ln -s lib "$root/lib64"
cuda_home=$(cd "$DIR/cuda" && pwd -P)
cat > "$DIR/env.sh" <<ENV
# Source this file before \`cargo build --release --features cuda\` (tools/cuda-toolchain.sh).
export CUDA_HOME="$cuda_home"
export CUDA_PATH="$cuda_home"
export NVCC="$cuda_home/bin/nvcc"
export PATH="$cuda_home/bin:$cuda_home/nvvm/bin:\$PATH"
export CUDA_COMPUTE_CAP="$CAP"
# candle's kernels link libcudart (from the runtime wheel); at run time it comes from
# LD_LIBRARY_PATH (this folder's lib/, or PyTorch's nvidia/cu13/lib on a GPU machine).
export LIBRARY_PATH="$cuda_home/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
ENV
"$root/bin/nvcc" --version | tail -2
echo "cuda-toolchain: source $DIR/env.sh, then cargo build --release --features cuda"
