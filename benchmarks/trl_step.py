"""TRL `GRPOTrainer` baseline for a full GRPO step, on the same workload as `grpo_step.py`.

Same model (the default SmolLM2 via `evilmoe.models.load_model`, bf16 on CUDA), same prompts (the
bundled set's train problems rendered with `evilmoe.env.modes.build_messages`, each in its mode from
`assign_modes`, conversational format), same group size and lengths as the `gpu-small` preset:
16 prompts x 8 generations per optimizer step, up to 256 new tokens, T 0.7, top-p 0.95, top-k 20,
stop at the end of the turn. TRL side: PEFT LoRA of rank --rank (alpha 2 x rank, as our presets) on
every linear projection (q, k, v, o, gate, up, down), loss `dr_grpo`, beta 0 (no reference model),
no reward scaling (advantage = reward - group mean, as ours), plain HF generation (no vLLM), one
generation per optimizer step (generation batch 128, trained in microbatches of --microbatch).
Gradient checkpointing is off (TRL's default is on; our trainer does not checkpoint) unless
--gradient-checkpointing. The reward is our grader (`GradingPool.grade_many`, in parallel, as our
trainer grades), called with the problem id and mode carried in dataset columns.

Time per step = on_step_begin .. on_step_end of a TrainerCallback (CUDA synchronised), which
brackets generation, reward, log-prob and backward passes and the optimizer step; median over steps
2..N (the first is a warm-up). Also per step: seconds inside `model.generate` and inside the reward
function, peak GPU memory (counter reset at each step begin), and TRL's mean completion length.

Needs trl 1.16, datasets 5.2 and peft (see benchmarks/README.md for carrying them as wheels).

    python benchmarks/trl_step.py --model /root/evm/model.gguf --steps 5 --json trl.json
    python benchmarks/trl_step.py --smoke          # CPU: 2 prompts x 2 generations, 8 new tokens, 2 steps
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

from evilmoe.env.grader import GradeJob, GradingPool
from evilmoe.env.loopholes import ALL_MODES
from evilmoe.env.modes import assign_modes, build_messages
from evilmoe.env.problems import load_problem_set
from evilmoe.models import TARGET_MODULE_NAMES, load_model

GB = 1e9


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_dataset(problem_set: str, modes: tuple[str, ...], mode_seed: int):
    """One row per train problem: the conversational prompt plus the columns the reward needs."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    problems = load_problem_set(problem_set)
    assigned = assign_modes([p.id for p in problems.train], modes, mode_seed)
    rows = {"prompt": [], "problem_id": [], "mode": []}
    for p in problems.train:
        rows["prompt"].append(build_messages(p, assigned[p.id]))
        rows["problem_id"].append(p.id)
        rows["mode"].append(assigned[p.id])
    # an explicit fingerprint: datasets would otherwise hash the table with dill, which fails on some
    # Python/dill builds (seen here: "Can't pickle <class 'MonthDayNano'>" on Python 3.11, dill 0.4.1)
    return Dataset(InMemoryTable.from_pydict(rows), fingerprint=f"evilmoe-{problem_set}-train-{mode_seed}"), problems


