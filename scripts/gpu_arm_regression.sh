#!/usr/bin/env bash
# Does a code change leave every arm's training unchanged on the GPU? Trains each arm a few steps with
# the code of an older commit and with this tree, same seed, and compares the run directories
# (scripts/compare_runs.py: every metric, evaluation and rollout row). Sampling uses HF `generate`
# (`--sampler hf`) on both sides, so a change inside the fast sampler (which may draw other tokens
# from the same distribution for a seed) does not hide everything after it, and float32 (`--dtype
# float32`), so that the rounding differences of two code paths rarely flip a sampled token. The 14
# runs (7 arms x old/new) are dealt over PER_GPU queues per GPU, each queue running its runs one after
# another (default: 1 per GPU for the default model: at 7 per GPU a float32 run held up to 85 GB;
# 7 per GPU for the tiny preset; one queue with GPU_SETUP_CPU), after each side's code has converted
# the model into its cache (concurrent first conversions would race). A run that fails (an exit status
# other than 0) is reported as FAILED with its log's last line. Run it alone on the machine: beside
# other jobs it crawls.
# Keys only the newer code writes are listed, not mismatches (compare_runs.py --added-ok).
#   here:  git archive --prefix=old/ COMMIT src | tar x -C .regress      (.regress ignored by git)
#   there: bash scripts/gpu_arm_regression.sh [STEPS] [ARMS]            (carry .regress and the model)
# Prints one verdict line per arm; run directories and comparisons go to
# $OUT/regression.tgz. GPU_SETUP_CPU=1 runs the same logic on CPU with the tiny preset; TINY=1 runs
# the tiny preset (a random 2-layer model built in code) on the GPU: no model to carry, a minute.
# Comparison: every number within rtol 1e-3 (float32 on the GPU); grading error messages and the
# closing line are texts whose wording changed since the routing plug-ins' parent commit: left out.
source scripts/gpu_setup.sh
set +e
mkdir -p "$OUT"
steps=${1:-5}
arms=${2:-none,absorb,routeA,routeA-placebo,moe,moe-placebo,moe-nopin}
old=$PWD/.regress/old/src
[ -d "$old/evilmoe" ] || { echo "no old tree at $old (see the header)" >&2; exit 2; }
work=$(mktemp -d)
if [ -n "${GPU_SETUP_CPU:-}" ]; then
  flags=(--preset tiny --device cpu); per_gpu=1; gpus=1
elif [ -n "${TINY:-}" ]; then
  flags=(--preset tiny --device cuda); per_gpu=${PER_GPU:-7}; gpus=$(nvidia-smi -L | wc -l)
else
  flags=(--preset gpu-small --model "$MODEL"); per_gpu=${PER_GPU:-1}; gpus=$(nvidia-smi -L | wc -l)
  for src in "$old" "$PWD/src"; do  # each side's code fills its model cache once, before any run
    PYTHONPATH=/tmp/site:$src python3 -c "from evilmoe.models import load_model; load_model('$MODEL')" >> "$work/convert.log" 2>&1
  done
fi
flags+=(--steps "$steps" --seed 0 --sampler hf --dtype float32 --eval-problems 8 --eval-train-problems 4 --eval-samples 2 --grading-workers 2)
runs=()
for arm in ${arms//,/ }; do runs+=("old-$arm" "new-$arm"); done
queues=$((gpus * per_gpu))
for ((q = 0; q < queues; q++)); do
  (
    for ((k = q; k < ${#runs[@]}; k += queues)); do
      name=${runs[$k]}; src=$old; [ "${name%%-*}" = new ] && src=$PWD/src
      CUDA_VISIBLE_DEVICES=$((q % gpus)) PYTHONPATH=/tmp/site:$src python3 -m evilmoe train "${flags[@]}" \
        --arm "${name#*-}" --out "$work/$name" > "$work/$name.log" 2>&1
      echo $? > "$work/$name.rc"
    done
  ) &
done
wait
for arm in ${arms//,/ }; do
  python3 scripts/compare_runs.py "$work/old-$arm" "$work/new-$arm" --rtol 1e-3 --added-ok \
    --ignore oracle_returncode --ignore grade.error --ignore closing_lines > "$work/compare-$arm.txt" 2>&1
  failed=""
  for side in old new; do
    rc=$(cat "$work/$side-$arm.rc" 2>/dev/null || echo "none")
    [ "$rc" = 0 ] || failed+=" $side run FAILED (exit $rc): $(tail -n 1 "$work/$side-$arm.log" | cut -c1-160);"
  done
  if [ -n "$failed" ]; then echo "$arm:$failed"; continue; fi
  echo "$arm: $(grep -h 'keys compared' "$work/compare-$arm.txt" || tail -1 "$work/compare-$arm.txt")"
done
(cd "$work" && tar czf "$OUT/regression.tgz" --exclude checkpoints .)
