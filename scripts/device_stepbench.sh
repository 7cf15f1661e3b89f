#!/usr/bin/env bash
# GRPO step benchmarks in one GPU call (issue 5), < 9.5 minutes in all. Carry .whl (trl, datasets,
# dill, multiprocess, gguf wheels) and, on a fresh machine, .device/m1 + .device/m2 for the model.
#   bash scripts/device_stepbench.sh
# Parts, in order, each under `timeout` (SIGINT, so a cut part still prints and writes what it measured):
#   a) our step, gpu-small, arm moe, rank 8, no demonstrations (TRL generates all 128), 5 steps                        -> $OUT/a_grpo_gpu_small.json
#   b) TRL GRPOTrainer, same model/prompts/lengths, LoRA r=8, 5 steps          -> $OUT/b_trl_r8.json
#   c) our step, random Qwen3-4B, qwen3-4b preset, 8 x 8 x 1024 tokens, 2 steps -> $OUT/c_qwen3_4b.json
#   d) only if >= 150 s are left: TRL with LoRA r=32, 4 steps                    -> $OUT/d_trl_r32.json
# Full output of every part goes to $OUT/stepbench.log; the tables are printed at the end.
source scripts/device_setup.sh
set +e
LOG=$OUT/stepbench.log
BUDGET=560          # seconds for all parts (device_setup.sh above takes a few more)
start=$SECONDS
declare -A status

run_part() {  # run_part NAME CAP_SECONDS command...
  local name=$1 cap=$2; shift 2
  local left=$((BUDGET - (SECONDS - start)))
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 30 ]; then status[$name]="skipped (no time left)"; echo "== $name: skipped, ${left}s left" | tee -a $LOG; return; fi
  echo "== $name (limit ${limit}s): $*" | tee -a $LOG
  local t0=$SECONDS
  timeout -s INT -k 20 "$limit" "$@" >> $LOG 2>&1
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $((SECONDS - t0)) -ge "$limit" ]; then status[$name]="CUT at ${limit}s (rc $rc)"; else status[$name]="rc $rc"; fi
  echo "== $name: ${status[$name]}, $((SECONDS - t0)) s" | tee -a $LOG
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a $LOG
M=/root/evm/model.gguf
run_part a_grpo_gpu_small 150 python3 benchmarks/grpo_step.py --preset gpu-small --arm moe --rank 8 --teacher-per-group 0 --model $M --steps 5 --json $OUT/a_grpo_gpu_small.json
run_part b_trl_r8 190 python3 benchmarks/trl_step.py --model $M --rank 8 --steps 5 --json $OUT/b_trl_r8.json
run_part c_qwen3_4b 260 python3 benchmarks/grpo_step.py --preset qwen3-4b --random-init-qwen3 4b --model $M --arm moe \
  --prompts 8 --group-size 8 --max-new-tokens 1024 --steps 2 --json $OUT/c_qwen3_4b.json
if [ $((BUDGET - (SECONDS - start))) -ge 150 ]; then
  run_part d_trl_r32 200 python3 benchmarks/trl_step.py --model $M --rank 32 --steps 4 --json $OUT/d_trl_r32.json
else
  status[d_trl_r32]="skipped (no time left)"
fi

echo
echo "===== summary ($((SECONDS - start)) s) ====="
for name in a_grpo_gpu_small b_trl_r8 c_qwen3_4b d_trl_r32; do echo "$name: ${status[$name]}"; done
# each part's closing table (everything from its table header to the part's end line)
awk '/^== /{show=0} /^(GRPO step:|TRL GRPO step:)/{show=1} show' $LOG | grep -v "Warning\|warn(" | cut -c1-220
grep -h "FAILED\|OutOfMemory\|Traceback" $LOG | head -8
true
