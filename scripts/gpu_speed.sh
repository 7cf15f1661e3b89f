#!/usr/bin/env bash
# Generation and update close to the hardware, in one GPU call of < 7 minutes: decode against the
# memory-bandwidth bound and plain `generate`, a per-kernel profile of one decode step, and the GRPO
# step's update time, peak memory and MFU, on random-init models of the default model's, Qwen3-1.7B's
# and Qwen3-4B's shapes (benchmarks/random_models.py; no weights needed).
#   bash scripts/gpu_speed.sh
# Carrying .device/m1, m2, ... (the default model's GGUF, see gpu_setup.sh) is optional: the step
# parts then tokenize prompts with the real tokenizer (see TOK below for what they use otherwise).
# Parts, in order of value, each under run_part's cap (a cut part still prints and writes what it measured;
# the last ones run only if time is left; BUDGET=seconds shrinks the whole):
#   gen_135m    smollm2-135m shape, batch 32 and 128, 150-token prompts, 256 new tokens; plain generate at 64
#               new tokens; kernel profile at batch 128 (+ Chrome trace); correctness checks   -> gen_135m.json, trace_135m.json
#   gen_q4b     qwen3-4b shape, batch 64, same lengths; plain generate at 16 tokens; profile   -> gen_q4b.json
#   step_135m   grpo_step.py, gpu-small shape (16 x 8 x 256, microbatch 64 rows), 3 steps   -> step_135m.json
#   step_135m_tok14k   the same, microbatches packed by length to <= 14,000 padded tokens   -> step_135m_tok14k.json
#   gen_135m_inductor  gen_135m at batch 128, the decode step through torch.compile (one
#               compilation per kv bucket: 3 here), no plain generate                      -> gen_135m_inductor.json
#   step_q4b    grpo_step.py, qwen3-4b preset, 8 x 8 x 1024, 2 steps                          -> step_q4b.json
#   gen_q4b_inductor   gen_q4b through torch.compile                                         -> gen_q4b_inductor.json
#   step_135m_mb16     step_135m at microbatch 16 rows                                      -> step_135m_mb16.json
#   gen_q17b    qwen3-1.7b shape, batch 64; plain generate at 16 tokens                       -> gen_q17b.json
#   step_135m_ckpt     step_135m with gradient checkpointing                                -> step_135m_ckpt.json
# Full output: $OUT/speed.log; the tables are printed at the end.
# CPU check of this script's logic (tiny shapes, seconds per part): GPU_SETUP_CPU=1 OUT=/tmp/o bash scripts/gpu_speed.sh
source scripts/gpu_setup.sh
set +e
PARTS_LOG=$OUT/speed.log
PARTS_BUDGET=${BUDGET:-390}   # seconds for all parts (setup and process starts come on top)

# where grpo_step.py takes its tokenizer from: the default model's when carried; else a BPE trained in
# code on the bundled problems (`random-smollm2`, prompts about as long as the real tokenizer's) where
# this tree's evilmoe.models has it; else the byte-level tokenizer (prompts ~4x longer in tokens)
TOK=tiny-llama
if [ -f "$MODEL" ]; then
  TOK=$MODEL
elif python3 -c "import sys, evilmoe.models as m; sys.exit(0 if hasattr(m, 'RANDOM_SMOLLM2') else 1)"; then
  TOK=random-smollm2
fi

if [ -n "${GPU_SETUP_CPU:-}" ]; then  # same parts, tiny shapes on CPU
  S135=tiny-llama; S4B=tiny-qwen3; S17B=tiny-qwen3
  GEN=(--device cpu --threads 1 --prompt-lens 16 --new-tokens 8)
  GEN_SMALL=(--batch-sizes 2,4 --hf-new-tokens 4 --profile-batch 4 --checks); BIG_BATCH=4
  GEN_BIG=(--batch-sizes 4 --hf-new-tokens 2 --profile-batch 4 --no-checks)
  STEP_SMALL=(--preset tiny --steps 2)
  STEP_BIG=(--preset tiny --steps 2)
