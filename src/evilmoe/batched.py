"""Run-batched training: K runs (any arms and seeds of one preset and model) in one process.

A step of a 135M-parameter model is bound by kernel launches and Python, not by the accelerator's
arithmetic, so one process can carry many runs' rows at little more than the cost of one. The runs
share ONE frozen base model (evilmoe.multilora); everything else stays per run and is exactly a
solo run's: its `Trainer` (adapter, arm, optimizer, LR schedule, problem order, seeds), its run
directory, checkpoints and metrics. One batched step:

  1. per run, with only its adapter selected: the arm's step start (v_act refresh), sampling and
     the start of grading (one grading pool for every run)
  2. the behaviour pass over every run's rows together: the next rows of every run in one
     forward, each run's rows under its own adapter (and its own feature capture)
  3. per run: the routing decision on its own features, the update plan (advantages, live rows)
  4. the update: the next microbatches of every run in one forward (bounded by `update_rows`),
     each run's rows under its own row control; the sum of the runs' losses (each microbatch's
     as in its solo run) is back-propagated once, which gives each run exactly its own loss's
     gradient (the runs share no parameter)
  5. per run: router-only loss, clip, optimizer step, metrics, checkpoint

What is exact: given the same rollouts, each run gets its solo step's gradients, parameters,
optimizer state, routing and metrics (to float rounding: the base GEMM and attention see more
rows and wider padding; tests/test_batched.py checks float64). Each run's update microbatches are
cut as in its solo run (several of them may share a forward), so per-microbatch statistics agree
too. What differs: nothing in step 1 on
the HF sampler (each run samples alone with its own seed); with the fast sampler each run decodes
from its own folded weights, also alone. A run whose update is non-finite stops alone
(stopped.json in its run directory) while the others continue.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from evilmoe import distributed as ddp
from evilmoe.config import TrainConfig
from evilmoe.env.grader import GradingPool
from evilmoe.env.problems import ProblemSet, load_problem_set, record_problem_set
from evilmoe.errors import UserError
from evilmoe.fastgen import FastSampler
from evilmoe.grpo import SequenceBatch, completion_logprobs, concat_batches
from evilmoe.multigen import MultiRunSampler
from evilmoe.multilora import RunGroup, attach_lora2r_runs
from evilmoe.policy import Policy, enable_recompute, lora2r_config
from evilmoe.records import BehaviourPass, Rollouts
from evilmoe.runs import RunDir
from evilmoe.seeding import derive_seed
from evilmoe.trainer import StepPrompts, Trainer
from evilmoe.update import UpdatePlan, _pad_to

RUN_FIELDS = ("arm", "seed")
"""The config fields in which the runs of one batch may differ; every other field is shared."""
STOPPED_FILE = "stopped.json"
ROWS_PER_RUN = 64
"""Default rows of each run in one training forward (whole microbatches; layers recomputed)."""


def check_batchable(configs: Sequence[TrainConfig]) -> None:
    """UserError unless the configs differ only in arm and seed (one preset, one model) and name
    distinct runs; also refuse torchrun (a batch is one process on one device)."""
    if not configs:
        raise UserError("a run batch needs at least one run")
    if ddp.world() > 1:
        raise UserError("batched runs share one device in one process; they do not combine with torchrun "
                        "(spread batches over GPUs with decide --batched --parallel N)")
    first = configs[0].to_dict()
    for config in configs[1:]:
        other = config.to_dict()
        differ = sorted(k for k in first if k not in RUN_FIELDS and first[k] != other[k])
        if differ:
            raise UserError(f"runs batched together may differ only in {', '.join(RUN_FIELDS)}; these differ: {', '.join(differ)}")
    if configs[0].share_prompt:
        # the batched forwards (RunBatch._forward) run every row's whole sequence; they have no
        # shared-prompt form, and quietly ignoring the option would mislabel what ran
        raise UserError("share_prompt is not supported with batched runs (--batched); run them apart or set it false")
    names = [(c.arm, c.seed) for c in configs]
    if len(set(names)) != len(names):
        raise UserError(f"a run batch lists a run twice: {names}")


def pack_runs(runs: Sequence[int], rows: Callable[[int], int], limit: int) -> list[list[int]]:
    """Split runs (ascending) into consecutive groups that hold at most `limit` rows once every run's
    rows are padded to the group's largest (a run with more rows than the limit forwards alone)."""
    packs: list[list[int]] = []
    for i in runs:
        if packs and max(rows(j) for j in [*packs[-1], i]) * (len(packs[-1]) + 1) <= limit:
            packs[-1].append(i)
        else:
            packs.append([i])
    return packs


