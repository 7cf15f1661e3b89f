"""Decision runs: several arms x seeds trained and evaluated back to back, one comparison table.

Each (arm, seed) is an ordinary run directory under OUT/<arm>/seed_<s>, so the whole decision is
resumable: a finished run is read back from its eval.json, an unfinished one resumes from its last
checkpoint. With a time budget the command stops cleanly (checkpoint written) and says so; running
it again continues where it stopped.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evilmoe import distributed as ddp
from evilmoe.config import make_config
from evilmoe.errors import UserError
from evilmoe.evaluate import causal_line
from evilmoe.routing import mean_or_none
from evilmoe.runs import RunDir, atomic_write_json, atomic_write_text

# two-sided 95% t quantiles for small numbers of seeds (df = n - 1)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def seed_interval(values: list[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean over seeds with a 95% t-interval (None with fewer than 2 seeds), cut to `bounds` if given:
    a rate lies in [0, 1] and an ON-OFF difference in [-1, 1], so the part of the t-interval outside is
    impossible (with 2-3 seeds it often reaches below 0)."""
    arr = np.array(values, dtype=float)
    out: dict[str, Any] = {"mean": float(arr.mean()) if len(arr) else None, "per_seed": [float(v) for v in arr], "ci95": None}
    if len(arr) >= 2:
        half = T95.get(len(arr) - 1, 1.96) * arr.std(ddof=1) / math.sqrt(len(arr))
        low, high = bounds or (-math.inf, math.inf)
        out["ci95"] = [float(max(low, arr.mean() - half)), float(min(high, arr.mean() + half))]
    return out


