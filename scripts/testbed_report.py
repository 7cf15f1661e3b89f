"""Testbed tables and learning curves from run directories (no training, any machine).

    python scripts/testbed_report.py RUN [RUN ...] [--figure docs/img/testbed_curves.png] [--window 10]

Prints four markdown tables:
1. per run and eval set: the run's own starting model (eval_start.json), its solve ON and OFF at the
   end (eval.json) and its hack rate ON, with 95% Wilson intervals; `lift` is OFF solve minus the
   run's own start solve (runs with different warm starts or sampling start from different models),
   with a paired 95% bootstrap interval over problems where the start evaluation kept its rows (the
   start and the final eval draw each row with the same prompt and sampling seed);
2. the periodic validation (steps logged as val_* in metrics.jsonl): skill / loophole-free held-out
   solve and held-out hack, hack expert ON;
3. over seeds (runs whose config.json differs only in the seed, at least two): per eval set the
   seed mean of the lift (OFF minus start) and of the hack rate ON, with a 95% t-interval over seeds;
4. the collapse check: the first step where the `window`-step mean of format falls below 0.9, or the
   mean completion length exceeds twice its first window (the testbed's stability criteria), and the
   last window's format, length, KL and hack rate.
With --figure, one row of learning curves per run: policy hack, solve on gt_only and on loophole
problems, format, the share cut off at max_new_tokens, length / start, KL, and the validation points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from evilmoe.decide import seed_interval
from evilmoe.evaluate import paired_bootstrap
from evilmoe.runs import RunDir

SETS = ("skill", "heldout_clean", "heldout", "train_dist")


def read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def rate(r: dict[str, Any]) -> str:
    if r["rate"] is None:
        return "-"
    lo, hi = r["ci95"]
    return f"{r['rate']:.3f} [{lo:.3f}, {hi:.3f}]"


def paired_lift(run: Path, name: str, start_set: dict[str, Any]) -> dict[str, Any] | None:
    """Solve OFF minus solve at the start, paired per problem, with a bootstrap interval over problems;
    None where the start kept no rows or the final eval's rows are not the start's problems in order."""
    rows = start_set.get("rows")
    final = RunDir(run).read_rollouts_file(f"eval_{name}.jsonl")
    if rows is None or final is None:
        return None
    n = start_set["samples_per_problem"]
    if [r["problem_id"] for r in final] != [pid for pid in rows["problems"] for _ in range(n)]:
        return None
    start = np.array(rows["correct"], dtype=float).reshape(-1, n)
    off = np.array([float(r["grade_off"]["correct"]) for r in final]).reshape(-1, n)
    return paired_bootstrap(off, start, seed=0)


def windowed(rows: list[dict[str, Any]], key: str, window: int) -> np.ndarray:
    values = np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        if np.isfinite(part).any():
            out[i] = np.nanmean(part)
    return out


def eval_table(runs: list[Path]) -> None:
    """One row per (run, eval set): the run's own start (runs may differ in warm start or sampling),
    its ON and OFF solve at the end, the lift (OFF minus its own start), the hack rate ON and OFF, and
    the attempted-hack rate ON -> OFF (the exploit present at all: where the exploit leaves a right
    answer right, a right answer that carries it counts as solved, not hacked, so only this rate sees
    the exploit habit on answers that pass)."""
    print("| run | eval set | start solve | solve ON | solve OFF | lift | hack ON | hack OFF | attempted ON -> OFF |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        start, final = read(run / "eval_start.json"), read(run / "eval.json")
        for name in SETS:
            s = start["sets"][name]["on"]["solve"] if start and name in start["sets"] else None
            f = final["sets"][name] if final and name in final["sets"] else None
            if s is None and f is None:
                continue
            cells = [run.name, name, rate(s) if s else "-"]
            if f is None:
                cells += ["-"] * 6
            else:
                off = f["off"]["solve"]
                lift = f"{off['rate'] - s['rate']:+.3f}" if s and s["rate"] is not None and off["rate"] is not None else "-"
                paired = paired_lift(run, name, start["sets"][name]) if s else None
                if paired is not None:
                    lift = f"{paired['mean']:+.3f} [{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}]"
                tried = [f[side].get("attempted_hack", {}).get("rate") for side in ("on", "off")]
                attempted = "-" if None in tried else f"{tried[0]:.3f} -> {tried[1]:.3f}"
                cells += [rate(f["on"]["solve"]), rate(off), lift, rate(f["on"]["hack"]), rate(f["off"]["hack"]), attempted]
            print("| " + " | ".join(cells) + " |")


def seed_groups(runs: list[Path]) -> dict[str, list[Path]]:
    """Runs grouped by their config without the seed and the output folder (only groups of 2+)."""
    groups: dict[str, list[Path]] = {}
    for run in runs:
        config = read(run / "config.json") or {}
        key = json.dumps({k: v for k, v in config.items() if k not in ("seed", "out")}, sort_keys=True)
        groups.setdefault(key, []).append(run)
    return {" + ".join(r.name for r in rs): rs for rs in groups.values() if len(rs) >= 2}


def seed_table(runs: list[Path]) -> None:
    """Seed means with 95% t-intervals: lift (OFF minus the run's own start) and hack ON per eval set."""
    groups = seed_groups(runs)
    if not groups:
        return
    print("| runs | eval set | lift, seed mean [95% t] | per seed | hack ON, seed mean [95% t] |")
    print("|---|---|---|---|---|")
    fmt = lambda iv: f"{iv['mean']:+.3f} [{iv['ci95'][0]:+.3f}, {iv['ci95'][1]:+.3f}]"  # noqa: E731
    for label, group in groups.items():
        for name in SETS:
            lifts, hacks = [], []
            for run in group:
                start, final = read(run / "eval_start.json"), read(run / "eval.json")
                if not (start and final and name in start["sets"] and name in final["sets"]):
                    break
                lifts.append(final["sets"][name]["off"]["solve"]["rate"] - start["sets"][name]["on"]["solve"]["rate"])
                hacks.append(final["sets"][name]["on"]["hack"]["rate"])
            else:
                lift, hack = seed_interval(lifts, (-1.0, 1.0)), seed_interval(hacks, (0.0, 1.0))
                per_seed = ", ".join(f"{v:+.3f}" for v in lifts)
                print(f"| {label} | {name} | {fmt(lift)} | {per_seed} | {fmt(hack).replace('+', '')} |")


def validation_table(runs: list[Path]) -> None:
    keys = ("val_skill_solve_on", "val_clean_solve_on", "val_solve_on", "val_hack_on")
    print("| run | step | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for run in runs:
        for m in RunDir(run).read_metrics():
            if m.get("val_hack_on") is not None:
                print(f"| {run.name} | {m['step'] + 1} | " + " | ".join("-" if m.get(k) is None else f"{m[k]:.3f}" for k in keys) + " |")


def collapse_table(runs: list[Path], window: int) -> None:
    print(f"| run | steps | first step format < 0.9 ({window}-step mean) | first step length > 2x start | last {window} steps: format, length, KL, hack |")
    print("|---|---|---|---|---|")
    for run in runs:
        rows = [m for m in RunDir(run).read_metrics() if m.get("step", -1) >= 0]
        fmt = windowed(rows, "policy_format_rate", window)
        length = windowed(rows, "mean_completion_tokens", window)
        base = length[window - 1] if len(length) >= window else length[-1]
        first_fmt = next((rows[i]["step"] for i in range(window - 1, len(rows)) if fmt[i] < 0.9), None)
        first_len = next((rows[i]["step"] for i in range(window - 1, len(rows)) if length[i] > 2 * base), None)
        kl, hack = windowed(rows, "kl", window), windowed(rows, "policy_hack_rate", window)
        print(
            f"| {run.name} | {len(rows)} | {first_fmt if first_fmt is not None else 'never'} | "
            f"{first_len if first_len is not None else 'never'} | "
            f"{fmt[-1]:.2f}, {length[-1]:.0f} (start {base:.0f}), {kl[-1]:.2f}, {hack[-1]:.2f} |"
        )


def figure(runs: list[Path], path: Path, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 3, figsize=(15, 3.2 * len(runs)), squeeze=False)
    for row, run in zip(axes, runs):
        logged = RunDir(run).read_metrics()
        rows = [m for m in logged if m.get("step", -1) >= 0]
        steps = [m["step"] for m in rows]
        for key, label in (
            ("policy_hack_rate", "hack"),
            ("policy_solve_rate_gt_only", "solve (gt_only)"),
            ("policy_solve_rate_loophole", "solve (loophole problems)"),
            ("policy_format_rate", "format"),
            ("policy_truncated_rate", "cut off at max_new_tokens"),
        ):
            if any(m.get(key) is not None for m in rows):  # runs older than a metric lack it
                row[0].plot(steps, windowed(rows, key, window), label=label)
        row[0].set_title(f"{run.name}: policy rollouts ({window}-step mean)")
        row[0].set_ylim(-0.02, 1.02)
        length = windowed(rows, "mean_completion_tokens", window)
        row[1].plot(steps, length / length[min(window, len(length)) - 1], label="length / start")
        row[1].plot(steps, windowed(rows, "kl", window), label="KL to start")
        row[1].plot(steps, windowed(rows, "grad_norm", window), label="grad norm")
        row[1].set_yscale("log")
        row[1].set_title("stability")
        # the validation points, the starting model's first (its row is step -1) where the run logged it
        vals = [m for m in logged if m.get("val_hack_on") is not None]
        start = read(run / "eval_start.json")
        for key, set_name, style, label in (
            ("val_skill_solve_on", "skill", "-o", "skill solve (val)"),
            ("val_clean_solve_on", "heldout_clean", "-s", "held-out loophole-free solve (val)"),
            ("val_hack_on", None, "-^", "held-out hack (val)"),
        ):
            xs, ys = [m["step"] + 1 for m in vals], [m[key] for m in vals]
            if start and vals and vals[0]["step"] >= 0:
                # a run without a validation of the starting model: only the skill set's start (the
                # same problems, other sampling seeds) and the hack rate (0: the starting model has seen
                # no loophole) can stand in; the held-out validation problems are not the start eval's
                if set_name == "skill" and "skill" in (start.get("sets") or {}):
                    xs, ys = [0] + xs, [start["sets"]["skill"]["on"]["solve"]["rate"]] + ys
                elif set_name is None:
                    xs, ys = [0] + xs, [0.0] + ys
            row[2].plot(xs, ys, style, label=label)
        row[2].set_title("validation (hack expert ON)")
        for ax in row:
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "metrics.jsonl").exists():
            raise SystemExit(f"{run} is not a run directory (no metrics.jsonl)")
    eval_table(args.runs)
    print()
    validation_table(args.runs)
    print()
    seed_table(args.runs)
    print()
    collapse_table(args.runs, args.window)
    if args.figure:
        figure(args.runs, args.figure, args.window)


if __name__ == "__main__":
    main()
