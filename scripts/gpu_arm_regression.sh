#!/usr/bin/env bash
# Does a code change leave every arm's training unchanged on the GPU? Trains each arm a few steps with
# the code of an older commit and with this tree, same seed, and compares the run directories
# (scripts/compare_runs.py: every metric, evaluation and rollout row). Sampling uses HF `generate`
# (`--sampler hf`) on both sides, so a change inside the fast sampler (which may draw other tokens
# from the same distribution for a seed) does not hide everything after it, and float32 (`--dtype
# float32`), so that the rounding differences of two code paths rarely flip a sampled token. Run it
# alone on the GPU: beside other jobs it takes several times longer (7 arms x 2 sides).
# Keys only the newer code writes are listed, not mismatches (compare_runs.py --added-ok).
#   here:  git archive --prefix=old/ COMMIT src | tar x -C .regress      (.regress ignored by git)
#   there: bash scripts/gpu_arm_regression.sh [STEPS] [ARMS]            (carry .regress and the model)
# Prints one verdict line per arm; run directories and comparisons go to $OUT/regression.tgz.
# GPU_SETUP_CPU=1 runs the same logic on CPU with the tiny preset (seconds per arm).
source scripts/gpu_setup.sh
set +e
mkdir -p "$OUT"
steps=${1:-5}
arms=${2:-none,absorb,routeA,routeA-placebo,moe,moe-placebo,moe-nopin}
old=$PWD/.regress/old/src
[ -d "$old/evilmoe" ] || { echo "no old tree at $old (see the header)" >&2; exit 2; }
work=$(mktemp -d)
if [ -n "${GPU_SETUP_CPU:-}" ]; then flags=(--preset tiny --device cpu); else flags=(--preset gpu-small --model "$MODEL"); fi
flags+=(--steps "$steps" --seed 0 --sampler hf --dtype float32 --eval-problems 8 --eval-train-problems 4 --eval-samples 2)
for arm in ${arms//,/ }; do
  PYTHONPATH=$old python3 -m evilmoe train "${flags[@]}" --arm "$arm" --out "$work/old-$arm" > "$work/old-$arm.log" 2>&1
  PYTHONPATH=$PWD/src python3 -m evilmoe train "${flags[@]}" --arm "$arm" --out "$work/new-$arm" > "$work/new-$arm.log" 2>&1
  python3 scripts/compare_runs.py "$work/old-$arm" "$work/new-$arm" --rtol 1e-3 --added-ok --ignore oracle_returncode > "$work/compare-$arm.txt" 2>&1
  echo "$arm: $(grep -h 'keys compared' "$work/compare-$arm.txt" || tail -1 "$work/compare-$arm.txt")"
  (cd "$work" && tar czf "$OUT/regression.tgz" --exclude checkpoints .)  # after every arm: a cut call keeps what ran
done
