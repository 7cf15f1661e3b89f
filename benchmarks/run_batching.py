"""Run throughput: K runs batched in one process vs K processes sharing the device vs one solo run.

A decision run trains 7 arms x 3+ seeds of one preset and model. This measures run-steps per
second (training steps of any run, summed over the runs, per wall-clock second) three ways, side
by side in one invocation on the same machine:

    solo       one run (arm moe) alone in one process
    processes  one process per arm, all at once on the same device (what `decide --parallel 7` does)
    batched    every arm in ONE process sharing one frozen model (`decide --batched`, evilmoe.batched)

Each mode runs in fresh spawned processes (its own CUDA context), so the modes never overlap. Every
process builds its runs, takes one warm-up step (CUDA-graph capture, allocator, cuBLAS), waits at
a barrier with the others of its mode, then times --steps steps. Throughput = run-steps timed /
(last process's end - first process's start). No run directory is written, nothing is evaluated.

    # the GPU measurement: a random-init model of SmolLM2-135M's shape (no weights needed), gpu-small at
    # microbatch 8 (as the decide --parallel 7 runs: a process at microbatch 64 peaks near 37 GB)
    python3 benchmarks/run_batching.py --model random-smollm2 --preset gpu-small --set microbatch=8 --steps 2 --device cuda --json runbatch.json
    # CPU check of the script itself (tiny random model, about a minute; --sampler fast: the GPU's decode path)
    python3 benchmarks/run_batching.py --model tiny-llama --preset tiny --steps 1 --arms none,moe --sampler fast

Random-init models never write an end-of-turn token, so every sampled row runs to max_new_tokens:
the worst case for sampling time, the same in every mode. With the byte-level tokenizer of
`random-smollm2` prompts are ~4x longer than with the real tokenizer.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from typing import Any

MODES = ("batched", "processes", "solo")  # measured in this order: the new path first
PHASES = ("generate", "behaviour_forward", "grade_wait", "update", "total")  # a step's metrics["time"]


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": args.model, "device": args.device, "steps": args.steps + 1, "eval_start": False, "sampler": args.sampler,
    }
    if args.grading_workers:
        out["grading_workers"] = args.grading_workers
    from evilmoe.config import parse_field_value

    for item in args.set:
        key, _, value = item.partition("=")
        out[key] = parse_field_value(key, value)
    return out


def _worker(mode: str, arms: list[str], args: argparse.Namespace, workers: int, barrier, results) -> None:
    """Build the runs, one warm-up step, barrier, --steps timed steps; report to `results`."""
    try:
        import torch

        from evilmoe.config import make_config

        overrides = _overrides(args)
        if not args.grading_workers:  # share the cores between the processes of a mode, as decide does
            overrides["grading_workers"] = max(1, (os.cpu_count() or 2) // workers)
        configs = [make_config(args.preset, {**overrides, "arm": arm, "seed": args.seed}) for arm in arms]
        if mode == "batched":
            from evilmoe.batched import RunBatch

            batch = RunBatch(configs, [None] * len(configs), update_rows=args.update_rows)

            def step(i: int) -> dict[str, float]:
                metrics = batch.train_step(i)
                for b in metrics:
                    batch.trainers[b].step = i + 1
                if batch.stopped:
                    raise RuntimeError(f"runs stopped: {batch.stopped}")
                return next(iter(metrics.values()))["time"]  # the batch's phases (every run shares them)

            close, trainers = batch.close, batch.trainers
        else:
            from evilmoe.trainer import Trainer

            trainer = Trainer(configs[0], None)

            def step(i: int) -> dict[str, float]:
                metrics = trainer.train_step(i)
                trainer.step = i + 1
                return metrics["time"]

            close, trainers = trainer.close, [trainer]
        sync = torch.cuda.synchronize if torch.cuda.is_available() and args.device != "cpu" else (lambda: None)
        t0 = time.perf_counter()
        step(0)  # warm-up
        sync()
        warm = time.perf_counter() - t0
        barrier.wait()
        start = time.time()
        phases = [step(i) for i in range(1, args.steps + 1)]
        sync()
        end = time.time()
        policy = trainers[0].policy
        peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() and args.device != "cpu" else None
        results.put({
            "mode": mode, "arms": arms, "start": start, "end": end, "run_steps": args.steps * len(arms), "warmup_s": warm,
            "sampler": type(policy.sampler).__name__, "prompt_width": policy.prompt_width, "peak_gb": peak,
            "phases": {k: sum(p[k] for p in phases) / len(phases) for k in PHASES},
        })
        close()
    except BaseException as exc:  # report, and let the barrier's other parties go
        results.put({"mode": mode, "arms": arms, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        barrier.abort()


def measure(mode: str, arms: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One mode in fresh processes; its run-steps per second."""
    ctx = mp.get_context("spawn")
    groups = {"solo": [arms[:1]], "processes": [[a] for a in arms], "batched": [arms]}[mode]
    barrier, results = ctx.Barrier(len(groups)), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(mode, g, args, len(groups), barrier, results)) for g in groups]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    rows: list[dict[str, Any]] = []
    while len(rows) < len(procs):
        try:
            rows.append(results.get(timeout=5))
        except queue.Empty:  # a process killed outright (e.g. out of host memory) reports nothing
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    if p.is_alive():
                        p.kill()
                return {"mode": mode, "error": f"a process died with exit code {dead[0].exitcode}", "trace": ""}
    for p in procs:
        p.join()
    errors = [r for r in rows if "error" in r]
    if errors:
        return {"mode": mode, "error": errors[0]["error"], "trace": errors[0]["trace"]}
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    run_steps = sum(r["run_steps"] for r in rows)
    return {
        "mode": mode, "processes": len(groups), "runs": sum(len(g) for g in groups), "run_steps": run_steps,
        "timed_wall_s": wall, "run_steps_per_s": run_steps / wall, "warmup_s": max(r["warmup_s"] for r in rows),
        "total_s": time.perf_counter() - t0, "sampler": rows[0]["sampler"], "prompt_width": rows[0]["prompt_width"],
        "peak_gb_per_process": max((r["peak_gb"] for r in rows if r["peak_gb"] is not None), default=None),
        # mean seconds per step and phase, averaged over the mode's processes
        "phases_s": {k: sum(r["phases"][k] for r in rows) / len(rows) for k in PHASES},
    }


