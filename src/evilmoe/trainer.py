"""One run's training state and one step of the RL loop: Dr.GRPO with a two-block LoRA and
per-rollout routing (docs/design.md describes the arms and the update).

One step, top to bottom (data flows one way: problems -> rollouts -> rewards -> routed update):
  1. pick this step's problems and render their prompts (each problem has one mode)
  2. sample G completions per prompt with the hack expert ON (teacher demos replace a few)
  3. grade them in the background pool while the accelerator computes behaviour log-probs and
     the pooled deployed-block activations that routing reads                  (update.py),
     then the arm's reward-free work (the learned router's pair forwards)       (routing.py)
  4. advantages = reward - group mean; groups with no reward spread are skipped
  5. the run's arm decides, per rollout, how the update splits between the deployed and
     quarantine blocks (routing.py; the arms are registered in arms.py)
  6. one masked forward + backward per microbatch, the arm's router-only loss, clip, AdamW step,
     log, checkpoint                                                             (update.py)

Under torchrun (evilmoe.distributed) each rank does 1-3 and the forward/backward of 6 for its
contiguous share of the step's groups; features and rewards are gathered so 4-5 see the global
batch on every rank, the rollout-loss gradients are summed over ranks, and only rank 0 writes.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from evilmoe import distributed as ddp
from evilmoe.config import TrainConfig
from evilmoe.env.grader import GradeJob, GradingPool
from evilmoe.env.loopholes import get_mode
from evilmoe.env.problems import ProblemSet, load_problem_set
from evilmoe.env.types import Grade, Problem
from evilmoe.errors import UserError
from evilmoe.grpo import SequenceBatch
from evilmoe.lora2r import Lora2rAdapter
from evilmoe.models import chat_prompt
from evilmoe.pairs import Pair, load_pairs
from evilmoe.policy import Policy
from evilmoe.records import BehaviourPass, Rollouts, StepRows, UpdateResult
from evilmoe.rollouts import build_batch, decode_completion, encode_completion, encode_prompts, tokens_before
from evilmoe.routing import Arm, PairProbe, Routing, make_arm, mean_or_none
from evilmoe.runs import RunDir
from evilmoe.seeding import derive_seed
from evilmoe.teacher import POOL_MODE, TeacherPool, make_demo
from evilmoe.update import RoutedUpdate


def step_seed(seed: int, step: int, purpose: int) -> int:
    """Independent, reproducible seed per (run seed, step, purpose): resume needs no RNG state."""
    return derive_seed(seed, step, purpose)


@dataclass
class StepPrompts:
    """One step's prompts on this rank, one row per rollout (Trainer.step_prompts)."""

    step: int
    all_problems: list[Problem]
    """Every rank's problems of the step; this rank's are [first, stop)."""
    first: int
    stop: int
    modes: list[str]
    """The mode of each of this rank's problems."""
    ids: Tensor
    """[rows, width] left-padded prompt tokens, group_size rows per problem."""
    mask: Tensor
    policy_rows: Tensor
    """The rows the policy samples (the others take teacher demos)."""
    seed: int

    def policy_prompts(self) -> tuple[Tensor, Tensor]:
        """(ids, mask) of the rows the policy samples."""
        return self.ids[self.policy_rows], self.mask[self.policy_rows]


