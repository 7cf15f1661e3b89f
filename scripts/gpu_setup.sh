#!/usr/bin/env bash
# Shared setup of every scripts/gpu_*.sh: sourced first thing, never run on its own.
#
# The GPU machine starts bare and receives the working tree, run from the repository root, with an
# empty $OUT folder whose files come back. It has no network, so what the image lacks travels with the
# tree in git-ignored folders (scripts/gpu_prepare.sh builds them on a machine with network):
#   .device/m1, .device/m2, ...  the default model's GGUF in parts, the gguf wheel in m1 and the
#                                SHA256 in the last: carry one a call, in order (gpu_prepare.sh says how many)
#   .whl                         extra pure-Python wheels, e.g. TRL for gpu_stepbench.sh (carry when needed)
# Each call carries at most 64 MiB, the repository included, hence the model in parts. The machine keeps /root/evm (the
# model) and /tmp/site (the wheels) while it stays warm, so later calls carry nothing.
#
# What this file provides:
#   environment   PYTHONPATH (the tree's src/ and the wheels), unbuffered output, NVLink multicast off
#                 (NCCL_NVLS_ENABLE=0 and friends; the lent multi-GPU machines want it off)
#   MODEL         path of the default model's GGUF on the machine (/root/evm/model.gguf)
#   gpu_info      prints the GPUs' names and memory
#   run_part      runs one budgeted part of a benchmark (see below)
#
# GPU_SETUP_CPU=1 sets only PYTHONPATH and the helpers: a CPU check of a script's own logic.
set -euo pipefail
: "${OUT:?set OUT to the folder whose files come back}"
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# GPU_SETUP_MODEL: another model spec (a CPU check of a script with tiny-llama); GPU_SETUP_MODEL_DIR:
# where the carried parts are put together (a CPU check of that)
MODEL_DIR=${GPU_SETUP_MODEL_DIR:-/root/evm}
MODEL=${GPU_SETUP_MODEL:-$MODEL_DIR/model.gguf}

if [ -z "${GPU_SETUP_CPU:-}" ]; then
  mkdir -p "$MODEL_DIR"
  if [ ! -f "$MODEL_DIR/model.gguf" ]; then
    for dir in .device/m*/; do  # the part (or parts) this call carries
      [ -d "$dir" ] || continue
      cp "$dir"part-* "$MODEL_DIR/"
      if ls "$dir"*.whl > /dev/null 2>&1; then python3 -m pip install -q --no-index --no-deps --target /tmp/site "$dir"*.whl; fi
      if [ -f "$dir"SHA256 ]; then  # the last part: put the model together and check it
        cat "$MODEL_DIR"/part-* > "$MODEL_DIR/model.gguf"
        (cd "$MODEL_DIR" && sha256sum -c "$OLDPWD/${dir}SHA256")
      fi
    done
  fi
  if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --upgrade --target /tmp/site .whl/*.whl; fi
fi
export PYTHONPATH=/tmp/site:$PWD/src:${PYTHONPATH:-}

gpu_info() {
  if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi
}

# Budgeted parts: a benchmark script sets PARTS_LOG (full output of every part) and PARTS_BUDGET
# (seconds for all parts), then calls `run_part NAME CAP_SECONDS command...` for each part. A part runs
# under `timeout` at min(CAP, what is left of the budget), SIGINT first so a cut part still prints and
# writes what it measured; a part with under 30 s left is skipped; a failed part does not stop the
# rest. PART_STATUS[NAME] says how each ended; `parts_summary NAME...` prints them.
declare -A PART_STATUS
PARTS_START=$SECONDS

run_part() {
  local name=$1 cap=$2; shift 2
  local left=$((PARTS_BUDGET - (SECONDS - PARTS_START)))
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 30 ]; then
    PART_STATUS[$name]="skipped (${left}s left)"
    echo "== $name: skipped, ${left}s left" | tee -a "$PARTS_LOG"
    return 0
  fi
  echo "== $name (limit ${limit}s): $*" | tee -a "$PARTS_LOG"
  local t0=$SECONDS rc=0
  timeout -s INT -k 20 "$limit" "$@" >> "$PARTS_LOG" 2>&1 || rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $((SECONDS - t0)) -ge "$limit" ]; then
    PART_STATUS[$name]="CUT at ${limit}s (rc $rc)"
  else
    PART_STATUS[$name]="rc $rc"
  fi
  echo "== $name: ${PART_STATUS[$name]}, $((SECONDS - t0)) s" | tee -a "$PARTS_LOG"
}

parts_summary() {
  echo
  echo "===== summary ($((SECONDS - PARTS_START)) s) ====="
  local name
  for name in "$@"; do echo "$name: ${PART_STATUS[$name]:-not run}"; done
}