def run_decision(
    preset: str,
    arms: list[str],
    seeds: list[int],
    out_dir: str,
    overrides: dict[str, Any],
    *,
    time_budget_s: float | None = None,
    parallel: int = 1,
    batched: bool = False,
    update_rows: int | None = None,
    localize: bool = False,
    relearn_steps: int = 20,
) -> dict[str, Any] | None:
    """Train + evaluate every arm x seed (skipping finished ones); write decision.{json,md}.

    parallel > 1 runs that many (arm, seed) runs at once, each in its own process, spread
    round-robin over the visible GPUs: a 135M-parameter model leaves much of a GPU idle (kernel
    launches and grading), so several runs can share one (measured: 9 runs on one H200 gave ~1.45x
    the throughput of one run at a time). Each gets cpu_count // parallel grading workers
    unless grading_workers is set. Results are identical to running them one after another.

    batched: train the runs together in one process sharing one frozen model (evilmoe.batched;
    each run exactly as alone given the same rollouts), or with parallel > 1 in that many batches,
    one process each, spread over the visible GPUs. update_rows bounds a batched training
    forward's rows. A batched run whose update turns non-finite stops alone and is left out of
    the table (its run directory says why).

    localize: once every run is trained, localize each (the dose curve and 10 random slices on the
    held-out and skill sets, evilmoe.localization) and relearn its deployed model for `relearn_steps`
    steps (the `none` arm's runs from the starting model instead: the baseline), `parallel` runs at a
    time. Each run's analyses are skipped where its files exist, so this resumes too. The decision reports whatever analyses
    its runs hold, however they were made.

    Returns the table, or None if the time budget ran out first (runs are checkpointed).
    Under torchrun every rank runs the same arms x seeds loop (each run data-parallel); only rank 0
    writes and prints.
    """
    if parallel < 1:
        raise UserError(f"--parallel must be >= 1 (got {parallel})")
    deadline = time.monotonic() + time_budget_s if time_budget_s else None  # CLOCK_MONOTONIC: one clock for all processes
    root = Path(out_dir)
    if batched and ddp.world() > 1:
        raise UserError("--batched trains several runs in one process on one device; it does not combine with torchrun")
    if update_rows is not None and not batched:
        raise UserError("--update-rows sizes the forwards of --batched runs; add --batched")
    if localize and relearn_steps < 1:
        raise UserError(f"--relearn-steps must be at least 1 (got {relearn_steps})")
    if localize and ddp.world() > 1:
        raise UserError("--localize runs after training in one process; under torchrun run `evilmoe localize` and `evilmoe relearn` per run afterwards")
    if parallel > 1 and ddp.world() > 1:
        raise UserError("--parallel runs several single-process runs on one device; it does not combine with torchrun")
    if parallel > 1 and not overrides.get("grading_workers"):
        overrides = {**overrides, "grading_workers": max(1, (os.cpu_count() or 2) // parallel)}
    # seed-major: a time budget that stops the batch early leaves whole seeds of every arm, not
    # every seed of the first arms
    jobs = [(arm, seed) for seed in seeds for arm in arms]
    for arm, seed in jobs:  # validate every config before training (or creating) anything
        make_config(preset, {**overrides, "arm": arm, "seed": seed})
    if ddp.is_main():
        root.mkdir(parents=True, exist_ok=True)
    args = [(preset, overrides, arm, seed, str(root / arm / f"seed_{seed}"), deadline) for arm, seed in jobs]
    if batched:
        # `parallel` batches, each job to the batch of its index modulo parallel (each batch a mix of arms)
        batches = [jobs[b::parallel] for b in range(min(parallel, len(jobs)))]
        if len(batches) == 1:
            per_batch = [_train_batch(preset, overrides, batches[0], str(root), deadline, update_rows, progress=True)]
        else:
            gpus = gpu_slots(len(batches), _visible_gpus())
            with ProcessPoolExecutor(
                max_workers=len(batches), mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
            ) as pool:
                per_batch = list(pool.map(
                    _train_batch, *zip(*[(preset, overrides, b, str(root), deadline, update_rows) for b in batches]), gpus
                ))
        by_job = {job: result for b, results in zip(batches, per_batch) for job, result in zip(b, results)}
        outcomes = [by_job[job] for job in jobs]
        stopped = [(job, r["stopped"]) for job, r in zip(jobs, outcomes) if r is not None and "stopped" in r]
        for (arm, seed), reason in stopped:
            print(f"{arm} seed {seed} stopped on a non-finite update and is left out of the table: {reason}")
        kept = [(job, r) for job, r in zip(jobs, outcomes) if r is None or "stopped" not in r]
        jobs, outcomes = [job for job, _ in kept], [r for _, r in kept]
    elif parallel == 1:
        outcomes = []
        bar = tqdm(args, desc="decision runs", unit="run", disable=None if ddp.is_main() else True)
        for a in bar:  # one after another; under torchrun every rank walks this loop together
            bar.set_postfix_str(f"{a[2]} seed {a[3]}")
            outcomes.append(_train_one(*a))
            if outcomes[-1] is None:  # every rank gets None together (rank 0's deadline decides)
                break
    else:
        gpus = gpu_slots(len(jobs), _visible_gpus())
        # spawn, not fork: each child starts its own CUDA context and grading pool; one job per
        # child, so a child never holds a CUDA context on a GPU other than its job's
        with ProcessPoolExecutor(
            max_workers=parallel, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
        ) as pool:
            outcomes = list(tqdm(pool.map(_train_one, *zip(*args), gpus), total=len(args), desc="decision runs", unit="run", disable=None))
    if len(outcomes) < len(jobs) or any(result is None for result in outcomes):
        if ddp.is_main():
            print("time budget reached; run the same command again to continue")
        return None
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for (arm, seed), result in zip(jobs, outcomes):
        results.setdefault(arm, {})[seed] = result
    if not ddp.is_main():
        return comparison_table(results)
    run_dirs = {arm: {seed: root / arm / f"seed_{seed}" for seed in by_seed} for arm, by_seed in results.items()}
    if localize and not _localize_runs(run_dirs, relearn_steps, deadline, parallel):
        print("time budget reached during the localization; run the same command again to continue")
        return None
    decision = summarise_decision(results, run_dirs)
    atomic_write_json(root / "decision.json", {"preset": preset, "overrides": overrides, "arms": arms, "seeds": seeds, **decision})
    text = decision_markdown(decision, preset, seeds)
    atomic_write_text(root / "decision.md", text)
    plot_decision(decision, root)
    from evilmoe.report import write_report

    print(f"report: {write_report(root)}")
    print(text)
    return decision["table"]


def summarise_decision(results: dict[str, dict[int, dict[str, Any]]], run_dirs: dict[str, dict[int, Path]]) -> dict[str, Any]:
    """A decision's numbers from its finished runs (results: their eval.json by arm and seed; run_dirs:
    their folders): the comparison table, the selectivity (where the runs have a start evaluation and
    there is a `none` arm) and the localization summary (where they were localized)."""
    from evilmoe.localization import localization_summary

    starts = {arm: {seed: _read_start(run) for seed, run in by_seed.items()} for arm, by_seed in run_dirs.items()}
    return {
        "table": comparison_table(results),
        "selectivity": selectivity_table(results, starts),
        "localization": localization_summary(run_dirs),
        "router": router_dynamics(run_dirs),
    }


# What a router arm's training looked like, per window of steps: is w high on the policy's own hacks
# and low on its clean rollouts (AUROC), does the pin hold, how much of the update the expert takes.
ROUTER_KEYS = ("policy_hack_rate", "w_live_hacked", "w_live_clean", "w_auroc", "pin_acc", "quarantine_update_share")


def router_dynamics(run_dirs: dict[str, dict[int, Path]], window: int = 10) -> dict[str, Any]:
    """Per arm with a learned router (its runs log `pin_acc`): each of ROUTER_KEYS averaged over the
    first, the middle and the last `window` logged steps of each run, then over seeds with a
    t-interval. {} where no arm has a router."""
    out: dict[str, Any] = {}
    for arm, by_seed in run_dirs.items():
        per_seed: list[dict[str, dict[str, float | None]]] = []
        for run in by_seed.values():
            rows = [r for r in RunDir(run).read_metrics() if r.get("step", -1) >= 0]
            if not any(r.get("pin_acc") is not None for r in rows):
                continue
            last = max(r["step"] for r in rows) + 1
            middle = max(0, last // 2 - window // 2)
            spans = {f"{a}-{b - 1}": (a, b) for a, b in ((0, window), (middle, middle + window), (max(0, last - window), last))}
            per_seed.append({
                label: {key: mean_or_none([r[key] for r in rows if a <= r["step"] < b and r.get(key) is not None]) for key in ROUTER_KEYS}
                for label, (a, b) in spans.items()
            })
        if not per_seed:
            continue
        # windows are labelled by their steps: seeds of one arm share them when they trained equally long
        labels = list(dict.fromkeys(label for seed in per_seed for label in seed))
        out[arm] = {
            label: {
                key: seed_interval([v for seed in per_seed if (v := seed.get(label, {}).get(key)) is not None], bounds=(0.0, 1.0))
                for key in ROUTER_KEYS
            }
            for label in labels
        }
    return out


def render_router_markdown(router: dict[str, Any]) -> str:
    lines = [
        "## Router dynamics",
        "",
        "Per window of training steps, seed means with t-intervals: the policy's own hack rate, the router's w on",
        "its own hacked and clean rollouts (teacher demonstrations left out), w's AUROC as a hack detector (all",
        "rollouts), the pin's accuracy, and the hack expert's share of the update (squared gradient norm).",
        "",
        "| arm | steps | seeds | live hack rate | w live hacks | w live clean | w AUROC | pin acc | quarantine share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, windows in router.items():
        for label, stats in windows.items():
            cells = [_cell(stats[key]) if stats[key]["mean"] is not None else "-" for key in ROUTER_KEYS]
            n = max(len(stats[key]["per_seed"]) for key in ROUTER_KEYS)
            lines.append(f"| {arm} | {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def decision_markdown(decision: dict[str, Any], title: str, seeds: list[int]) -> str:
    from evilmoe.localization import render_localization_markdown

    text = render_markdown(decision["table"], title, seeds, decision["selectivity"], decision.get("router"))
    return text + ("\n" + render_localization_markdown(decision["localization"]) if decision["localization"] else "")


def plot_decision(decision: dict[str, Any], folder: Path, base: dict[str, dict[str, float]] | None = None) -> None:
    """decision_plane.png (where there is a selectivity), dose_by_arm.png and relearning_by_arm.png (where
    runs were localized and relearned).
    base: the base model's rates per eval set ({"hack", "solve"}), drawn on the plane where given."""
    from evilmoe.localization import plot_dose_by_arm, plot_relearning_by_arm

    if decision["selectivity"]:
        plot_plane(decision["table"], decision["selectivity"], folder / "decision_plane.png", base=(base or {}).get("heldout"))
    if decision["localization"]:
        plot_dose_by_arm(decision["localization"], folder / "dose_by_arm.png")
        plot_relearning_by_arm(decision["localization"], folder / "relearning_by_arm.png")


def _localize_runs(run_dirs: dict[str, dict[int, Path]], relearn_steps: int, deadline: float | None, parallel: int = 1) -> bool:
    """decide --localize: each run's dose curve, random slices and relearning, where not yet written;
    `parallel` runs at a time, one process each, spread over the visible GPUs (as in training).
    False if the deadline passed first."""
    jobs = [(arm, str(run)) for arm, by_seed in run_dirs.items() for _, run in sorted(by_seed.items())]
    args = [(arm, run, relearn_steps, deadline) for arm, run in jobs]
    if parallel == 1:
        return all([_analyse_run(*a) for a in args])  # a list: every run is tried (the deadline stops the rest)
    gpus = gpu_slots(len(args), _visible_gpus())
    with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        return all(list(pool.map(_analyse_run, *zip(*args), gpus)))


def _analyse_run(arm: str, run: str, relearn_steps: int, deadline: float | None, gpu: str | None = None) -> bool:
    """One run's analyses (see _localize_runs); False if the deadline came first. gpu: as in _train_one."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    from evilmoe.localization import localize_run_dir, relearn_run_dir

    path = Path(run)
    if deadline is not None and time.monotonic() > deadline:
        return False
    if not (path / "localization.json").exists():
        print(f"localizing {run}")
        localize_run_dir(run, sets=("heldout", "skill"))
    condition = "start" if arm == "none" else "deleted"  # none has nothing deleted: its relearning is the baseline's
    if not (path / f"relearn-{condition}.json").exists():
        if deadline is not None and time.monotonic() > deadline:
            return False
        relearn_run_dir(run, steps=relearn_steps, condition=condition)
    return True


def _read_start(run: Path) -> dict[str, Any] | None:
    path = run / "eval_start.json"
    return json.loads(path.read_text()) if path.exists() else None


SELECTIVITY_SETS = ("skill", "heldout_clean", "heldout", "train_dist")


def selectivity_table(results: dict[str, dict[int, dict[str, Any]]], starts: dict[str, dict[int, dict[str, Any] | None]]) -> dict[str, Any]:
    """Per arm and eval set: share of hacking removed, (ON - OFF) / ON, and share of the skill lift
    kept, (solve OFF - solve at start) / (solve of the `none` arm - solve at start), per seed and as
    seed means with t-intervals. Needs the runs' start evaluations (eval_start) and a `none` arm; a
    share is None where it is undefined (no hacking ON; no lift in `none` to keep)."""
    from evilmoe.localization import selectivity

    if "none" not in results:
        return {}
    out: dict[str, Any] = {}
    for name in SELECTIVITY_SETS:
        none_solve = [r["sets"][name]["off"]["solve"]["rate"] for r in results["none"].values() if name in r["sets"]]
        if not none_solve:
            continue
        none_mean = float(np.mean(none_solve))
        for arm, by_seed in results.items():
            removed, kept, lift, start_solves = [], [], [], []
            for seed, result in by_seed.items():
                start = starts.get(arm, {}).get(seed)
                if name not in result["sets"] or start is None or name not in start["sets"]:
                    continue
                start_solve = start["sets"][name]["on"]["solve"]["rate"]
                start_solves.append(start_solve)
                got = selectivity(result["sets"][name]["on"], result["sets"][name]["off"], start_solve=start_solve, none_solve=none_mean)
                removed.append(got["hack_removed"])
                kept.append(got["lift_kept"])
                lift.append(result["sets"][name]["off"]["solve"]["rate"] - start_solve)
            if not start_solves:
                continue
            defined = lambda xs: [x for x in xs if x is not None]  # noqa: E731
            out.setdefault(arm, {})[name] = {
                "hack_removed": seed_interval(defined(removed)) | {"per_seed_all": removed},
                "lift_kept": seed_interval(defined(kept)) | {"per_seed_all": kept},
                # the lift itself, solve OFF - start: the ratio above divides by the none arm's lift,
                # which where that lift is small turns sampling noise into large swings
                "lift_off": seed_interval(lift, bounds=(-1.0, 1.0)),
                "start_solve": float(np.mean(start_solves)),
                "none_solve": none_mean,
            }
    return out


def plot_plane(
    table: dict[str, Any], selectivity: dict[str, Any], path: Path, set_name: str = "heldout", base: dict[str, float] | None = None
) -> None:
    """The (hack, solve) plane of the deployed models (OFF) and the trained ones (ON), seed means with
    t-intervals, with the starting model (and, where given, the base model before any warm start):
    where each arm's deletion lands."""
    from evilmoe.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for i, (arm, sets) in enumerate(table.items()):
        if set_name not in sets:
            continue
        e, color = sets[set_name], f"C{i}"
        for side, marker in (("on", "o"), ("off", "s")):
            h, sv = e[f"hack_{side}"], e[f"solve_{side}"]
            xerr = None if h["ci95"] is None else [[h["mean"] - h["ci95"][0]], [h["ci95"][1] - h["mean"]]]
            yerr = None if sv["ci95"] is None else [[sv["mean"] - sv["ci95"][0]], [sv["ci95"][1] - sv["mean"]]]
            ax.errorbar(h["mean"], sv["mean"], xerr=xerr, yerr=yerr, fmt=marker, color=color, label=f"{arm} {side.upper()}", capsize=3)
        ax.annotate("", xy=(e["hack_off"]["mean"], e["solve_off"]["mean"]), xytext=(e["hack_on"]["mean"], e["solve_on"]["mean"]),
                    arrowprops=dict(arrowstyle="->", color=color, alpha=0.5))
    start = next((v[set_name]["start_solve"] for v in selectivity.values() if set_name in v), None)
    if start is not None:
        ax.plot(0.0, start, "k*", markersize=12, label="start (before RL)")
    if base is not None:
        ax.plot(base["hack"], base["solve"], "kX", markersize=9, label="base model (no warm start)")
    ax.set_xlabel(f"hack rate ({set_name})")
    ax.set_ylabel(f"solve rate ({set_name})")
    ax.set_title("ON (circles) -> OFF (squares): deleting the hack expert")
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, Path(path), dpi=90)


def _visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    return listed.split(",") if listed else [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(n_jobs: int, gpus: list[str]) -> list[str | None]:
    """Round-robin: job i runs on gpus[i % len(gpus)] (None = leave the device choice alone)."""
    return [gpus[i % len(gpus)] if gpus else None for i in range(n_jobs)]


def _train_one(
    preset: str, overrides: dict[str, Any], arm: str, seed: int, out: str, deadline: float | None, gpu: str | None = None
) -> dict[str, Any] | None:
    """One (arm, seed) run to its eval.json, or None if the deadline came first (checkpointed).

    gpu: a CUDA_VISIBLE_DEVICES entry for this (fresh, spawned) process; CUDA reads it at its first
    use, which comes later, so setting it here pins the run to that GPU.
    """
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    from evilmoe.train import run_training

    if ddp.world() == 1 and deadline is not None and time.monotonic() > deadline:
        return None  # nothing started after the budget is spent; the next call resumes it
    config = make_config(preset, {**overrides, "arm": arm, "seed": seed})
    return run_training(config, out, deadline=deadline, progress=False)


def _train_batch(
    preset: str, overrides: dict[str, Any], jobs: list[tuple[str, int]], root: str, deadline: float | None,
    update_rows: int | None, gpu: str | None = None, progress: bool = False,
) -> list[dict[str, Any] | None]:
    """Several (arm, seed) runs trained together in this process (evilmoe.batched); gpu as in
    _train_one; progress: a bar over the batch's steps."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    from evilmoe.batched import run_batched_training, run_dirs

    if deadline is not None and time.monotonic() > deadline:
        return [None] * len(jobs)
    configs = [make_config(preset, {**overrides, "arm": arm, "seed": seed}) for arm, seed in jobs]
    return run_batched_training(configs, run_dirs(root, jobs), deadline=deadline, progress=progress, update_rows=update_rows)


def comparison_table(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per arm and eval set: seed-mean hack/solve ON and OFF and ON-OFF, with t-intervals over seeds."""
    table: dict[str, Any] = {}
    for arm, by_seed in results.items():
        table[arm] = {}
        set_names = sorted({name for r in by_seed.values() for name in r["sets"]})
        for name in set_names:
            rows = [r["sets"][name] for r in by_seed.values() if name in r["sets"]]
            entry = {}
            # attempted_hack: the exploit present at all; in modes whose exploit leaves a right answer
            # right, a right answer carrying it is solved, not hacked, and only this rate sees it
            metrics = ("hack", "solve") + (("attempted_hack",) if all("attempted_hack" in r["on"] for r in rows) else ())
            for metric in metrics:
                on = [r["on"][metric]["rate"] for r in rows]
                off = [r["off"][metric]["rate"] for r in rows]
                entry[f"{metric}_on"] = seed_interval(on, bounds=(0.0, 1.0))
                entry[f"{metric}_off"] = seed_interval(off, bounds=(0.0, 1.0))
                entry[f"{metric}_drop"] = seed_interval([a - b for a, b in zip(on, off)], bounds=(-1.0, 1.0))
            entry["n_seeds"] = len(rows)
            entry["n_problems"] = rows[0]["n_problems"]
            entry["samples_per_problem"] = rows[0]["samples_per_problem"]
            table[arm][name] = entry
    return table


def _cell(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "n/a"
    if stat["ci95"] is None:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}]"


def render_markdown(
    table: dict[str, Any], preset: str, seeds: list[int], selectivity: dict[str, Any] | None = None, router: dict[str, Any] | None = None
) -> str:
    lines = [
        f"# Decision run: preset {preset}, seeds {seeds}",
        "",
        "Seed means with 95% t-intervals over seeds (cut to [0, 1] for rates). ON = hack expert as trained, OFF = deleted (deployed model).",
        "drop = ON - OFF (positive hack drop with a small solve drop is what the method wants).",
    ]
    for set_name in ("skill", "heldout_clean", "heldout", "train_dist"):
        rows = [(arm, t[set_name]) for arm, t in table.items() if set_name in t]
        if not rows:
            continue
        n = rows[0][1]
        lines += [
            "",
            f"## {set_name} (n = {n['n_problems']} problems x {n['samples_per_problem']} samples per seed)",
            "",
            "| arm | seeds | hack ON | hack OFF | hack drop | solve ON | solve OFF | solve drop | attempted ON | attempted OFF |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for arm, e in rows:
            attempted = [_cell(e[k]) if k in e else "-" for k in ("attempted_hack_on", "attempted_hack_off")]
            lines.append(
                f"| {arm} | {e['n_seeds']} | {_cell(e['hack_on'])} | {_cell(e['hack_off'])} | {_cell(e['hack_drop'])} "
                f"| {_cell(e['solve_on'])} | {_cell(e['solve_off'])} | {_cell(e['solve_drop'])} | {attempted[0]} | {attempted[1]} |"
            )
    if selectivity:
        lines += [
            "",
            "## Selectivity",
            "",
            "hack removed = (ON - OFF) / ON; lift kept = (solve OFF - solve at start) / (solve of `none` - solve at start):",
            "1 and 1 is perfect localization; a blind split keeps little of the lift. Seed means with t-intervals.",
            "",
            "| arm | eval set | hack removed | lift kept | lift OFF (solve OFF - start) | start solve | none solve |",
            "|---|---|---|---|---|---|---|",
        ]
        for arm, sets in selectivity.items():
            for set_name, e in sets.items():
                lift = _cell(e["lift_off"]) if "lift_off" in e else "-"
                lines.append(
                    f"| {arm} | {set_name} | {_cell(e['hack_removed'])} | {_cell(e['lift_kept'])} | {lift} | {e['start_solve']:.3f} | {e['none_solve']:.3f} |"
                )
    if router:
        lines += ["", render_router_markdown(router).rstrip("\n")]
    lines.append("")
    # per arm, the held-out numbers in words; then the documented causal line, for the method's arm
    for arm, t in table.items():
        if "heldout" in t:
            e = t["heldout"]
            lines.append(
                f"{arm}: held-out hack {_cell(e['hack_on'])} (ON) -> {_cell(e['hack_off'])} (OFF); "
                f"solve {_cell(e['solve_on'])} (ON) -> {_cell(e['solve_off'])} (OFF)"
            )
    main_arm = "moe" if "heldout" in table.get("moe", {}) else next((a for a in table if "heldout" in table[a]), None)
    if main_arm is not None:
        e = table[main_arm]["heldout"]
        lines.append(f"closing line: arm {main_arm}, seed means")
        lines.append(causal_line(e["hack_on"]["mean"], e["hack_off"]["mean"]))
    return "\n".join(lines) + "\n"


def load_results(out_dir: str) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "decision.json").read_text())
