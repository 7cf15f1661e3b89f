"""The two passes of a step over its rollouts: the behaviour pass and the routed Dr.GRPO update.

behaviour pass   no grad, hack expert ON (the sampling policy): old log-probs, the pooled
                 deployed-block features routing reads, and (KL term on) the starting model's
                 log-probs
routed update    advantages = reward - group mean over the gathered rewards; per microbatch of
                 live rollouts one forward + backward inside the arm's row control (q, g); the
                 rollout-loss gradients summed over ranks; the arm's router-only loss; clip; AdamW

Under torchrun the forward/backward runs on this rank's rows, everything else on the whole step:
rewards and features are gathered, so advantages, live groups and every per-row result are
global, and summing the ranks' gradients gives exactly one process's gradient.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from evilmoe import distributed as ddp
from evilmoe.config import TrainConfig
from evilmoe.env.types import Grade
from evilmoe.grpo import (
    SequenceBatch,
    clipped_surrogate,
    completion_logprobs,
    group_advantages,
    k3_kl,
    prompt_sets,
    shared_prompt_logprobs,
    shared_token_microbatches,
    shares,
    token_microbatches,
    trained_from,
)
from evilmoe.lora2r import Lora2rAdapter, PooledCapture
from evilmoe.policy import Policy
from evilmoe.records import BehaviourPass, Rollouts, UpdateResult
from evilmoe.routing import Arm, Routing, mean_or_none

WEIGHT_STATS = ("is_weight_mean", "is_capped_frac")  # logged per step with ratio_against=routed
MICROBATCH_STATS = ("clip_frac", "dual_clip_frac", "ratio_mean", "ratio_max", *WEIGHT_STATS)


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


def _pad_to(x: Tensor, width: int) -> Tensor:
    if x.shape[1] == width:
        return x
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))


@contextlib.contextmanager
def _captured(adapter: Lora2rAdapter, mask: Tensor, into: list[PooledCapture]):
    """`adapter.capture_pooled(mask)` for one forward, its holder appended to `into`."""
    with adapter.capture_pooled(mask) as holder:
        into.append(holder)
        yield


class RoutedUpdate:
    """The passes over a step's rollouts for one run: its policy, arm, optimizer and schedule."""

    def __init__(self, config: TrainConfig, policy: Policy, arm: Arm, optimizer: torch.optim.Optimizer, schedule: Any):
        self.config, self.policy, self.arm = config, policy, arm
        self.optimizer, self.schedule = optimizer, schedule

    def behaviour_pass(self, batch: SequenceBatch) -> BehaviourPass:
        """No-grad pass with the hack expert ON (the sampling policy): old log-probs, routing features,
        and (only when the KL term is on) the starting model's log-probs."""
        model, adapter, mb = self.policy.model, self.policy.adapter, self.config.microbatch
        temperature = self.config.temperature
        logps, feats, refs = [], [], []
        with torch.no_grad():
            for start in range(0, len(batch), mb):
                part = batch.rows(slice(start, start + mb)).trimmed()
                # no row control in this pass: rows with the same prompt always share it
                sharing = self.config.share_prompt and shares(sets := prompt_sets(part))
                pooled: list[PooledCapture] = []
                if sharing:  # the completion forward holds every position that pooling reads
                    completion = part.completion_mask.bool()
                    lp = shared_prompt_logprobs(
                        model, part, sets, temperature=temperature, completion_context=lambda m=completion, p=pooled: _captured(adapter, m, p)
                    )
                else:
                    with _captured(adapter, part.aligned()[1], pooled):
                        lp = completion_logprobs(model, part, temperature=temperature)
                logps.append(_pad_to(lp, batch.completion_mask.shape[1]))
                feats.append(pooled[0].pooled())
                if self.config.kl_coef > 0:
                    with adapter.disabled():
                        if sharing:
                            ref = shared_prompt_logprobs(model, part, sets, temperature=temperature)
                        else:
                            ref = completion_logprobs(model, part, temperature=temperature)
                    refs.append(_pad_to(ref, batch.completion_mask.shape[1]))
        return BehaviourPass(torch.cat(logps), torch.cat(feats), torch.cat(refs) if refs else None)

    def ratio_base(self, logp_new: Tensor, sampling_logp: Tensor) -> tuple[Tensor, Tensor | None]:
        """What the PPO ratio divides by, and the per-token loss weights (None = all 1).

        logp_new comes from the routed training forward. "sampling": the sampling policy's log-probs,
        no weights. "routed" (decoupled PPO): the routed forward's own log-probs (logp_new without
        its gradient: one update per batch, so the proximal policy is the current one), the ratio is
        exactly 1, and the truncated importance weight min(p_routed / p_sampling, cap) corrects for
        the rollouts having been sampled with the expert fully on.
        """
        cfg = self.config
        # arms that train the very forward they sampled with (the fixed masks): the routed
        # log-probs are the sampling ones, the weights 1
        if cfg.ratio_against == "sampling" or self.arm.trains_sampling_forward:
            return sampling_logp, None
        routed = logp_new.detach()
        if not cfg.importance_weight_cap:
            return routed, None
        return routed, torch.exp(routed - sampling_logp).clamp(max=cfg.importance_weight_cap)

    def __call__(
        self, step: int, rollouts: Rollouts, grades: list[Grade], behaviour: BehaviourPass, features: Tensor, routing: Routing
    ) -> UpdateResult:
        """Masked forward + backward over the live rollouts, router-only loss, clip, optimizer step.

        rollouts, grades and behaviour hold this rank's rows; features and routing the whole step's
        (global row order). Rewards are gathered, so advantages, live groups and every returned
        per-row tensor are global too; only the forward/backward runs on local rows.
        """
        model, adapter = self.policy.model, self.policy.adapter
        plan = self.plan(step, rollouts, grades, behaviour, features, routing)
        model.train()
        for idx in plan.microbatches:
            part = plan.batch.rows(idx).trimmed()
            q, g = self.control(plan, idx)
            # rows may share a prompt forward only under equal controls: q changes the prompt's
            # values, g its gradient (prompt_sets gives rows whose q carries autograd no set mates)
            sets = prompt_sets(part, q, g) if self.config.share_prompt else None
            if sets is not None and shares(sets):
                logp_new = shared_prompt_logprobs(
                    model, part, sets, temperature=self.config.temperature,
                    prompt_context=lambda rows, q=q, g=g: adapter.row_control(q[rows], g[rows]),
                    completion_context=lambda q=q, g=g: adapter.row_control(q, g),
                )
                # no control needed in the backward: no layer is recomputed (config.validate)
                self.loss(plan, idx, part, logp_new).backward()
                continue
            # backward inside the control: gradient checkpointing re-runs the forward during backward
            with adapter.row_control(q, g):
                logp_new = completion_logprobs(model, part, temperature=self.config.temperature)
                self.loss(plan, idx, part, logp_new).backward()
        model.eval()
        return self.finish(plan)

    # --- the update's phases (RunBatch interleaves several runs' microbatches between them) ---------
    def plan(
        self, step: int, rollouts: Rollouts, grades: list[Grade], behaviour: BehaviourPass, features: Tensor, routing: Routing
    ) -> UpdatePlan:
        """Rewards, advantages, live rows and their microbatches; gradients zeroed."""
        cfg, device = self.config, self.policy.device
        mine = rollouts.rows  # this rank's rows, globally
        rewards = torch.tensor([g.reward for g in grades], dtype=torch.float32, device=device)
        rewards = ddp.all_gather_rows(rewards)
        advantages, live = group_advantages(rewards, cfg.group_size)
        self.optimizer.zero_grad(set_to_none=True)
        live_idx = live[mine].nonzero().squeeze(1)  # local row indices
        return UpdatePlan(
            step=step, batch=rollouts.batch, behaviour=behaviour, features=features, routing=routing, mine=mine,
            rewards=rewards, advantages=advantages, live=live,
            # Dr.GRPO: a constant, not the token count; the global batch's, so summing ranks' gradients
            # gives exactly one process's gradient
            normaliser=float(len(rewards) * cfg.max_new_tokens),
            microbatches=self.microbatches(rollouts.batch, live_idx),
            stats={k: [] for k in MICROBATCH_STATS},
            loss_start=rollouts.loss_start,
        )

    def microbatches(self, batch: SequenceBatch, live_idx: Tensor) -> list[Tensor]:
        """The live rows (local indices) cut into the update's microbatches.

        With share_prompt and a token budget the packing keeps each prompt's rows together and
        counts each prompt once (`shared_token_microbatches`); otherwise as without sharing, so
        consecutive chunks of `microbatch` rows keep whole groups when it is a multiple of group_size.
        """
        cfg = self.config
        mask = batch.attention_mask[live_idx]
        if not (cfg.share_prompt and cfg.microbatch_tokens):
            return token_microbatches(live_idx, mask.sum(dim=1), cfg.microbatch, cfg.microbatch_tokens)
        lp = batch.prompt_width
        return shared_token_microbatches(
            live_idx, prompt_sets(batch.rows(live_idx)), mask[:, :lp].sum(dim=1), mask[:, lp:].sum(dim=1),
            cfg.microbatch, cfg.microbatch_tokens,
        )  # fmt: skip

    def control(self, plan: UpdatePlan, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(q, g) of one microbatch (local row indices) for the adapter's row control."""
        return self.arm.control(plan.routing, plan.features[plan.mine][idx], idx + plan.mine.start)

    def loss(self, plan: UpdatePlan, idx: Tensor, part, logp_new: Tensor) -> Tensor:
        """One microbatch's share of the loss from its routed log-probs; records its statistics."""
        cfg = self.config
        width = part.completion_mask.shape[1]
        mask = trained_from(part.completion_mask, None if plan.loss_start is None else plan.loss_start[idx])
        old, weights = self.ratio_base(logp_new, plan.behaviour.logp_old[idx, :width])
        loss, s = clipped_surrogate(
            logp_new, old, plan.advantages[plan.mine][idx], mask,
            clip_eps=cfg.clip_eps, normaliser=plan.normaliser, dual_clip=cfg.dual_clip, token_weights=weights,
        )
        s.update(_weight_stats(weights, mask, cfg.importance_weight_cap))
        if plan.behaviour.logp_ref is not None:
            kl = k3_kl(logp_new, plan.behaviour.logp_ref[idx, :width], mask, normaliser=plan.normaliser)
            loss = loss + cfg.kl_coef * kl
            plan.kl_total += float(kl.detach())
        for k in plan.stats:
            plan.stats[k].append(s[k])
        return loss

    def finish(self, plan: UpdatePlan) -> UpdateResult:
        """After every microbatch's backward: sum over ranks, router-only loss, clip, optimizer step."""
        cfg, adapter = self.config, self.policy.adapter
        step, features, live = plan.step, plan.features, plan.live
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # Sum the rollout-loss gradients over ranks now, before the router-only terms below: those
        # are computed on data every rank has (the pairs, the gathered features), so each rank adds
        # the same gradient once after the sum instead of it being counted once per rank.
        ddp.all_reduce_grads(params)
        deployed_sq, quarantine_sq = adapter.block_grad_sq_norms()

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
            self.policy.refresh_sampler()
        self.schedule.step()
        total = deployed_sq + quarantine_sq
        # per-microbatch stats of every rank, in one collective
        parts = ddp.all_gather_object((plan.kl_total, plan.stats))
        means: dict[str, Any] = {
            # means over every rank's microbatches (with N ranks the microbatches are cut differently)
            k: mean_or_none([x for p in parts for x in p[1][k] if x is not None]) for k in ("clip_frac", "dual_clip_frac", "ratio_mean", *WEIGHT_STATS)
        }
        return UpdateResult(
            rewards=plan.rewards,
            advantages=plan.advantages,
            live=live,
            w=w_all,
            grad_norm=grad_norm,
            grad_norm_deployed=math.sqrt(deployed_sq),
            grad_norm_quarantine=math.sqrt(quarantine_sq),
            quarantine_update_share=(quarantine_sq / total) if total > 0 else None,
            kl=sum(p[0] for p in parts) if plan.behaviour.logp_ref is not None else None,
            ratio_max=max((x for p in parts for x in p[1]["ratio_max"]), default=None),
            router_stats=router.stats,
            **means,
        )


@dataclass
class UpdatePlan:
    """One update under way: what `RoutedUpdate.plan` computed, and the microbatches' statistics."""

    step: int
    batch: SequenceBatch
    """This rank's rollouts."""
    behaviour: BehaviourPass
    features: Tensor
    routing: Routing
    mine: slice
    """This rank's rows in the step's global row order."""
    rewards: Tensor
    advantages: Tensor
    live: Tensor
    normaliser: float
    microbatches: list[Tensor]
    """Local indices of the live rows, cut into microbatches."""
    stats: dict[str, list]
    kl_total: float = 0.0
    loss_start: Tensor | None = None
    """This rank's rows' first trained completion token (None: all from the first)."""
