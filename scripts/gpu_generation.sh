#!/usr/bin/env bash
# Rollout generation on the GPU: the fast sampler against plain Hugging Face `generate`
# (docs/results.md#rollout-generation). Also times loading the default model, which converts the GGUF
# once on a fresh machine.
#   bash scripts/gpu_generation.sh        (on a fresh machine carry .device/m1, m2, ... one a call; see gpu_setup.sh)
# Writes $OUT/gen.json and $OUT/gen.log.
source scripts/gpu_setup.sh
gpu_info
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -c "from evilmoe.models import load_model; import time; t = time.time(); load_model('$MODEL', device='cuda'); print('model load+convert s', time.time() - t)"
python3 benchmarks/generation.py --device cuda --model $MODEL --json $OUT/gen.json 2>&1 | tee $OUT/gen.log