class Trainer:
    """One run: its policy, arm, optimizer and data; `train_step` runs a step, `run_training` the run."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunDir | None,
        *,
        problems: ProblemSet | None = None,
        warm_start: dict[str, Any] | None = None,
        model: tuple[nn.Module, Any] | None = None,
        policy: Policy | None = None,
        pool: GradingPool | None = None,
    ):
        """problems: the problem set (default: the config's); warm_start: a checkpoint's saved warm
        start to re-merge instead of training it; model: a (model, tokenizer) to train instead of
        loading config.model (benchmarks build their own); policy: the run's policy, built by the
        caller (runs that share one model, evilmoe.batched); pool: a grading pool to share
        (default: the run's own, closed with the trainer)."""
        config.validate()
        if config.prompts_per_step % ddp.world():
            raise UserError(
                f"prompts_per_step={config.prompts_per_step} must be a multiple of the number of ranks ({ddp.world()}): "
                "each rank trains whole groups of an equal share of the prompts"
            )
        self.config = config
        self.run = run

        # environment: problems and their modes (same partition for every arm and seed), pairs, demos
        problems = problems or load_problem_set(config.problem_set, config.data_dir)
        if not problems.train:
            raise UserError(f"problem set {config.problem_set} has no training problems")
        self.pairs: list[Pair] = self._select_pairs(load_pairs(config.pairs_path))
        self.teacher_pool = self._load_teacher_pool(problems)

        # the model, its adapter and sampler; then routing: the pairs, and the arm the config names
        self.policy = policy or Policy(config, problems, warm_start=warm_start, model=model)
        self.probe = PairProbe(self.model, self.adapter, *self._encode_pairs(), microbatch=config.microbatch, device=self.device)
        self.arm: Arm = make_arm(config, self.probe)

        self.optimizer = self._make_optimizer()
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.updater = RoutedUpdate(config, self.policy, self.arm, self.optimizer, self.schedule)
        self._owns_pool = pool is None
        self.pool = pool or GradingPool(config.grading_workers or ddp.cores_per_rank())
        self.step = 0
        self.train_order = self._problem_order()

    # --- the policy's parts, by their usual names -------------------------------------------------
    @property
    def model(self) -> nn.Module:
        return self.policy.model

    @property
    def adapter(self) -> Lora2rAdapter:
        return self.policy.adapter

    @property
    def tokenizer(self):
        return self.policy.tokenizer

    @property
    def stop_ids(self) -> list[int]:
        return self.policy.stop_ids

    @property
    def sampler(self):
        return self.policy.sampler

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @property
    def problems(self) -> ProblemSet:
        """The run's problems whose prompts fit max_prompt_tokens."""
        return self.policy.problems

    @property
    def train_modes(self) -> dict[str, str]:
        return self.policy.train_modes

    # --- setup pieces ---------------------------------------------------------------------------
    def _select_pairs(self, pairs: list[Pair]) -> list[Pair]:
        """All pairs, or the first pairs_per_mode of each mode (file order)."""
        k = self.config.pairs_per_mode
        if k == 0:
            return pairs
        seen: dict[str, int] = {}
        chosen = []
        for pair in pairs:
            if seen.get(pair.mode, 0) < k:
                chosen.append(pair)
                seen[pair.mode] = seen.get(pair.mode, 0) + 1
        return chosen

    def _load_teacher_pool(self, problems: ProblemSet) -> TeacherPool | None:
        cfg = self.config
        if cfg.teacher_per_group == 0 or cfg.teacher_source != "pool":
            return None
        pool = TeacherPool.load(cfg.teacher_pool_dir)
        modes = Policy.mode_partition(cfg, problems)
        usable = [p for p in problems.train if modes[p.id] == POOL_MODE and pool.covers(p.id)]
        if not usable:
            raise UserError(
                f"the teacher pool in {cfg.teacher_pool_dir} covers none of the {cfg.problem_set} training problems "
                f"in {POOL_MODE} mode (it holds LeetCode train problems: use a leetcode-* problem set)"
            )
        return pool

    def _encode_pairs(self) -> tuple[SequenceBatch, SequenceBatch]:
        """Tokenize the pairs once: hack sides and clean sides as two batches (same prompts)."""
        prompts = [chat_prompt(self.tokenizer, pair.messages()) for pair in self.pairs]
        ids, mask = encode_prompts(self.tokenizer, prompts, self.device)
        stop, pad = self.stop_ids[0], self.tokenizer.pad_token_id
        hack, clean = (
            build_batch(ids, mask, [encode_completion(self.tokenizer, getattr(pair, side), stop) for pair in self.pairs], pad)
            for side in ("hack", "clean")
        )
        return hack, clean

    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [{"params": list(self.adapter.parameters()), "lr": self.config.lr, "name": "adapter"}]
        groups += self.arm.param_groups()
        return torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 10% of the peak at the last step."""
        warm = self.config.warmup_steps
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, self.config.steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _problem_order(self) -> list[Problem]:
        """Epoch-shuffled problem order for the whole run (reproducible from the seed)."""
        needed = self.config.steps * self.config.prompts_per_step
        order: list[Problem] = []
        epoch = 0
        while len(order) < needed:
            epoch_list = list(self.problems.train)
            random.Random(step_seed(self.config.seed, epoch, 1)).shuffle(epoch_list)
            order.extend(epoch_list)
            epoch += 1
        return order

    # --- one step -------------------------------------------------------------------------------
    def step_problems(self, step: int) -> list[Problem]:
        p = self.config.prompts_per_step
        return self.train_order[step * p : (step + 1) * p]

    def collect(self, step: int) -> Rollouts:
        """Sample, encode and start grading one step's rollouts (this rank's share of the groups)."""
        prompts = self.step_prompts(step)
        t0 = time.perf_counter()
        sampled = self.sampler.sample(*prompts.policy_prompts(), self.policy.sampling, seed=prompts.seed)
        return self.rollouts_from(prompts, sampled, time.perf_counter() - t0)

    def step_prompts(self, step: int) -> StepPrompts:
        """This rank's share of the step's prompts, one row per rollout, and the sampling seed."""
        cfg = self.config
        all_problems = self.step_problems(step)
        first, stop = ddp.shard_bounds(len(all_problems))
        problems = all_problems[first:stop]
        modes = [self.train_modes[p.id] for p in problems]
        prompts = [self.policy.chat_prompt(p, m) for p, m in zip(problems, modes)]
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, self.device)
        rows = torch.arange(len(problems), device=self.device).repeat_interleave(cfg.group_size)
        n_policy = cfg.group_size - cfg.teacher_per_group
        policy_rows = torch.tensor(
            [i for i in range(len(rows)) if i % cfg.group_size < n_policy], device=self.device, dtype=torch.long
        )
        # One batched sampling call per rank. Its random stream depends on the batch, so N ranks cannot
        # reproduce one process's samples; each rank gets its own seed (one process keeps the old one).
        seed = step_seed(cfg.seed, step, 2) if ddp.world() == 1 else derive_seed(cfg.seed, step, 2, ddp.rank())
        return StepPrompts(step, all_problems, first, stop, modes, prompt_ids[rows], prompt_mask[rows], policy_rows, seed)

    def rollouts_from(self, prompts: StepPrompts, sampled: list[list[int]], gen_seconds: float) -> Rollouts:
        """The step's rollouts from the sampled completions of its policy rows: teacher demos in
        their places, everything encoded, grading started."""
        cfg = self.config
        step, all_problems, first, stop = prompts.step, prompts.all_problems, prompts.first, prompts.stop
        problems, modes = all_problems[first:stop], prompts.modes
        prompt_ids, prompt_mask = prompts.ids, prompts.mask
        rows = range(len(prompt_ids))
        n_policy = cfg.group_size - cfg.teacher_per_group
        # the demos are drawn for the whole step in global row order and each rank keeps its own:
        # teacher rows are the same whatever the number of ranks
        demo_rng = random.Random(step_seed(cfg.seed, step, 3))
        # teacher_source "attempt": a group's hack demos build on its first policy answer (this rank's
        # groups only; the demos of other ranks' groups are drawn for the rng's sake and dropped)
        first_answers: dict[int, str] = {}
        if cfg.teacher_source == "attempt" and n_policy > 0:
            for g in range(len(problems)):
                first_answers[first + g] = decode_completion(self.tokenizer, sampled[g * n_policy])
        demos = [
            make_demo(
                problem, self.train_modes[problem.id], hack_frac=cfg.teacher_hack_frac, rng=demo_rng,
                pool=self.teacher_pool, attempt=first_answers.get(index),
            )
            for index, problem in enumerate(all_problems)
            for _ in range(cfg.teacher_per_group)
        ][first * cfg.teacher_per_group : stop * cfg.teacher_per_group]
        demo_it = iter(demos)
        completions: list[list[int]] = []
        texts: list[str] = []
        sources: list[str] = []
        loss_start: list[int] = []  # first completion token in the loss (teacher_loss=exploit, overlong=mask)
        truncated: list[bool] = []
        stops = set(self.stop_ids)
        it = iter(sampled)
        for i in range(len(rows)):
            if i % cfg.group_size < n_policy:
                tokens = next(it)
                completions.append(tokens)
                texts.append(decode_completion(self.tokenizer, tokens))
                sources.append("policy")
                cut = not tokens or tokens[-1] not in stops  # the sampler stops at max_new_tokens or after a stop token
                truncated.append(cut)
                loss_start.append(len(tokens) if cut and cfg.overlong == "mask" else 0)
            else:
                demo = next(demo_it)
                completions.append(encode_completion(self.tokenizer, demo.text, self.stop_ids[0])[: cfg.max_new_tokens])
                texts.append(demo.text)
                sources.append(demo.kind)
                own = tokens_before(self.tokenizer, demo.text, demo.exploit_from) if cfg.teacher_loss == "exploit" else 0
                loss_start.append(min(own, len(completions[-1])))
                truncated.append(False)
        batch = build_batch(prompt_ids, prompt_mask, completions, self.tokenizer.pad_token_id)
        jobs = [
            GradeJob(texts[i], problems[i // cfg.group_size], modes[i // cfg.group_size]) for i in range(len(rows))
        ]
        return Rollouts(
            problems=problems,
            modes=modes,
            batch=batch,
            texts=texts,
            sources=sources,
            grading=self.pool.submit(jobs),  # graded on CPU workers while the accelerator continues
            gen_seconds=gen_seconds,
            row_offset=first * cfg.group_size,
            loss_start=torch.tensor(loss_start, dtype=torch.long, device=batch.input_ids.device) if any(loss_start) else None,
            truncated=truncated,
        )

    def behaviour_pass(self, batch: SequenceBatch) -> BehaviourPass:
        """No-grad pass with the hack expert ON: old log-probs and routing features (update.py)."""
        return self.updater.behaviour_pass(batch)

    def update(self, step: int, rollouts: Rollouts, grades: list[Grade], behaviour: BehaviourPass, features: torch.Tensor, routing: Routing) -> UpdateResult:
        """The routed Dr.GRPO update of the step (update.py)."""
        return self.updater(step, rollouts, grades, behaviour, features, routing)

    def train_step(self, step: int) -> dict[str, Any]:
        t_start = time.perf_counter()
        self.arm.begin_step(step)
        rollouts = self.collect(step)
        t_gen = time.perf_counter()
        behaviour = self.behaviour_pass(rollouts.batch)
        t_fwd = time.perf_counter()
        self.arm.prepare(step)  # the grader is still busy: the arm's reward-free work runs meanwhile
        t_prep = time.perf_counter()
        grades = rollouts.grading.result()
        t_grade = time.perf_counter()
        features = ddp.all_gather_rows(behaviour.features)  # the whole step's, in global row order
        routing = self.arm.decide(features, step)
        out = self.update(step, rollouts, grades, behaviour, features, routing)
        t_end = time.perf_counter()
        times = {
            "generate": rollouts.gen_seconds,
            "behaviour_forward": t_fwd - t_gen,
            "arm_prepare": t_prep - t_fwd,
            "grade_wait": t_grade - t_prep,
            "update": t_end - t_grade,
            "total": t_end - t_start,
        }
        return self.record_step(step, rollouts, grades, routing, out, times)

    def record_step(
        self, step: int, rollouts: Rollouts, grades: list[Grade], routing: Routing, out: UpdateResult, times: dict[str, float]
    ) -> dict[str, Any]:
        """The step's metrics row (returned) and its rollouts (written to the run directory)."""
        rows = self.gather_step(step, rollouts, grades)  # every rank's rows
        metrics = self._step_metrics(step, rows, routing, out)
        metrics["time"] = times
        if self.run is not None and self.config.save_rollouts:
            self.run.write_rollouts(step, self._rollout_rows(rows, routing, out))
        return metrics

    # --- logging --------------------------------------------------------------------------------
    def gather_step(self, step: int, rollouts: Rollouts, grades: list[Grade]) -> StepRows:
        """The whole step's texts, sources, completion lengths and grades on every rank (metrics and
        rollouts then read exactly as in one process); in one process the step's own rows."""
        lengths = rollouts.batch.completion_mask.sum(1).tolist()
        if ddp.world() == 1:
            return StepRows(rollouts.problems, rollouts.modes, rollouts.texts, rollouts.sources, lengths, grades, rollouts.truncated)
        parts = ddp.all_gather_object((rollouts.texts, rollouts.sources, lengths, grades, rollouts.truncated))
        problems = self.step_problems(step)
        return StepRows(
            problems=problems,
            modes=[self.train_modes[p.id] for p in problems],
            texts=[t for p in parts for t in p[0]],
            sources=[s for p in parts for s in p[1]],
            completion_tokens=[n for p in parts for n in p[2]],
            grades=[g for p in parts for g in p[3]],
            truncated=[t for p in parts for t in p[4]],
        )

    def _step_metrics(self, step: int, rows: StepRows, routing: Routing, out: UpdateResult) -> dict[str, Any]:
        grades = rows.grades
        policy = [i for i, s in enumerate(rows.sources) if s == "policy"]
        hacked = [bool(g.hacked) for g in grades]
        loophole_row = [get_mode(rows.modes[i // self.config.group_size]).is_loophole for i in range(len(grades))]
        m: dict[str, Any] = {
            "step": step,
            "lr": self.schedule.get_last_lr()[0],
            "reward_mean": float(out.rewards.mean()),
            "policy_reward_mean": mean_or_none([grades[i].reward for i in policy]),
            "policy_hack_rate": mean_or_none([float(grades[i].hacked) for i in policy]),
            "policy_solve_rate": mean_or_none([float(grades[i].correct) for i in policy]),
            "policy_attempted_hack_rate": mean_or_none([float(grades[i].attempted_hack) for i in policy]),
            "policy_format_rate": mean_or_none([float(grades[i].format_ok) for i in policy]),
            # solving where no loophole pays (gt_only) vs on loophole problems: a lift in the first is skill
            "policy_solve_rate_gt_only": mean_or_none([float(grades[i].correct) for i in policy if not loophole_row[i]]),
            "policy_solve_rate_loophole": mean_or_none([float(grades[i].correct) for i in policy if loophole_row[i]]),
            "live_groups": int(out.live.sum()) // self.config.group_size,
            "rollout_sources": {s: rows.sources.count(s) for s in sorted(set(rows.sources))},
            "mean_completion_tokens": float(np.mean(rows.completion_tokens)),
            # cut off at max_new_tokens: the first sign of the length blow-up that precedes a collapse
            "policy_truncated_rate": mean_or_none([float(rows.truncated[i]) for i in policy]),
            **out.metrics(),
        }
        # the arm's diagnostics: the only place grader flags meet routing (they never enter it)
        m.update(self.arm.step_metrics(routing, out.w.tolist(), hacked, policy, out.router_stats))
        return m

    def _rollout_rows(self, rows: StepRows, routing: Routing, out: UpdateResult) -> list[dict[str, Any]]:
        g = self.config.group_size
        labels = routing.labels
        return [
            {
                "problem_id": rows.problems[i // g].id,
                "mode": rows.modes[i // g],
                "source": rows.sources[i],
                "text": rows.texts[i],
                "grade": rows.grades[i].to_dict(),
                "truncated": rows.truncated[i],
                "advantage": float(out.advantages[i]),
                "live": bool(out.live[i]),
                "w": None if math.isnan(out.w[i]) else float(out.w[i]),
                "route": labels[i] if labels else None,
            }
            for i in range(len(rows.grades))
        ]

    # --- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The checkpoint: step, adapter, optimizer, schedule, warm start and the arm's entries
        (v_act, router, route_buffer; None where the arm has none): one layout for every arm.

        The optimizer is None in the checkpoint of the last step: nothing resumed from it takes
        another optimizer step (the final evaluation, eval, localize, relearn and export read only
        the adapter, the arm and the warm start), and Adam's two moments are as large as the adapter
        itself, in the checkpoint that is the run's state once it has finished."""
        return {
            "step": self.step,
            "adapter": self.adapter.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.step < self.config.steps else None,
            "schedule": self.schedule.state_dict(),
            "warm_start": self.policy.warm_start,
            **self.arm.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("optimizer") is None and state["step"] < self.config.steps:
            raise UserError(
                f"the checkpoint at step {state['step']} holds no optimizer state (only a finished run's last one may lack it): "
                f"it cannot resume training to step {self.config.steps} exactly"
            )
        self.policy.load_adapter(state["adapter"])
        self.arm.load_state_dict(state)
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = state["step"]

    def close(self) -> None:
        if self._owns_pool:
            self.pool.close()
