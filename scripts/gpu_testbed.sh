#!/usr/bin/env bash
# Testbed runs on one GPU machine, several runs side by side, surviving the 10-minute call limit:
# `launch` starts every run as its own detached process (setsid: it outlives the call, not the
# machine), the runs dealt round-robin over the machine's GPUs, `watch` prints each run's progress for
# up to N seconds, `collect` packs every run dir (without checkpoints; step rollouts every 20th step)
# into $OUT/NAME.tar.gz. Runs resume from their last checkpoint if launched again on the same machine.
#   bash scripts/gpu_testbed.sh launch RUNS_FILE [NAME_REGEX]   (only the lines whose NAME matches)
#   bash scripts/gpu_testbed.sh watch SECONDS   (returns within SECONDS + ~10 s: leave collect ~30 s)
#   bash scripts/gpu_testbed.sh collect NAME [--state [RUN_REGEX]]
# `--state` also packs each run's last checkpoint (checkpoints/LATEST and the state.pt it names: what
# eval, localize, relearn, export and a resume read) into $OUT/NAME-state.tar.gz, for the runs whose
# path under RUNS_ROOT matches RUN_REGEX (all by default). Unpacked beside NAME.tar.gz it makes run
# dirs those commands can finish elsewhere. Mind the size it prints: for the default model at rank 8
# a finished run's last checkpoint is ~75 MiB (~113 MiB mid-run, with the optimizer), more than the
# 16 MiB a file may have to come back from a call; with the tiny model or a small rank pick runs with
# RUN_REGEX so that the file stays under that.
# A runs file's line is `NAME FLAGS... [:: FOLLOW-UP; FOLLOW-UP...]`: `evilmoe train --out ROOT/NAME
# FLAGS`, then each follow-up as `evilmoe SUBCOMMAND ROOT/NAME ITS-FLAGS` once training ended well
# (e.g. `:: localize --sets heldout,skill; relearn --steps 20`): the analyses that need the run's
# checkpoint happen on the machine, which keeps nothing once given back. NAME may hold folders
# (`decide/moe/seed_0`: the layout of `evilmoe decide` and scripts/decision_table.py); each run's log
# is ROOT/NAME.log.
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
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  [ "$gpus" -ge 1 ] || gpus=1
  i=0
  while IFS= read -r line || [ -n "$line" ]; do
    spec=${line%%::*}
    follow=""
    [[ $line == *::* ]] && follow=${line#*::}
    read -r name flags <<< "$spec"
    [ -z "$name" ] && continue
    if [ -n "${3:-}" ] && ! [[ $name =~ $3 ]]; then continue; fi
    gpu=$((i % gpus)); i=$((i + 1))
    run=$root/$name
    mkdir -p "$(dirname "$run")"
    cmd="python3 -m evilmoe train --model $MODEL --out $run $flags"
    IFS=';' read -ra steps <<< "$follow"
    for step in "${steps[@]}"; do
      read -r sub args <<< "$step"
      [ -n "$sub" ] && cmd+=" && python3 -m evilmoe $sub $run $args"
    done
    CUDA_VISIBLE_DEVICES=$gpu setsid nohup bash -c "$cmd" > $run.log 2>&1 < /dev/null &
    echo "launched $name on GPU $gpu: $flags${follow:+ then:$follow}"
  done < "$2"
  [ "$i" -ge 1 ] || { echo "no line of $2 matches '${3:-}'" >&2; exit 1; }
  ;;
watch)
  # never past SECONDS (the last sleep is shortened): `watch N; collect` must fit the call's limit
  end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    left=$((end - SECONDS))
    sleep $((left < 60 ? left : 60))
    echo "--- $(date +%T) $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
    for log in $(cd $root && find . -name '*.log' | sort); do
      name=${log#./}; name=${name%.log}
      python3 - $root $name <<'PY'
import json, sys, os
root, name = sys.argv[1], sys.argv[2]
run = os.path.join(root, name)
path = run + "/metrics.jsonl"
rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
rows = [r for r in rows if r.get("step", -1) >= 0]
# what the run has finished after training: its final eval, then the follow-ups of its runs-file line
done = [label for label, there in (("eval", os.path.exists(run + "/eval.json")), ("localize", os.path.exists(run + "/localization.json")))
        if there] + sorted(f[:-5] for f in os.listdir(run) if f.startswith("relearn-") and f.endswith(".json")) if os.path.isdir(run) else []
tail = f" | done: {', '.join(done)}" if done else ""
if not rows:
    print(f"{name:14s} no step yet{tail}"); sys.exit()
r = rows[-1]; last = rows[-10:]
mean = lambda k: (sum(x[k] for x in last if x.get(k) is not None) / max(1, sum(1 for x in last if x.get(k) is not None)))
print(f"{name:14s} step {r['step']:3d} hack {mean('policy_hack_rate'):.2f} tried {mean('policy_attempted_hack_rate'):.2f} solve {mean('policy_solve_rate'):.2f} "
      f"gt {mean('policy_solve_rate_gt_only'):.2f} fmt {mean('policy_format_rate'):.2f} len {mean('mean_completion_tokens'):.0f} cut {mean('policy_truncated_rate'):.2f} "
      f"kl {mean('kl'):.3f} gn {mean('grad_norm'):.2f} t {r['time']['total']:.1f}s"
      + (f" | val skill {r.get('val_skill_solve_on')} clean {r.get('val_clean_solve_on')} hack {r.get('val_hack_on')}" if 'val_hack_on' in r else "") + tail)
PY
    done
    if ! pgrep -f "python3 -m evilmoe" > /dev/null; then echo "no run is still going"; break; fi
  done
  for log in $(find $root -name '*.log' | sort); do grep -h "causal ablation\|localize took\|relearn \(deleted\|start\):\|Error\|error" $log | tail -4; done
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
    -T /tmp/collect.list $(find . -maxdepth 1 -name '*.log' -printf '%P\n')
  if [ "${3:-}" = "--state" ]; then
    # Each run's LATEST and its checkpoint, hard-linked into a staging folder first: a run still
    # training moves LATEST on and deletes older checkpoints, and the pair packed must stay one
    # checkpoint. Relearning runs (RUN/relearn-*) are left out: relearn starts them over anyway.
    stage=$root/.collect-state
    rm -rf "$stage"
    python3 - "$stage" "${4:-}" <<'PY'
import os, pathlib, re, shutil, sys
stage, pattern = pathlib.Path(sys.argv[1]), sys.argv[2]
total = 0
for latest in sorted(pathlib.Path(".").rglob("checkpoints/LATEST")):
    run = latest.parent.parent
    if any(part.startswith("relearn-") for part in run.parts) or (pattern and not re.search(pattern, str(run))):
        continue
    try:
        step = latest.read_text().strip()
        state = latest.parent / step / "state.pt"
        target = stage / run / "checkpoints" / step / "state.pt"
        target.parent.mkdir(parents=True)
        try:
            os.link(state, target)
        except OSError:  # another filesystem
            shutil.copy2(state, target)
    except FileNotFoundError:  # deleted between reading LATEST and linking: the run moved on, skip it
        print(f"state of {run}: its checkpoint moved on while packing; collect again", file=sys.stderr)
        shutil.rmtree(stage / run, ignore_errors=True)
        continue
    (stage / run / "checkpoints" / "LATEST").write_text(step + "\n")
    size = target.stat().st_size
    total += size
    print(f"state of {run}: {step}, {size / 2**20:.1f} MiB")
print(f"state of every packed run: {total / 2**20:.1f} MiB before compression")
PY
    if [ -d "$stage" ]; then
      (cd "$stage" && tar czf "$OUT/$2-state.tar.gz" *)
      size=$(stat -c %s "$OUT/$2-state.tar.gz")
      # what one call brings back: files of at most 16 MiB each, 64 MiB in all
      [ "$size" -le $((16 * 1024 * 1024)) ] || echo "$2-state.tar.gz is $((size / 1024 / 1024)) MiB: over the 16 MiB a file may have to come back from a call; pick fewer runs with RUN_REGEX" >&2
      rm -rf "$stage"
    else
      echo "no run matching '${4:-}' has a checkpoint: no $2-state.tar.gz" >&2
    fi
  fi
  ls -la $OUT
  ;;
esac
