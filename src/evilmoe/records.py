"""The typed records one training step passes from phase to phase.

    Trainer.collect        -> Rollouts        this rank's sampled rollouts, their grading under way
    update.behaviour_pass  -> BehaviourPass   no-grad log-probs and routing features of the rollouts
    Arm.decide             -> Routing         (evilmoe.routing) the per-rollout routing decision
    update.routed_update   -> UpdateResult    rewards, advantages, w, gradient and ratio statistics
    Trainer.gather_step    -> StepRows        the whole step's rows on every rank, for the logs

Per-row tensors and lists are in row order: rollout i of group i // group_size. "Local" records
(Rollouts, BehaviourPass) hold this rank's rows; the others hold every rank's rows in global order.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from evilmoe.env.types import Grade, Problem
from evilmoe.grpo import SequenceBatch


@dataclass
class Rollouts:
    """One step's rollouts on this rank: its contiguous share of the step's groups."""

    problems: list[Problem]
    """One per group (this rank's share of the step's problems)."""
    modes: list[str]
    """The loophole mode of each group's problem."""
    batch: SequenceBatch
    """Prompt + completion tokens, one row per rollout."""
    texts: list[str]
    """Each rollout's completion text (what the grader reads)."""
    sources: list[str]
    """"policy" for a sampled rollout, the demo kind for a teacher demonstration."""
    grading: cf.Future[list[Grade]]
    """The rollouts' grades, computed by CPU workers while the accelerator continues."""
    gen_seconds: float
    """Wall time of the sampling call."""
    row_offset: int
    """Global index of this rank's first row."""
    loss_start: Tensor | None = None
    """Per row, the first completion token the update trains (None: every row from its first token;
    teacher_loss=exploit leaves an attempt hack's own code out, overlong=mask a truncated row whole)."""
    truncated: list[bool] = field(default_factory=list)
    """Per row, whether a sampled completion was cut off at max_new_tokens (demonstrations: False)."""

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def rows(self) -> slice:
        """This rank's rows in the step's global row order."""
        return slice(self.row_offset, self.row_offset + len(self.batch))


@dataclass
class BehaviourPass:
    """The no-grad pass over this rank's rollouts with the hack expert ON (the sampling policy)."""

    logp_old: Tensor
    """[N, T] log-probs of the completion tokens under the sampling policy."""
    features: Tensor
    """[N, D] pooled deployed-block activations: what routing reads."""
    logp_ref: Tensor | None
    """[N, T] log-probs of the starting model (only when the KL term is on)."""


# the update's statistics logged per step, in the metrics row under these names
UPDATE_METRICS = (
    "grad_norm", "grad_norm_deployed", "grad_norm_quarantine", "quarantine_update_share", "kl",
    "clip_frac", "dual_clip_frac", "ratio_mean", "ratio_max", "is_weight_mean", "is_capped_frac",
)


@dataclass
class UpdateResult:
    """What one routed update did, over the whole step (every rank's rows)."""

    rewards: Tensor
    """[N] reward per rollout."""
    advantages: Tensor
    """[N] reward minus its group's mean."""
    live: Tensor
    """[N] bool: the rollout's group had a reward spread and trained."""
    w: Tensor
    """[N] CPU hack-expert share per rollout (NaN for arms without a router)."""
    grad_norm: float
    """Norm of every trained gradient before clipping."""
    grad_norm_deployed: float
    grad_norm_quarantine: float
    quarantine_update_share: float | None
    """quarantine grad norm^2 / total (None when there was no gradient)."""
    kl: float | None
    """Summed k3 KL to the starting model (None when the KL term is off)."""
    clip_frac: float | None
    dual_clip_frac: float | None
    ratio_mean: float | None
    ratio_max: float | None
    is_weight_mean: float | None
    """Mean truncated importance weight over the trained tokens (None without weights)."""
    is_capped_frac: float | None
    """Share of trained tokens whose importance weight sits at the cap."""
    router_stats: dict[str, float] = field(default_factory=dict)
    """The arm's router-only loss statistics (pin loss and accuracy for the learned router)."""

    def metrics(self) -> dict[str, Any]:
        """The logged statistics, by their metric names."""
        return {name: getattr(self, name) for name in UPDATE_METRICS}


@dataclass
class StepRows:
    """The whole step's rollouts on every rank (for the metrics and the rollout log)."""

    problems: list[Problem]
    modes: list[str]
    texts: list[str]
    sources: list[str]
    completion_tokens: list[int]
    grades: list[Grade]
    truncated: list[bool]
