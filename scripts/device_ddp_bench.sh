#!/usr/bin/env bash
# Data-parallel step benchmark (issue 7) on the 2 x H200 machine (kind nvidia-h200-x2), < 8 minutes.
#   bash scripts/device_ddp_bench.sh            (carry .device/m1 + .device/m2 on a fresh machine)
# Strong scaling: the same GLOBAL batch on 1 and 2 GPUs (torchrun, NCCL; NVLink multicast stays off,
# NCCL_NVLS_ENABLE=0 from device_setup.sh). Each part: 1 warm-up step + timed steps, under `timeout`
# (SIGINT first, so a cut part still writes what it measured); a failed part does not stop the rest.
#   small_{1,2}.json  gpu-small (default model), 16 prompts x 8 samples x 256 tokens, 4 steps
#   q17_{1,2}.json    random-init Qwen3-1.7B, qwen3-4b preset, 8 x 8 x 512 tokens, grad. checkpointing, 3 steps
#   q4_{1,2}.json     random-init Qwen3-4B, same, 3 steps
#   scaling.json      benchmarks/ddp_scaling.py over all of them; ddp_bench.log: full output
# CPU check of this script's logic: DDP_BENCH_CPU=1 OUT=/tmp/o bash scripts/device_ddp_bench.sh
if [ -z "${DDP_BENCH_CPU:-}" ]; then source scripts/device_setup.sh; else export PYTHONPATH=$PWD/src:${PYTHONPATH:-}; fi
set +e
OUT=${OUT:?set OUT}
LOG=$OUT/ddp_bench.log
BUDGET=${BUDGET:-450}   # seconds for all parts
start=$SECONDS
declare -A status
M=/root/evm/model.gguf

run_part() {  # run_part NAME NPROC CAP_SECONDS benchmark-args...
  local name=$1 nproc=$2 cap=$3; shift 3
  local left=$((BUDGET - (SECONDS - start)))
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 30 ]; then status[$name]="skipped (${left}s left)"; echo "== $name: skipped" | tee -a $LOG; return; fi
  echo "== $name ($nproc GPU, limit ${limit}s): $*" | tee -a $LOG
  local t0=$SECONDS
  timeout -s INT -k 20 "$limit" torchrun --standalone --nproc-per-node "$nproc" benchmarks/grpo_step.py "$@" --json "$OUT/$name.json" >> $LOG 2>&1
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $((SECONDS - t0)) -ge "$limit" ]; then status[$name]="CUT at ${limit}s (rc $rc)"; else status[$name]="rc $rc"; fi
  echo "== $name: ${status[$name]}, $((SECONDS - t0)) s" | tee -a $LOG
}

if [ -n "${DDP_BENCH_CPU:-}" ]; then  # same logic, tiny model on CPU (gloo)
  SMALL=(--preset tiny --steps 3 --prompts 2)
  BIG17=(--preset tiny --random-init-qwen3 tiny --steps 2 --prompts 2)
  BIG4=("${BIG17[@]}")
else
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a $LOG
  SMALL=(--preset gpu-small --arm moe --model $M --steps 4)
  BIG17=(--preset qwen3-4b --random-init-qwen3 1.7b --model $M --arm moe --prompts 8 --group-size 8 --max-new-tokens 512 --steps 3)
  BIG4=(--preset qwen3-4b --random-init-qwen3 4b --model $M --arm moe --prompts 8 --group-size 8 --max-new-tokens 512 --steps 3)
fi
run_part small_1 1 75 "${SMALL[@]}"
run_part small_2 2 65 "${SMALL[@]}"
run_part q17_1 1 90 "${BIG17[@]}"
run_part q17_2 2 75 "${BIG17[@]}"
run_part q4_1 1 110 "${BIG4[@]}"
run_part q4_2 2 90 "${BIG4[@]}"

echo
echo "===== summary ($((SECONDS - start)) s) ====="
for name in small_1 small_2 q17_1 q17_2 q4_1 q4_2; do echo "$name: ${status[$name]}"; done
python3 benchmarks/ddp_scaling.py $OUT/small_*.json $OUT/q17_*.json $OUT/q4_*.json --json $OUT/scaling.json
grep -h "FAILED\|OutOfMemory\|Error" $LOG | grep -v Warning | head -8
true
