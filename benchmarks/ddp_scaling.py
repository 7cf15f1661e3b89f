"""Data-parallel scaling from benchmarks/grpo_step.py JSON files of the same setting at 1 and N GPUs.

    python benchmarks/ddp_scaling.py OUT/small_1.json OUT/small_2.json OUT/q17_1.json ... [--json scaling.json]

Files are paired by their setting (model, prompts, samples, tokens; the global batch must be equal).
Per setting: the median step time (s) at each number of ranks, rollouts per second, the speedup and
the STRONG-scaling efficiency at a fixed global batch:

    efficiency(N) = T(1) / (N * T(N))        (1.0 = perfect: N GPUs finish the same step N times faster)

Weak scaling (same per-GPU batch, N x the global batch) is not what these runs measure.
"""

from __future__ import annotations

import argparse
import json
import sys


def setting(d: dict) -> tuple:
    c = d["header"]["config"]
    return (d["header"]["model"], c["prompts_per_step"], c["group_size"], c["max_new_tokens"], c["arm"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    runs: dict[tuple, dict[int, dict]] = {}
    for path in args.files:
        try:
            d = json.load(open(path))
        except (OSError, json.JSONDecodeError) as exc:
            print(f"skipping {path}: {exc}")
            continue
        if not d.get("summary") or d["summary"].get("total_s") is None:
            print(f"skipping {path}: no timed step ({(d.get('failure') or {}).get('error')})")
            continue
        runs.setdefault(setting(d), {})[d["header"].get("world_size", 1)] = d
    rows = []
    print(
        "| model | global batch (prompts x samples x new tokens) | GPUs | s / step | generate | behaviour fwd | update "
        "| rollouts / s | speedup | strong-scaling efficiency |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, by_world in runs.items():
        model, prompts, group, tokens, arm = key
        base = by_world.get(1)
        for world in sorted(by_world):
            s = by_world[world]["summary"]
            t = s["total_s"]
            speedup = base["summary"]["total_s"] / t if base else None
            eff = speedup / world if speedup is not None else None
            row = {"model": model, "arm": arm, "prompts": prompts, "group_size": group, "max_new_tokens": tokens, "gpus": world,
                   "step_s": t, "generate_s": s["generate_s"], "behaviour_forward_s": s["behaviour_forward_s"], "update_s": s["update_s"],
                   "rollouts_per_s": prompts * group / t, "speedup": speedup, "strong_scaling_efficiency": eff,
                   "mean_completion_tokens": s["mean_completion_tokens"]}
            rows.append(row)
            fmt = lambda x, f=".2f": "-" if x is None else format(x, f)  # noqa: E731
            print(f"| {model} | {prompts} x {group} x {tokens} | {world} | {t:.2f} | {fmt(s['generate_s'])} | {fmt(s['behaviour_forward_s'])} "
                  f"| {fmt(s['update_s'])} | {row['rollouts_per_s']:.1f} | {fmt(speedup)} | {fmt(eff)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
