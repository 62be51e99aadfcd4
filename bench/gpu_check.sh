#!/usr/bin/env bash
# The project's GPU check (≤ 8 minutes on one GPU; bench/gpu_check.py says what it measures).
#
#   bench/gpu_wheels.sh                       # here, once: open_clip + DeepSpeed wheels into .whl/ (~7 MB)
#   bench/gpu_check.sh --out "$OUT"           # on the GPU machine, with .whl carried beside the repo
#   bench/gpu_check.sh --cpu-smoke            # anywhere: the same code on CPU at tiny sizes
#
# The GPU machine has torch, torchvision, transformers, timm, torch_geometric (and scipy, pyarrow) but no
# network: the wheels in .whl/ are unpacked into a private folder, nothing is installed system-wide.
# Ray and MLflow are neither carried nor needed (gpu_check.py blocks their import).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}                           # here: PY=.venv/bin/python bench/gpu_check.sh --cpu-smoke
SITE=${GPU_CHECK_SITE:-/tmp/raymmrec-gpu-site}
if ls .whl/*.whl > /dev/null 2>&1 && ! "$PY" -c "import open_clip, deepspeed" 2> /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  export DS_ACCELERATOR=cuda
else
  export DS_ACCELERATOR=cpu
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null || true
# the 8-minute budget, with room to write the results: each part also records as it goes (--out)
exec timeout --signal=INT 470 "$PY" bench/gpu_check.py "$@"
