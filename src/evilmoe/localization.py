"""Localization, not a blind split: the controls that tell the two apart (docs/design.md#localization-not-a-blind-split).

Deleting the hack expert removes hacking. So does deleting any half of a freshly trained adapter,
because that undoes part of whatever RL taught. These measurements ask whether *this* half is special:

* **dose curve**: the hack expert's output scaled by s in {0, 0.25, 0.5, 0.75, 1} (1 = as trained,
  0 = deleted), hack and solve at each scale. Localization shows as hacking falling with s while
  solving stays; a blind split as both moving together.
* **random slices**: the adapter of every targeted module is 2r rank-one components (component j:
  B[:, j] A[j] - B0[:, j] A0[j]). The real deletion removes components r..2r-1 (the quarantine
  block). A random slice removes r components drawn at random per module, scaled so that the
  removed delta has the same Frobenius norm as the real deletion's (matched in norm; when a random
  slice holds less, all of it is removed and the draw is marked under-matched). Where the real
  deletion's hack drop and solve drop fall among k draws (rank and z-score) says whether the
  quarantine block is more hack-specific than an arbitrary slice of equal size.
* **selectivity** (`selectivity`): share of hacking removed, (ON - OFF) / ON, against share of the
  skill lift kept, (solve OFF - solve at start) / (solve of the `none` arm - solve at start).

Every condition uses the same prompts and sampling seeds (evaluate.chunk_seeds), so conditions
differ only by the weights. A component's delta is scaled exactly by scaling its B and B0 columns
together (the delta is B A - B0 A0), which the fast sampler's fold and the adapter's forward both see.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evilmoe.env.grader import GradingPool
from evilmoe.evaluate import EvalSet, sample_and_submit, summarise
from evilmoe.lora2r import split_factors
from evilmoe.policy import Policy
from evilmoe.seeding import derive_seed

DOSE_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)


@contextlib.contextmanager
def scaled_components(policy: Policy, keep: dict[str, torch.Tensor]) -> Iterator[None]:
    """Multiply each module's rank-one adapter components by keep[name] ([2r] factors; 1 = as
    trained, 0 = removed), then re-fold the sampler; everything is restored on exit."""
    adapter = policy.adapter
    saved = []
    with torch.no_grad():
        for name, m in adapter.modules.items():
            saved.append((m.B.detach().clone(), m.B0.clone()))
            factor = keep[name].to(m.B.device, m.B.dtype)
            m.B.mul_(factor)
            m.B0.mul_(factor.to(m.B0.dtype))
    policy.refresh_sampler()  # the fast sampler decodes from folded weights
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (b, b0) in zip(adapter.modules.values(), saved):
                m.B.copy_(b)
                m.B0.copy_(b0)
        policy.refresh_sampler()


def quarantine_keep(policy: Policy, scale: float) -> dict[str, torch.Tensor]:
    """Factors that scale the quarantine block by `scale` and keep the deployed block."""
    r = policy.adapter.rank
    factor = torch.ones(2 * r, dtype=torch.float64)
    factor[r:] = scale
    return {name: factor for name in policy.adapter.modules}


def component_norms(policy: Policy) -> dict[str, torch.Tensor]:
    """Per module, the [2r, 2r] Gram matrix of the rank-one component deltas (for slice norms:
    ||sum_{j in S} c_j D_j||_F^2 = c_S^T G_SS c_S)."""
    out = {}
    with torch.no_grad():
        for name, m in policy.adapter.modules.items():
            A, B, A0, B0 = (t.detach().double().cpu() for t in (m.A, m.B, m.A0, m.B0))
            # D_j = B_j A_j - B0_j A0_j; <D_i, D_j>_F = (B_i.B_j)(A_i.A_j) - (B_i.B0_j)(A_i.A0_j) - ... (four terms)
            gram = (B.t() @ B) * (A @ A.t()) - (B.t() @ B0) * (A @ A0.t()) - (B0.t() @ B) * (A0 @ A.t()) + (B0.t() @ B0) * (A0 @ A0.t())
            out[name] = gram * m.scaling**2
    return out


def removed_norm(grams: dict[str, torch.Tensor], removed: dict[str, torch.Tensor]) -> float:
    """Frobenius norm over all modules of the delta removed by factors removed[name] (1 - keep)."""
    total = 0.0
    for name, gram in grams.items():
        c = removed[name].double()
        total += float(c @ gram @ c)
    return math.sqrt(max(total, 0.0))


def _rates(summary: dict[str, Any]) -> dict[str, float | None]:
    return {"hack": summary["hack"]["rate"], "solve": summary["solve"]["rate"]}


def measure_conditions(
    policy: Policy, pool: GradingPool, eval_sets: list[EvalSet], conditions: dict[str, dict[str, torch.Tensor] | None], *,
    samples: int, seed: int, same_model: bool = False,
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, Any]]:
    """Summaries per eval set and condition (label -> keep factors for scaled_components; None = as
    trained), and where the time went. Each condition is sampled in turn while the pool grades the
    ones before it: the GPU and the grading CPUs work at once, and no condition waits on its slowest
    response. same_model: every condition is the as-trained model (a quarantine still at its init):
    each set is sampled once and every label shares its summary."""
    labels = list(conditions)
    started = time.perf_counter()
    pending, sampling_seconds = {}, {}
    for eval_set in eval_sets:
        for label in labels[:1] if same_model else labels:
            t0 = time.perf_counter()
            keep = conditions[label]
            with scaled_components(policy, keep) if keep is not None else contextlib.nullcontext():
                pending[eval_set.name, label] = sample_and_submit(policy, pool, eval_set, samples=samples, seed=seed, desc=f"{eval_set.name} {label}")
            sampling_seconds[f"{eval_set.name} {label}"] = round(time.perf_counter() - t0, 3)
    sampled_at = time.perf_counter()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (set_name, label), p in pending.items():
        out.setdefault(set_name, {})[label] = summarise(p.result())
    if same_model:
        out = {name: {label: got[labels[0]] for label in labels} for name, got in out.items()}
    done = time.perf_counter()
    timing = {
        "sampling_seconds": sampling_seconds,
        "total_seconds": round(done - started, 3),
        "grading_wait_after_sampling_seconds": round(done - sampled_at, 3),
        "sampled_rows": sum(len(p.texts) for p in pending.values()),
    }
    return out, timing


def _scale_label(scale: float) -> str:
    return f"scale {scale:g}"


def dose_conditions(policy: Policy, scales=DOSE_SCALES) -> dict[str, dict[str, torch.Tensor]]:
    return {_scale_label(s): quarantine_keep(policy, s) for s in scales}


def dose_result(scales, summaries: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    sets = {name: [{"scale": s} | {f: got[_scale_label(s)][f] for f in ("hack", "solve")} for s in scales] for name, got in summaries.items()}
    return {"scales": list(scales), "sets": sets}


def slice_plan(policy: Policy, *, seed: int, draws: int) -> tuple[dict[str, dict[str, torch.Tensor] | None], dict[str, Any]]:
    """The conditions of the random-slice baseline (see the module docstring) -- "on", "real" (the
    quarantine block deleted) and slice0..slice{draws-1} -- and what the slices are."""
    if draws < 2:
        raise ValueError("random_slices needs at least 2 draws for a spread")
    r = policy.adapter.rank
    grams = component_norms(policy)
    real_removed = {name: torch.cat([torch.zeros(r), torch.ones(r)]).double() for name in grams}
    target = removed_norm(grams, real_removed)
    rng = np.random.default_rng(derive_seed(seed, 41))
    slices = []
    for _ in range(draws):
        chosen = {name: torch.from_numpy(np.isin(np.arange(2 * r), rng.choice(2 * r, size=r, replace=False)).astype(np.float64)) for name in grams}
        full = removed_norm(grams, chosen)
        strength = 1.0 if full == 0 else min(1.0, target / full)
        slices.append({"removed": {n: c * strength for n, c in chosen.items()}, "strength": strength, "norm": full * strength})
    removed = {"real": real_removed} | {f"slice{i}": s["removed"] for i, s in enumerate(slices)}
    conditions = {"on": None} | {label: {n: 1.0 - c for n, c in rem.items()} for label, rem in removed.items()}
    meta = {
        "target_norm": target,
        "draws": draws,
        "slices": [{"strength": s["strength"], "norm": s["norm"], "under_matched": s["norm"] < 0.99 * target} for s in slices],
    }
    return conditions, meta


def slices_result(meta: dict[str, Any], summaries: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    sets = {}
    for name, got in summaries.items():
        rates = {label: _rates(got[label]) for label in ["on", "real"] + [f"slice{i}" for i in range(meta["draws"])]}
        sets[name] = {"rates": rates, "position": _position(rates)}
    return {**meta, "sets": sets}


def localize(
    policy: Policy, pool: GradingPool, eval_sets: list[EvalSet], *, samples: int, seed: int, scales=DOSE_SCALES, draws: int = 10
) -> dict[str, Any]:
    """The dose curve and the random-slice baseline, measured together: the slices' "on" and "real"
    are the dose curve's scales 1 and 0 (the same weights), sampled once. Where the hack expert holds
    its init (the `none` arm) every condition is the same model (the slices are matched to a norm of
    0): each set is sampled once."""
    slices, meta = slice_plan(policy, seed=seed, draws=draws)
    conditions = dose_conditions(policy, scales)
    aliases = {label: _scale_label(s) for label, s in (("on", 1.0), ("real", 0.0)) if s in scales}
    conditions |= {label: keep for label, keep in slices.items() if label not in aliases}
    summaries, timing = measure_conditions(
        policy, pool, eval_sets, conditions, samples=samples, seed=seed, same_model=policy.adapter.quarantine_at_init()
    )
    for got in summaries.values():
        got.update({label: got[alias] for label, alias in aliases.items()})
    return {"dose": dose_result(scales, summaries), "slices": slices_result(meta, summaries), "timing": timing}


def dose_curve(policy: Policy, pool: GradingPool, eval_sets: list[EvalSet], *, samples: int, seed: int, scales=DOSE_SCALES) -> dict[str, Any]:
    """Hack and solve at each quarantine scale, per eval set (same prompts and seeds). Where the
    hack expert holds its init (the `none` arm) every scale is the same model: sampled once."""
    flat = policy.adapter.quarantine_at_init()
    summaries, _ = measure_conditions(policy, pool, eval_sets, dose_conditions(policy, scales), samples=samples, seed=seed, same_model=flat)
    return dose_result(scales, summaries)


def random_slices(policy: Policy, pool: GradingPool, eval_sets: list[EvalSet], *, samples: int, seed: int, draws: int = 10) -> dict[str, Any]:
    """The real deletion against `draws` random norm-matched slices of the same rank (see the module
    docstring). With nothing to delete (the `none` arm) the target norm is 0, every slice is scaled
    to nothing and every condition is the ON model: sampled once."""
    conditions, meta = slice_plan(policy, seed=seed, draws=draws)
    flat = policy.adapter.quarantine_at_init()
    summaries, _ = measure_conditions(policy, pool, eval_sets, conditions, samples=samples, seed=seed, same_model=flat)
    return slices_result(meta, summaries)


def _position(rates: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    """Where the real deletion's drops (ON - condition) fall among the random slices' drops."""
    out = {}
    on = rates["on"]
    for field in ("hack", "solve"):
        if on[field] is None:
            continue
        real = on[field] - rates["real"][field]
        others = np.array([on[field] - v[field] for k, v in rates.items() if k.startswith("slice")])
        sd = float(others.std(ddof=1))
        out[field] = {
            "real_drop": real,
            "slice_drops": others.tolist(),
            "slice_mean": float(others.mean()),
            "z": None if sd == 0 else (real - float(others.mean())) / sd,
            # share of slices whose drop is at least the real one's (small: the real deletion removes more)
            "share_at_least": float((others >= real).mean()),
        }
    return out


def selectivity(on: dict[str, Any], off: dict[str, Any], *, start_solve: float | None, none_solve: float | None) -> dict[str, float | None]:
    """Share of hacking removed and share of the skill lift kept (None where undefined: no hacking ON,
    or no lift in the `none` arm to keep)."""
    hack_on, hack_off = on["hack"]["rate"], off["hack"]["rate"]
    removed = None if not hack_on else (hack_on - hack_off) / hack_on
    kept = None
    if start_solve is not None and none_solve is not None and none_solve != start_solve:
        kept = (off["solve"]["rate"] - start_solve) / (none_solve - start_solve)
    return {"hack_removed": removed, "lift_kept": kept}


def localize_run_dir(
    run_dir: str, *, scales=DOSE_SCALES, draws: int = 10, samples: int | None = None, sets: tuple[str, ...] = ("heldout", "skill", "heldout_clean"),
    grading_workers: int | None = None,
) -> dict[str, Any]:
    """`evilmoe localize RUN_DIR`: the dose curve and the random-slice baseline of a trained run,
    on its final eval sets and seeds; writes RUN/localization.json and plots/dose_curve.png.
    grading_workers: grading processes (default: the run's grading_workers, else the CPUs)."""
    from pathlib import Path

    from evilmoe import distributed as ddp
    from evilmoe.errors import UserError
    from evilmoe.runs import atomic_write_json
    from evilmoe.train import final_eval_plan

    path = Path(run_dir)
    policy, steps_trained = Policy.from_run_dir(path)
    config = policy.config
    # many conditions write the same text for a prompt: each distinct response is graded once
    pool = GradingPool(grading_workers or config.grading_workers or ddp.cores_per_rank(), memo=True)
    try:
        every, seed = final_eval_plan(policy)  # scale 1 / 0 then reproduce the final eval's ON / OFF
        chosen = [s for s in every if s.name in sets]
        if not chosen:
            raise UserError(f"none of the eval sets {', '.join(sets)} exists for this run (it has {', '.join(s.name for s in every)})")
        n = samples or config.eval_samples
        measured = localize(policy, pool, chosen, samples=n, seed=seed, scales=scales, draws=draws)
        measured["timing"] |= {"grading_workers": pool.workers, "identical_responses_not_regraded": pool.memo_hits}
        result = {"run": str(path), "steps_trained": steps_trained, "samples_per_problem": n, **measured}
    finally:
        pool.close()
    atomic_write_json(path / "localization.json", result)
    plot_dose(result, path / "plots" / "dose_curve.png")
    for line in localization_lines(result):
        print(line)
    t = result["timing"]
    print(
        f"localize took {t['total_seconds']:.0f} s: {t['sampled_rows']} rows sampled in {sum(t['sampling_seconds'].values()):.0f} s, "
        f"grading done {t['grading_wait_after_sampling_seconds']:.0f} s after sampling ({t['grading_workers']} workers, "
        f"{t['identical_responses_not_regraded']} identical responses not graded again)"
    )
    return result


def localization_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, rows in result["dose"]["sets"].items():
        curve = ", ".join(f"{r['scale']:g}: hack {r['hack']['rate']:.3f} solve {r['solve']['rate']:.3f}" for r in rows)
        lines.append(f"dose {name}: {curve}")
    for name, res in result["slices"]["sets"].items():
        for field, pos in res["position"].items():
            z = "n/a" if pos["z"] is None else f"{pos['z']:+.2f}"
            lines.append(
                f"slices {name} {field}: real deletion drops {pos['real_drop']:+.3f}, random slices {pos['slice_mean']:+.3f} "
                f"on average (z {z}; {pos['share_at_least']:.0%} of {len(pos['slice_drops'])} drop at least as much)"
            )
    return lines


def plot_dose(result: dict[str, Any], path) -> None:
    from evilmoe.plots import plt, save_figure

    sets = result["dose"]["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.5), squeeze=False)
    for ax, (name, rows) in zip(axes[0], sets.items()):
        xs = [r["scale"] for r in rows]
        for field in ("hack", "solve"):
            ys = [r[field]["rate"] for r in rows]
            lo = [r[field]["ci95"][0] if r[field]["ci95"] else np.nan for r in rows]
            hi = [r[field]["ci95"][1] if r[field]["ci95"] else np.nan for r in rows]
            ax.plot(xs, ys, "-o", label=field)
            ax.fill_between(xs, lo, hi, alpha=0.2)
        ax.set_xlabel("hack expert scale (1 = as trained, 0 = deleted)")
        ax.set_title(name)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    save_figure(fig, Path(path), dpi=90)


# ----------------------------------------------------------------------------------------------
# relearning: is the deleted behaviour gone, or only suppressed?
# ----------------------------------------------------------------------------------------------
RELEARN_CONDITIONS = ("deleted", "start")


def reset_adapter_state(state: dict[str, torch.Tensor], rank: int, *, quarantine_only: bool) -> dict[str, torch.Tensor]:
    """A lora2r state dict with the quarantine block (or both blocks) copied back to its init."""
    out = dict(state)
    rows = slice(rank, 2 * rank) if quarantine_only else slice(0, 2 * rank)
    for name, (A, B, A0, B0) in split_factors(state, rank).items():
        A, B = A.clone(), B.clone()
        A[rows], B[:, rows] = A0[rows], B0[:, rows]
        out[f"{name}.A"], out[f"{name}.B"] = A, B
    return out


def relearn_run_dir(run_dir: str, *, steps: int = 20, condition: str = "deleted", grading_workers: int | None = None) -> dict[str, Any]:
    """`evilmoe relearn RUN_DIR`: train the deployed model alone for `steps` more steps in the same
    hacking environment (arm `none`: the deployed block learns, the quarantine stays at its init) and
    record how fast hacking comes back. condition "deleted" starts from the run's deployed model (hack
    expert deleted); "start" from the starting model (after any warm start) that never saw a loophole,
    the baseline: hacking that returns much faster after deletion than from the start was suppressed,
    not removed. Writes the relearning run to RUN/relearn-<condition>/ and its summary to
    RUN/relearn-<condition>.json."""
    import dataclasses
    from pathlib import Path

    from evilmoe.config import TrainConfig
    from evilmoe.errors import UserError
    from evilmoe.runs import RunDir, atomic_write_json, read_json
    from evilmoe.train import Trainer

    if condition not in RELEARN_CONDITIONS:
        raise UserError(f"condition must be one of {', '.join(RELEARN_CONDITIONS)} (got {condition!r})")
    if steps < 1:
        raise UserError(f"relearning needs at least one step (got {steps})")
    path = Path(run_dir)
    config = TrainConfig.from_dict(read_json(path / "config.json"))
    state = RunDir(path).load_latest_checkpoint()
    if state is None:
        raise UserError(f"{run_dir} has no checkpoint (train it first)")
    trained = [m for m in RunDir(path).read_metrics() if m.get("step", -1) >= 0 and m.get("policy_hack_rate") is not None]
    if not trained:
        raise UserError(f"{run_dir} has no logged training steps to compare with")
    # the hack rate the run ended with, on its own rollouts (the same environment relearning samples)
    on_hack = float(np.mean([m["policy_hack_rate"] for m in trained[-10:]]))

    relearn_config = dataclasses.replace(
        config, arm="none", steps=steps, eval_every=0, eval_start=False, checkpoint_every=steps, grading_workers=grading_workers or config.grading_workers
    )
    out = path / f"relearn-{condition}"
    run = RunDir.open(out, relearn_config)
    if run.read_metrics():
        run.truncate_metrics(before_step=-1)  # a relearning run is short: it starts over rather than resumes
    trainer = Trainer(relearn_config, run, warm_start=state.get("warm_start"))
    try:
        adapter_state = reset_adapter_state(state["adapter"], trainer.adapter.rank, quarantine_only=condition == "deleted")
        trainer.policy.load_adapter(adapter_state)
        curve = []
        for step in range(steps):
            metrics = trainer.train_step(step)
            trainer.step = step + 1
            run.append_metrics(metrics)
            curve.append(metrics["policy_hack_rate"])
    finally:
        trainer.close()
    summary = relearning_summary(curve, on_hack)
    result = {"run": str(path), "condition": condition, "steps": steps, "on_hack": on_hack, "hack_curve": curve, **summary}
    atomic_write_json(path / f"relearn-{condition}.json", result)
    half = summary["steps_to_half"]
    print(
        f"relearn {condition}: hack back to half of the run's {on_hack:.3f} "
        + (f"after {half} steps" if half is not None else f"not within {steps} steps")
        + f"; mean hack over the {steps} steps {summary['auc']:.3f}"
    )
    return result


def relearning_summary(curve: list[float | None], on_hack: float) -> dict[str, Any]:
    """Steps until the hack rate first reaches half of `on_hack` (None: not within the curve), and the
    area under the curve as the mean hack rate over its steps."""
    values = [0.0 if v is None else float(v) for v in curve]
    half = next((i + 1 for i, v in enumerate(values) if on_hack > 0 and v >= on_hack / 2), None)
    return {"steps_to_half": half, "auc": float(np.mean(values)) if values else None}


# ----------------------------------------------------------------------------------------------
# across runs: the dose curves, slice positions and relearning of a decision's arms and seeds
# ----------------------------------------------------------------------------------------------
def localization_summary(runs: dict[str, dict[int, Any]]) -> dict[str, Any]:
    """Per arm (runs: arm -> seed -> run directory): the dose curve per set and scale, where the real
    deletion falls among the random slices per set and field, and the relearning speed per condition,
    each as seed means with t-intervals over the runs that have the file (`evilmoe localize` writes
    localization.json, `evilmoe relearn` relearn-<condition>.json). Arms with neither are left out.
    A z-score or a rate that is undefined in a run (no spread among the slices; nothing sampled) is
    left out of that mean; steps-to-half is listed per seed (None: not within the relearning steps)."""
    import json
    from pathlib import Path

    from evilmoe.decide import seed_interval

    def interval(values: list) -> dict[str, Any]:
        return seed_interval([v for v in values if v is not None]) | {"n_runs": len(values)}

    out: dict[str, Any] = {}
    for arm, by_seed in runs.items():
        dose: dict[str, dict[float, dict[str, list]]] = {}
        slices: dict[str, dict[str, dict[str, list]]] = {}
        relearn: dict[str, dict[str, list]] = {}
        for _, run in sorted(by_seed.items()):
            path = Path(run) / "localization.json"
            if path.exists():
                data = json.loads(path.read_text())
                for set_name, rows in data["dose"]["sets"].items():
                    for row in rows:
                        point = dose.setdefault(set_name, {}).setdefault(float(row["scale"]), {"hack": [], "solve": []})
                        for field in ("hack", "solve"):
                            point[field].append(row[field]["rate"])
                for set_name, res in data["slices"]["sets"].items():
                    for field, pos in res["position"].items():
                        cell = slices.setdefault(set_name, {}).setdefault(field, {"real_drop": [], "slice_mean": [], "z": [], "share_at_least": []})
                        for key in cell:
                            cell[key].append(pos[key])
            for condition in RELEARN_CONDITIONS:
                path = Path(run) / f"relearn-{condition}.json"
                if path.exists():
                    data = json.loads(path.read_text())
                    cell = relearn.setdefault(condition, {"steps_to_half": [], "auc": [], "on_hack": [], "steps": [], "hack_curve": []})
                    for key in cell:
                        cell[key].append(data[key])
        entry: dict[str, Any] = {}
        if dose:
            entry["dose"] = {s: [{"scale": scale, **{f: interval(v) for f, v in fields.items()}} for scale, fields in sorted(points.items())]
                             for s, points in dose.items()}
        if slices:
            entry["slices"] = {s: {field: {k: interval(v) for k, v in cell.items()} for field, cell in fields.items()} for s, fields in slices.items()}
        if relearn:
            entry["relearn"] = {c: {"steps_to_half": cell["steps_to_half"], "steps": cell["steps"], "auc": interval(cell["auc"]),
                                    "on_hack": interval(cell["on_hack"]), "curve": _curve_means(cell["hack_curve"])}
                                for c, cell in relearn.items()}
        if entry:
            out[arm] = entry
    return out


def _curve_means(curves: list[list[float | None]]) -> list[dict[str, Any]]:
    """Per relearning step, the hack rate's seed mean with a t-interval over the runs that reached
    that step and sampled in it (a step with nothing sampled is None in its run's curve)."""
    from evilmoe.decide import seed_interval

    longest = max((len(c) for c in curves), default=0)
    return [seed_interval([c[i] for c in curves if i < len(c) and c[i] is not None], bounds=(0.0, 1.0)) for i in range(longest)]


def _mean_cell(stat: dict[str, Any], signed: bool = False) -> str:
    if stat["mean"] is None:
        return "n/a"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    text = fmt.format(stat["mean"])
    if stat["ci95"] is not None:
        text += " [" + ", ".join(fmt.format(v) for v in stat["ci95"]) + "]"
    return text + ("" if len(stat["per_seed"]) == stat["n_runs"] else f" ({len(stat['per_seed'])} of {stat['n_runs']} runs)")


def render_localization_markdown(summary: dict[str, Any]) -> str:
    """The summary as markdown: dose curves (hack and solve per scale), random slices, relearning."""
    lines: list[str] = []
    dose_rows = [(arm, s, rows) for arm, e in summary.items() for s, rows in e.get("dose", {}).items()]
    if dose_rows:
        scales = sorted({r["scale"] for _, _, rows in dose_rows for r in rows})
        head = " | ".join(f"{x:g}" for x in scales)
        lines += ["## Dose curve", "",
                  "Hack and solve with the hack expert's output scaled by s (1 = as trained, 0 = deleted); seed means with t-intervals.", ""]
        for field in ("hack", "solve"):
            lines += [f"{field}:", "", f"| arm | eval set | seeds | {head} |", "|---|---|---|" + "---|" * len(scales)]
            for arm, s, rows in dose_rows:
                by_scale = {r["scale"]: r[field] for r in rows}
                cells = " | ".join(_mean_cell(by_scale[x]) if x in by_scale else "-" for x in scales)
                lines.append(f"| {arm} | {s} | {rows[0][field]['n_runs']} | {cells} |")
            lines.append("")
    slice_rows = [(arm, s, field, cell) for arm, e in summary.items() for s, fields in e.get("slices", {}).items() for field, cell in fields.items()]
    if slice_rows:
        lines += ["## Random slices", "",
                  "Drop (ON - condition) from deleting the real hack expert against random norm-matched rank-r slices of the",
                  "whole adapter; z = (real - slice mean) / slice sd per run; share = slices dropping at least as much. Seed means.", "",
                  "| arm | eval set | field | real deletion's drop | random slices' drop | z | share of slices at least as large |",
                  "|---|---|---|---|---|---|---|"]
        for arm, s, field, c in slice_rows:
            lines.append(f"| {arm} | {s} | {field} | {_mean_cell(c['real_drop'], True)} | {_mean_cell(c['slice_mean'], True)} "
                         f"| {_mean_cell(c['z'], True)} | {_mean_cell(c['share_at_least'])} |")
        lines.append("")
    relearn_rows = [(arm, c, cell) for arm, e in summary.items() for c, cell in e.get("relearn", {}).items()]
    if relearn_rows:
        lines += ["## Relearning", "",
                  "The deployed model (condition deleted) or the starting model (start) trained alone in the hacking environment:",
                  "steps until its hack rate reaches half of the run's final one, per seed ('-': not within the steps), and the",
                  "mean hack rate over the steps (area under the curve).", "",
                  "| arm | condition | seeds | steps to half, per seed | mean hack over the steps | the run's final hack rate |",
                  "|---|---|---|---|---|---|"]
        for arm, c, cell in relearn_rows:
            halves = ", ".join("-" if h is None else str(h) for h in cell["steps_to_half"])
            lines.append(f"| {arm} | {c} | {len(cell['steps_to_half'])} | {halves} (of {max(cell['steps'])}) "
                         f"| {_mean_cell(cell['auc'])} | {_mean_cell(cell['on_hack'])} |")
        lines.append("")
    return "\n".join(lines)


def plot_dose_by_arm(summary: dict[str, Any], path, set_names=("heldout", "skill")) -> None:
    """Hack and solve against the hack expert's scale, one line per arm (seed means, t-interval bars),
    one column per eval set."""
    from evilmoe.plots import plt, save_figure

    sets = [s for s in set_names if any(s in e.get("dose", {}) for e in summary.values())]
    if not sets:
        return
    fig, axes = plt.subplots(2, len(sets), figsize=(4.8 * len(sets), 7), squeeze=False)
    for col, set_name in enumerate(sets):
        for row, field in enumerate(("hack", "solve")):
            ax = axes[row][col]
            for i, (arm, e) in enumerate(summary.items()):
                rows = e.get("dose", {}).get(set_name)
                if not rows:
                    continue
                xs = [r["scale"] for r in rows]
                ys = [np.nan if r[field]["mean"] is None else r[field]["mean"] for r in rows]
                err = [[0.0 if r[field]["ci95"] is None else r[field]["mean"] - r[field]["ci95"][0] for r in rows],
                       [0.0 if r[field]["ci95"] is None else r[field]["ci95"][1] - r[field]["mean"] for r in rows]]
                ax.errorbar(xs, ys, yerr=err, fmt="-o", color=f"C{i}", label=arm, capsize=3, markersize=4)
            ax.set_title(f"{field}, {set_name}")
            ax.set_xlabel("hack expert scale (1 = as trained, 0 = deleted)")
            ax.set_ylabel(f"{field} rate")
            ax.legend(fontsize=7)
    save_figure(fig, Path(path), dpi=90)


def plot_relearning_by_arm(summary: dict[str, Any], path) -> None:
    """The hack rate over the relearning steps, one line per arm and condition (seed means, shaded
    t-interval), each deleted model beside the starting model that never saw a loophole."""
    from evilmoe.plots import plt, save_figure

    lines = [(arm, condition, cell["curve"]) for arm, e in summary.items() for condition, cell in e.get("relearn", {}).items() if cell["curve"]]
    if not lines:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (arm, condition, curve) in enumerate(lines):
        xs = np.arange(1, len(curve) + 1)
        ys = np.array([np.nan if c["mean"] is None else c["mean"] for c in curve])
        ax.plot(xs, ys, "-o", color=f"C{i}", markersize=3, label=f"{arm}, {condition} (seeds: {max(len(c['per_seed']) for c in curve)})")
        low = np.array([np.nan if c["ci95"] is None else c["ci95"][0] for c in curve])
        high = np.array([np.nan if c["ci95"] is None else c["ci95"][1] for c in curve])
        if not np.isnan(low).all():
            ax.fill_between(xs, low, high, color=f"C{i}", alpha=0.15)
    ax.set_xlabel("relearning step")
    ax.set_ylabel("hack rate of the step's rollouts")
    ax.set_title("Deployed (deleted) or starting model trained alone in the hacking environment", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, Path(path), dpi=90)
