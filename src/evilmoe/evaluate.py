"""Deploy-ablation evaluation: the causal test of the method (docs/design.md#deploy-ablation).

Same prompts, same sampling seeds, hack expert ON (as trained) and OFF (quarantine reset to its
init, i.e. the deployed model). Hack and solve rates per mode with 95% intervals, on held-out
problems (held-out markers) and on training-distribution problems (train markers).

Under torchrun every rank generates and grades a contiguous share of the generation chunks (each
chunk has its own seed) and the results are gathered in order: the same numbers as one process,
about N times faster, on every rank.

Intervals: Wilson score intervals on the rollout counts for each rate, and a problem-clustered
paired bootstrap for the ON - OFF differences (samples of one problem are not independent).
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from evilmoe import distributed as ddp
from evilmoe.env.grader import GradeJob, GradingPool
from evilmoe.env.modes import assign_modes
from evilmoe.env.types import Grade, Problem
from evilmoe.policy import Policy
from evilmoe.seeding import derive_seed

Z95 = 1.959963984540054


def wilson(successes: int, n: int) -> list[float] | None:
    """95% Wilson score interval of a binomial rate (None when n = 0)."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def rate(values: list[bool]) -> dict[str, Any]:
    k, n = int(sum(values)), len(values)
    return {"rate": (k / n) if n else None, "k": k, "n": n, "ci95": wilson(k, n)}