class RunBatch:
    """K runs of one preset and model sharing one frozen base model in this process.

    configs: one per run (they may differ in arm and seed only); runs: their run directories
    (None: write nothing, as in tests); warm_start: a checkpoint's saved warm start (every run
    of a batch has the same one); model: a (model, tokenizer) to use instead of loading
    config.model; update_rows: the most rows in one training forward. By default each forward
    takes ROWS_PER_RUN rows (whole microbatches, at least one) of every run with each layer
    recomputed in backward (gradient checkpointing: a layer's activations at a time, so the peak
    stays moderate while the kernel launches are paid once for all runs); given, the forwards hold
    at most that many rows and recompute only if the config asks (update_rows = microbatch: a solo
    run's memory).
    """

    def __init__(
        self,
        configs: Sequence[TrainConfig],
        runs: Sequence[RunDir | None],
        *,
        problems: ProblemSet | None = None,
        warm_start: dict[str, Any] | None = None,
        model: tuple[torch.nn.Module, Any] | None = None,
        update_rows: int | None = None,
    ):
        check_batchable(configs)
        config = configs[0]
        problems = problems or load_problem_set(config.problem_set, config.data_dir)
        self.pool = GradingPool(config.grading_workers or ddp.cores_per_rank())
        try:
            attached: list[RunGroup] = []

            def attach(model: torch.nn.Module):  # after the (shared) warm start is merged into the base
                attached.append(attach_lora2r_runs(model, [lora2r_config(c) for c in configs]))
                return attached[0].adapters[0]

            first = Policy(config, problems, warm_start=warm_start, model=model, attach=attach)
            self.group = attached[0]
            policies = [first] + [
                Policy(c, problems, warm_start=first.warm_start, model=(first.model, first.tokenizer), adapter=adapter)
                for c, adapter in zip(configs[1:], self.group.adapters[1:])
            ]
            self.trainers: list[Trainer] = []
            for i, (c, run, policy) in enumerate(zip(configs, runs, policies)):
                with self.group.only(i):  # the arm reads its direction from the run's own adapter
                    self.trainers.append(Trainer(c, run, problems=problems, policy=policy, pool=self.pool))
        except BaseException:
            self.pool.close()
            raise
        self.model = first.model
        # the fast sampler's kind of decode for every run at once (on CPU the runs keep HF generate)
        self.sampler: MultiRunSampler | None = None
        if all(isinstance(t.sampler, FastSampler) for t in self.trainers):
            rows = config.prompts_per_step * (config.group_size - config.teacher_per_group)
            self.sampler = MultiRunSampler(
                first.model, first.tokenizer, first.stop_ids, adapters=self.group.adapters, rows_per_run=rows,
                max_seq_len=first.prompt_width + config.max_new_tokens,
            )
            for trainer in self.trainers:  # each run's own sampler now only evaluates: fold when it does
                trainer.sampler.defer_refresh = True
        if update_rows is not None and update_rows < 1:
            raise UserError(f"update_rows must be >= 1 (got {update_rows})")
        self.update_rows = update_rows or len(configs) * max(config.microbatch, ROWS_PER_RUN)
        if update_rows is None and not config.gradient_checkpointing:
            enable_recompute(self.model)  # the same result (tested), a layer's activations at a time
        self.stopped: dict[int, str] = {}
        """Runs that stopped on a non-finite update: index -> the reason."""

    def __len__(self) -> int:
        return len(self.trainers)

    def only(self, i: int):
        """Context manager: the shared model is run i's model (everything a run does alone)."""
        return self.group.only(i)

    def close(self) -> None:
        for trainer in self.trainers:
            trainer.close()
        self.pool.close()

    # --- one step of every run at `step` ---------------------------------------------------------
    def train_step(self, step: int) -> dict[int, dict[str, Any]]:
        """One step of every run (not stopped) whose next step is `step`; their metrics rows."""
        runs = [i for i, t in enumerate(self.trainers) if t.step == step and i not in self.stopped]
        t_start = time.perf_counter()
        prompts = {}
        for i in runs:
            with self.only(i), self._stops_alone(i, step):
                self.trainers[i].arm.begin_step(step)
                prompts[i] = self.trainers[i].step_prompts(step)
        rollouts = self.collect(prompts)
        runs = [i for i in runs if i in rollouts]
        t_gen = time.perf_counter()
        behaviour = self.behaviour_pass({i: rollouts[i].batch for i in runs})
        t_fwd = time.perf_counter()
        for i in runs:  # while the grader is still busy (the pair forwards read the run's own adapter)
            with self.only(i), self._stops_alone(i, step):
                self.trainers[i].arm.prepare(step)
        t_prep = time.perf_counter()
        grades = {i: rollouts[i].grading.result() for i in runs}
        t_grade = time.perf_counter()
        routing, plans = {}, {}
        for i in runs:
            trainer = self.trainers[i]
            routing[i] = trainer.arm.decide(behaviour[i].features, step)
            plans[i] = trainer.updater.plan(step, rollouts[i], grades[i], behaviour[i], behaviour[i].features, routing[i])
        self.backward(plans)
        results = {}
        for i in runs:
            with self.only(i), self._stops_alone(i, step):  # the pin loss reads the run's own pairs
                results[i] = self.trainers[i].updater.finish(plans[i])
        t_end = time.perf_counter()
        times = {  # the whole batch's phases: every run of the step shares them
            "generate": t_gen - t_start, "behaviour_forward": t_fwd - t_gen, "arm_prepare": t_prep - t_fwd,
            "grade_wait": t_grade - t_prep,
            "update": t_end - t_grade, "total": t_end - t_start, "runs_in_batch": len(results),
        }
        return {i: self.trainers[i].record_step(step, rollouts[i], grades[i], routing[i], results[i], times) for i in results}

    def collect(self, prompts: dict[int, StepPrompts]) -> dict[int, Rollouts]:
        """Every run's rollouts of the step: one decode for all runs (fast sampler), or each run
        sampling alone with its own seed (HF generate: exactly the solo run's samples)."""
        sampled, seconds = {}, {}
        if self.sampler is not None and prompts:
            t0 = time.perf_counter()
            self.sampler.refresh()  # the runs' adapters as they are now (trained, or loaded on resume)
            # one random stream for every run's rows, seeded by the runs' own sampling seeds
            seed = derive_seed(*(prompts[i].seed for i in sorted(prompts)))
            try:
                sampled = self.sampler.sample_runs(
                    {i: p.policy_prompts() for i, p in prompts.items()}, self.trainers[next(iter(prompts))].policy.sampling, seed=seed
                )
                seconds = dict.fromkeys(prompts, time.perf_counter() - t0)
            except FloatingPointError as exc:  # some run's logits are not finite: each samples alone, that one stops
                print(f"step {next(iter(prompts.values())).step}: the shared decode failed ({exc}); sampling each run alone")
        rollouts = {}
        for i, p in prompts.items():
            trainer = self.trainers[i]
            with self.only(i), self._stops_alone(i, p.step):
                if i not in sampled:
                    t0 = time.perf_counter()
                    sampled[i] = trainer.sampler.sample(*p.policy_prompts(), trainer.policy.sampling, seed=p.seed)
                    seconds[i] = time.perf_counter() - t0
                rollouts[i] = trainer.rollouts_from(p, sampled[i], seconds[i])
        return rollouts

    @contextlib.contextmanager
    def _stops_alone(self, i: int, step: int) -> Iterator[None]:
        """A non-finite result in run i stops run i (recorded in its run directory), not the batch."""
        try:
            yield
        except FloatingPointError as exc:
            trainer = self.trainers[i]
            trainer.optimizer.zero_grad(set_to_none=True)
            self.stopped[i] = str(exc)
            if trainer.run is not None:
                trainer.run.write_json(STOPPED_FILE, {"step": step, "reason": str(exc), "last_checkpoint_step": trainer.step})
            print(f"run {trainer.config.arm} seed {trainer.config.seed} stopped at step {step}: {exc} (the other runs continue)")

    def _forward(
        self,
        parts: dict[int, SequenceBatch],
        enter: Callable[[int, Tensor, int], contextlib.AbstractContextManager],
        then: Callable[[dict[int, slice], Tensor], None] | None = None,
    ) -> tuple[dict[int, slice], Tensor, dict[int, Any]]:
        """One forward over every run's rows in `parts` (runs in ascending order), each run's rows
        padded to one block size (filler rows repeat its last row: the adapters then take one
        batched matmul for every run, and no real row's values change) and under the context
        `enter(i, its block's trained-position mask, its number of filler rows)`. `then(rows, logp)`
        runs inside the contexts (a backward must: layer recomputation re-runs the forward during
        it). Returns each run's real rows in the combined batch, the completion log-probs and what
        each run's context yielded."""
        order = sorted(parts)
        block = max(len(parts[i]) for i in order)
        combined = concat_batches([_pad_rows(parts[i], block) for i in order])
        trained = combined.aligned()[1]
        rows = {i: slice(k * block, k * block + len(parts[i])) for k, i in enumerate(order)}
        with contextlib.ExitStack() as stack:
            entered = {
                i: stack.enter_context(enter(i, trained[k * block : (k + 1) * block], block - len(parts[i])))
                for k, i in enumerate(order)
            }
            stack.enter_context(self.group.rows([block if i in parts else 0 for i in range(len(self))]))
            logp = completion_logprobs(self.model, combined, temperature=self.trainers[order[0]].config.temperature)
            if then is not None:
                then(rows, logp)
        return rows, logp, entered

    def behaviour_pass(self, batches: dict[int, SequenceBatch]) -> dict[int, BehaviourPass]:
        """Every run's behaviour pass (RoutedUpdate.behaviour_pass), the next rows of every run in one
        no-grad forward: old log-probs, routing features and (KL on) the base model's log-probs."""
        if not batches:
            return {}
        config = self.trainers[next(iter(batches))].config
        # rows of each run per forward: as many as the update takes (whole microbatches); no
        # gradient, no per-microbatch statistics here, so the cut changes nothing but rounding
        mb = config.microbatch
        mb = max(mb, self.update_rows // len(batches) // mb * mb)
        logps: dict[int, list[Tensor]] = {i: [] for i in batches}
        feats: dict[int, list[Tensor]] = {i: [] for i in batches}
        refs: dict[int, list[Tensor]] = {i: [] for i in batches}
        adapters = self.group.adapters
        with torch.no_grad():
            for start in range(0, max(len(b) for b in batches.values()), mb):
                chunks = {i: b.rows(slice(start, start + mb)).trimmed() for i, b in batches.items() if start < len(b)}
                rows, lp, captures = self._forward(chunks, lambda i, trained, pad: adapters[i].capture_pooled(trained))
                for i, part in chunks.items():
                    width = part.completion_mask.shape[1]
                    logps[i].append(_pad_to(lp[rows[i], :width], batches[i].completion_mask.shape[1]))
                    feats[i].append(captures[i].pooled()[: len(part)])
                if config.kl_coef > 0:
                    rows, ref, _ = self._forward(chunks, lambda i, trained, pad: adapters[i].disabled())
                    for i, part in chunks.items():
                        width = part.completion_mask.shape[1]
                        refs[i].append(_pad_to(ref[rows[i], :width], batches[i].completion_mask.shape[1]))
        return {
            i: BehaviourPass(torch.cat(logps[i]), torch.cat(feats[i]), torch.cat(refs[i]) if refs[i] else None) for i in batches
        }

    def backward(self, plans: dict[int, UpdatePlan]) -> None:
        """Every run's routed forward + backward over its live microbatches. Each forward takes the
        next few microbatches of every run (as many as fit update_rows; each run's rows one block),
        each microbatch's loss computed on its own rows exactly as in the run's solo update, and one
        backward of the summed losses."""
        if not plans:
            return
        mb = self.trainers[next(iter(plans))].config.microbatch
        per_forward = max(1, self.update_rows // (len(plans) * mb))  # microbatches of each run per forward
        self.model.train()
        for first in range(0, max(len(p.microbatches) for p in plans.values()), per_forward):
            taken = {i: p.microbatches[first : first + per_forward] for i, p in sorted(plans.items()) if first < len(p.microbatches)}
            for pack in pack_runs(list(taken), lambda i, taken=taken: sum(len(idx) for idx in taken[i]), self.update_rows):
                parts = {i: plans[i].batch.rows(torch.cat(taken[i])).trimmed() for i in pack}

                def control(i: int, trained: Tensor, pad: int, taken=taken) -> contextlib.AbstractContextManager:
                    q, g = (torch.cat(c) for c in zip(*(self.trainers[i].updater.control(plans[i], idx) for idx in taken[i])))
                    # filler rows: no quarantine, no gradient (and no loss: they are not the run's rows)
                    return self.group.adapters[i].row_control(torch.cat([q, q.new_zeros(pad)]), torch.cat([g, g.new_zeros(pad)]))

                def backward(rows: dict[int, slice], logp: Tensor, taken=taken, pack=pack) -> None:
                    # the sum of the runs' losses: each run's parameters get exactly their own loss's gradient
                    losses = []
                    for i in pack:
                        start = rows[i].start
                        for idx in taken[i]:
                            part = plans[i].batch.rows(idx).trimmed()  # the solo update's microbatch
                            mine = logp[start : start + len(idx), : part.completion_mask.shape[1]]
                            losses.append(self.trainers[i].updater.loss(plans[i], idx, part, mine))
                            start += len(idx)
                    sum(losses).backward()

                self._forward(parts, control, backward)
        self.model.eval()


def _pad_rows(batch: SequenceBatch, n: int) -> SequenceBatch:
    """The batch's rows, then its last row again up to n rows."""
    if len(batch) == n:
        return batch
    return batch.rows(torch.arange(n, device=batch.input_ids.device).clamp(max=len(batch) - 1))


# --------------------------------------------------------------------------------------------
# whole runs: resume, steps, evaluation (train.run_training for K runs)
# --------------------------------------------------------------------------------------------
def run_batched_training(
    configs: Sequence[TrainConfig],
    out_dirs: Sequence[str],
    *,
    problems: ProblemSet | None = None,
    progress: bool = True,
    deadline: float | None = None,
    update_rows: int | None = None,
) -> list[dict[str, Any] | None]:
    """Train K runs together (each resuming from its own last checkpoint), then evaluate each.

    Returns one entry per run: its final eval dict (also in its eval.json), {"stopped": reason}
    for a run that stopped on a non-finite update, or None if the deadline came first (every run
    checkpointed; the same call continues).
    """
    from tqdm import tqdm

    from evilmoe.evaluate import closing_lines
    from evilmoe.train import begin_run, end_step, final_evaluation

    check_batchable(configs)
    runs = [RunDir.open(out, config) for config, out in zip(configs, out_dirs)]
    results: list[dict[str, Any] | None] = [None] * len(configs)
    todo = []
    for k, run in enumerate(runs):
        final, stopped = run.path / "eval.json", run.path / STOPPED_FILE
        if final.exists():  # finished before: report it again, do not retrain
            results[k] = json.loads(final.read_text())
            for line in closing_lines(results[k]["sets"]):
                print(f"{configs[k].arm} seed {configs[k].seed}: {line}")
        elif stopped.exists():
            results[k] = {"stopped": json.loads(stopped.read_text())["reason"]}
        else:
            todo.append(k)
    if not todo:
        return results
    states = [runs[k].load_latest_checkpoint() for k in todo]
    warm_starts = {json.dumps(s["warm_start"]["key"]) if s.get("warm_start") else None: s["warm_start"] for s in states if s}
    if len(warm_starts) > 1 or (warm_starts and len(warm_starts) == 1 and None in warm_starts and configs[0].warm_start_steps):
        raise UserError("the runs of a batch have checkpoints with different warm starts; train them apart")
    warm_start = next((w for w in warm_starts.values() if w is not None), None)
    batch = RunBatch([configs[k] for k in todo], [runs[k] for k in todo], problems=problems, warm_start=warm_start, update_rows=update_rows)
    try:
        for b, (k, state) in enumerate(zip(todo, states)):
            trainer = batch.trainers[b]
            record_problem_set(runs[k].path / "meta.json", trainer.problems)
            with batch.only(b):
                begin_run(trainer, runs[k], state)
        steps = configs[0].steps
        first = min(t.step for t in batch.trainers)
        bar = tqdm(range(first, steps), initial=first, total=steps, disable=not progress, desc=f"{len(todo)} runs")
        for step in bar:
            metrics = batch.train_step(step)
            for b, m in metrics.items():
                trainer = batch.trainers[b]
                trainer.step = step + 1
                with batch.only(b):
                    end_step(trainer, trainer.run, m)
            out_of_time = deadline is not None and time.monotonic() > deadline
            for b in metrics:
                trainer = batch.trainers[b]
                if trainer.step % trainer.config.checkpoint_every == 0 or trainer.step == steps or out_of_time:
                    trainer.run.save_checkpoint(trainer.step, trainer.state())
            if out_of_time and step + 1 < steps:
                print(f"time budget reached: checkpointed {len(metrics)} runs at step {step + 1}")
                for b, k in enumerate(todo):
                    if b in batch.stopped:
                        results[k] = {"stopped": batch.stopped[b]}
                return results
        for b, k in enumerate(todo):
            trainer = batch.trainers[b]
            if b in batch.stopped:
                results[k] = {"stopped": batch.stopped[b]}
                continue
            with batch.only(b):
                results[k] = final_evaluation(trainer.policy, batch.pool, trainer.run, steps_trained=trainer.step)
        return results
    finally:
        batch.close()


def run_dirs(root: str | Path, jobs: Sequence[tuple[str, int]]) -> list[str]:
    """OUT/<arm>/seed_<s> for each (arm, seed): the layout of decide."""
    return [str(Path(root) / arm / f"seed_{seed}") for arm, seed in jobs]
