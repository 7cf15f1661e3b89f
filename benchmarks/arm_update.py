"""What each routing arm adds to a step's update: `absorb` against the `moe`-type arms, same rollouts.

Builds one `Trainer` per arm on copies of one model (same weights, same adapter init, same pairs) and
feeds every arm the same fixed rollouts: the preset's real prompts (rendered as the trainer renders
them), seeded random completion tokens of a given mean length, and seeded rewards that give
`--live-groups` groups a reward spread. No sampling and no grading, so only the passes after them are
timed. The arms run round-robin, `--repeats` times each after one warm-up step, and the medians are
printed per phase, each arm's total against `absorb`'s measured in the same run.

Phases (the trainer's step after grading, in order; every arm runs every phase, most are ~0 for most arms):

    behaviour        RoutedUpdate.behaviour_pass: no-grad log-probs + routing features (not "update")
    prepare          Arm.prepare: the arm's work on the step's adapter state while the grader still
                     runs (the moe arms' forwards over the hack/clean pairs); absent in older trees
    begin_step       Arm.begin_step (v_act re-extraction, when due)
    decide           Arm.decide
    plan             RoutedUpdate.plan: rewards, advantages, live rows, microbatches
    control          Arm.control summed over the microbatches (the learned router's w, with autograd)
    fwd+bwd          the microbatches' routed forward, loss and backward, without control
    router_loss      Arm.router_loss: the pin loss (in older trees with the pair forwards inside it)
    (pair fwd)       PairProbe.features, the no-grad forwards over the pairs, inside prepare or router_loss
    router_bwd       the router-only loss's backward
    rest             RoutedUpdate.finish's remainder: gradient norms, clip, AdamW, diagnostics w
    update           the trainer's "update" time: decide + plan + microbatches + finish

The trainer runs `prepare` before it waits for the grades, so where grading takes longer than the
pair forwards, they cost a real step no wall time; the last line adds them back to compare the work.

    python benchmarks/arm_update.py                         # CPU: default model, 4 of its 30 layers, ~2 min
    python benchmarks/arm_update.py --device cuda --layers 0 --dtype bfloat16 --model random-smollm2
    python benchmarks/arm_update.py --model tiny-llama --preset tiny --repeats 1   # CPU check of the script, seconds

`--model` takes any `load_model` spec (`random-smollm2`: random weights of the default model's shape
with a BPE tokenizer built in code, no files); `--layers N` keeps the first N decoder layers (0 = all),
which scales the model's share of every phase alike.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

import torch

from evilmoe.config import make_config, parse_field_value
from evilmoe.env.types import Grade
from evilmoe.models import load_model
from evilmoe.records import Rollouts
from evilmoe.rollouts import build_batch
from evilmoe.trainer import Trainer

PHASES = ("behaviour", "prepare", "begin_step", "decide", "plan", "control", "fwd+bwd", "router_loss", "(pair fwd)", "router_bwd", "rest", "update")


class Timers:
    """Seconds per phase of the current step, the device synchronised at both ends of each."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, obj: Any, method: str, phase: str) -> None:
        """Time obj.method (an instance attribute shadowing the class's method) into `phase`."""
        original = getattr(obj, method)

        def timed(*args, **kwargs):
            self.sync()
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            self.sync()
            self.seconds[phase] += time.perf_counter() - t0
            return out

        setattr(obj, method, timed)


class _TimedLoss:
    """Stands in for RouterLoss.loss so that RoutedUpdate.finish's `loss.backward()` is timed."""

    def __init__(self, loss: torch.Tensor, timers: Timers):
        self.loss, self.timers = loss, timers

    @property
    def requires_grad(self) -> bool:
        return self.loss.requires_grad

    def backward(self) -> None:
        self.timers.sync()
        t0 = time.perf_counter()
        self.loss.backward()
        self.timers.sync()
        self.timers.seconds["router_bwd"] += time.perf_counter() - t0