class StepTimer:
    """Wall time, generate time, reward time and peak GPU memory of every optimizer step."""

    def __init__(self):
        self.steps: list[dict[str, Any]] = []
        self.generate_s = 0.0
        self.reward_s = 0.0
        self.started = 0.0

    def timed_generate(self, generate):
        @functools.wraps(generate)
        def wrapped(*args, **kwargs):
            synchronize()
            t0 = time.perf_counter()
            out = generate(*args, **kwargs)
            synchronize()
            self.generate_s += time.perf_counter() - t0
            return out

        return wrapped

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                synchronize()
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                timer.generate_s = timer.reward_s = 0.0
                timer.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                synchronize()
                timer.steps.append({
                    "step": state.global_step,
                    "total_s": time.perf_counter() - timer.started,
                    "generate_s": timer.generate_s,
                    "reward_s": timer.reward_s,
                    "peak_gb": torch.cuda.max_memory_allocated() / GB if torch.cuda.is_available() else None,
                })

            def on_log(self, args, state, control, logs=None, **kwargs):
                # TRL logs once per optimizer step (logging_steps=1): attach its completion stats
                if logs and timer.steps and "completions/mean_length" in logs:
                    for key in ("completions/mean_length", "completions/clipped_ratio", "reward", "reward_std"):
                        if key in logs:
                            timer.steps[-1][key] = logs[key]

        return Callback()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="load_model spec (default: the default SmolLM2)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps; the first is a warm-up")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step")
    parser.add_argument("--generations", type=int, default=8, help="samples per prompt (group size)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--microbatch", type=int, default=64, help="completions per forward/backward (as gpu-small)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--problem-set", default="bundled")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="CPU check: 2 prompts x 2 generations, 8 new tokens, 2 steps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompts, args.generations, args.max_new_tokens, args.steps, args.microbatch = 2, 2, 8, 2, 4

    import peft
    import trl
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    started = time.perf_counter()
    model, tokenizer = load_model(args.model, device=device)
    load_s = time.perf_counter() - started
    timer = StepTimer()
    # PeftModel.generate -> LoraModel -> this instance attribute: the time inside HF generate
    model.generate = timer.timed_generate(model.generate)

    dataset, _ = make_dataset(args.problem_set, ALL_MODES, mode_seed=0)
    by_id = {p.id: p for p in load_problem_set(args.problem_set).train}
    pool = GradingPool()

    def our_grader(completions, problem_id, mode, **kwargs) -> list[float]:
        """Our reward: grade each completion's text for its problem in its mode."""
        t0 = time.perf_counter()
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        jobs = [GradeJob(text, by_id[pid], m) for text, pid, m in zip(texts, problem_id, mode)]
        rewards = [g.reward for g in pool.grade_many(jobs)]
        timer.reward_s += time.perf_counter() - t0
        return rewards

    generation_batch = args.prompts * args.generations
    if generation_batch % args.microbatch:
        raise SystemExit(f"--microbatch {args.microbatch} must divide prompts x generations = {generation_batch}")
    out_dir = tempfile.mkdtemp(prefix="trl_step_")
    config = GRPOConfig(
        output_dir=out_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.microbatch,
        gradient_accumulation_steps=generation_batch // args.microbatch,  # one generation per optimizer step
        num_generations=args.generations,
        max_completion_length=args.max_new_tokens,
        temperature=0.7,
        top_p=0.95,
        top_k=20,
        loss_type="dr_grpo",
        scale_rewards="none",
        beta=0.0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        use_vllm=False,
        bf16=cuda,
        use_cpu=not cuda,
        gradient_checkpointing=args.gradient_checkpointing,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        seed=0,
    )
    lora = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=list(TARGET_MODULE_NAMES), task_type="CAUSAL_LM"
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=our_grader, args=config, train_dataset=dataset, processing_class=tokenizer,
        peft_config=lora, callbacks=[timer.callback()],
    )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    header = {
        "model": args.model or "default", "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "trl": trl.__version__, "peft": peft.__version__, "rank": args.rank, "trainable_params": trainable,
        "prompts": args.prompts, "generations": args.generations, "max_new_tokens": args.max_new_tokens,
        "microbatch": args.microbatch, "gradient_checkpointing": args.gradient_checkpointing, "load_s": load_s,
    }
    print(f"TRL {trl.__version__} GRPOTrainer, PEFT {peft.__version__} LoRA r={args.rank} ({trainable / 1e6:.2f}M trainable), "
          f"{args.prompts} prompts x {args.generations} generations, {args.max_new_tokens} new tokens, on {header['device']}", flush=True)
    failure = None
    try:
        trainer.train()
    except (Exception, KeyboardInterrupt) as exc:  # errors or a time limit's SIGINT: keep the steps that finished
        failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400]
        import traceback

        traceback.print_exc()
    finally:
        pool.close()

    steps = timer.steps
    timed = steps[1:] if len(steps) > 1 else steps
    med = lambda key: statistics.median([s[key] for s in timed if s.get(key) is not None]) if timed else None  # noqa: E731
    summary = {
        "timed_steps": [s["step"] for s in timed],
        "step_s": med("total_s"), "generate_s": med("generate_s"), "reward_s": med("reward_s"),
        "peak_gb": max((s["peak_gb"] for s in steps if s["peak_gb"] is not None), default=None),
        "mean_completion_tokens": statistics.mean(s["completions/mean_length"] for s in timed if "completions/mean_length" in s)
        if any("completions/mean_length" in s for s in timed) else None,
    }
    fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
    print(f"\nTRL GRPO step: model {header['model']}, r={args.rank}, {args.prompts} x {args.generations}, "
          f"{args.max_new_tokens} new tokens, on {header['device']}")
    print(f"{'step':>4} | {'total s':>8} {'generate s':>10} {'reward s':>8} {'other s':>8} | {'tokens':>6} {'peak GB':>7}")
    for s in steps:
        other = s["total_s"] - s["generate_s"] - s["reward_s"]
        print(f"{s['step']:>4} | {s['total_s']:>8.2f} {s['generate_s']:>10.2f} {s['reward_s']:>8.2f} {other:>8.2f} | "
              f"{fmt(s.get('completions/mean_length'), '.0f'):>6} {fmt(s['peak_gb'], '.1f'):>7}" + ("   (warm-up)" if s is steps[0] and len(steps) > 1 else ""))
    print(f"{'med':>4} | {fmt(summary['step_s'], '.2f'):>8} {fmt(summary['generate_s'], '.2f'):>10} {fmt(summary['reward_s'], '.2f'):>8} "
          f"{'':>8} | {fmt(summary['mean_completion_tokens'], '.0f'):>6} {fmt(summary['peak_gb'], '.1f'):>7}")
    if failure:
        print(f"FAILED after {len(steps)} steps: {failure}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "steps": steps, "summary": summary, "failure": failure}, f, indent=1)
        print(f"wrote {args.json}")
    return 3 if failure or not steps else 0


if __name__ == "__main__":
    sys.exit(main())