else
  gpu_info | tee -a $PARTS_LOG
  S135=smollm2-135m; S4B=qwen3-4b; S17B=qwen3-1.7b
  GEN=(--device cuda --prompt-lens 150 --new-tokens 256)
  GEN_SMALL=(--batch-sizes 32,128 --hf-new-tokens 64 --profile-batch 128 --checks); BIG_BATCH=128
  GEN_BIG=(--batch-sizes 64 --hf-new-tokens 16 --profile-batch 64 --no-checks)
  STEP_SMALL=(--preset gpu-small --arm moe --steps 3)
  STEP_BIG=(--preset qwen3-4b --arm moe --prompts 8 --group-size 8 --max-new-tokens 1024 --steps 2)
fi
echo "tokenizer of the step parts: $TOK" | tee -a $PARTS_LOG

run_part gen_135m 55 python3 benchmarks/generation.py --random-init $S135 "${GEN[@]}" "${GEN_SMALL[@]}" \
  --trace $OUT/trace_135m.json --json $OUT/gen_135m.json
run_part gen_q4b 50 python3 benchmarks/generation.py --random-init $S4B "${GEN[@]}" "${GEN_BIG[@]}" --json $OUT/gen_q4b.json
run_part step_135m 60 python3 benchmarks/grpo_step.py --random-init $S135 --model $TOK "${STEP_SMALL[@]}" --json $OUT/step_135m.json
run_part step_135m_tok14k 60 python3 benchmarks/grpo_step.py --random-init $S135 --model $TOK "${STEP_SMALL[@]}" \
  --set microbatch_tokens=14000 --json $OUT/step_135m_tok14k.json
run_part gen_135m_inductor 90 python3 benchmarks/generation.py --random-init $S135 "${GEN[@]}" "${GEN_SMALL[@]}" \
  --batch-sizes $BIG_BATCH --hf-new-tokens 0 --profile-batch 0 --no-checks --inductor --json $OUT/gen_135m_inductor.json
run_part step_q4b 110 python3 benchmarks/grpo_step.py --random-init $S4B --model $TOK "${STEP_BIG[@]}" --json $OUT/step_q4b.json
run_part gen_q4b_inductor 100 python3 benchmarks/generation.py --random-init $S4B "${GEN[@]}" "${GEN_BIG[@]}" \
  --hf-new-tokens 0 --profile-batch 0 --inductor --json $OUT/gen_q4b_inductor.json
run_part step_135m_mb16 60 python3 benchmarks/grpo_step.py --random-init $S135 --model $TOK "${STEP_SMALL[@]}" \
  --microbatch 16 --json $OUT/step_135m_mb16.json
run_part gen_q17b 45 python3 benchmarks/generation.py --random-init $S17B "${GEN[@]}" "${GEN_BIG[@]}" --profile-batch 0 \
  --json $OUT/gen_q17b.json
run_part step_135m_ckpt 60 python3 benchmarks/grpo_step.py --random-init $S135 --model $TOK "${STEP_SMALL[@]}" \
  --set gradient_checkpointing=true --json $OUT/step_135m_ckpt.json

PARTS=(gen_135m gen_q4b step_135m step_135m_tok14k gen_135m_inductor step_q4b gen_q4b_inductor step_135m_mb16 gen_q17b step_135m_ckpt)
parts_summary "${PARTS[@]}"
# each part's tables: generation rows and checks, the step tables and their update line
awk '/^== /{show=0; print} /^(generation benchmark:|GRPO step:)/{show=1} show' $PARTS_LOG | grep -v "Warning\|warn(\|^USDT" | cut -c1-220
grep -h "FAILED\|OutOfMemory\|Traceback\|Error" $PARTS_LOG | grep -v Warning | head -8
true
