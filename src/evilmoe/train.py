"""A whole training run: resume, steps, periodic evaluation, the final deploy-ablation evaluation.

`run_training` drives a `Trainer` (evilmoe.trainer: one run's state and one step) from its first or
last checkpointed step to the end and then evaluates; `evaluate_run_dir` re-evaluates a finished
run from its checkpoint through a `Policy` (evilmoe.policy) alone.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from evilmoe import distributed as ddp
from evilmoe.config import TrainConfig
from evilmoe.env.grader import GradingPool
from evilmoe.env.problems import ProblemSet, record_problem_set
from evilmoe.policy import Policy
from evilmoe.runs import RunDir
from evilmoe.trainer import Trainer, step_seed

__all__ = ["Trainer", "evaluate_run_dir", "final_evaluation", "run_training", "start_evaluation"]


# --------------------------------------------------------------------------------------------
# the whole run: resume, steps, periodic and final evaluation
# --------------------------------------------------------------------------------------------
def run_training(
    config: TrainConfig,
    out_dir: str,
    *,
    problems: ProblemSet | None = None,
    progress: bool = True,
    deadline: float | None = None,
) -> dict[str, Any] | None:
    """Train (resuming from the last checkpoint in out_dir if there is one), then deploy-ablation eval.

    Returns the final eval dict (also written to out_dir/eval.json). With a `deadline`
    (time.monotonic() value) it checkpoints and returns None once the deadline has passed; running
    the same command again continues from there.

    Under torchrun every rank calls this; only rank 0 writes out_dir (the others get `run=None`
    and read the same checkpoint, which holds no per-rank state: resume works with any number of
    ranks). Rank 0's deadline decides for all ranks.
    """
    from tqdm import tqdm

    from evilmoe.evaluate import closing_lines

    main = ddp.is_main()
    opened = ddp.main_only(lambda: RunDir.open(out_dir, config))
    run: RunDir | None = opened if main else None
    final_path = Path(out_dir) / "eval.json"
    if final_path.exists():  # finished before: report it again, do not retrain
        result = json.loads(final_path.read_text())
        for line in closing_lines(result["sets"]) if main else []:  # today's format, also for older runs
            print(line)
        return result

    state = RunDir(Path(out_dir)).load_latest_checkpoint()  # read-only: every rank loads the same one
    trainer = Trainer(config, run, problems=problems, warm_start=state.get("warm_start") if state else None)
    if run is not None:  # the exact problem set this run trains and evaluates on (ProblemSet.fingerprint)
        record_problem_set(run.path / "meta.json", trainer.problems)
    try:
        begin_run(trainer, run, state)
        bar = tqdm(range(trainer.step, config.steps), initial=trainer.step, total=config.steps, disable=not (progress and main), desc=f"{config.arm}")
        for step in bar:
            metrics = trainer.train_step(step)
            trainer.step = step + 1
            end_step(trainer, run, metrics)
            bar.set_postfix(
                reward=f"{metrics['reward_mean']:.2f}",
                hack=_fmt(metrics["policy_hack_rate"]),
                solve=_fmt(metrics["policy_solve_rate"]),
                w_auroc=_fmt(metrics.get("w_auroc")),
            )
            out_of_time = ddp.broadcast_object(deadline is not None and time.monotonic() > deadline)  # all ranks agree
            if run is not None and (trainer.step % config.checkpoint_every == 0 or trainer.step == config.steps or out_of_time):
                run.save_checkpoint(trainer.step, trainer.state())
            if out_of_time and trainer.step < config.steps:
                if run is not None:
                    print(f"time budget reached: checkpointed {run.path} at step {trainer.step}")
                return None

        return final_evaluation(trainer.policy, trainer.pool, run, steps_trained=trainer.step)
    finally:
        trainer.close()


def begin_run(trainer: Trainer, run: RunDir | None, state: dict[str, Any] | None) -> None:
    """Before the first step of this process: resume from `state` (or log the run's step -1 row),
    then the start evaluation if the config asks for it and nothing is trained yet."""
    config = trainer.config
    if state is not None:
        trainer.load_state(state)
        if run is not None:
            run.truncate_metrics(before_step=trainer.step)
            print(f"resumed {run.path} at step {trainer.step}" + (f" on {ddp.world()} ranks" if ddp.world() > 1 else ""))
    elif trainer.step == 0:
        # the periodic validation's first point, on the untrained adapter (every rank: it is split
        # over them), so its curve starts where training starts
        start_val = validation(trainer, run) if config.eval_every else {}
        if run is not None:
            if run.read_metrics():  # a run cut off before (or without) a checkpoint that survived
                print(f"{run.path} has logged steps but no checkpoint: training again from step 0 (old rows dropped)")
                run.truncate_metrics(before_step=-1)
            run.append_metrics(
                {
                    "step": -1,
                    "initial_v_act_separation": trainer.arm.initial_separation,
                    "warm_start_losses": trainer.policy.warm_start["losses"] if trainer.policy.warm_start else None,
                    "warm_start_key": trainer.policy.warm_start.get("key") if trainer.policy.warm_start else None,
                    "training_split": trainer.policy.split.describe() | {"skill_problems_kept": len(trainer.policy.skill_problems)},
                    "dropped_long_prompts": trainer.policy.dropped_long_prompts,
                    "prompt_width": trainer.policy.prompt_width,
                }
                | start_val
            )
    if config.eval_start and trainer.step == 0:  # every rank: the evaluation is split over them
        started = time.perf_counter()
        start, how = start_evaluation(trainer.policy, trainer.pool)
        if run is not None:
            run.write_json("eval_start.json", start)
            for line in start["lines"]:
                print(f"start: {line}")
            print(f"start: evaluation {how} in {time.perf_counter() - started:.1f} s")


def end_step(trainer: Trainer, run: RunDir | None, metrics: dict[str, Any]) -> None:
    """After a step (trainer.step already counts it): the periodic validation if due, then the
    step's metrics row."""
    config = trainer.config
    if config.eval_every and trainer.step % config.eval_every == 0 and trainer.step < config.steps:
        metrics.update(validation(trainer, run))
    if run is not None:
        run.append_metrics(metrics)


def validation(trainer: Trainer, run: RunDir | None) -> dict[str, Any]:
    """The periodic validation after trainer.step steps (0 = the starting model): deploy-ablation
    eval on the validation split's held-out problems and on the skill hold-out, written to
    eval/eval_step_N.json; returns its val_* metrics. Every point uses the same prompts and sampling
    seeds, so the curve moves only with the model."""
    from evilmoe.evaluate import deploy_ablation, make_eval_sets

    config = trainer.config
    val_sets = make_eval_sets(
        config, trainer.problems, split="validation", n_heldout=config.eval_problems, n_train=0, skill=trainer.policy.skill_problems
    )
    seed = step_seed(config.seed, 0, 11)
    vals = {s.name: deploy_ablation(trainer.policy, trainer.pool, s, samples=config.eval_samples, seed=seed) for s in val_sets}
    if vals and run is not None:
        run.write_eval({"step": trainer.step, "sets": vals}, step=trainer.step)
    metrics: dict[str, Any] = {}
    # val_* = held-out validation problems; *_clean = the same loophole-free; skill_* = the skill hold-out
    for name, prefix in (("heldout", "val"), ("heldout_clean", "val_clean"), ("skill", "val_skill")):
        if name in vals:
            for what in ("hack", "solve"):
                for side in ("on", "off"):
                    metrics[f"{prefix}_{what}_{side}"] = vals[name][side][what]["rate"]
    return metrics


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def final_eval_plan(policy: Policy) -> tuple[list, int]:
    """The final evaluation's sets and sampling seed: the same prompts and seeds for every arm and seed
    (derived from mode_seed only), and for every evaluation that compares with it (the start, the dose
    curve, the random slices)."""
    from evilmoe.evaluate import make_eval_sets

    config = policy.config
    eval_sets = make_eval_sets(
        config, policy.problems, split=config.eval_split, n_heldout=config.eval_problems,
        n_train=config.eval_train_problems, skill=policy.skill_problems, train_modes=policy.train_modes,
    )
    return eval_sets, step_seed(config.mode_seed, 0, 13)


def final_evaluation(policy: Policy, pool: GradingPool, run: RunDir | None, *, steps_trained: int) -> dict[str, Any]:
    """Deploy-ablation eval of the trained adapter on held-out and training-distribution problems.

    Every arm and seed uses the same eval prompts and sampling seeds (derived from mode_seed only).
    Writes eval.json and the plots; prints the closing lines (the causal line last). Under torchrun
    every rank evaluates its share (see deploy_ablation) and gets the result; rank 0 (the one with a
    run) writes and prints.
    """
    from evilmoe.evaluate import closing_lines, deploy_ablation
    from evilmoe.plots import plot_run
    from evilmoe.report import write_report

    config = policy.config
    result: dict[str, Any] = {"arm": config.arm, "seed": config.seed, "steps_trained": steps_trained, "sets": {}}
    eval_sets, seed = final_eval_plan(policy)
    for eval_set in eval_sets:
        result["sets"][eval_set.name] = deploy_ablation(policy, pool, eval_set, samples=config.eval_samples, seed=seed, keep_texts=True)
    # the rollouts go to their own file; eval.json stays small enough to read
    for name, res in result["sets"].items():
        rows = res.pop("rollouts")
        if run is not None:
            run.write_rollouts_file(f"eval_{name}.jsonl", rows)
    result["closing_lines"] = closing_lines(result["sets"])
    if run is None:
        return result
    run.write_eval(result)
    plot_run(run.path)
    print(f"report: {write_report(run.path)}")
    router = router_line(run.read_metrics())
    if router:
        print(router)
    for line in result["closing_lines"]:
        print(line)
    return result


def router_line(metrics: list[dict[str, Any]], window: int = 5) -> str | None:
    """What the router did over the last `window` steps (diagnostics only; None for arms without
    one): where it sent the rollouts the grader called hacks vs the clean ones, and the pin."""
    rows = [m for m in metrics if m.get("step", -1) >= 0 and m.get("pin_acc") is not None][-window:]
    if not rows:
        return None

    def mean(key: str) -> str:
        values = [m[key] for m in rows if m.get(key) is not None]
        return f"{sum(values) / len(values):.2f}" if values else "n/a"

    return (
        f"router, last {len(rows)} steps: w on hacked rollouts {mean('w_hacked')} vs clean {mean('w_clean')} "
        f"(live only: {mean('w_live_hacked')} vs {mean('w_live_clean')}), pin accuracy {mean('pin_acc')}, "
        f"quarantine share of the update {mean('quarantine_update_share')}"
    )


def start_evaluation(policy: Policy, pool: GradingPool) -> tuple[dict[str, Any], str]:
    """The starting model (after any warm start, before any RL step) on the final eval's sets, prompts
    and sampling seeds: the baseline of every lift. The adapter's delta is exactly zero here, so ON
    and OFF are the same model (and, with the same seeds, the same samples). Cached next to the warm
    start by a hash of everything it depends on, so the arms and seeds of one experiment share it.
    Returns (the evaluation, how it was had: "done here" or "read from the cache", the wait for
    another process's evaluation included in the time the caller measures)."""
    import hashlib

    from evilmoe.models import cache_lock
    from evilmoe.warmstart import warm_start_cache_root

    config = policy.config
    eval_sets, seed = final_eval_plan(policy)
    spec = {
        "warm_start": policy.warm_start["key"] if policy.warm_start else None,
        "model": config.model, "device": policy.device.type, "dtype": str(policy.dtype), "sampler": type(policy.sampler).__name__,
        "sampling": [config.temperature, config.top_p, config.top_k, config.max_new_tokens],
        "samples": config.eval_samples, "seed": seed, "rows_per_call": config.eval_rows_per_call,
        "sets": [[s.name, s.eval_markers, [[p.id, s.modes[p.id]] for p in s.problems]] for s in eval_sets],
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    root = warm_start_cache_root(config)
    cached = root / "start-evals" / f"{digest}.json" if root is not None else None
    if cached is None:
        return _evaluate_start(policy, pool, eval_sets, seed, digest), "done here"
    # parallel runs of one experiment wait for the first to evaluate (one process: no rank split)
    lock = cache_lock(cached.parent / f".{digest}.lock") if ddp.world() == 1 else contextlib.nullcontext()
    with lock:
        if cached.exists():
            return json.loads(cached.read_text()), "read from the cache"
        result = _evaluate_start(policy, pool, eval_sets, seed, digest)
        if ddp.is_main():
            from evilmoe.runs import atomic_write_json

            atomic_write_json(cached, result)
    return result, "done here"


def _evaluate_start(policy: Policy, pool: GradingPool, eval_sets: list, seed: int, digest: str) -> dict[str, Any]:
    """One pass per set: the adapter's delta is exactly zero here, so the hack expert ON and OFF are
    the same model and (same seeds) the same samples; the summary is recorded under both."""
    from evilmoe.evaluate import fmt_rate, sample_and_grade, summarise

    n = policy.config.eval_samples
    sets, lines = {}, []
    for s in eval_sets:
        sampled = sample_and_grade(policy, pool, s, samples=n, seed=seed, desc=f"start {s.name}")
        summary = summarise(sampled)
        sets[s.name] = {"set": s.name, "eval_markers": s.eval_markers, "n_problems": len(s.problems), "samples_per_problem": n, "on": summary, "off": summary,
                        # per row (problem-major, n per problem), for lifts paired with the final eval's rows
                        "rows": {"problems": [p.id for p in s.problems], "correct": [int(g.correct) for g in sampled.grades],
                                 "hacked": [int(g.hacked) for g in sampled.grades]}}
        lines.append(f"{s.name} (n={len(s.problems)}x{n}): hack {fmt_rate(summary['hack'])}, solve {fmt_rate(summary['solve'])}")
    return {"spec_digest": digest, "sets": sets, "lines": lines}


def evaluate_run_dir(run_dir: str) -> dict[str, Any]:
    """`evilmoe eval RUN_DIR`: the run's policy from config.json and its last checkpoint, re-evaluated."""
    policy, steps_trained = Policy.from_run_dir(run_dir)
    run = ddp.main_only(lambda: RunDir.open(run_dir, policy.config))  # None on ranks other than 0: they only read
    pool = GradingPool(policy.config.grading_workers or ddp.cores_per_rank())
    try:
        return final_evaluation(policy, pool, run, steps_trained=steps_trained)
    finally:
        pool.close()
