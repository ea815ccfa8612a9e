#!/usr/bin/env bash
# GPU figures in one prepared run (installs nothing; needs the project's .venv with a CUDA torch, or any
# Python with the package installed). Prints: the GPU, model-only pairs/s at 256² and 512² (CPU and CUDA,
# batch 1 and 8), the pipeline end to end on the bundled 2048² scene with one actor per GPU, and where
# the driver's time goes per tile (the ceiling for one pair however many GPUs).
# Usage: benchmarks/gpu.sh            (about 8 min on one H200)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device: install a CUDA build of torch"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")
PY
"$PY" benchmarks/model_speed.py --configs lite --sizes 256 512 --repeats 5 --batch 1
"$PY" benchmarks/model_speed.py --configs lite --sizes 512 --repeats 5 --batch 8
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
"$PY" benchmarks/pipeline_throughput.py --sizes 2048 --actors "$GPUS"
# the 10980² row is the full Sentinel-2 tile the projection in docs/performance.md is checked against
"$PY" benchmarks/driver_stages.py --sizes 2048 10980 --actors "$GPUS"
