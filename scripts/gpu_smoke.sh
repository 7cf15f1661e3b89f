#!/usr/bin/env bash
# A short gpu-small run of one arm, for step timings and a first look at its metrics: few steps, a
# small final evaluation, stopped cleanly after 300 s. Brings back $OUT/smoke-ARM.tgz (see gpu_train.sh).
#   bash scripts/gpu_smoke.sh ARM STEPS [extra train flags...]
arm=$1 steps=$2; shift 2
exec bash scripts/gpu_train.sh smoke-$arm --arm "$arm" --steps "$steps" --eval-problems 16 --eval-train-problems 8 \
  --eval-samples 2 --time-budget-s 300 "$@"
