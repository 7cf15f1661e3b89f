#!/usr/bin/env bash
# Run throughput in one GPU call (about 4-6 minutes): 7 gpu-small runs (one per arm) trained together
# in one process vs 7 processes sharing the GPU (decide --parallel 7) vs one run alone, side by side
# (docs/design.md#several-runs-on-one-gpu, benchmarks/README.md#run_batchingpy). The model is a random-init
# Llama of SmolLM2-135M-Instruct's shape built in code, so nothing needs carrying:
#   bash scripts/gpu_runbatch.sh                (STEPS=3 bash ... for more timed steps per run)
# Every mode at microbatch 8, as the decide --parallel 7 runs: a process at gpu-small's microbatch 64 peaks
# near 37 GB, so 7 would not fit one H200.
# Full output in $OUT/runbatch.log, the numbers in $OUT/runbatch.json.
source scripts/gpu_setup.sh
set +e
gpu_info | tee $OUT/runbatch.log
timeout -s INT -k 20 560 python3 benchmarks/run_batching.py --model random-smollm2 --preset gpu-small \
  --set microbatch=8 --steps "${STEPS:-2}" --device cuda --json $OUT/runbatch.json 2>&1 | grep -v "Warning\|warn(" | tee -a $OUT/runbatch.log
true
