#!/usr/bin/env bash
# Testbed runs on one GPU machine, several runs side by side, surviving the 10-minute call limit:
# `launch` starts every run as its own detached process (setsid: it outlives the call, not the
# machine), the runs dealt round-robin over the machine's GPUs, `watch` prints each run's progress for up to N seconds, `collect` packs the run dirs
# (without checkpoints; step rollouts every 20th step) into $OUT. Runs resume from their last
# checkpoint if launched again on the same machine.
#   bash scripts/gpu_testbed.sh launch RUNS_FILE     (lines: NAME PRESET-FLAGS...)
#   bash scripts/gpu_testbed.sh watch SECONDS   (returns within SECONDS + ~10 s: leave collect ~30 s)
#   bash scripts/gpu_testbed.sh collect NAME
# Chain `watch` and `collect` in one call (`... watch 500; bash scripts/gpu_testbed.sh collect NAME`)
# without sourcing gpu_setup.sh in that call's own shell (its `set -e` would end the chain early): a
# machine given back between calls keeps nothing, so each call should bring back what exists so far.
# RUNS_ROOT (default /root/runs) is where the runs live.
source scripts/gpu_setup.sh
set +e
root=${RUNS_ROOT:-/root/runs}
mkdir -p $root
case $1 in
launch)
  gpus=$(nvidia-smi -L | wc -l)
  i=0
  while read -r name flags; do
    [ -z "$name" ] && continue
    gpu=$((i % gpus)); i=$((i + 1))
    CUDA_VISIBLE_DEVICES=$gpu setsid nohup python3 -m evilmoe train --model $MODEL --out $root/$name $flags \
      > $root/$name.log 2>&1 < /dev/null &
    echo "launched $name on GPU $gpu: $flags"
  done < "$2"
  ;;
watch)
  # never past SECONDS (the last sleep is shortened): `watch N; collect` must fit the call's limit
  end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    left=$((end - SECONDS))
    sleep $((left < 60 ? left : 60))
    echo "--- $(date +%T) $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
    for log in $root/*.log; do
      name=$(basename $log .log)
      python3 - $root/$name <<'PY'
import json, sys, os
path = sys.argv[1] + "/metrics.jsonl"
rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
rows = [r for r in rows if r.get("step", -1) >= 0]
name = os.path.basename(sys.argv[1])
if not rows:
    print(f"{name:14s} no step yet"); sys.exit()
r = rows[-1]; last = rows[-10:]
mean = lambda k: (sum(x[k] for x in last if x.get(k) is not None) / max(1, sum(1 for x in last if x.get(k) is not None)))
print(f"{name:14s} step {r['step']:3d} hack {mean('policy_hack_rate'):.2f} tried {mean('policy_attempted_hack_rate'):.2f} solve {mean('policy_solve_rate'):.2f} "
      f"gt {mean('policy_solve_rate_gt_only'):.2f} fmt {mean('policy_format_rate'):.2f} len {mean('mean_completion_tokens'):.0f} cut {mean('policy_truncated_rate'):.2f} "
      f"kl {mean('kl'):.3f} gn {mean('grad_norm'):.2f} t {r['time']['total']:.1f}s"
      + (f" | val skill {r.get('val_skill_solve_on')} clean {r.get('val_clean_solve_on')} hack {r.get('val_hack_on')}" if 'val_hack_on' in r else ""))
PY
    done
    if ! pgrep -f "evilmoe train" > /dev/null; then echo "no run is still going"; break; fi
  done
  for log in $root/*.log; do grep -h "causal ablation\|Error\|error" $log | tail -2; done
  true  # a quiet log is not a failure: `watch` chained before `collect` must not stop the chain
  ;;
collect)
  # everything but checkpoints; of the step rollouts every 20th step and the last. Runs may still be
  # writing (a checkpoint renamed into place, a file appended), so a file that vanishes is skipped.
  cd $root && python3 - > /tmp/collect.list <<'PY'
import pathlib, re
last = {}  # each rollouts/ folder's last step file (run dirs may sit at any depth, e.g. decide's arm/seed_N)
for f in pathlib.Path(".").rglob("rollouts/step_*.jsonl"):
    last[f.parent] = max(last.get(f.parent, f), f)
for run in sorted(p for p in pathlib.Path(".").iterdir() if p.is_dir()):
    for f in run.rglob("*"):
        if "checkpoints" in f.parts or not f.is_file():
            continue
        m = re.fullmatch(r"step_(\d+)\.jsonl", f.name)
        if m and int(m.group(1)) % 20 != 19 and f != last.get(f.parent):
            continue
        print(f)
PY
  tar czf "$OUT/$2.tar.gz" --ignore-failed-read --warning=no-file-changed --warning=no-file-removed \
    -T /tmp/collect.list $(ls *.log 2>/dev/null); ls -la $OUT
  ;;
esac
