#!/usr/bin/env bash
# One run of the gpu-small preset on the GPU machine; brings back its run directory as $OUT/NAME.tgz
# (without checkpoints and per-step rollouts; one file, since a call returns at most 8) and its log
# $OUT/NAME.log, and prints chosen per-step metrics.
#   bash scripts/gpu_train.sh NAME [train flags...]        (writes /root/runs/NAME)
# Re-running the same command on a warm machine resumes the run from its last checkpoint.
source scripts/gpu_setup.sh
set +e
name=$1; shift
R=/root/runs/$name
python3 -m evilmoe train --preset gpu-small --model $MODEL --out $R "$@" > $OUT/$name.log 2>&1
echo "rc=$?"
grep -v "Warning\|warn(" $OUT/$name.log | tr '\r' '\n' | grep -v "it/s" | grep -v "^\s*$" | tail -4 | cut -c1-400
python3 scripts/step_metrics.py $R --keys policy_hack_rate,policy_solve_rate,policy_attempted_hack_rate,policy_format_rate,live_groups,mean_completion_tokens,grad_norm,quarantine_update_share,w_live_hacked,w_live_clean,pin_acc,time.total
(cd $R && tar czf $OUT/$name.tgz --exclude=checkpoints --exclude='step_*.jsonl' .)
true
