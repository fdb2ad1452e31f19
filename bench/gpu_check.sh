#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): one device call of under 8 minutes, from the source tree
# with the machine's own python3 (torch, torchvision, safetensors), no virtual environment.
#   bench/gpu_check.sh [--data DIR] [--parts a,c,e,d]   (the default: every part, the study last)
# Fashion-MNIST is read from --data, $FASHION_MNIST or .data/fashion-mnist (git-ignored; copy
# /usr/share/datasets/fashion-mnist there). GPU_CHECK_TINY=1 tries it on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
