#!/usr/bin/env bash
# Fill .whl/ with what bench/gpu_check.sh needs beyond the GPU machine's own packages (torch, torchvision,
# transformers, timm, torch_geometric, scipy, pyarrow, einops, ninja, msgpack, py-cpuinfo are there):
# open_clip and DeepSpeed with their small pure-Python needs, for CPython 3.12 on manylinux x86-64.
# Run here (pip reaches a registry), then carry `.whl` (git-ignored) to the GPU machine; prints the total size.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .whl
dl() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$@"
}
dl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 hjson==3.1.0 \
   pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
# DeepSpeed ships only a source archive; its wheel (pure Python: ops compile on first use) is built here
if ! ls .whl/deepspeed-0.19.8-*.whl > /dev/null 2>&1; then
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
fi
ls -la .whl
du -sh .whl
