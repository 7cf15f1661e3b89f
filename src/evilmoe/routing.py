"""The routing arms: how each arm splits a rollout's update between the deployed and quarantine blocks.

Every kind of arm is one class behind the small `Arm` interface; the registry (evilmoe.arms) maps
each arm name to a class and its options, and `make_arm` builds the one a run names. The trainer
only talks to the interface and never reads an arm's name. Per step it calls, in order:

    begin_step(step)                 re-extract the hack direction if the arm refreshes it
    prepare(step)                    after the behaviour pass, while the grader still runs: work on
                                     the step's adapter state that needs no reward (the learned
                                     router's forwards over the pairs, which its pin loss reads)
    decide(features, step)           the step's routing decision for every rollout (a `Routing`)
    control(routing, features, rows) per microbatch: (q, g) for `Lora2rAdapter.row_control`; the
                                     learned router computes q = w here, with its autograd
    router_loss(step, features, live)  router-only terms (pin loss, load balance), after the
                                     rollout-loss gradients are summed over ranks
    rollout_weights(features)        the router's w of every rollout, for diagnostics only
    step_metrics(...)                the arm's own per-step diagnostics

plus `param_groups()` for the optimizer, `state_dict()`/`load_state_dict()` for checkpoints, and
`trains_sampling_forward` (the training forward is the sampling forward: no importance weight).

Routing reads only the pooled deployed-block features and the hand-authored pairs: grader flags
never enter it (they appear in `step_metrics`, as diagnostics).
"""

from __future__ import annotations

import dataclasses
import importlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from evilmoe import distributed as ddp
from evilmoe.arms import ARM_REGISTRY, ArmSpec
from evilmoe.errors import UserError
from evilmoe.grpo import SequenceBatch, concat_batches
from evilmoe.lora2r import Lora2rAdapter, moe_control, vgrout_control
from evilmoe.router import (
    HackRouter,
    RouteAScoreBuffer,
    auroc,
    haar_direction,
    load_balance_loss,
    pin_loss,
    pooled_features,
    routeA_scores,
    separation_report,
    v_act_from_pooled,
)
from evilmoe.seeding import derive_seed

if TYPE_CHECKING:
    from evilmoe.config import TrainConfig

# derive_seed purposes of the routing randomness (the trainer's other purposes are 1-3, 11, 13)
PIN_SAMPLE_PURPOSE = 4
PLACEBO_DIRECTION_PURPOSE = 7


def mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def diagnostic_auroc(scores: list[float], labels: list[bool]) -> float | None:
    """AUROC of scores as a detector of the True labels; None while the batch lacks either class."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    return auroc(torch.tensor(pos), torch.tensor(neg))


# --------------------------------------------------------------------------------------------
# the records routing passes around
# --------------------------------------------------------------------------------------------
@dataclass
class Routing:
    """One step's routing decision, per rollout in global row order (every rank's rows).

    labels: keep / absorb / route per rollout, for the arms that label (None for the learned router).
    scores: routeA's h . v_act per rollout (None for the other arms).
    quarantine_weight, deployed_grad_scale: (q, g) per rollout where they are fixed for the step;
        None where `Arm.control` computes them per microbatch (the learned router).
    """

    labels: list[str] | None = None
    scores: Tensor | None = None
    quarantine_weight: Tensor | None = None
    deployed_grad_scale: Tensor | None = None


@dataclass
class RouterLoss:
    """An arm's router-only loss for the step (None: nothing to back-propagate) and what to log of it."""

    loss: Tensor | None
    stats: dict[str, float] = dataclasses.field(default_factory=dict)


