"""The update with share_prompt on vs off: time and memory of the same update, in one run, as ratios.

Builds `Trainer(make_config(preset, overrides), None)` (nothing written) and one synthetic step of
rollouts of the shape that matters: --prompts groups of --group-size rows, each group's prompt
random tokens of about --prompt-tokens (lengths differ by group, so prompts are left-padded), each
row's completion about --completion-tokens (lengths differ by row). Rewards are random, so every
group is live. Then, alternating off / on --repeats times on the same trainer (only
`config.share_prompt` changes between calls):

  behaviour pass   `trainer.behaviour_pass(batch)` (no grad; shares whole groups whenever on)
  update           `trainer.update(...)`: the routed forward + backward of every microbatch, the
                   router-only loss, clip and AdamW step (the optimizer steps each call; shapes and
                   so costs do not change)

Memory: on CUDA the peak allocated during each phase (torch.cuda.max_memory_allocated, reset
before it). On any device, also the activations autograd keeps for the backward: the bytes of the
distinct tensors saved for backward (saved_tensors_hooks) by one microbatch's forward, model weights
left out, the largest over the microbatches. That is what the update's peak grows with (docs/design.md:
the decoder's saved activations are the peak), and it is measurable on CPU, where tracemalloc does not
see torch's allocations.

How many rows share depends on the arm's controls: none and absorb share whole groups, routeA
within its labels, moe (every row its own router w) nothing (its ratios show the cost of asking).
Keep --microbatch a multiple of --group-size, or groups are cut between microbatches.

    # CPU check (tiny random model, seconds)
    python benchmarks/share_prompt.py
    # the gpu-small shape on a random 135M model (no weights needed), on a GPU
    python benchmarks/share_prompt.py --device cuda --preset gpu-small --random-init smollm2-135m --model tiny-llama \\
        --prompts 16 --group-size 8 --microbatch 64 --prompt-tokens 560 --completion-tokens 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from evilmoe import update as update_module
from evilmoe.config import make_config
from evilmoe.env.types import Grade
from evilmoe.models import load_model
from evilmoe.policy import resolve_device, resolve_dtype
from evilmoe.records import Rollouts
from evilmoe.rollouts import build_batch
from evilmoe.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below, however this file is run
from random_models import SHAPES, random_model  # noqa: E402

MB = 1e6


class SavedActivations:
    """Bytes of the distinct tensors autograd saves for backward during each update forward (the
    update's log-prob calls are wrapped), model parameters and buffers left out; `peak` is the
    largest over the forwards since the last reset."""

    def __init__(self, model: torch.nn.Module):
        self.weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.seen: set[int] = set()
        self.bytes = 0
        self.peak = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.weights and ptr not in self.seen:
            self.seen.add(ptr)
            self.bytes += storage.nbytes()
        return tensor

    def measure(self, fn):
        def wrapped(*args, **kwargs):
            self.seen, self.bytes = set(), 0
            with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
                out = fn(*args, **kwargs)
            self.peak = max(self.peak, self.bytes)
            return out

        return wrapped


def synthetic_rollouts(trainer: Trainer, args: argparse.Namespace, gen: torch.Generator) -> tuple[Rollouts, list[Grade]]:
    """Random prompts and completions of the asked lengths, with random rewards (every group live)."""
    vocab = min(trainer.model.config.vocab_size, len(trainer.tokenizer))
    pad = trainer.tokenizer.pad_token_id
    lp = args.prompt_tokens + args.prompt_tokens // 10
    prompt_ids = torch.full((args.prompts, lp), pad, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    for p in range(args.prompts):
        n = args.prompt_tokens + int(torch.randint(-(args.prompt_tokens // 10), args.prompt_tokens // 10 + 1, (1,), generator=gen))
        prompt_ids[p, lp - n :] = torch.randint(3, vocab, (n,), generator=gen)
        prompt_mask[p, lp - n :] = 1
    rows = torch.arange(args.prompts).repeat_interleave(args.group_size)
    low = max(1, args.completion_tokens // 2)
    completions = [
        torch.randint(3, vocab, (int(torch.randint(low, args.completion_tokens + 1, (1,), generator=gen)),), generator=gen).tolist()
        for _ in rows
    ]
    batch = build_batch(prompt_ids[rows], prompt_mask[rows], completions, pad).to(trainer.device)
    n = len(batch)
    problems = trainer.step_problems(0)[: args.prompts]
    modes = [trainer.train_modes[p.id] for p in problems]
    rollouts = Rollouts(
        problems=problems, modes=modes, batch=batch, texts=[""] * n, sources=["policy"] * n,
        grading=None, gen_seconds=0.0, row_offset=0, truncated=[False] * n,
    )  # fmt: skip
    rewards = torch.rand(n, generator=gen).tolist()
    grades = [Grade(reward=r, correct=False, hacked=False, channel=False, attempted_hack=False, compiles=False, format_ok=False,
                    mode=modes[i // args.group_size]) for i, r in enumerate(rewards)]  # fmt: skip
    return rollouts, grades


def timed(device: torch.device, fn) -> tuple[float, float | None]:
    """(seconds, peak GB allocated on CUDA or None) of fn()."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return seconds, (torch.cuda.max_memory_allocated(device) / 1e9 if cuda else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--arm", default="none", help="none | absorb | routeA | moe | ... (how many rows may share)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--model", default=None, help="load_model spec (with --random-init: where the tokenizer comes from)")
    parser.add_argument("--random-init", default=None, choices=sorted(SHAPES), help="a randomly initialised model of this shape")
    parser.add_argument("--prompts", type=int, default=4, help="groups (prompts) in the step")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--microbatch", type=int, default=16)
    parser.add_argument("--microbatch-tokens", type=int, default=0)
    parser.add_argument("--prompt-tokens", type=int, default=560, help="about this many tokens per prompt (+-10%% by group)")
    parser.add_argument("--completion-tokens", type=int, default=256, help="at most this many per completion (at least half)")
    parser.add_argument("--pairs-per-mode", type=int, default=1, help="hack/clean pairs per mode (0 = all; setup and pin loss only)")
    parser.add_argument("--repeats", type=int, default=3, help="calls of each phase per setting (medians are printed)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="write all numbers here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides: dict[str, Any] = {
        "arm": args.arm, "device": args.device, "prompts_per_step": args.prompts, "group_size": args.group_size,
        "microbatch": args.microbatch, "microbatch_tokens": args.microbatch_tokens, "teacher_per_group": 0,
        "max_new_tokens": args.completion_tokens, "save_rollouts": False, "share_prompt": False,
        # the pairs' forwards (the arm's direction at setup, moe's pin loss) are the same either way
        "pairs_per_mode": args.pairs_per_mode,
    }  # fmt: skip
    if args.model:
        overrides["model"] = args.model
    if args.random_init:
        overrides["problem_set"] = "bundled"
    config = make_config(args.preset, overrides)
    device = resolve_device(config)
    given_model = None
    if args.random_init:
        _, tokenizer = load_model(config.model, device="cpu")  # only the tokenizer is used
        given_model = (random_model(args.random_init, tokenizer, device, resolve_dtype(config, device)), tokenizer)
    trainer = Trainer(config, None, model=given_model)
    originals = {name: getattr(update_module, name) for name in ("completion_logprobs", "shared_prompt_logprobs")}
    try:
        gen = torch.Generator().manual_seed(0)
        rollouts, grades = synthetic_rollouts(trainer, args, gen)
        batch = rollouts.batch
        saved = SavedActivations(trainer.model)
        for name in originals:  # what the update's forwards call
            setattr(update_module, name, saved.measure(originals[name]))

        results: dict[str, dict[str, list]] = {s: {"behaviour_s": [], "update_s": [], "behaviour_gb": [], "update_gb": [], "saved_mb": []}
                                               for s in ("off", "on")}  # fmt: skip
        for _ in range(args.repeats):
            for setting in ("off", "on"):
                trainer.config.share_prompt = setting == "on"
                out: dict[str, Any] = {}
                seconds, peak = timed(device, lambda out=out: out.update(behaviour=trainer.behaviour_pass(batch)))
                results[setting]["behaviour_s"].append(seconds)
                results[setting]["behaviour_gb"].append(peak)
                behaviour = out["behaviour"]
                routing = trainer.arm.decide(behaviour.features, 0)
                saved.peak = 0
                seconds, peak = timed(device, lambda b=behaviour, r=routing: trainer.update(0, rollouts, grades, b, b.features, r))
                results[setting]["update_s"].append(seconds)
                results[setting]["update_gb"].append(peak)
                results[setting]["saved_mb"].append(saved.peak / MB)
    finally:
        for name, fn in originals.items():  # unwrapped again (main may run twice in one process)
            setattr(update_module, name, fn)
        trainer.close()

    lengths = batch.attention_mask.sum(dim=1).float()
    lp = batch.prompt_width
    prompt_share = float(batch.attention_mask[:, :lp].sum() / batch.attention_mask.sum())
    summary = {s: {k: (statistics.median(v) if v and v[0] is not None else None) for k, v in r.items()} for s, r in results.items()}
    print(f"share_prompt on vs off: preset {args.preset}, arm {args.arm}, model {f'random {args.random_init}' if args.random_init else config.model}, "
          f"on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; {args.prompts} prompts x {args.group_size} rows, "
          f"microbatch {args.microbatch}{f' / {args.microbatch_tokens} tokens' if args.microbatch_tokens else ''}; "
          f"{float(lengths.mean()):.0f} tokens per row on average, {100 * prompt_share:.0f}% of them prompt; "
          f"medians of {args.repeats} calls each")
    print(f"{'':>34} {'off':>10} {'on':>10} {'on / off':>9}")
    rows = [("behaviour pass, s", "behaviour_s", ".3f"), ("update, s", "update_s", ".3f"),
            ("update activations saved, MB", "saved_mb", ".1f"), ("behaviour pass peak CUDA, GB", "behaviour_gb", ".2f"),
            ("update peak CUDA, GB", "update_gb", ".2f")]  # fmt: skip
    for label, key, fmt in rows:
        off, on = summary["off"][key], summary["on"][key]
        if off is None:
            continue
        print(f"{label:>34} {off:>10{fmt}} {on:>10{fmt}} {on / off if off else float('nan'):>9.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "config": config.to_dict(), "prompt_token_share": prompt_share, "calls": results, "median": summary}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
