#!/usr/bin/env bash
# A batch of gpu-small runs on the GPU machine: one `evilmoe decide` whose runs train side by side,
# spread round-robin over the machine's GPUs, under a time budget. The same command in the next call
# continues (finished runs are read back, unfinished ones resume from their last checkpoint).
# /root/runs survives only while the machine stays warm: chain calls back to back.
#   bash scripts/gpu_decide.sh NAME BUDGET_S PARALLEL [decide flags...]
# e.g. the 60-step decision batch on 4 x H200 (three calls of the same command):
#   bash scripts/gpu_decide.sh decide 430 12 --seeds 0,1,2 --microbatch 32
# Finishing a batch on a fresh machine: copy the run dirs in first; decide reads a run with an
# eval.json back instead of training it, and a cut-off run whose checkpoint did not come back trains
# again from step 0 (its old metrics rows dropped), e.g.
#   mkdir -p /root/runs && cp -r docs/results/decision-60-steps/decide /root/runs/decide &&
#   bash scripts/gpu_decide.sh decide 430 4 --seeds 0,1,2 --microbatch 32
# Brings back $OUT/NAME.tgz (config, command, metrics, eval json, eval rollouts, plots; no
# checkpoints), the decide log $OUT/decide_NAME.log, and prints scripts/summarise_runs.py's tables.
source scripts/gpu_setup.sh
set +e
name=$1 budget=$2 parallel=$3; shift 3
R=/root/runs/$name
start=$SECONDS
gpu_info
(while sleep 60; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader | tr '\n' ' '; echo " t=$((SECONDS - start))s"; done) &
monitor=$!
timeout -s INT -k 30 $((budget + 120)) python3 -m evilmoe decide --preset gpu-small --model $MODEL \
  --out $R --parallel $parallel --time-budget-s $budget "$@" > $OUT/decide_$name.log 2>&1
echo "== decide exited with $? after $((SECONDS - start)) s"
kill $monitor
runs=$(ls -d $R/*/seed_* 2>/dev/null)
[ -n "$runs" ] && python3 scripts/summarise_runs.py $runs | cut -c1-300
(cd $R && tar czf $OUT/$name.tgz --exclude=checkpoints --exclude='step_*.jsonl' .)
grep -h "Traceback\|Error" $OUT/decide_$name.log | sort | uniq -c | head
true
