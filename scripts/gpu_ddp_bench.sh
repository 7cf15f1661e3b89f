#!/usr/bin/env bash
# Data-parallel step benchmark on the 2 x H200 machine (kind nvidia-h200-x2), < 8 minutes
# (docs/results.md#data-parallel-scaling).
#   bash scripts/gpu_ddp_bench.sh            (on a fresh machine carry .device/m1, m2, ... one a call; see gpu_setup.sh)
# Strong scaling: the same GLOBAL batch on 1 and 2 GPUs (torchrun, NCCL; NVLink multicast off, from
# gpu_setup.sh). Each part: 1 warm-up step + timed steps, under gpu_setup.sh's run_part.
#   small_{1,2}.json  gpu-small (default model), 16 prompts x 8 samples x 256 tokens, 4 steps
#   q17_{1,2}.json    random-init Qwen3-1.7B, qwen3-4b preset, 8 x 8 x 512 tokens, grad. checkpointing, 3 steps
#   q4_{1,2}.json     random-init Qwen3-4B, same, 3 steps
#   scaling.json      benchmarks/ddp_scaling.py over all of them; ddp_bench.log: full output
# CPU check of this script's logic (tiny model, gloo): GPU_SETUP_CPU=1 OUT=/tmp/o bash scripts/gpu_ddp_bench.sh
source scripts/gpu_setup.sh
set +e
PARTS_LOG=$OUT/ddp_bench.log
PARTS_BUDGET=${BUDGET:-450}   # seconds for all parts

ddp_part() {  # ddp_part NAME NPROC CAP_SECONDS benchmark-args...
  local name=$1 nproc=$2 cap=$3; shift 3
  run_part "$name" "$cap" torchrun --standalone --nproc-per-node "$nproc" benchmarks/grpo_step.py "$@" --json "$OUT/$name.json"
}

if [ -n "${GPU_SETUP_CPU:-}" ]; then  # same logic, tiny model on CPU
  SMALL=(--preset tiny --steps 3 --prompts 2)
  BIG17=(--preset tiny --random-init-qwen3 tiny --steps 2 --prompts 2)
  BIG4=("${BIG17[@]}")
else
  gpu_info | tee -a $PARTS_LOG
  SMALL=(--preset gpu-small --arm moe --model $MODEL --steps 4)
  BIG17=(--preset qwen3-4b --random-init-qwen3 1.7b --model $MODEL --arm moe --prompts 8 --group-size 8 --max-new-tokens 512 --steps 3)
  BIG4=(--preset qwen3-4b --random-init-qwen3 4b --model $MODEL --arm moe --prompts 8 --group-size 8 --max-new-tokens 512 --steps 3)
fi
ddp_part small_1 1 75 "${SMALL[@]}"
ddp_part small_2 2 65 "${SMALL[@]}"
ddp_part q17_1 1 90 "${BIG17[@]}"
ddp_part q17_2 2 75 "${BIG17[@]}"
ddp_part q4_1 1 110 "${BIG4[@]}"
ddp_part q4_2 2 90 "${BIG4[@]}"

parts_summary small_1 small_2 q17_1 q17_2 q4_1 q4_2
python3 benchmarks/ddp_scaling.py $OUT/small_*.json $OUT/q17_*.json $OUT/q4_*.json --json $OUT/scaling.json
grep -h "FAILED\|OutOfMemory\|Error" $PARTS_LOG | grep -v Warning | head -8
true