def main(argv: list[str] | None = None) -> int:
    from evilmoe.config import ARMS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-llama", help="model spec (random-smollm2: SmolLM2-135M's shape, random weights)")
    p.add_argument("--preset", default="tiny", help="config preset every run uses")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms, one run each (default: all 7)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per run (after one warm-up step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--sampler", default="auto", help="auto (fast on CUDA, HF generate on CPU) | fast | hf")
    p.add_argument("--modes", default=",".join(MODES), help=f"which of {','.join(MODES)} to measure")
    p.add_argument("--update-rows", type=int, default=None,
                   help="batched: most rows per training forward (default: every run's microbatch in one forward, layers recomputed)")
    p.add_argument("--grading-workers", type=int, default=0, help="per process (default: the cores split over the mode's processes)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a config field for every run, e.g. microbatch=8 (what decide --parallel 7 needs to fit one H200)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES] + [a for a in arms if a not in ARMS]
    if bad or not arms or args.steps < 1:
        p.error(f"unknown modes/arms {bad}" if bad else "need at least one arm and --steps >= 1")

    print(f"run throughput: preset {args.preset}, model {args.model}, {len(arms)} runs ({','.join(arms)}), "
          f"{args.steps} timed steps per run after 1 warm-up, device {args.device}, overrides {args.set or 'none'}")
    if args.model.startswith(("random-", "tiny-")):
        print("random-init model: every sampled row runs to max_new_tokens (no end-of-turn), the same in every mode")
    out: dict[str, Any] = {"args": vars(args), "modes": {}}
    for mode in modes:
        result = measure(mode, arms, args)
        out["modes"][mode] = result
        if "error" in result:
            print(f"{mode:>10}: FAILED {result['error']}\n{result['trace']}")
            continue
        peak = result["peak_gb_per_process"]
        print(f"{mode:>10}: {result['run_steps_per_s']:.3f} run-steps/s ({result['run_steps']} run-steps in "
              f"{result['timed_wall_s']:.1f} s, {result['processes']} process(es), warm-up {result['warmup_s']:.1f} s, "
              f"sampler {result['sampler']}, prompt width {result['prompt_width']}, peak GPU "
              f"{'-' if peak is None else f'{peak:.1f} GB'} per process, mode total {result['total_s']:.0f} s)")
        print(" " * 12 + "mean s per step: " + ", ".join(f"{k} {v:.2f}" for k, v in result["phases_s"].items()))
    rate = {m: r["run_steps_per_s"] for m, r in out["modes"].items() if "error" not in r}
    ratios = {}
    for a, b in (("batched", "processes"), ("batched", "solo"), ("processes", "solo")):
        if a in rate and b in rate:
            ratios[f"{a}/{b}"] = rate[a] / rate[b]
            print(f"{a} / {b}: {ratios[f'{a}/{b}']:.2f}x")
    out["ratios"] = ratios
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 3 if any("error" in r for r in out["modes"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
