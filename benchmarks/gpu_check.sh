#!/usr/bin/env bash
# The GPU part of the benchmarks, run on a machine with an NVIDIA GPU and PyTorch from the
# repository root, with .gpu/ beside it: the pinned ComfyUI tree as comfyui.tar.xz and the
# wheels of ComfyUI's other dependencies for its Python (3.12). Prepare .gpu/ where the
# local runtime is set up:
#   mkdir -p .gpu && tar -C .local -cJf .gpu/comfyui.tar.xz --exclude='ComfyUI/models/*' ... ComfyUI
#   pip download --only-binary=:all: --python-version 3.12 --no-deps -d .gpu av torchsde trampoline \
#     SQLAlchemy alembic Mako greenlet pydantic pydantic-core annotated-types typing-inspection
# It generates the SD1.5-size checkpoint on the GPU machine and writes $OUT/GPU_RESULTS.md
# (copy it to benchmarks/GPU_RESULTS.md; `python -m benchmarks` includes it).
set -euo pipefail
work=/tmp/gpu-check
mkdir -p "$work/deps" "${OUT:=$work/out}"
python3 -m pip install -q --no-index --no-deps --target "$work/deps" .gpu/*.whl
tar -C "$work" -xJf .gpu/comfyui.tar.xz
export PYTHONPATH=$work/deps:$work/ComfyUI
python3 scripts/dev/make_sd15_size_checkpoint.py --models-dir "$work/ComfyUI/models"
python3 benchmarks/gpu_check.py --comfyui "$work/ComfyUI" --out "$OUT/GPU_RESULTS.md" --runs "${RUNS:-20}"
