#!/usr/bin/env bash
# The engine's whole GPU measurement in one command, on a CUDA machine (issue 16; docs/ENGINE.md):
# both backbones, 4 and 8 tasks, batch 64 and 1, the suites' prefix routing, in float16 and bfloat16,
# then the float32 reference on the same GPU. Needs the suites' packages (requirements.txt).
#   bash benchmarks/gpu_engine.sh [OUT_DIR]     (default: benchmarks/out)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/out}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
for dtype in float16 bfloat16 float32; do
  python -m benchmarks.bench_engine --device cuda --dtype "$dtype" --model minilm --route-layers 1 \
    --repeat 20 | tee "$out/engine-minilm-$dtype.txt"
  python -m benchmarks.bench_engine --device cuda --dtype "$dtype" --model effnet --route-layers 3 \
    --repeat 20 | tee "$out/engine-effnet-$dtype.txt"
done