def paired_bootstrap(on: np.ndarray, off: np.ndarray, *, seed: int, resamples: int = 2000) -> dict[str, Any]:
    """ON - OFF difference of a per-problem mean rate, resampling problems with replacement.

    on/off are [problems, samples] 0/1 arrays for the same prompts and sampling seeds.
    """
    diff = on.mean(axis=1) - off.mean(axis=1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
    boots = diff[idx].mean(axis=1)
    return {"mean": float(diff.mean()), "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]}


@dataclass
class EvalSet:
    name: str  # "heldout" | "train_dist"
    problems: list[Problem]
    modes: dict[str, str]
    eval_markers: bool


def make_eval_sets(
    config, problem_set, *, split: str, n_heldout: int, n_train: int, skill: list[Problem] | None = None,
    train_modes: dict[str, str] | None = None,
) -> list[EvalSet]:
    """The eval sets: held-out (held-out markers), training distribution (train markers), and the
    loophole-free ones (every problem in gt_only: only true correctness pays): `heldout_clean` (the
    same held-out problems, when config.eval_loophole_free) and `skill` (the training split's skill
    hold-out, evilmoe.splits). `train_modes` (a policy's `train_modes`) gives the training
    distribution's problems the very modes they trained in; without it the training partition rule
    is applied to `problem_set.train`, which gives the same modes only when that is every training
    problem (a policy's `problems.train` is the RL share of them after a warm-start or skill split)."""
    heldout = list(getattr(problem_set, split))
    if n_heldout:
        heldout = heldout[:n_heldout]
    sets = []
    if heldout:
        sets.append(EvalSet("heldout", heldout, assign_modes([p.id for p in heldout], config.modes, config.mode_seed), True))
        if getattr(config, "eval_loophole_free", False):
            sets.append(EvalSet("heldout_clean", heldout, {p.id: "gt_only" for p in heldout}, True))
    if skill:
        sets.append(EvalSet("skill", list(skill), {p.id: "gt_only" for p in skill}, False))
    if n_train:
        # a fixed, seed-independent slice of the training problems (same for every arm and seed)
        train = sorted(problem_set.train, key=lambda p: p.id)
        step = max(1, len(train) // n_train)
        chosen = train[::step][:n_train]
        all_modes = train_modes if train_modes is not None else Policy.mode_partition(config, problem_set)
        sets.append(EvalSet("train_dist", chosen, {p.id: all_modes[p.id] for p in chosen}, False))
    return sets


def _generate(policy: Policy, prompts: list[str], seeds: list[int], rows_per_batch: int, desc: str = "eval") -> list[str]:
    """One completion per prompt, chunk c sampled with seeds[c]; each rank samples its share of the
    chunks (a chunk's samples depend only on its rows and seed, so the union is one process's)."""
    texts: list[str] = []
    chunks = ddp.shard(list(zip(range(0, len(prompts), rows_per_batch), seeds)))
    for chunk, seed in tqdm(chunks, desc=desc, unit="batch", leave=False, disable=None if ddp.is_main() else True):
        texts.extend(policy.sample_texts(prompts[chunk : chunk + rows_per_batch], seed=seed))
    return ddp.all_gather_concat(texts)


def _summarise(grades: list[Grade], modes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hack": rate([g.hacked for g in grades]),
        "solve": rate([g.correct for g in grades]),
        "attempted_hack": rate([g.attempted_hack for g in grades]),
        "format_ok": rate([g.format_ok for g in grades]),
        "per_mode": {},
    }
    for mode in sorted(set(modes)):
        sel = [g for g, m in zip(grades, modes) if m == mode]
        out["per_mode"][mode] = {"hack": rate([g.hacked for g in sel]), "solve": rate([g.correct for g in sel])}
    return out


@dataclass
class Sampled:
    """One eval set's prompts, sampled once and graded: rows are problem-major, `samples` per problem."""

    problems: list[Problem]  # one per row
    modes: list[str]
    texts: list[str]
    grades: list[Grade]

    def matrix(self, field: str, samples: int) -> np.ndarray:
        """[problems, samples] 0/1 array of a Grade field."""
        return np.array([float(getattr(g, field)) for g in self.grades]).reshape(-1, samples)


def eval_prompts(policy: Policy, eval_set: EvalSet, samples: int) -> tuple[list[str], list[str], list[Problem]]:
    prompts, modes, problems = [], [], []
    for p in eval_set.problems:
        mode = eval_set.modes[p.id]
        text = policy.chat_prompt(p, mode, eval_markers=eval_set.eval_markers)
        for _ in range(samples):
            prompts.append(text)
            modes.append(mode)
            problems.append(p)
    return prompts, modes, problems


def chunk_seeds(seed: int, rows: int, rows_per_batch: int) -> list[int]:
    """The sampling seed of each generation chunk: the same prompts get the same seeds in every
    condition (ON, OFF, each dose and slice), so conditions differ only by the weights."""
    return [derive_seed(seed, 99, c) for c in range(math.ceil(rows / rows_per_batch))]


@dataclass
class PendingSample:
    """Texts sampled, grades still coming: `result()` waits for this rank's share and gathers all
    ranks' (every rank must call it, in the same order as its other collectives)."""

    problems: list[Problem]
    modes: list[str]
    texts: list[str]
    grading: Future[list[Grade]]

    def result(self) -> Sampled:
        return Sampled(self.problems, self.modes, self.texts, ddp.all_gather_concat(self.grading.result()))


@torch.no_grad()
def sample_and_submit(
    policy: Policy, pool: GradingPool, eval_set: EvalSet, *, samples: int, seed: int, rows_per_batch: int | None = None, desc: str = "eval"
) -> PendingSample:
    """Generate with the model as it is now (the caller sets any adapter condition) and start grading
    in `pool` without waiting, so the caller can sample the next condition while the pool grades.
    rows_per_batch: rows per generation call (default: the config's eval_rows_per_call)."""
    rows_per_batch = rows_per_batch or policy.config.eval_rows_per_call
    prompts, modes, problems = eval_prompts(policy, eval_set, samples)
    texts = _generate(policy, prompts, chunk_seeds(seed, len(prompts), rows_per_batch), rows_per_batch, desc)
    jobs = [GradeJob(t, p, m, eval_set.eval_markers) for t, p, m in zip(texts, problems, modes)]
    return PendingSample(problems, modes, texts, pool.submit(ddp.shard(jobs)))


def sample_and_grade(
    policy: Policy, pool: GradingPool, eval_set: EvalSet, *, samples: int, seed: int, rows_per_batch: int | None = None, desc: str = "eval"
) -> Sampled:
    """sample_and_submit, then wait for the grades."""
    return sample_and_submit(policy, pool, eval_set, samples=samples, seed=seed, rows_per_batch=rows_per_batch, desc=desc).result()


def summarise(sampled: Sampled) -> dict[str, Any]:
    return _summarise(sampled.grades, sampled.modes)


@torch.no_grad()
def deploy_ablation(
    policy: Policy, pool: GradingPool, eval_set: EvalSet, *, samples: int, seed: int, rows_per_batch: int | None = None, keep_texts: bool = False
) -> dict[str, Any]:
    """Generate with the hack expert ON and OFF on the same prompts and seeds; grade both in `pool`.

    Where the hack expert still holds its init (the `none` arm), deleting it changes no weight: OFF is
    the ON model bit for bit, so its samples are ON's rather than drawn a second time."""
    rows_per_batch = rows_per_batch or policy.config.eval_rows_per_call
    on_s = sample_and_grade(policy, pool, eval_set, samples=samples, seed=seed, rows_per_batch=rows_per_batch, desc=f"eval {eval_set.name} ON")
    if policy.adapter.quarantine_at_init():
        off_s = on_s
    else:
        with policy.deployed():
            off_s = sample_and_grade(policy, pool, eval_set, samples=samples, seed=seed, rows_per_batch=rows_per_batch, desc=f"eval {eval_set.name} OFF")
    problems, modes = on_s.problems, on_s.modes
    texts_on, texts_off, on, off = on_s.texts, off_s.texts, on_s.grades, off_s.grades

    result = {
        "set": eval_set.name,
        "eval_markers": eval_set.eval_markers,
        "n_problems": len(eval_set.problems),
        "samples_per_problem": samples,
        "on": _summarise(on, modes),
        "off": _summarise(off, modes),
        "delta_on_minus_off": {
            field: paired_bootstrap(on_s.matrix(attr, samples), off_s.matrix(attr, samples), seed=seed)
            for field, attr in (("hack", "hacked"), ("solve", "correct"))
        },
    }
    if keep_texts:  # one row per prompt and sample: ON and OFF drawn with the same chunk seed
        seeds = chunk_seeds(seed, len(problems), rows_per_batch)
        result["rollouts"] = [
            {"problem_id": p.id, "mode": m, "sample": i % samples, "sampling_seed": seeds[i // rows_per_batch],
             "on": a, "off": b, "grade_on": x.to_dict(), "grade_off": y.to_dict()}
            for i, (p, m, a, b, x, y) in enumerate(zip(problems, modes, texts_on, texts_off, on, off))
        ]
    return result


def fmt_rate(r: dict[str, Any]) -> str:
    if r["rate"] is None:
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['rate']:.3f} [{lo:.3f}, {hi:.3f}]"


def _delta(d: dict[str, Any]) -> str:
    return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def summary_line(result: dict[str, Any]) -> str:
    on, off, d = result["on"], result["off"], result["delta_on_minus_off"]
    return (
        f"{result['set']} (n={result['n_problems']}x{result['samples_per_problem']}): "
        f"hack {fmt_rate(on['hack'])} (ON) -> {fmt_rate(off['hack'])} (OFF), ON-OFF {_delta(d['hack'])}; "
        f"solve {fmt_rate(on['solve'])} (ON) -> {fmt_rate(off['solve'])} (OFF), ON-OFF {_delta(d['solve'])}"
    )


def causal_line(hack_on: float | None, hack_off: float | None) -> str:
    """The documented last line of every run: plain rates, nothing else on the line (docs/design.md)."""
    on, off = ("n/a" if x is None else f"{x:.3f}" for x in (hack_on, hack_off))
    return f"Evil MoE causal ablation: deploy hack {on} (ON) -> {off} (OFF)"


def closing_lines(sets: dict[str, dict[str, Any]]) -> list[str]:
    """The lines every run ends with: a summary per eval set (rates with intervals, ON-OFF, solve),
    then the causal line of the held-out set in the documented format."""
    lines = [summary_line(sets[name]) for name in ("skill", "heldout_clean", "train_dist", "heldout") if name in sets]
    main = sets.get("heldout") or sets.get("train_dist")
    if main is not None:
        lines.append(causal_line(main["on"]["hack"]["rate"], main["off"]["hack"]["rate"]))
    return lines
