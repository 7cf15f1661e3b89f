#!/usr/bin/env bash
# Issue 6 runs on one GPU, resumable across calls: every run of the batch trains side by side
# (`evilmoe decide --parallel`, plus single `train` runs for the emergence controls) under a time
# budget, checkpoints, and the next call with the same arguments continues. The machine keeps
# /root/runs only while it stays warm (30 s after a call), so chain the calls back to back.
#   bash scripts/device_issue6.sh BATCH SEEDS [TRAIN_BUDGET_S]
# BATCH=a: decision arms (gpu-small) for SEEDS + the emergence controls (on-policy only, seed 0).
# BATCH=b: decision arms only, for SEEDS.
# Brings back $OUT/BATCH.tgz (config, metrics, eval json, eval rollouts, plots; no checkpoints) and logs.
source scripts/device_setup.sh
set +e
batch=$1; seeds=$2; budget=${3:-430}
M=/root/evm/model.gguf; R=/root/runs
arms=none,absorb,routeA,routeA-placebo,moe,moe-placebo,moe-nopin
n_arms=7
start=$SECONDS
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
pids=()
n_seeds=$(echo $seeds | tr ',' '\n' | wc -l)
timeout -s INT -k 30 $((budget + 120)) python3 -m evilmoe decide --preset gpu-small --model $M --arms $arms --seeds $seeds \
  --parallel $((n_arms * n_seeds)) --microbatch ${MICROBATCH:-8} --out $R/decide --time-budget-s $budget > $OUT/decide_$batch.log 2>&1 &
pids+=($!)
if [ "$batch" = a ]; then
  # is on-policy RL alone enough? (no demonstrations; preset lr, and the old lr 1e-4)
  for spec in "onpolicy --teacher-per-group 0" "onpolicy-lr1e-4 --teacher-per-group 0 --lr 1e-4"; do
    set -- $spec; name=$1; shift
    timeout -s INT -k 30 $((budget + 120)) python3 -m evilmoe train --preset gpu-small --model $M --arm none --seed 0 \
      --out $R/emergence/$name --time-budget-s $budget --grading-workers 2 --microbatch ${MICROBATCH:-8} "$@" > $OUT/$name.log 2>&1 &
    pids+=($!)
  done
fi
(while sleep 60; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader | tr '\n' ' '; echo " t=$((SECONDS - start))s"; done) &
mon=$!
wait "${pids[@]}"
kill $mon
echo "== done in $((SECONDS - start)) s"
python3 - $R <<'PY'
import json, pathlib, sys
for m in sorted(pathlib.Path(sys.argv[1]).glob("*/*/*/metrics.jsonl")) + sorted(pathlib.Path(sys.argv[1]).glob("emergence/*/metrics.jsonl")):
    rows = [json.loads(l) for l in m.read_text().splitlines()]
    rows = [r for r in rows if r["step"] >= 0]
    if not rows:
        continue
    last = rows[-10:]
    mean = lambda k: sum(r.get(k) or 0 for r in last) / len(last)
    ev = m.parent / "eval.json"
    tail = ""
    if ev.exists():
        e = json.loads(ev.read_text())["sets"]
        tail = " | " + " ".join(f"{n}: hack {s['on']['hack']['rate']:.3f}->{s['off']['hack']['rate']:.3f} solve {s['on']['solve']['rate']:.3f}->{s['off']['solve']['rate']:.3f}" for n, s in e.items())
    print(f"{str(m.parent.relative_to(sys.argv[1])):32s} step {rows[-1]['step']+1:3d} hack(last10) {mean('policy_hack_rate'):.2f} solve {mean('policy_solve_rate'):.2f} "
          f"qshare {mean('quarantine_update_share'):.2f} w_h {mean('w_hacked'):.2f} w_c {mean('w_clean'):.2f} t/step {sum(r['time']['total'] for r in last)/len(last):.1f}s{tail}")
PY
(cd $R && tar czf $OUT/$batch.tgz --exclude=checkpoints --exclude='step_*.jsonl' . )
ls -la $OUT
grep -h "Traceback\|Error" $OUT/*.log | sort | uniq -c | head
true
