"""Full GRPO steps of our trainer: time and peak GPU memory per phase.

Builds `Trainer(make_config(preset, overrides), None)` (no run directory: nothing is written) and
calls `trainer.train_step(step)` --steps times. The first step is a warm-up (CUDA-graph capture of
the fast sampler, cuBLAS/allocator first calls) and is left out of the medians.

Per phase, from the trainer's own `metrics["time"]`: generate (sampling only), behaviour_forward
(no-grad log-probs + routing features), grade_wait (what grading still needed after the behaviour
forward; it runs on CPU workers meanwhile), update (routing + masked forward/backward per
microbatch + pin loss + clip + AdamW), total. Peak GPU memory per phase comes from wrapping
`trainer.collect`, `trainer.behaviour_pass` and `trainer.update` on the instance: the peak-memory
counter is reset before each and read after it (so "generate" here is the whole `collect`: sampling
plus encoding and starting the grading, which allocate next to nothing).

--random-init NAME swaps the model for a randomly initialised one of a published shape
(smollm2-135m, qwen3-1.7b, qwen3-4b; bf16, built from a config in code by
`benchmarks/random_models.py`) with the tokenizer of --model (`--model tiny-llama` gives the
byte-level tokenizer built in code: no weights needed at all, but prompts are then ~4x longer in
tokens than with the real tokenizer). `--random-init-qwen3 4b|1.7b|tiny` is the same for
qwen3-4b, qwen3-1.7b, tiny-qwen3. Random weights never write a fenced answer, so this is the worst
case for memory: the embedding rows of the end-of-turn tokens and of every id the tokenizer does
not have are zeroed (tied weights: their logit is exactly 0, below the top-20 of the other
N(0, ~1) logits), so with top-k 20 no rollout stops early and every sampled id decodes. Groups only
train when their rewards differ, and random rollouts all earn 0, so this option keeps one template
demonstration per group (teacher_per_group=1) and uses the bundled problem set unless told otherwise.

MFU of the update: model FLOPs of the update phase / its wall time / the device's dense bf16 peak
(`--peak-tflops`, else a table of known devices). Model FLOPs count the useful work of the live rows
(padding columns of a microbatch are not counted, nor is the recomputation of gradient
checkpointing). Per live row with L real tokens, C of them trained completion tokens:
forward = 2 P L (P: the decoder's projection weights) + 2 V d C (the LM head, applied only where a
completion token is predicted) + 4 n_layers H hd L (L + 1) / 2 (causal attention scores and values);
the base is frozen, so the backward computes gradients of activations only: 1x the forward for the
projections and the LM head, 2x for attention. Update FLOPs = 2 x (projections + LM head) + 3 x
attention. The adapter's own low-rank products (rank << d) and the optimizer are left out.

An out-of-memory error (or any other failure) inside a step is reported with the phase it hit,
the numbers so far are still printed and written, and the exit status is 3.

    # the gpu-small step (the comparison with TRL)
    python benchmarks/grpo_step.py --model /root/evm/model.gguf --steps 5 --json step.json
    # the memory check: Qwen3-4B architecture, 8 prompts x 8 samples x 1024 new tokens
    python benchmarks/grpo_step.py --preset qwen3-4b --random-init-qwen3 4b --model /root/evm/model.gguf \
        --prompts 8 --group-size 8 --max-new-tokens 1024 --steps 2 --json q4b.json
    # the gpu-small shape on a random 135M model, no weights needed (byte-level tokenizer)
    python benchmarks/grpo_step.py --random-init smollm2-135m --model tiny-llama --steps 4 --json small.json
    # CPU check of the script itself (tiny random model, seconds)
    python benchmarks/grpo_step.py --preset tiny --steps 3
    # data-parallel: the same step on N ranks, --prompts is the GLOBAL batch (split over ranks)
    torchrun --nproc-per-node 2 benchmarks/grpo_step.py --preset tiny --steps 3 --json ddp.json

Under torchrun the printed and written times are rank 0's (every step ends in collectives, so its
total is the step's wall time); each step row also keeps every rank's phase times (time_per_rank).
Only rank 0 prints the table and writes the JSON. benchmarks/ddp_scaling.py compares 1 and N ranks.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from evilmoe import distributed as ddp
from evilmoe.config import make_config, parse_field_value
from evilmoe.models import load_model
from evilmoe.policy import resolve_device, resolve_dtype
from evilmoe.records import Rollouts
from evilmoe.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below, however this file is run
from random_models import SHAPES, random_model  # noqa: E402

PHASES = ("generate", "behaviour_forward", "grade_wait", "update", "total")
# which Trainer method holds each phase whose peak memory we read
WRAPPED = {"collect": "generate", "behaviour_pass": "behaviour_forward", "update": "update"}

# --random-init-qwen3's sizes, as names of benchmarks/random_models.py
QWEN3_SIZES = {"4b": "qwen3-4b", "1.7b": "qwen3-1.7b", "tiny": "tiny-qwen3"}
# dense bf16 tensor-core peak (FLOP/s) by a substring of the device name; --peak-tflops overrides
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}

GB = 1e9


# --------------------------------------------------------------------------------------------
# model FLOPs of the update (see the module docstring)
# --------------------------------------------------------------------------------------------
def update_flops(model_config, attention_mask: torch.Tensor, completion_mask: torch.Tensor) -> float:
    """Model FLOPs of forward + backward (frozen base) over these rows: 2 x (projections + LM head) + 3 x attention."""
    c = model_config
    heads, kv_heads = c.num_attention_heads, c.num_key_value_heads or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    d, ff = c.hidden_size, c.intermediate_size
    projections = c.num_hidden_layers * (d * (heads + 2 * kv_heads) * head_dim + heads * head_dim * d + 3 * d * ff)
    lengths = attention_mask.sum(dim=1).double()
    completion = float(completion_mask.sum())
    linear = 2.0 * projections * float(lengths.sum()) + 2.0 * c.vocab_size * d * completion
    attention = 4.0 * c.num_hidden_layers * heads * head_dim * float((lengths * (lengths + 1) / 2).sum())
    return 2.0 * linear + 3.0 * attention


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


# --------------------------------------------------------------------------------------------
# per-phase peak memory: wrap the trainer's methods on the instance
# --------------------------------------------------------------------------------------------
class PhaseMemory:
    """Peak GPU memory of each wrapped phase in the current step, and the phase running now."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.peaks: dict[str, float] = {}
        self.current = "setup"
        self.collected: Rollouts | None = None  # the last step's rollouts (for the policy rollout lengths)
        self.model_config = None  # set by run(): the config update_flops reads
        self.update_flops: float | None = None  # model FLOPs of the last update (this rank's live rows)

    def wrap(self, trainer: Trainer, method: str, phase: str) -> None:
        original: Callable = getattr(trainer, method)

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            self.current = phase
            if self.cuda:
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            out = original(*args, **kwargs)
            if self.cuda:
                torch.cuda.synchronize(self.device)
                self.peaks[phase] = torch.cuda.max_memory_allocated(self.device) / GB
            if method == "collect":
                self.collected = out
            if method == "update" and self.model_config is not None:
                rollouts = kwargs.get("rollouts", args[1] if len(args) > 1 else None)
                live = out.live[rollouts.rows].to(rollouts.batch.attention_mask.device)
                self.update_flops = update_flops(self.model_config, rollouts.batch.attention_mask[live], rollouts.batch.completion_mask[live])
            return out

        setattr(trainer, method, wrapped)

    def allocated(self) -> float | None:
        return torch.cuda.memory_allocated(self.device) / GB if self.cuda else None


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def build_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {"steps": args.steps, "arm": args.arm, "save_rollouts": False}
    named = {
        "model": args.model, "rank": args.rank, "max_new_tokens": args.max_new_tokens, "prompts_per_step": args.prompts,
        "group_size": args.group_size, "microbatch": args.microbatch, "teacher_per_group": args.teacher_per_group,
        "problem_set": args.problem_set, "data_dir": args.data_dir, "device": args.device, "sampler": args.sampler,
    }
    if args.random_init:
        # rewards need a spread for any group to train (random rollouts all earn 0); leetcode data may be absent
        named["teacher_per_group"] = 1 if args.teacher_per_group is None else args.teacher_per_group
        named["problem_set"] = args.problem_set or "bundled"
    overrides.update({k: v for k, v in named.items() if v is not None})
    if args.rank is not None and "lora_alpha" not in dict(s.split("=", 1) for s in args.set):
        overrides["lora_alpha"] = 2.0 * args.rank  # keep the presets' scale alpha / r = 2
    for item in args.set:
        name, _, text = item.partition("=")
        overrides[name.replace("-", "_")] = parse_field_value(name.replace("-", "_"), text)
    return overrides


