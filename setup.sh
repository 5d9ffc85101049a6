#!/usr/bin/env bash
# One command sets everything up: a virtual environment in .venv with the project and its
# development tools. On a machine without an NVIDIA GPU the CPU build of PyTorch is installed
# first, so the project's torch range is satisfied without pulling a multi-GB CUDA build; on a
# GPU machine pip's default (CUDA) build is kept.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found; installing the default (CUDA) PyTorch build" >&2
elif ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: no GPU found; installing the CPU build of PyTorch $TORCH_CPU_VERSION" >&2
    # A local wheel or mirror (pip's configured find-links) first; PyTorch's CPU index otherwise.
    # The "+cpu" local version exists only there, so PyPI can never hand over a CUDA build here.
    $PIP install "torch==$TORCH_CPU_VERSION+cpu" 2>/dev/null \
        || $PIP install "torch==$TORCH_CPU_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi
$PIP install -e ".[dev,cloud]"
echo "setup: done. Activate with: source .venv/bin/activate" >&2
