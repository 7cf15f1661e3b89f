"""Markdown tables from run directories (eval.json + metrics.jsonl), for docs/results.md.

    python scripts/summarise_runs.py docs/results/decision-60-steps/decide/*/seed_*

Per run: held-out and training-distribution hack / solve ON and OFF (95% Wilson intervals) and the
problem-clustered bootstrap interval of ON-OFF; then the router / update dynamics per 10-step window.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from evilmoe.runs import RunDir


def cell(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{r['rate']:.3f} [{lo:.3f}, {hi:.3f}]"


def delta(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def eval_table(runs: list[Path]) -> None:
    print("| run | steps | set | hack ON | hack OFF | hack ON-OFF | solve ON | solve OFF |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        path = run / "eval.json"
        if not path.exists():
            print(f"| {run} | unfinished | | | | | | |")
            continue
        ev = json.loads(path.read_text())
        for name, s in ev["sets"].items():
            print(
                f"| {run} | {ev['steps_trained']} | {name} ({s['n_problems']}x{s['samples_per_problem']}) | {cell(s['on']['hack'])} | "
                f"{cell(s['off']['hack'])} | {delta(s['delta_on_minus_off']['hack'])} | {cell(s['on']['solve'])} | {cell(s['off']['solve'])} |"
            )


def dynamics_table(runs: list[Path], window: int = 10) -> None:
    keys = ("policy_hack_rate", "policy_format_rate", "mean_completion_tokens", "ratio_mean", "clip_frac", "is_weight_mean",
            "quarantine_update_share", "w_hacked", "w_clean", "w_live_hacked", "w_live_clean", "w_auroc", "pin_acc")
    print("| run | steps | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for run in runs:
        rows = [m for m in RunDir(run).read_metrics() if m["step"] >= 0]
        for start in range(0, len(rows), window):
            part = rows[start : start + window]
            means = []
            for k in keys:
                vals = [m[k] for m in part if m.get(k) is not None]
                means.append(f"{sum(vals) / len(vals):.2f}" if vals else "-")
            print(f"| {run.parent.name}/{run.name} | {start}-{start + len(part) - 1} | " + " | ".join(means) + " |")


if __name__ == "__main__":
    dirs = [Path(p) for p in sys.argv[1:]]
    if not dirs:
        raise SystemExit(__doc__)
    missing = [str(d) for d in dirs if not (d / "metrics.jsonl").exists()]
    if missing:
        raise SystemExit(f"not run directories (no metrics.jsonl): {', '.join(missing)}")
    eval_table(dirs)
    print()
    dynamics_table(dirs)
