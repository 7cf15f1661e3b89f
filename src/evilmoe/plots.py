"""Plots of a run directory (matplotlib, Agg backend): training curves, ON/OFF eval, router weights."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path | IO[bytes], dpi: int) -> Path | IO[bytes]:
    """Lay out, write (creating a file path's folder) and close a figure; returns path."""
    fig.tight_layout()
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _read_jsonl(path: Path) -> list[dict]:
    """Rows of a .jsonl file, or of its .jsonl.gz copy (how results are committed); [] if neither."""
    if not path.exists():
        gz = path.with_name(path.name + ".gz")
        if not gz.exists():
            return []
        text = gzip.decompress(gz.read_bytes()).decode()
    else:
        text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write plots/*.png for a run; returns the files written."""
    run = Path(run_dir)
    out = run / "plots"
    out.mkdir(exist_ok=True)
    written = []
    metrics = [m for m in _read_jsonl(run / "metrics.jsonl") if m.get("step", -1) >= 0]
    if metrics:
        written.append(_training_curves(metrics, run, out / "training.png"))
    eval_path = run / "eval.json"
    if eval_path.exists():
        written.append(_eval_bars(json.loads(eval_path.read_text()), out / "eval_on_off.png"))
    w_plot = _router_weights(run, out / "router_w.png")
    if w_plot:
        written.append(w_plot)
    return written


def _series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _training_curves(metrics: list[dict], run: Path, path: Path | IO[bytes]) -> Path | IO[bytes]:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, label in (("policy_hack_rate", "hack"), ("policy_solve_rate", "solve"), ("policy_attempted_hack_rate", "attempted hack")):
        axes[0].plot(*_series(metrics, key), label=label)
    # periodic validation: ON vs OFF
    validation = (
        ("val_hack_on", "-o", "val hack ON"),
        ("val_hack_off", "--o", "val hack OFF"),
        ("val_solve_on", "-s", "val solve ON"),
        ("val_solve_off", "--s", "val solve OFF"),
    )
    for key, style, label in validation:
        xs, ys = _series(metrics, key)
        if xs:
            axes[0].plot(xs, ys, style, label=label)
    axes[0].set_title("sampled rollouts (policy only)")
    axes[0].set_xlabel("step")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    axes[1].plot(*_series(metrics, "reward_mean"), label="reward (all rollouts)")
    axes[1].plot(*_series(metrics, "quarantine_update_share"), label="quarantine update share")
    axes[1].set_title("reward and update split")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=7)
    router_keys = (
        ("w_hacked", "w on hacked"),
        ("w_clean", "w on clean"),
        ("w_live_hacked", "w on live hacks"),
        ("w_live_clean", "w on live clean"),
        ("w_auroc", "AUROC of w"),
        ("pin_acc", "pin accuracy"),
        ("zone_route", "routeA route share"),
        ("score_auroc", "AUROC of routeA score"),
    )
    for key, label in router_keys:
        xs, ys = _series(metrics, key)
        if xs:
            axes[2].plot(xs, ys, label=label)
    axes[2].set_title("routing diagnostics (never used to route)")
    axes[2].set_xlabel("step")
    axes[2].set_ylim(-0.02, 1.02)
    if axes[2].get_legend_handles_labels()[0]:  # the none / absorb arms have no routing diagnostics
        axes[2].legend(fontsize=7)
    fig.suptitle(run.name)
    return save_figure(fig, path, dpi=110)


def _eval_bars(result: dict, path: Path | IO[bytes]) -> Path | IO[bytes]:
    sets = result["sets"]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(6 * max(1, len(sets)), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], sets.items()):
        labels, on_vals, off_vals, on_err, off_err = [], [], [], [], []
        for metric in ("hack", "solve"):
            labels.append(metric)
            for side, vals, errs in (("on", on_vals, on_err), ("off", off_vals, off_err)):
                r = res[side][metric]
                v = r["rate"] or 0.0
                lo, hi = r["ci95"] or (v, v)
                vals.append(v)
                errs.append((max(0.0, v - lo), max(0.0, hi - v)))  # Wilson bounds can miss v by rounding
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], on_vals, 0.4, yerr=list(zip(*on_err)), label="hack expert ON")
        ax.bar([x + 0.2 for x in xs], off_vals, 0.4, yerr=list(zip(*off_err)), label="OFF (deployed)")
        ax.set_xticks(list(xs), labels)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name} (n={res['n_problems']}x{res['samples_per_problem']})")
        ax.legend(fontsize=8)
    fig.suptitle(f"deploy ablation: arm {result['arm']}, seed {result['seed']}")
    return save_figure(fig, path, dpi=110)


def _router_weights(run: Path, path: Path) -> Path | None:
    hacked, clean = [], []
    for f in sorted((run / "rollouts").glob("step_*.jsonl")):
        for row in _read_jsonl(f):
            if row.get("w") is None:
                continue
            (hacked if row["grade"]["hacked"] else clean).append(row["w"])
    if not hacked and not clean:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 20 for i in range(21)]
    if clean:
        ax.hist(clean, bins=bins, alpha=0.6, density=True, label=f"clean rollouts (n={len(clean)})")
    if hacked:
        ax.hist(hacked, bins=bins, alpha=0.6, density=True, label=f"hacked rollouts (n={len(hacked)})")
    ax.set_xlabel("router weight w (share of the update sent to the hack expert)")
    ax.set_title("router w over all training rollouts (grader flags: diagnostics only)")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def router_w_over_time(metrics: list[dict], path: Path | IO[bytes], title: str = "") -> Path | IO[bytes] | None:
    """Mean router w on hacked vs clean rollouts per step (all rollouts, and the policy's own);
    None for arms without a router."""
    keys = (
        ("w_hacked", "-", "hacked (all rollouts)"),
        ("w_clean", "-", "clean (all rollouts)"),
        ("w_live_hacked", "--", "hacked (policy's own)"),
        ("w_live_clean", "--", "clean (policy's own)"),
    )
    series = [(key, style, label, _series(metrics, key)) for key, style, label in keys]
    if not any(xs for _, _, _, (xs, _) in series):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for _key, style, label, (xs, ys) in series:
        if xs:
            ax.plot(xs, ys, style, marker="." if len(xs) < 40 else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("mean router weight w")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "router w on hacked vs clean rollouts (grader flags: diagnostics only)", fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=100)