class PairProbe:
    """The hand-authored (hack, clean) pairs, tokenized once, and the features the arms read from them.

    The hack and clean sides are two batches on the same prompts. `features` runs no-grad forwards
    with whatever adapter controls are set; `direction` reads them from the deployed model.
    """

    def __init__(self, model: nn.Module, adapter: Lora2rAdapter, hack: SequenceBatch, clean: SequenceBatch,
                 *, microbatch: int, device: torch.device):
        self.model, self.adapter = model, adapter
        self.hack, self.clean = hack, clean
        self.microbatch, self.device = microbatch, device
        # both sides as one batch (hack rows, then clean rows), so `features` forwards them together
        self.both = concat_batches([hack, clean])
        self.lengths = self.both.attention_mask.sum(dim=1).cpu()

    def __len__(self) -> int:
        return len(self.hack)

    @property
    def n_modules(self) -> int:
        return self.adapter.n_modules

    @property
    def rank(self) -> int:
        return self.adapter.rank

    def pooled(self, batch: SequenceBatch) -> Tensor:
        """No-grad pooled deployed-block bottleneck activations [N, D] (current adapter state)."""
        return pooled_features(
            self.model, self.adapter, batch.input_ids, batch.attention_mask, batch.full_completion_mask(),
            batch_size=self.microbatch,
        ).to(self.device)

    def features(self, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pooled features of the hack and clean sides of the pairs (all, or the given rows).

        Both sides go through one pass with the rows sorted by length: each microbatch is cut to its
        longest row, so similar lengths together pad least, and the two sides fill microbatches
        together instead of each leaving a part-filled last one. Each row's feature is the same as
        from a pass over its own side (rows do not interact; only the rounding of the batched
        kernels may differ), in fewer and shorter forwards.
        """
        n = len(self)
        pick = torch.arange(n) if rows is None else rows.detach().cpu().long()
        pick = torch.cat([pick, pick + n])
        order = torch.argsort(self.lengths[pick], stable=True)
        sorted_rows = pick[order].to(self.both.input_ids.device)
        pooled = self.pooled(self.both.rows(sorted_rows).trimmed())
        out = torch.empty_like(pooled)
        out[order.to(pooled.device)] = pooled  # back to (hack rows, clean rows) in the order asked
        k = len(pick) // 2
        return out[:k], out[k:]

    def direction(self) -> tuple[Tensor, dict[str, float], Tensor]:
        """v_act from the pairs with the quarantine ablated (forward only): (v_act, separation report,
        the mean pair feature, which the router uses as its center)."""
        with self.adapter.ablate_quarantine():
            hack, clean = self.features()
        v = v_act_from_pooled(hack, clean, self.adapter.n_modules, self.adapter.rank)
        report = separation_report(routeA_scores(hack, v), routeA_scores(clean, v))
        return v, report, torch.cat([hack, clean]).mean(dim=0)


# --------------------------------------------------------------------------------------------
# the interface
# --------------------------------------------------------------------------------------------
class Arm:
    """How one arm routes. The base class holds the hack direction every arm starts from.

    v_act: the arm's direction (the pairs' v_act or a Haar-random one); saved in every checkpoint.
    initial_separation: how well the pairs' v_act separates the pairs at step 0 (logged at step -1
    for every arm, the placebos included: it describes the pairs, not the arm's direction).
    """

    trains_sampling_forward: ClassVar[bool] = False
    """True when the training forward is the sampling forward for every rollout, so the PPO ratio can
    divide by the sampling log-probs with no importance weight (see RoutedUpdate.ratio_base)."""

    def __init__(self, spec: ArmSpec, config: TrainConfig, probe: PairProbe):
        self.spec, self.config, self.probe = spec, config, probe
        self.device = probe.device
        # at init the quarantine is exactly its init, so these features are also the live ones
        v, self.initial_separation, self.initial_pair_mean = probe.direction()
        if spec.direction == "haar":
            seed = derive_seed(config.seed, 0, PLACEBO_DIRECTION_PURPOSE)
            v = haar_direction(probe.n_modules, probe.rank, seed=seed).to(self.device)
        self.v_act: Tensor = v

    @property
    def name(self) -> str:
        return self.spec.name

    # --- the step -------------------------------------------------------------------------------
    def begin_step(self, step: int) -> None:
        """Before the step's rollouts: re-extract v_act when the arm refreshes it and it is time."""
        every = self.config.vact_refresh_every
        if self.spec.refresh_v_act and every and step > 0 and step % every == 0:
            self.v_act, _, _ = self.probe.direction()
            ddp.broadcast_tensors_([self.v_act])  # every rank computed it; rank 0's makes it bit-identical

    def prepare(self, step: int) -> None:
        """Before the step's grades: work that reads only the step's adapter state, so that it runs
        while the grader is still busy. The adapter does not change from here to `router_loss` (the
        optimizer steps after it), so this is exactly the work `router_loss` would do itself."""

    def decide(self, features: Tensor, step: int) -> Routing:
        """The step's decision from the whole step's pooled features [N, D] (global row order)."""
        raise NotImplementedError

    def control(self, routing: Routing, features: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(q, g) of one microbatch: its rows' global indices and their features."""
        assert routing.quarantine_weight is not None and routing.deployed_grad_scale is not None
        return routing.quarantine_weight[rows], routing.deployed_grad_scale[rows]

    def router_loss(self, step: int, features: Tensor, live: Tensor) -> RouterLoss:
        """Router-only terms, computed on data every rank has (pairs, gathered features)."""
        return RouterLoss(None)

    def rollout_weights(self, features: Tensor) -> Tensor:
        """The hack-expert share w of every rollout (CPU float32), NaN for arms without one."""
        return torch.full((len(features),), float("nan"))

    def step_metrics(self, routing: Routing, w: list[float], hacked: list[bool], policy: list[int],
                     router_stats: dict[str, float]) -> dict[str, Any]:
        """The arm's own diagnostics; `hacked` (grader flags) and `policy` (the sampled rows) are used
        here only, never in routing."""
        return {}

    # --- optimizer and checkpoints --------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups of the arm's own parameters (none for most arms). An arm with parameters
        trains them on its router-only loss every step, live groups or not."""
        return []

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return iter(())

    def state_dict(self) -> dict[str, Any]:
        """The arm's checkpoint entries. Every arm writes the same keys (None where it has no such
        state), so checkpoints keep one layout whatever the arm."""
        return {"v_act": self.v_act.cpu(), "router": None, "route_buffer": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.v_act = state["v_act"].to(self.device)


# --------------------------------------------------------------------------------------------
# the three kinds of arm
# --------------------------------------------------------------------------------------------
class FixedArm(Arm):
    """One fixed label for every rollout: keep (the quarantine never trains; the capacity-matched
    control) or absorb (both blocks train on everything)."""

    # keep: the quarantine never trains, so it stays exactly at its init and the routed forward is the
    # sampling one; absorb: the quarantine is fully on, as when sampling
    trains_sampling_forward = True

    def __init__(self, spec: ArmSpec, config: TrainConfig, probe: PairProbe):
        super().__init__(spec, config, probe)
        if spec.label not in ("keep", "absorb"):
            raise ValueError(f"arm {spec.name}: a fixed label must be keep or absorb, got {spec.label!r}")
        self.label = spec.label

    def decide(self, features: Tensor, step: int) -> Routing:
        n = features.shape[0]
        ones, zeros = torch.ones(n, device=self.device), torch.zeros(n, device=self.device)
        return Routing(labels=[self.label] * n, quarantine_weight=ones if self.label == "absorb" else zeros, deployed_grad_scale=ones)


class ScoreGateArm(Arm):
    """vGROUT routeA: score = h . v_act, labelled by the weighted quantile thresholds of a
    run-spanning feature buffer (all absorb until the buffer holds route_warmup rows)."""

    def __init__(self, spec: ArmSpec, config: TrainConfig, probe: PairProbe):
        super().__init__(spec, config, probe)
        self.buffer = RouteAScoreBuffer(
            capacity=config.route_buffer_size, half_life=config.route_half_life, tail_q=config.route_tail_q, warmup=config.route_warmup
        )

    def decide(self, features: Tensor, step: int) -> Routing:
        # the whole step's features: the buffer, its thresholds and the labels are the same on every
        # rank and as in one process; the batch joins the buffer first, so it counts towards them
        self.buffer.add(features, step)
        scores = routeA_scores(features, self.v_act)
        labels = self.buffer.classify(scores, self.v_act, step)
        q, g = vgrout_control(labels)
        return Routing(labels=labels, scores=scores, quarantine_weight=q.to(self.device), deployed_grad_scale=g.to(self.device))

    def step_metrics(self, routing, w, hacked, policy, router_stats):
        assert routing.labels is not None and routing.scores is not None
        m: dict[str, Any] = {f"zone_{zone}": routing.labels.count(zone) / len(routing.labels) for zone in ("keep", "absorb", "route")}
        m["score_auroc"] = diagnostic_auroc(routing.scores.tolist(), hacked)
        return m

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "route_buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["route_buffer"])


class RouterArm(Arm):
    """Evil MoE: the learned router's w per rollout, q = w (with its autograd), g = 1 - w (0 above
    hard_detach_threshold). The router is pinned to the pairs by a BCE loss every step, its center
    tracks the pair features' mean, and an optional load-balance term keeps mean w near a target."""

    def __init__(self, spec: ArmSpec, config: TrainConfig, probe: PairProbe):
        super().__init__(spec, config, probe)
        self.router = HackRouter(self.v_act.clone()).to(self.device)
        self.router.set_center(self.initial_pair_mean)
        self.pin_coef = config.pin_coef if spec.pin else 0.0
        self._pair_features: tuple[int, tuple[Tensor, Tensor]] | None = None  # (step, features) from prepare

    def decide(self, features: Tensor, step: int) -> Routing:
        return Routing()  # w needs autograd: it is computed per microbatch in `control`

    def control(self, routing: Routing, features: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        return moe_control(self.router(features), self.config.hard_detach_threshold)

    def pin_rows(self, step: int) -> Tensor | None:
        """This step's pairs for the pin loss: all of them, or a seeded sample of pin_batch."""
        n, k = len(self.probe), self.config.pin_batch
        if k == 0 or k >= n:
            return None
        chosen = random.Random(derive_seed(self.config.seed, step, PIN_SAMPLE_PURPOSE)).sample(range(n), k)
        return torch.tensor(sorted(chosen), device=self.device)

    def prepare(self, step: int) -> None:
        # the pin loss's pair forwards: the bulk of this arm's cost over a fixed arm's, hidden behind
        # grading where the grader takes longer
        self._pair_features = (step, self.probe.features(self.pin_rows(step)))

    def pair_features(self, step: int) -> tuple[Tensor, Tensor]:
        """The pin pairs' (hack, clean) features of this step: those `prepare` computed, else now."""
        ready, self._pair_features = self._pair_features, None  # used once: never a later step's
        if ready is not None and ready[0] == step:
            return ready[1]
        return self.probe.features(self.pin_rows(step))

    def router_loss(self, step: int, features: Tensor, live: Tensor) -> RouterLoss:
        cfg = self.config
        hack_f, clean_f = self.pair_features(step)
        # the features drift as the deployed block trains: track their mean (EMA) for the cosine
        m = cfg.center_momentum
        self.router.set_center(m * self.router.center + (1 - m) * torch.cat([hack_f, clean_f]).mean(dim=0))
        pin, pin_acc = pin_loss(self.router, hack_f, clean_f)
        loss = self.pin_coef * pin
        if cfg.load_balance_coef > 0 and bool(live.any()):
            loss = loss + cfg.load_balance_coef * load_balance_loss(self.router(features[live]), cfg.load_balance_target)
        return RouterLoss(loss, {"pin_loss": float(pin.detach()), "pin_acc": float(pin_acc)})

    def rollout_weights(self, features: Tensor) -> Tensor:
        with torch.no_grad():  # every rollout's w (also skipped groups), for diagnostics only
            return self.router(features).float().cpu()

    def step_metrics(self, routing, w, hacked, policy, router_stats):
        return {
            "w_hacked": mean_or_none([w[i] for i in range(len(w)) if hacked[i]]),
            "w_clean": mean_or_none([w[i] for i in range(len(w)) if not hacked[i]]),
            "w_auroc": diagnostic_auroc(w, hacked),
            # the same on the policy's own (live) rollouts only: teacher demos are half hacks by
            # construction, so the all-rows numbers mostly say where the demos went
            "w_live_hacked": mean_or_none([w[i] for i in policy if hacked[i]]),
            "w_live_clean": mean_or_none([w[i] for i in policy if not hacked[i]]),
            "pin_loss": router_stats["pin_loss"],
            "pin_acc": router_stats["pin_acc"],
            "router_scale": float(self.router.scale.detach()),
            "router_bias": float(self.router.bias.detach()),
        }

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.router.parameters()), "lr": self.config.router_lr, "name": "router"}]

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((f"router.{n}", p) for n, p in self.router.named_parameters())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "router": self.router.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.router.load_state_dict(state["router"])
        self._pair_features = None  # computed on the adapter state before the load


# --------------------------------------------------------------------------------------------
# building a run's arm
# --------------------------------------------------------------------------------------------
def make_arm(config: TrainConfig, probe: PairProbe) -> Arm:
    """The arm `config.arm` names in the registry, built on the run's pairs."""
    spec = ARM_REGISTRY.get(config.arm)
    if spec is None:
        raise UserError(f"unknown arm {config.arm!r}; choose one of {', '.join(ARM_REGISTRY)}")
    module, _, name = spec.kind.partition(":")
    kind = getattr(importlib.import_module(module), name)
    if not (isinstance(kind, type) and issubclass(kind, Arm)):
        raise TypeError(f"arm {spec.name}: {spec.kind} is not an evilmoe.routing.Arm subclass")
    return kind(spec, config, probe)
