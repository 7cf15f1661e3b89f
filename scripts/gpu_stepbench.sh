#!/usr/bin/env bash
# GRPO step benchmarks in one GPU call, < 9.5 minutes in all: our trainer's step against TRL's
# GRPOTrainer on the same workload, and the Qwen3-4B memory check
# (docs/results.md#the-grpo-step-against-trl-and-the-qwen3-4b-memory-check).
#   bash scripts/gpu_stepbench.sh      (carry .whl: trl, datasets, dill, multiprocess, gguf wheels;
#                                       on a fresh machine also .device/m1, m2, ... one a call, see gpu_setup.sh)
# Parts, in order:
#   a) our step, gpu-small, arm moe, rank 8, no demonstrations (TRL samples all 128 too), 5 steps  -> $OUT/a_grpo_gpu_small.json
#   b) TRL GRPOTrainer, same model/prompts/lengths, LoRA r=8, 5 steps                              -> $OUT/b_trl_r8.json
#   c) our step, random Qwen3-4B, qwen3-4b preset, 8 x 8 x 1024 tokens, 2 steps                    -> $OUT/c_qwen3_4b.json
#   d) only if >= 150 s are left: TRL with LoRA r=32, 4 steps                                       -> $OUT/d_trl_r32.json
# Full output of every part goes to $OUT/stepbench.log; the tables are printed at the end.
source scripts/gpu_setup.sh
set +e
PARTS_LOG=$OUT/stepbench.log
PARTS_BUDGET=560   # seconds for all parts (the setup above takes a few more)

gpu_info | tee -a $PARTS_LOG
run_part a_grpo_gpu_small 150 python3 benchmarks/grpo_step.py --preset gpu-small --arm moe --rank 8 --teacher-per-group 0 \
  --model $MODEL --steps 5 --json $OUT/a_grpo_gpu_small.json
run_part b_trl_r8 190 python3 benchmarks/trl_step.py --model $MODEL --rank 8 --steps 5 --json $OUT/b_trl_r8.json
run_part c_qwen3_4b 260 python3 benchmarks/grpo_step.py --preset qwen3-4b --random-init-qwen3 4b --model $MODEL --arm moe \
  --prompts 8 --group-size 8 --max-new-tokens 1024 --steps 2 --json $OUT/c_qwen3_4b.json
if [ $((PARTS_BUDGET - (SECONDS - PARTS_START))) -ge 150 ]; then
  run_part d_trl_r32 200 python3 benchmarks/trl_step.py --model $MODEL --rank 32 --steps 4 --json $OUT/d_trl_r32.json
else
  PART_STATUS[d_trl_r32]="skipped (no time left)"
fi

parts_summary a_grpo_gpu_small b_trl_r8 c_qwen3_4b d_trl_r32
# each part's closing table (everything from its table header to the part's end line)
awk '/^== /{show=0} /^(GRPO step:|TRL GRPO step:)/{show=1} show' $PARTS_LOG | grep -v "Warning\|warn(" | cut -c1-220
grep -h "FAILED\|OutOfMemory\|Traceback" $PARTS_LOG | head -8
true
