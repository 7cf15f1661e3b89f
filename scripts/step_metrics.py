"""Chosen per-step metrics of one run, for the step-by-step numbers in docs/results.md.

    python scripts/step_metrics.py RUN [--steps 40-60 | --last 10] [--keys lr,policy_format_rate,time.total] [--stat mean]

Prints a markdown table, one row per logged step in the range (inclusive; --last N: the run's last N
logged steps), a column per key (a dotted key reaches inside a nested metric: time.total is the
step's wall time), and a last row with each column's median (or mean) over the printed steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from evilmoe.runs import RunDir

DEFAULT_KEYS = "lr,policy_hack_rate,policy_format_rate,mean_completion_tokens,grad_norm"


def lookup(row: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-2 else f"{value:.3f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", default=None, help="FIRST-LAST, inclusive (default: every step)")
    parser.add_argument("--last", type=int, default=None, help="only the last N logged steps (after --steps)")
    parser.add_argument("--keys", default=DEFAULT_KEYS, help=f"comma-separated (default {DEFAULT_KEYS})")
    parser.add_argument("--stat", default="median", choices=["median", "mean"], help="the summary row (default median)")
    args = parser.parse_args()
    rows = [m for m in RunDir(args.run).read_metrics() if m["step"] >= 0]  # step -1: the start record
    if not rows:
        raise SystemExit(f"no training steps logged in {args.run / 'metrics.jsonl'}")
    if args.steps:
        first, last = (int(x) for x in args.steps.split("-"))
        rows = [m for m in rows if first <= m["step"] <= last]
    if args.last is not None:
        if args.last < 1:
            raise SystemExit(f"--last must be at least 1 (got {args.last})")
        rows = rows[-args.last :]
    keys = args.keys.split(",")
    print("| step | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for m in rows:
        print(f"| {m['step']} | " + " | ".join(fmt(lookup(m, k)) for k in keys) + " |")
    summary, stat = [], np.median if args.stat == "median" else np.mean
    for k in keys:
        values = [v for v in (lookup(m, k) for m in rows) if isinstance(v, (int, float))]
        summary.append(fmt(float(stat(values))) if values else "-")
    print(f"| {args.stat} | " + " | ".join(summary) + " |")


if __name__ == "__main__":
    main()
