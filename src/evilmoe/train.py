"""The RL loop: Dr.GRPO with a two-block LoRA and per-rollout routing (every arm of SPEC §5).

One step, top to bottom (data flows one way: problems -> rollouts -> rewards -> routed update):
  1. pick this step's problems and render their prompts (each problem has one mode)
  2. sample G completions per prompt with the hack expert ON (teacher demos replace a few)
  3. grade them in the background pool while the GPU computes behaviour log-probs and the
     pooled deployed-block activations that routing reads
  4. advantages = reward - group mean; groups with no reward spread are skipped
  5. routing decides, per rollout, how the update splits between deployed and quarantine blocks
     (none / absorb / routeA zones / Evil MoE router weight w); the pin loss runs on the pairs
  6. one masked forward + backward per microbatch, clip, AdamW step, log, checkpoint

Under torchrun (evilmoe.distributed) each rank does 1-3 and the forward/backward of 6 for its
contiguous share of the step's groups; features and rewards are gathered so 4-5 see the global
batch on every rank, the rollout-loss gradients are summed over ranks, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evilmoe import distributed as ddp
from evilmoe.config import TrainConfig
from evilmoe.env.grader import GradeJob, GradingPool
from evilmoe.env.modes import assign_modes, build_messages
from evilmoe.env.problems import ProblemSet, load_problem_set
from evilmoe.env.types import Problem
from evilmoe.errors import UserError
from evilmoe.grpo import SequenceBatch, clipped_surrogate, completion_logprobs, group_advantages, k3_kl
from evilmoe.lora2r import Lora2rAdapter, Lora2rConfig, attach_lora2r
from evilmoe.models import chat_prompt, end_of_turn_ids, load_model
from evilmoe.pairs import Pair, load_pairs
from evilmoe.rollouts import HFSampler, SamplingConfig, build_batch, decode_completion, encode_completion, encode_prompts
from evilmoe.routing import Arm, PairProbe, Routing, make_arm, mean_or_none
from evilmoe.runs import RunDir
from evilmoe.seeding import derive_seed
from evilmoe.teacher import POOL_MODE, TeacherPool, make_demo

EVAL_ROWS_PER_BATCH = 64  # rows per generation call in evaluation (also sizes the fast sampler)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def resolve_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available")
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
    if device.type == "cuda" and ddp.world() > 1:
        return torch.device("cuda", ddp.local_rank())  # one GPU per rank
    return device


def resolve_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]


def step_seed(seed: int, step: int, purpose: int) -> int:
    """Independent, reproducible seed per (run seed, step, purpose): resume needs no RNG state."""
    return derive_seed(seed, step, purpose)


WEIGHT_STATS = ("is_weight_mean", "is_capped_frac")  # logged per step with ratio_against=routed


def _weight_stats(weights: Tensor | None, completion_mask: Tensor, cap: float) -> dict[str, float | None]:
    """Mean truncated importance weight over the trained tokens and the share held at the cap."""
    if weights is None:
        return dict.fromkeys(WEIGHT_STATS)
    mask = completion_mask.float()
    n = mask.sum().clamp(min=1)
    return {
        "is_weight_mean": float((weights * mask).sum() / n),
        "is_capped_frac": float(((weights >= cap).float() * mask).sum() / n),
    }


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------
class Trainer:
    """Holds the model, adapter, router, optimizer and data of one run; `run_training` drives it."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunDir | None,
        *,
        problems: ProblemSet | None = None,
        warm_start: dict[str, Any] | None = None,
    ):
        config.validate()
        if config.prompts_per_step % ddp.world():
            raise UserError(
                f"prompts_per_step={config.prompts_per_step} must be a multiple of the number of ranks ({ddp.world()}): "
                "each rank trains whole groups of an equal share of the prompts"
            )
        self.config = config
        self.run = run
        self.device = resolve_device(config)
        self.dtype = resolve_dtype(config, self.device)
        if self.device.type == "cpu":
            # leave a core to the grading subprocesses: OpenMP threads spin-waiting for a busy core
            # made small matmuls ~10x slower on a 2-core box (measured)
            torch.set_num_threads(max(1, self._cores() - 1))

        # environment: problems and their modes (same partition for every arm and seed)
        self.problems = problems or load_problem_set(config.problem_set, config.data_dir)
        if not self.problems.train:
            raise UserError(f"problem set {config.problem_set} has no training problems")
        self.train_modes = assign_modes([p.id for p in self.problems.train], config.modes, config.mode_seed)
        self.pairs: list[Pair] = self._select_pairs(load_pairs(config.pairs_path))

        # model, optional warm start merged into the base, then the two-block adapter
        self.model, self.tokenizer = load_model(config.model, device=self.device, dtype=self.dtype)
        self.stop_ids = end_of_turn_ids(self.tokenizer)
        if config.gradient_checkpointing:  # recompute each layer in backward: activations of one layer at a time
            if hasattr(self.model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.warm_start = self._warm_start(warm_start)
        self.adapter: Lora2rAdapter = attach_lora2r(
            self.model,
            Lora2rConfig(rank=config.rank, alpha=config.lora_alpha, targets=config.targets, seed=config.seed),
        )
        self.teacher_pool = self._load_teacher_pool()
        self.problems, self.prompt_width, dropped = self._drop_long_prompts(self.problems)
        self.dropped_long_prompts = dropped
        self.sampler = self._make_sampler()
        self.sampling = SamplingConfig(config.temperature, config.top_p, config.top_k, config.max_new_tokens)

        # routing: the pairs, and the arm the config names (evilmoe.arms registers them)
        self.probe = PairProbe(self.model, self.adapter, *self._encode_pairs(), microbatch=config.microbatch, device=self.device)
        self.arm: Arm = make_arm(config, self.probe)

        self.optimizer = self._make_optimizer()
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.pool = GradingPool(config.grading_workers or self._cores())
        self.step = 0
        self.train_order = self._problem_order()

    # --- setup pieces ---------------------------------------------------------------------------
    @staticmethod
    def _cores() -> int:
        """This rank's share of the machine's CPU cores (ranks on one machine split them)."""
        return max(1, (os.cpu_count() or 2) // ddp.local_world())

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

    def _load_teacher_pool(self) -> TeacherPool | None:
        cfg = self.config
        if cfg.teacher_per_group == 0 or cfg.teacher_source != "pool":
            return None
        pool = TeacherPool.load(cfg.teacher_pool_dir)
        usable = [p for p in self.problems.train if self.train_modes[p.id] == POOL_MODE and pool.covers(p.id)]
        if not usable:
            raise UserError(
                f"the teacher pool in {cfg.teacher_pool_dir} covers none of the {cfg.problem_set} training problems "
                f"in {POOL_MODE} mode (it holds LeetCode train problems: use a leetcode-* problem set)"
            )
        return pool

    def _tokens(self, problem: Problem, mode: str, eval_markers: bool = False) -> int:
        text = chat_prompt(self.tokenizer, build_messages(problem, mode, eval_markers=eval_markers))
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _drop_long_prompts(self, problems: ProblemSet) -> tuple[ProblemSet, int, dict[str, int]]:
        """Drop problems whose prompt exceeds max_prompt_tokens (bounds memory and the KV cache).

        A problem's longest prompt is bounded by its hint-free prompt plus the largest hint excess
        over every mode and marker family (measured once), plus a few tokens for merges at the hint's
        edges: one render per problem instead of fourteen. The fast sampler still checks every
        batch's real width against its cache.
        """
        limit = self.config.max_prompt_tokens
        probe = problems.train[0]
        base = self._tokens(probe, "gt_only")
        hint_extra = max(self._tokens(probe, m, e) - base for m in self.config.modes for e in (False, True))
        bound = lambda p: self._tokens(p, "gt_only") + max(0, hint_extra) + 8  # noqa: E731
        kept: dict[str, list[Problem]] = {}
        dropped: dict[str, int] = {}
        width = 1
        for split in ("train", "validation", "test"):
            lengths = [(p, bound(p)) for p in getattr(problems, split)]
            kept[split] = [p for p, n in lengths if n <= limit]
            dropped[split] = len(lengths) - len(kept[split])
            width = max([width] + [n for _, n in lengths if n <= limit])
        if not kept["train"]:
            raise UserError(f"every training problem's prompt is longer than max_prompt_tokens={limit}")
        trimmed = dataclasses.replace(problems, train=kept["train"], validation=kept["validation"], test=kept["test"])
        return trimmed, width, dropped

    def _make_sampler(self):
        """Fast folded-weight sampler on CUDA (or when asked), HF generate otherwise."""
        cfg = self.config
        kind = cfg.sampler if cfg.sampler != "auto" else ("fast" if self.device.type == "cuda" else "hf")
        if kind == "hf":
            return HFSampler(self.model, self.tokenizer, self.stop_ids)
        from evilmoe.fastgen import FastSampler

        return FastSampler(
            self.model,
            self.tokenizer,
            self.stop_ids,
            adapter=self.adapter,
            max_batch=max(cfg.prompts_per_step // ddp.world() * cfg.group_size, EVAL_ROWS_PER_BATCH),
            max_seq_len=self.prompt_width + cfg.max_new_tokens,
        )

    def refresh_sampler(self) -> None:
        """The fast sampler decodes from a folded copy of the weights: re-fold after any change."""
        if hasattr(self.sampler, "refresh"):
            self.sampler.refresh(1.0)

    @contextlib.contextmanager
    def deployed(self):
        """The deployment model: quarantine reset to its init (and the sampler's fold updated)."""
        try:
            with self.adapter.ablate_quarantine():
                self.refresh_sampler()
                yield
        finally:
            self.refresh_sampler()  # back to the trained quarantine (also after an error)

    def _warm_start(self, saved: dict[str, Any] | None) -> dict[str, Any] | None:
        """Optional supervised warm start merged into the base weights (re-applied from the
        checkpoint on resume rather than retrained, so a resumed run sees the same base)."""
        if self.config.warm_start_steps == 0:
            return None
        from evilmoe.warmstart import merge_deltas, train_warm_start

        if saved is None:
            deltas, losses = train_warm_start(
                self.model, self.tokenizer, self.stop_ids[0], self.problems.train, self.train_modes, self.config, self.device
            )
            saved = {"deltas": {k: v.cpu() for k, v in deltas.items()}, "losses": losses}
            # every rank trained the same seeded warm start; rank 0's copy makes the bases bit-identical
            ddp.broadcast_tensors_(list(saved["deltas"].values()))
        merge_deltas(self.model, saved["deltas"])
        return saved

    def _encode_pairs(self) -> tuple[SequenceBatch, SequenceBatch]:
        """Tokenize the pairs once: hack sides and clean sides as two batches (same prompts)."""
        prompts = [chat_prompt(self.tokenizer, pair.messages()) for pair in self.pairs]
        ids, mask = encode_prompts(self.tokenizer, prompts, self.device)
        stop = self.stop_ids[0]
        hack, clean = (
            build_batch(ids, mask, [encode_completion(self.tokenizer, getattr(pair, side), stop) for pair in self.pairs], self.tokenizer.pad_token_id)
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

    def collect(self, step: int) -> dict[str, Any]:
        """Sample, encode and start grading one step's rollouts (this rank's share of the groups).

        Returns the step's data; data["row_offset"] is the global index of its first row.
        """
        cfg = self.config
        all_problems = self.step_problems(step)
        first, stop = ddp.shard_bounds(len(all_problems))
        problems = all_problems[first:stop]
        modes = [self.train_modes[p.id] for p in problems]
        prompts = [chat_prompt(self.tokenizer, build_messages(p, m)) for p, m in zip(problems, modes)]
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, self.device)
        rows = torch.arange(len(problems), device=self.device).repeat_interleave(cfg.group_size)
        prompt_ids, prompt_mask = prompt_ids[rows], prompt_mask[rows]

        t0 = time.perf_counter()
        n_policy = cfg.group_size - cfg.teacher_per_group
        policy_rows = torch.tensor(
            [i for i in range(len(rows)) if i % cfg.group_size < n_policy], device=self.device, dtype=torch.long
        )
        # One batched sampling call per rank. Its random stream depends on the batch, so N ranks cannot
        # reproduce one process's samples; each rank gets its own seed (one process keeps the old one).
        seed = step_seed(cfg.seed, step, 2) if ddp.world() == 1 else derive_seed(cfg.seed, step, 2, ddp.rank())
        sampled = self.sampler.sample(prompt_ids[policy_rows], prompt_mask[policy_rows], self.sampling, seed=seed)
        gen_seconds = time.perf_counter() - t0

        # the demos are drawn for the whole step in global row order and each rank keeps its own:
        # teacher rows are the same whatever the number of ranks
        demo_rng = random.Random(step_seed(cfg.seed, step, 3))
        demos = [
            make_demo(problem, self.train_modes[problem.id], hack_frac=cfg.teacher_hack_frac, rng=demo_rng, pool=self.teacher_pool)
            for problem in all_problems
            for _ in range(cfg.teacher_per_group)
        ][first * cfg.teacher_per_group : stop * cfg.teacher_per_group]
        demo_it = iter(demos)
        completions: list[list[int]] = []
        texts: list[str] = []
        sources: list[str] = []
        it = iter(sampled)
        for i in range(len(rows)):
            if i % cfg.group_size < n_policy:
                tokens = next(it)
                completions.append(tokens)
                texts.append(decode_completion(self.tokenizer, tokens))
                sources.append("policy")
            else:
                demo = next(demo_it)
                completions.append(encode_completion(self.tokenizer, demo.text, self.stop_ids[0])[: cfg.max_new_tokens])
                texts.append(demo.text)
                sources.append(demo.kind)
        batch = build_batch(prompt_ids, prompt_mask, completions, self.tokenizer.pad_token_id)
        jobs = [
            GradeJob(texts[i], problems[i // cfg.group_size], modes[i // cfg.group_size]) for i in range(len(rows))
        ]
        return {
            "problems": problems,
            "modes": modes,
            "batch": batch,
            "texts": texts,
            "sources": sources,
            "grading": self.pool.submit(jobs),  # graded on CPU workers while the GPU continues
            "gen_seconds": gen_seconds,
            "row_offset": first * cfg.group_size,
        }

    def _behaviour_pass(self, batch: SequenceBatch) -> tuple[Tensor, Tensor, Tensor | None]:
        """No-grad pass with the hack expert ON (the sampling policy): old log-probs, routing features,
        and (only when the KL term is on) the starting model's log-probs."""
        mb = self.config.microbatch
        logps, feats, refs = [], [], []
        with torch.no_grad():
            for start in range(0, len(batch), mb):
                part = batch.rows(slice(start, start + mb)).trimmed()
                with self.adapter.capture_pooled(part.aligned()[1]) as capture:
                    lp = completion_logprobs(self.model, part, temperature=self.config.temperature)
                logps.append(_pad_to(lp, batch.completion_mask.shape[1]))
                feats.append(capture.pooled())
                if self.config.kl_coef > 0:
                    with self.adapter.disabled():
                        ref = completion_logprobs(self.model, part, temperature=self.config.temperature)
                    refs.append(_pad_to(ref, batch.completion_mask.shape[1]))
        return torch.cat(logps), torch.cat(feats), (torch.cat(refs) if refs else None)

    def _ratio_base(self, logp_new: Tensor, sampling_logp: Tensor) -> tuple[Tensor, Tensor | None]:
        """What the PPO ratio divides by, and the per-token loss weights (None = all 1).

        logp_new comes from the routed training forward. "sampling": the sampling policy's log-probs,
        no weights. "routed" (decoupled PPO): the routed forward's own log-probs (logp_new without
        its gradient: one update per batch, so the proximal policy is the current one), the ratio is
        exactly 1, and the truncated importance weight min(p_routed / p_sampling, cap) corrects for
        the rollouts having been sampled with the expert fully on.
        """
        cfg = self.config
        # arms that train the very forward they sampled with (e.g. a fixed keep or absorb mask): the
        # routed log-probs are the sampling ones, the weights 1
        if cfg.ratio_against == "sampling" or self.arm.trains_sampling_forward:
            return sampling_logp, None
        routed = logp_new.detach()
        if not cfg.importance_weight_cap:
            return routed, None
        return routed, torch.exp(routed - sampling_logp).clamp(max=cfg.importance_weight_cap)

    def update(
        self,
        step: int,
        data: dict[str, Any],
        grades: list,
        logp_old: Tensor,
        features: Tensor,
        logp_ref: Tensor | None,
        routing: Routing,
    ) -> dict[str, Any]:
        """Masked forward + backward over the live rollouts, pin loss, clip, optimizer step.

        data, grades, logp_old and logp_ref hold this rank's rows; features and routing the whole
        step's (global row order). Rewards are gathered, so advantages, live groups and every
        returned per-row tensor are global too; only the forward/backward runs on local rows.
        """
        cfg = self.config
        batch: SequenceBatch = data["batch"]
        mine = slice(data["row_offset"], data["row_offset"] + len(batch))  # this rank's rows, globally
        rewards = torch.tensor([g.reward for g in grades], dtype=torch.float32, device=self.device)
        rewards = ddp.all_gather_rows(rewards)
        advantages, live = group_advantages(rewards, cfg.group_size)
        # Dr.GRPO: a constant, not the token count; the global batch's, so summing ranks' gradients
        # gives exactly one process's gradient
        normaliser = float(len(rewards) * cfg.max_new_tokens)
        self.optimizer.zero_grad(set_to_none=True)
        stats: dict[str, Any] = {k: [] for k in ("clip_frac", "dual_clip_frac", "ratio_mean", "ratio_max", *WEIGHT_STATS)}
        kl_total = 0.0
        local_features, local_advantages = features[mine], advantages[mine]
        live_idx = live[mine].nonzero().squeeze(1)  # local row indices
        self.model.train()
        for start in range(0, len(live_idx), cfg.microbatch):
            idx = live_idx[start : start + cfg.microbatch]
            part = batch.rows(idx).trimmed()
            width = part.completion_mask.shape[1]
            q, g = self.arm.control(routing, local_features[idx], idx + mine.start)
            # backward inside the control: gradient checkpointing re-runs the forward during backward
            with self.adapter.row_control(q, g):
                logp_new = completion_logprobs(self.model, part, temperature=cfg.temperature)
                old, weights = self._ratio_base(logp_new, logp_old[idx, :width])
                loss, s = clipped_surrogate(
                    logp_new, old, local_advantages[idx], part.completion_mask,
                    clip_eps=cfg.clip_eps, normaliser=normaliser, dual_clip=cfg.dual_clip, token_weights=weights,
                )
                s.update(_weight_stats(weights, part.completion_mask, cfg.importance_weight_cap))
                if logp_ref is not None:
                    kl = k3_kl(logp_new, logp_ref[idx, :width], part.completion_mask, normaliser=normaliser)
                    loss = loss + cfg.kl_coef * kl
                    kl_total += float(kl.detach())
                loss.backward()
            for k in stats:
                stats[k].append(s[k])
        self.model.eval()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # Sum the rollout-loss gradients over ranks now, before the router-only terms below: those
        # are computed on data every rank has (the pairs, the gathered features), so each rank adds
        # the same gradient once after the sum instead of it being counted once per rank.
        ddp.all_reduce_grads(params)
        deployed_sq, quarantine_sq = self.adapter.block_grad_sq_norms()

        # the arm's router-only terms (the learned router's pin loss and optional load balancing)
        router = self.arm.router_loss(step, features, live)
        if router.loss is not None and router.loss.requires_grad:
            router.loss.backward()
        w_all = self.arm.rollout_weights(features)

        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        if not math.isfinite(grad_norm):
            raise FloatingPointError(
                f"step {step}: non-finite gradient norm ({grad_norm}; deployed {math.sqrt(deployed_sq)}, "
                f"quarantine {math.sqrt(quarantine_sq)}); not applying the update"
            )
        # global: every rank takes the same branch; an arm with parameters of its own trains them on
        # its router-only loss every step, live groups or not
        if bool(live.any()) or self.arm.param_groups():
            self.optimizer.step()
            self.refresh_sampler()
        self.schedule.step()
        total = deployed_sq + quarantine_sq
        # per-microbatch stats of every rank, in one collective
        parts = ddp.all_gather_object((kl_total, stats))
        return {
            "rewards": rewards,
            "advantages": advantages,
            "live": live,
            "w": w_all,
            "grad_norm": grad_norm,
            "grad_norm_deployed": math.sqrt(deployed_sq),
            "grad_norm_quarantine": math.sqrt(quarantine_sq),
            "quarantine_update_share": (quarantine_sq / total) if total > 0 else None,
            "kl": sum(p[0] for p in parts) if logp_ref is not None else None,
            # means over every rank's microbatches (with N ranks the microbatches are cut differently)
            **{k: mean_or_none([x for p in parts for x in p[1][k] if x is not None]) for k in ("clip_frac", "dual_clip_frac", "ratio_mean", *WEIGHT_STATS)},
            "ratio_max": max((x for p in parts for x in p[1]["ratio_max"]), default=None),
            "router_stats": router.stats,
        }

    def train_step(self, step: int) -> dict[str, Any]:
        t_start = time.perf_counter()
        cfg = self.config
        self.arm.begin_step(step)
        data = self.collect(step)
        t_gen = time.perf_counter()
        logp_old, features, logp_ref = self._behaviour_pass(data["batch"])
        t_fwd = time.perf_counter()
        grades = data["grading"].result()
        t_grade = time.perf_counter()
        features = ddp.all_gather_rows(features)  # the whole step's, in global row order
        routing = self.arm.decide(features, step)
        out = self.update(step, data, grades, logp_old, features, logp_ref, routing)
        t_end = time.perf_counter()

        step_data, step_grades = self._gather_step(step, data, grades)  # every rank's rows
        metrics = self._step_metrics(step, step_data, step_grades, routing, out)
        metrics["time"] = {
            "generate": data["gen_seconds"],
            "behaviour_forward": t_fwd - t_gen,
            "grade_wait": t_grade - t_fwd,
            "update": t_end - t_grade,
            "total": t_end - t_start,
        }
        if self.run is not None and cfg.save_rollouts:
            self.run.write_rollouts(step, self._rollout_rows(step_data, step_grades, routing, out))
        return metrics

    # --- logging --------------------------------------------------------------------------------
    def _gather_step(self, step: int, data: dict[str, Any], grades: list) -> tuple[dict[str, Any], list]:
        """The whole step's texts, sources, completion lengths and grades on every rank (metrics and
        rollouts then read exactly as in one process); in one process the step's own data."""
        lengths = data["batch"].completion_mask.sum(1).tolist()
        if ddp.world() == 1:
            return {**data, "completion_tokens": lengths}, grades
        parts = ddp.all_gather_object((data["texts"], data["sources"], lengths, grades))
        problems = self.step_problems(step)
        return {
            "problems": problems,
            "modes": [self.train_modes[p.id] for p in problems],
            "texts": [t for p in parts for t in p[0]],
            "sources": [s for p in parts for s in p[1]],
            "completion_tokens": [n for p in parts for n in p[2]],
        }, [g for p in parts for g in p[3]]

    def _step_metrics(self, step: int, data: dict[str, Any], grades: list, routing: Routing, out: dict[str, Any]) -> dict[str, Any]:
        policy = [i for i, s in enumerate(data["sources"]) if s == "policy"]
        hacked = [bool(grades[i].hacked) for i in range(len(grades))]
        w = out["w"].tolist()
        m: dict[str, Any] = {
            "step": step,
            "lr": self.schedule.get_last_lr()[0],
            "reward_mean": float(out["rewards"].mean()),
            "policy_reward_mean": mean_or_none([grades[i].reward for i in policy]),
            "policy_hack_rate": mean_or_none([float(grades[i].hacked) for i in policy]),
            "policy_solve_rate": mean_or_none([float(grades[i].correct) for i in policy]),
            "policy_attempted_hack_rate": mean_or_none([float(grades[i].attempted_hack) for i in policy]),
            "policy_format_rate": mean_or_none([float(grades[i].format_ok) for i in policy]),
            "live_groups": int(out["live"].sum()) // self.config.group_size,
            "rollout_sources": {s: data["sources"].count(s) for s in sorted(set(data["sources"]))},
            "mean_completion_tokens": float(np.mean(data["completion_tokens"])),
            **{k: out[k] for k in ("grad_norm", "grad_norm_deployed", "grad_norm_quarantine", "quarantine_update_share", "kl", "clip_frac", "dual_clip_frac", "ratio_mean", "ratio_max", *WEIGHT_STATS)},
        }
        # the arm's diagnostics: the only place grader flags meet routing (they never enter it)
        m.update(self.arm.step_metrics(routing, w, hacked, policy, out["router_stats"]))
        return m

    def _rollout_rows(self, data: dict[str, Any], grades: list, routing: Routing, out: dict[str, Any]) -> list[dict[str, Any]]:
        g = self.config.group_size
        labels = routing.labels
        return [
            {
                "problem_id": data["problems"][i // g].id,
                "mode": data["modes"][i // g],
                "source": data["sources"][i],
                "text": data["texts"][i],
                "grade": grades[i].to_dict(),
                "advantage": float(out["advantages"][i]),
                "live": bool(out["live"][i]),
                "w": None if math.isnan(out["w"][i]) else float(out["w"][i]),
                "route": labels[i] if labels else None,
            }
            for i in range(len(grades))
        ]

    # --- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "adapter": self.adapter.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "warm_start": self.warm_start,
            **self.arm.state_dict(),  # v_act, router, route_buffer
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.adapter.load_state_dict(state["adapter"])
        self.refresh_sampler()
        self.arm.load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = state["step"]

    def close(self) -> None:
        self.pool.close()


def _pad_to(x: Tensor, width: int) -> Tensor:
    if x.shape[1] == width:
        return x
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))



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

    from evilmoe.evaluate import deploy_ablation, make_eval_sets

    main = ddp.is_main()
    opened = ddp.main_only(lambda: RunDir.open(out_dir, config))
    run: RunDir | None = opened if main else None
    final_path = Path(out_dir) / "eval.json"
    if final_path.exists():  # finished before: report it again, do not retrain
        result = json.loads(final_path.read_text())
        for line in result["closing_lines"] if main else []:
            print(line)
        return result

    state = RunDir(Path(out_dir)).load_latest_checkpoint()  # read-only: every rank loads the same one
    trainer = Trainer(config, run, problems=problems, warm_start=state.get("warm_start") if state else None)
    try:
        if state is not None:
            trainer.load_state(state)
            if run is not None:
                run.truncate_metrics(before_step=trainer.step)
                print(f"resumed {run.path} at step {trainer.step}" + (f" on {ddp.world()} ranks" if ddp.world() > 1 else ""))
        elif trainer.step == 0 and run is not None:
            if run.read_metrics():  # a run cut off before (or without) a checkpoint that survived
                print(f"{run.path} has logged steps but no checkpoint: training again from step 0 (old rows dropped)")
                run.truncate_metrics(before_step=-1)
            run.append_metrics(
                {
                    "step": -1,
                    "initial_v_act_separation": trainer.arm.initial_separation,
                    "warm_start_losses": trainer.warm_start["losses"] if trainer.warm_start else None,
                    "dropped_long_prompts": trainer.dropped_long_prompts,
                    "prompt_width": trainer.prompt_width,
                }
            )
        bar = tqdm(range(trainer.step, config.steps), initial=trainer.step, total=config.steps, disable=not (progress and main), desc=f"{config.arm}")
        for step in bar:
            metrics = trainer.train_step(step)
            trainer.step = step + 1
            if config.eval_every and trainer.step % config.eval_every == 0 and trainer.step < config.steps:
                val_sets = make_eval_sets(config, trainer.problems, split="validation", n_heldout=config.eval_problems, n_train=0)
                if val_sets:
                    val = deploy_ablation(trainer, val_sets[0], samples=config.eval_samples, seed=step_seed(config.seed, step, 11))
                    if run is not None:
                        run.write_eval(val, step=trainer.step)
                    metrics["val_hack_on"] = val["on"]["hack"]["rate"]
                    metrics["val_hack_off"] = val["off"]["hack"]["rate"]
                    metrics["val_solve_on"] = val["on"]["solve"]["rate"]
                    metrics["val_solve_off"] = val["off"]["solve"]["rate"]
            if run is not None:
                run.append_metrics(metrics)
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

        return final_evaluation(trainer, run)
    finally:
        trainer.close()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def final_evaluation(trainer: Trainer, run: RunDir | None) -> dict[str, Any]:
    """Deploy-ablation eval of the trained adapter on held-out and training-distribution problems.

    Every arm and seed uses the same eval prompts and sampling seeds (derived from mode_seed only).
    Writes eval.json and the plots; prints the closing lines (the causal line last). Under torchrun
    every rank evaluates its share (see deploy_ablation) and gets the result; rank 0 (the one with a
    run) writes and prints.
    """
    from evilmoe.evaluate import closing_lines, deploy_ablation, make_eval_sets
    from evilmoe.plots import plot_run

    config = trainer.config
    result: dict[str, Any] = {"arm": config.arm, "seed": config.seed, "steps_trained": trainer.step, "sets": {}}
    eval_sets = make_eval_sets(
        config, trainer.problems, split=config.eval_split, n_heldout=config.eval_problems, n_train=config.eval_train_problems
    )
    for eval_set in eval_sets:
        result["sets"][eval_set.name] = deploy_ablation(
            trainer, eval_set, samples=config.eval_samples, seed=step_seed(config.mode_seed, 0, 13), keep_texts=True
        )
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
    for line in result["closing_lines"]:
        print(line)
    return result


def evaluate_run_dir(run_dir: str) -> dict[str, Any]:
    """`evilmoe eval RUN_DIR`: rebuild the run from config.json, load its last checkpoint, re-evaluate."""
    from evilmoe.runs import read_json

    path = Path(run_dir)
    config = TrainConfig.from_dict(read_json(path / "config.json"))
    run = ddp.main_only(lambda: RunDir.open(path, config))  # None on ranks other than 0: they only read
    state = RunDir(path).load_latest_checkpoint()
    if state is None:
        raise UserError(f"{run_dir} has no checkpoint to evaluate (train it first)")
    trainer = Trainer(config, run, warm_start=state.get("warm_start"))
    try:
        trainer.load_state(state)
        return final_evaluation(trainer, run)
    finally:
        trainer.close()