def instrument(trainer: Trainer, timers: Timers) -> None:
    arm, updater = trainer.arm, trainer.updater
    timers.wrap(arm, "control", "control")
    timers.wrap(trainer.probe, "features", "(pair fwd)")
    timers.wrap(updater, "plan", "plan")
    timers.wrap(updater, "finish", "finish")
    original_loss = arm.router_loss

    def router_loss(*args, **kwargs):
        timers.sync()
        t0 = time.perf_counter()
        out = original_loss(*args, **kwargs)
        timers.sync()
        timers.seconds["router_loss"] += time.perf_counter() - t0
        if out.loss is not None:
            out.loss = _TimedLoss(out.loss, timers)
        return out

    arm.router_loss = router_loss


def fixed_rollouts(trainer: Trainer, step: int, mean_tokens: int, live_groups: int, seed: int) -> tuple[Rollouts, list[Grade]]:
    """The step's real prompts, seeded random completions (no end-of-turn token) and seeded rewards."""
    cfg, tokenizer = trainer.config, trainer.tokenizer
    prompts = trainer.step_prompts(step)
    rng = random.Random(seed)
    vocab = [i for i in range(len(tokenizer)) if i not in set(trainer.stop_ids) and i != tokenizer.pad_token_id]
    completions = [
        [rng.choice(vocab) for _ in range(min(cfg.max_new_tokens, rng.randint(1, 2 * mean_tokens - 1)))]
        for _ in range(len(prompts.ids))
    ]
    batch = build_batch(prompts.ids, prompts.mask, completions, tokenizer.pad_token_id)
    rewards = []
    for group in range(len(prompts.ids) // cfg.group_size):
        if group < live_groups:  # a spread: at least one 0 and one 3.5
            rewards += [0.0, 3.5] + [rng.choice([0.0, 0.5, 3.5]) for _ in range(cfg.group_size - 2)]
        else:
            rewards += [0.0] * cfg.group_size
    grades = [Grade(reward=r, correct=r > 3, hacked=False, channel=False, attempted_hack=False, compiles=r > 0, format_ok=True, mode="gt_only")
              for r in rewards]
    done: cf.Future = cf.Future()
    done.set_result(grades)
    problems = prompts.all_problems[prompts.first : prompts.stop]
    rollouts = Rollouts(problems=problems, modes=prompts.modes, batch=batch, texts=[""] * len(completions),
                        sources=["policy"] * len(completions), grading=done, gen_seconds=0.0, row_offset=0)
    return rollouts, grades


def one_step(trainer: Trainer, timers: Timers, step: int, rollouts: Rollouts, grades: list[Grade]) -> dict[str, float]:
    """The trainer's step after sampling (Trainer.train_step's order), every phase timed."""
    timers.seconds = defaultdict(float)
    arm = trainer.arm

    def timed(phase: str, fn, *args):
        timers.sync()
        t0 = time.perf_counter()
        out = fn(*args)
        timers.sync()
        timers.seconds[phase] += time.perf_counter() - t0
        return out

    timed("begin_step", arm.begin_step, step)
    behaviour = timed("behaviour", trainer.behaviour_pass, rollouts.batch)
    if hasattr(arm, "prepare"):  # older trees: the pair forwards run inside router_loss
        timed("prepare", arm.prepare, step)
    features = behaviour.features
    timers.sync()
    t0 = time.perf_counter()
    routing = timed("decide", arm.decide, features, step)
    trainer.update(step, rollouts, grades, behaviour, features, routing)
    timers.sync()
    s = dict(timers.seconds)
    s["update"] = time.perf_counter() - t0
    finish = s.pop("finish", 0.0)
    s["rest"] = finish - s.get("router_loss", 0.0) - s.get("router_bwd", 0.0)
    s["fwd+bwd"] = s["update"] - s["decide"] - s.get("plan", 0.0) - s.get("control", 0.0) - finish
    return s


def time_pair_passes(trainer: Trainer, timers: Timers, repeats: int) -> dict[str, float]:
    """PairProbe.features (both sides in one pass, sorted by length) against one pass per side (how
    the pairs were forwarded before), alternated, on the same adapter state."""
    probe = trainer.probe
    ways = {"one sorted pass": lambda: probe.features(), "a pass per side": lambda: (probe.pooled(probe.hack), probe.pooled(probe.clean))}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, fn in ways.items():
            timers.sync()
            t0 = time.perf_counter()
            fn()
            timers.sync()
            seconds[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpu-testbed-intact")
    parser.add_argument("--arms", default="absorb,moe,moe-placebo,moe-nopin", help="comma-separated; ratios are to the first")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="load_model spec")
    parser.add_argument("--layers", type=int, default=4, help="keep the first N decoder layers (0 = all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float64"], help="default: load_model's (bf16 on CUDA)")
    parser.add_argument("--completion-tokens", type=int, default=70, help="mean completion length (uniform in [1, 2 x mean - 1], capped)")
    parser.add_argument("--live-groups", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per arm after one warm-up (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any other TrainConfig field")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = [a for a in args.arms.split(",") if a]
    device = torch.device(args.device)

    # no warm start: it only changes the base weights, not what a step computes
    overrides: dict[str, Any] = {"model": args.model, "device": args.device, "warm_start_steps": 0, "save_rollouts": False,
                                 "grading_workers": 1, "seed": args.seed}
    for item in args.set:
        name, _, text = item.partition("=")
        overrides[name.replace("-", "_")] = parse_field_value(name.replace("-", "_"), text)
    base, tokenizer = load_model(args.model, device=device, dtype=getattr(torch, args.dtype) if args.dtype else None)
    if 0 < args.layers < len(base.model.layers):
        base.model.layers = base.model.layers[: args.layers]
        base.config.num_hidden_layers = args.layers
    dtype = next(base.parameters()).dtype

    trainers: dict[str, Trainer] = {}
    timers = Timers(device)
    for arm in arms:
        trainers[arm] = Trainer(make_config(args.preset, {**overrides, "arm": arm}), None, model=(copy.deepcopy(base), tokenizer))
        instrument(trainers[arm], timers)
    first = trainers[arms[0]]
    step = first.config.warmup_steps  # past the warm-up: the learning rate is at its peak
    rollouts, grades = fixed_rollouts(first, step, args.completion_tokens, args.live_groups, args.seed)
    cfg = first.config
    tokens = int(rollouts.batch.attention_mask.sum())
    print(f"arm update: preset {args.preset}, model {args.model}, "
          f"{base.config.num_hidden_layers} layers, {dtype} on {device}; {len(rollouts.batch)} rollouts ({args.live_groups} live groups), "
          f"{tokens / len(rollouts.batch):.0f} tokens a row, {len(first.probe)} pairs x 2 sides every step "
          f"(pin_batch {cfg.pin_batch}), microbatch {cfg.microbatch}, kl_coef {cfg.kl_coef}; {args.repeats} repeats after a warm-up", flush=True)

    runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for repeat in range(args.repeats + 1):  # round-robin: drifting machine load hits every arm alike
        for arm in arms:
            s = one_step(trainers[arm], timers, step, rollouts, grades)
            if repeat:
                runs[arm].append(s)
    pair_pass = time_pair_passes(trainers[arms[-1]], timers, args.repeats) if hasattr(first.probe, "both") else None
    for t in trainers.values():
        t.close()

    medians = {arm: {p: statistics.median([r.get(p, 0.0) for r in runs[arm]]) for p in PHASES} for arm in arms}
    print(f"\n{'seconds (median)':<12}" + "".join(f"{arm:>13}" for arm in arms))
    for p in PHASES:
        print(f"{p:<12}" + "".join(f"{medians[arm][p]:>13.3f}" for arm in arms))
    for key, label in (("update", "update"), (None, "prepare+update")):
        vals = {arm: medians[arm]["update"] + (0.0 if key else medians[arm]["prepare"]) for arm in arms}
        base_val = vals[arms[0]]
        print(f"{label + ' x ' + arms[0]:<24}" + "".join(f"{vals[arm] / base_val:>9.2f}" for arm in arms[1:]))
    if pair_pass:
        print(f"pair forwards, median of {args.repeats}: one pass over both sides sorted by length {pair_pass['one sorted pass']:.3f} s, "
              f"a pass per side {pair_pass['a pass per side']:.3f} s ({pair_pass['one sorted pass'] / pair_pass['a pass per side']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "medians": medians, "runs": runs, "pair_pass": pair_pass, "torch": torch.__version__}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