def policy_tokens(rollouts: Rollouts | None) -> float | None:
    """Mean completion length of the sampled rollouts only (teacher demos left out)."""
    if rollouts is None:
        return None
    rows = [i for i, source in enumerate(rollouts.sources) if source == "policy"]
    return float(rollouts.batch.completion_mask[rows].sum(1).float().mean()) if rows else None


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the timed steps (all but the first), or over the one step there is."""
    timed = steps[1:] if len(steps) > 1 else steps
    out: dict[str, Any] = {"timed_steps": [s["step"] for s in timed]}
    for phase in PHASES:
        out[f"{phase}_s"] = median([s["time"][phase] for s in timed])
    for phase in WRAPPED.values():
        peaks = [s["peak_gb"][phase] for s in steps if phase in s["peak_gb"]]
        out[f"{phase}_peak_gb"] = max(peaks) if peaks else None  # worst over every step, warm-up included
    out["mean_completion_tokens"] = statistics.mean(s["mean_completion_tokens"] for s in timed) if timed else None
    policy = [s["policy_completion_tokens"] for s in timed if s["policy_completion_tokens"] is not None]
    out["policy_completion_tokens"] = statistics.mean(policy) if policy else None
    for key in ("update_tflop", "update_mfu"):
        out[key] = median([s[key] for s in timed if s.get(key) is not None])
    return out


def print_table(header: dict[str, Any], steps: list[dict[str, Any]], summary: dict[str, Any], failure: dict[str, Any] | None) -> None:
    print(f"\nGRPO step: preset {header['preset']}, arm {header['config']['arm']}, model {header['model']}, "
          f"{header['config']['prompts_per_step']} prompts x {header['config']['group_size']} samples, "
          f"{header['config']['max_new_tokens']} new tokens, rank {header['config']['rank']}, "
          f"microbatch {header['config']['microbatch']}, sampler {header['sampler']}, on {header['device']}")
    cols = f"{'step':>4} | " + " ".join(f"{p:>17}" for p in PHASES) + f" | {'tokens':>6} {'live':>4} | peak GB gen / fwd / upd"
    print(cols)
    for s in steps:
        peaks = " / ".join("-" if s["peak_gb"].get(p) is None else f"{s['peak_gb'][p]:.1f}" for p in WRAPPED.values())
        print(f"{s['step']:>4} | " + " ".join(f"{s['time'][p]:>17.2f}" for p in PHASES)
              + f" | {s['mean_completion_tokens']:>6.0f} {s['live_groups']:>4} | {peaks}" + ("   (warm-up)" if s is steps[0] and len(steps) > 1 else ""))
    if steps:
        fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
        print(f"{'med':>4} | " + " ".join(f"{fmt(summary[f'{p}_s'], '.2f'):>17}" for p in PHASES)
              + f" | {fmt(summary['mean_completion_tokens'], '.0f'):>6}      | "
              + " / ".join(fmt(summary[f'{p}_peak_gb'], '.1f') for p in WRAPPED.values()))
    if steps and summary.get("update_tflop") is not None:
        mfu = summary["update_mfu"]
        rate = summary["update_tflop"] / summary["update_s"] if summary["update_s"] else float("nan")
        print(f"update: {summary['update_tflop']:.2f} TFLOP of model FLOPs (median), {rate:.1f} TFLOP/s, MFU "
              + ("- (no known peak: --peak-tflops)" if mfu is None else f"{100 * mfu:.1f}% of {header['peak_flops'] / 1e12:.0f} TFLOP/s"))
    if failure:
        print(f"FAILED in phase {failure['phase']} of step {failure['step']}: {failure['error']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpu-small")
    parser.add_argument("--arm", default="moe")
    parser.add_argument("--steps", type=int, default=4, help="steps to run; the first is a warm-up left out of the medians")
    parser.add_argument("--model", default=None, help="load_model spec (with --random-init: where the tokenizer comes from)")
    parser.add_argument("--rank", type=int, default=None, help="adapter rank (lora_alpha follows as 2 x rank)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=None)
    parser.add_argument("--microbatch", type=int, default=None)
    parser.add_argument("--teacher-per-group", type=int, default=None)
    parser.add_argument("--problem-set", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--sampler", default=None, choices=["auto", "hf", "fast"])
    parser.add_argument("--random-init", default=None, choices=sorted(SHAPES), help="a randomly initialised model of this shape")
    parser.add_argument("--random-init-qwen3", default=None, choices=sorted(QWEN3_SIZES), help="= --random-init qwen3-SIZE")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak for MFU (default: known devices)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any other TrainConfig field")
    parser.add_argument("--json", default=None, help="write all numbers here")
    args = parser.parse_args(argv)
    if args.random_init_qwen3:
        if args.random_init:
            parser.error("give --random-init or --random-init-qwen3, not both")
        args.random_init = QWEN3_SIZES[args.random_init_qwen3]
    ddp.init()  # no-op without torchrun
    try:
        return run(args)
    finally:
        ddp.shutdown()


def run(args: argparse.Namespace) -> int:
    if not ddp.is_main():  # one table, from rank 0 (errors still reach stderr)
        sys.stdout = open(os.devnull, "w")
    config = make_config(args.preset, build_overrides(args))
    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    memory = PhaseMemory(device)
    given_model = None  # (model, tokenizer) for the trainer instead of loading config.model
    if args.random_init:
        _, tokenizer = load_model(config.model, device="cpu")  # only the tokenizer is used
        started = time.perf_counter()
        model = random_model(args.random_init, tokenizer, device, dtype)
        print(f"random {args.random_init}: {sum(p.numel() for p in model.parameters()) / 1e9:.3f}B parameters, "
              f"built in {time.perf_counter() - started:.1f} s; tokenizer of {config.model} ({len(tokenizer)} ids)", flush=True)
        given_model = (model, tokenizer)
    peak = peak_flops(device, args.peak_tflops)

    header: dict[str, Any] = {
        "preset": args.preset,
        "model": f"random {args.random_init}" if args.random_init else config.model,
        "random_init": args.random_init,
        "peak_flops": peak,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "config": config.to_dict(),
        "sampler": None,
        "world_size": ddp.world(),
        "prompts_per_rank": config.prompts_per_step // ddp.world(),
    }
    steps: list[dict[str, Any]] = []
    failure: dict[str, Any] | None = None
    trainer: Trainer | None = None
    step = -1
    try:
        started = time.perf_counter()
        trainer = Trainer(config, None, model=given_model)
        header["setup_s"] = time.perf_counter() - started
        header["sampler"] = type(trainer.sampler).__name__
        header["prompt_width"] = trainer.policy.prompt_width
        header["allocated_after_setup_gb"] = memory.allocated()
        print(f"setup {header['setup_s']:.1f} s (model, adapter, pairs, sampler); prompt width {header['prompt_width']}; "
              f"GPU memory allocated after setup: {header['allocated_after_setup_gb'] or 0:.1f} GB", flush=True)
        for method, phase in WRAPPED.items():
            memory.wrap(trainer, method, phase)
        memory.model_config = trainer.policy.model.config
        for step in range(args.steps):
            memory.peaks, memory.update_flops = {}, None
            metrics = trainer.train_step(step)
            trainer.step = step + 1
            flops, update_s = memory.update_flops, metrics["time"]["update"]
            row = {
                "step": step,
                "time": metrics["time"],
                "peak_gb": dict(memory.peaks),
                "mean_completion_tokens": metrics["mean_completion_tokens"],
                "policy_completion_tokens": policy_tokens(memory.collected),
                "live_groups": metrics["live_groups"],
                "rollout_sources": metrics["rollout_sources"],
                "time_per_rank": ddp.all_gather_object(metrics["time"]),
                "update_tflop": None if flops is None else flops / 1e12,
                "update_mfu": None if flops is None or peak is None or update_s <= 0 else flops / update_s / peak,
            }
            steps.append(row)
            print(f"step {step}: " + ", ".join(f"{p} {metrics['time'][p]:.2f} s" for p in PHASES)
                  + f"; peak GB {row['peak_gb']}; mean completion tokens {row['mean_completion_tokens']:.0f} "
                  f"(sampled rollouts {row['policy_completion_tokens'] or 0:.0f}), live groups {row['live_groups']}", flush=True)
    except (Exception, KeyboardInterrupt) as exc:  # OOM, other errors, or a time limit's SIGINT: report where, keep what was measured
        oom = isinstance(exc, torch.OutOfMemoryError)
        failure = {
            "phase": memory.current if step >= 0 else "setup",
            "step": step,
            "out_of_memory": oom,
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400],
            "peak_gb_so_far": torch.cuda.max_memory_allocated(device) / GB if device.type == "cuda" else None,
        }
        traceback.print_exc()
    finally:
        if trainer is not None:
            trainer.close()

    summary = summarise(steps) if steps else {}
    if device.type == "cuda":
        header["max_memory_allocated_gb"] = max([max(s["peak_gb"].values(), default=0) for s in steps] + [failure["peak_gb_so_far"] if failure else 0])
        header["total_memory_gb"] = torch.cuda.get_device_properties(device).total_memory / GB
    print_table(header, steps, summary, failure)
    if args.json and ddp.is_main():
        with open(args.json, "w") as f:
            json.dump({"header": header, "steps": steps, "summary": summary, "failure": failure}, f, indent=1)
        print(f"wrote {args.json}")
    return 3 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
