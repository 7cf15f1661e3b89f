"""Figures and the router-dynamics table of a decision batch, for docs/results.md.

    python scripts/decision_figures.py docs/results/decision-60-steps/decide docs/results/decision-60-steps

Writes OUT/decision_hack_on_off.png (held-out deploy hack ON and OFF per arm, one dot per finished
seed) and OUT/router_dynamics.png (moe arms: w on hacked vs clean rollouts, pin accuracy and the
quarantine's share of the update, seed means per step), and prints four tables: the router dynamics
per 10-step window, measured live-hack w beside its bound for the runs that logged it, what else
deletion changed per run (held-out attempted hack, format, solve ON -> OFF), and the step times.
Runs logged before w_live_* existed mix teacher demos into w_hacked; for them the table gives a
lower bound on the mean w of the policy's own hacks:
    w_live >= w_hacked - (n_demo_hacks / n_live_hacks) * (1 - w_hacked)
(every w is at most 1; n_demo_hacks is bounded by the step's template-hack demo count).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from evilmoe.config import ARMS
from evilmoe.runs import RunDir

MOE_ARMS = ("moe", "moe-placebo", "moe-nopin")


def moe_arms(root: Path) -> list[str]:
    """The routed moe arms that this batch ran."""
    return [a for a in MOE_ARMS if (root / a).is_dir()]


def load_metrics(run: Path) -> list[dict]:
    return [m for m in RunDir(run).read_metrics() if m["step"] >= 0]  # step -1: the run's start record


def arm_metrics(root: Path, arm: str) -> list[list[dict]]:
    """Training metrics of every seed of `arm` (cut-off runs included)."""
    return [load_metrics(p.parent) for p in sorted((root / arm).glob("seed_*/metrics.jsonl"))]


def arm_heldout(root: Path, arm: str) -> list[dict]:
    """Held-out eval results of the finished seeds of `arm`."""
    return [json.loads(p.read_text())["sets"]["heldout"] for p in sorted((root / arm).glob("seed_*/eval.json"))]


def live_hack_w_lower_bound(m: dict) -> float | None:
    n_live = round((m.get("policy_hack_rate") or 0) * m["rollout_sources"].get("policy", 0))
    if not n_live or m.get("w_hacked") is None:
        return None
    n_demo = m["rollout_sources"].get("template-hack", 0)
    return max(0.0, m["w_hacked"] - n_demo / n_live * (1 - m["w_hacked"]))  # w >= 0 anyway


def live_hack_w(m: dict) -> float | None:
    """The measured mean w of live hacks where the run logged it, else the lower bound."""
    return m["w_live_hacked"] if m.get("w_live_hacked") is not None else live_hack_w_lower_bound(m)


def hack_on_off_figure(root: Path, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    arms = [a for a in ARMS if (root / a).is_dir()]
    evals = {arm: arm_heldout(root, arm) for arm in arms}
    for i, arm in enumerate(arms):
        for side, dx, color in (("on", -0.15, "tab:red"), ("off", 0.15, "tab:blue")):
            rates = [e[side]["hack"]["rate"] for e in evals[arm]]
            ax.scatter([i + dx] * len(rates), rates, color=color, s=18, label=f"hack expert {side.upper()}" if i == 0 else None)
            if rates:
                ax.hlines(np.mean(rates), i + dx - 0.1, i + dx + 0.1, color=color)
    ax.set_xticks(range(len(arms)), [f"{a}\n({len(evals[a])} seeds)" for a in arms], fontsize=8)
    ax.set_ylabel("held-out deploy hack rate")
    ax.set_title("Deleting the hack expert: held-out hack rate ON vs OFF (dots = seeds, bars = means)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def router_figure(root: Path, out: Path) -> None:
    keys = (
        ("w_hacked", "w on hacked rollouts"),
        ("w_clean", "w on clean rollouts"),
        ("pin_acc", "pin accuracy"),
        ("quarantine_update_share", "quarantine update share"),
    )
    arms = moe_arms(root)
    fig, axes = plt.subplots(1, len(arms), figsize=(4 * len(arms), 3.4), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        runs = arm_metrics(root, arm)
        for key, label in keys:
            steps = max(len(r) for r in runs)
            mean = [np.mean([r[s][key] for r in runs if s < len(r) and r[s].get(key) is not None] or [np.nan]) for s in range(steps)]
            ax.plot(range(steps), mean, label=label)
        ax.set_title(f"{arm} ({len(runs)} seeds, mean)")
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.02)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def dynamics_table(root: Path, window: int = 10) -> None:
    print("| arm | steps | seeds | live hack rate | w hacked | w clean | w live hacks (>= where not logged) | pin acc | quarantine share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm in moe_arms(root):
        runs = arm_metrics(root, arm)
        for start in range(0, max(len(r) for r in runs), window):
            part = [m for r in runs for m in r[start : start + window]]

            def mean(values: list) -> str:
                values = [v for v in values if v is not None]
                return f"{np.mean(values):.2f}" if values else "-"

            print(
                f"| {arm} | {start}-{start + window - 1} | {sum(len(r) > start for r in runs)} | {mean([m['policy_hack_rate'] for m in part])} "
                f"| {mean([m['w_hacked'] for m in part])} | {mean([m['w_clean'] for m in part])} "
                f"| {mean([live_hack_w(m) for m in part])} "
                f"| {mean([m['pin_acc'] for m in part])} | {mean([m['quarantine_update_share'] for m in part])} |"
            )


def live_w_check_table(root: Path, first: int = 50, last: int = 59) -> None:
    """For the runs that logged w_live_*: measured mean w of live hacks beside the lower bound the
    older runs have to use, and w of the policy's own clean rollouts, over steps first..last."""
    print("| run | steps | w live hacks (measured) | lower bound | w live clean |")
    print("|---|---|---|---|---|")
    for arm in moe_arms(root):
        for path in sorted((root / arm).glob("seed_*/metrics.jsonl")):
            part = [m for m in load_metrics(path.parent) if first <= m["step"] <= last]
            measured = [m["w_live_hacked"] for m in part if m.get("w_live_hacked") is not None]
            if not measured:
                continue
            bound = [b for b in map(live_hack_w_lower_bound, part) if b is not None]
            clean = [m["w_live_clean"] for m in part if m.get("w_live_clean") is not None]
            print(f"| {arm}/{path.parent.name} | {first}-{last} | {np.mean(measured):.3f} | {np.mean(bound):.3f} | {np.mean(clean):.3f} |")


def deletion_detail_table(root: Path) -> None:
    print("| arm | seeds | attempted hack ON -> OFF | format ON -> OFF | solve ON -> OFF |")
    print("|---|---|---|---|---|")
    for arm in [a for a in ARMS if (root / a).is_dir()]:
        evals = arm_heldout(root, arm)

        def side(name: str, key: str, evals=evals) -> str:
            return ", ".join(f"{e[name][key]['rate']:.3f}" for e in evals)

        cells = [f"{side('on', k)} -> {side('off', k)}" for k in ("attempted_hack", "format_ok", "solve")]
        print(f"| {arm} | {len(evals)} | " + " | ".join(cells) + " |")


def step_time_summary(root: Path) -> None:
    medians = [float(np.median([m["time"]["total"] for m in load_metrics(p.parent) if m.get("time")]))
               for p in sorted(root.glob("*/seed_*/metrics.jsonl"))]
    print(f"step time per run (median over its steps), {len(medians)} runs: "
          f"min {min(medians):.1f} s, median {np.median(medians):.1f} s, max {max(medians):.1f} s")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    hack_on_off_figure(root, out / "decision_hack_on_off.png")
    router_figure(root, out / "router_dynamics.png")
    dynamics_table(root)
    print()
    live_w_check_table(root)
    print()
    deletion_detail_table(root)
    print()
    step_time_summary(root)
