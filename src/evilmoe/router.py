"""The hack direction, the Evil MoE router and its pin loss, and the vGROUT routeA gate.

Every routing decision reads the same feature: per rollout, the masked mean over completion tokens
of the deployed-block bottleneck ``A[:r] x`` of every adapted module, concatenated in adapter order
(``Lora2rAdapter.capture_pooled``): a vector of length D = n_modules * r.

    v_act     per module, the unit-normalised mean of (hack - clean) over the hand-authored pairs
    router    w = sigmoid(scale * cos(u, h - center) + bias), u initialised to v_act   (Evil MoE)
    pin loss  BCE pushing w -> 1 on the pairs' hack sides and w -> 0 on their clean sides
    routeA    score = h . v_act; recency-weighted quantile thresholds of a run-spanning buffer
              split rollouts into keep / absorb / route                                 (vGROUT)

The pair sides are the only labels that ever enter routing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evilmoe.grpo import right_aligned
from evilmoe.lora2r import Lora2rAdapter

# -----------------------------------------------------------------------------
# features and the hack direction


def pooled_features(model: nn.Module, adapter: Lora2rAdapter, input_ids: Tensor, attention_mask: Tensor,
                    completion_mask: Tensor, batch_size: int) -> Tensor:
    """[B, D] float32 routing features: no-grad forwards in minibatches, each inside capture_pooled.

    Runs with whatever controls the caller set (wrap in ``adapter.ablate_quarantine()`` to read the
    features of the deployed model, as v_act re-extraction does).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not (input_ids.shape == attention_mask.shape == completion_mask.shape):
        raise ValueError("input_ids, attention_mask and completion_mask must all be [B, T] of one shape")
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, input_ids.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            ids, pooled_at = right_aligned(
                input_ids[sl].to(device), attention_mask[sl].to(device), completion_mask[sl].to(device).bool()
            )
            with adapter.capture_pooled(pooled_at) as feats:
                # logits_to_keep=1: only the bottleneck activations matter, never build full logits
                model(input_ids=ids, logits_to_keep=1, use_cache=False)
            out.append(feats.pooled().cpu())
    return torch.cat(out, dim=0)


def _per_module_unit(vec: Tensor, n_modules: int, rank: int, what: str) -> Tensor:
    blocks = vec.float().reshape(n_modules, rank)
    norms = blocks.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        bad = int((norms.squeeze(1) == 0).nonzero()[0])
        raise ValueError(f"{what}: module {bad} has a zero vector, cannot unit-normalise it")
    return (blocks / norms).reshape(-1)


def v_act_from_pooled(pooled_hack: Tensor, pooled_clean: Tensor, n_modules: int, rank: int) -> Tensor:
    """[D] hack direction: per module, the unit-normalised mean over pairs of (hack - clean)."""
    if pooled_hack.shape != pooled_clean.shape or pooled_hack.dim() != 2:
        raise ValueError(f"want two [P, D] tensors of one shape, got {tuple(pooled_hack.shape)} and {tuple(pooled_clean.shape)}")
    if pooled_hack.shape[1] != n_modules * rank:
        raise ValueError(f"feature dim {pooled_hack.shape[1]} != n_modules * rank = {n_modules * rank}")
    mean_diff = (pooled_hack.float() - pooled_clean.float()).mean(dim=0)
    return _per_module_unit(mean_diff, n_modules, rank, "v_act")


def haar_direction(n_modules: int, rank: int, seed: int) -> Tensor:
    """[D] seeded Haar-random direction with the same per-module unit structure as v_act (placebos)."""
    gen = torch.Generator().manual_seed(seed)
    return _per_module_unit(torch.randn(n_modules * rank, generator=gen), n_modules, rank, "haar_direction")


# -----------------------------------------------------------------------------
# separation diagnostics (no sklearn)


def auroc(scores_pos: Tensor, scores_neg: Tensor) -> float:
    """P(score of a random positive > that of a random negative), ties counted 1/2 (Mann-Whitney U)."""
    pos = np.asarray(scores_pos.detach().cpu().double().reshape(-1))
    neg = np.asarray(scores_neg.detach().cpu().double().reshape(-1))
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auroc needs at least one positive and one negative score")
    both = np.concatenate([pos, neg])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    i = 0
    while i < len(both):  # mid-ranks for ties (1-based)
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def separation_report(scores_hack: Tensor, scores_clean: Tensor) -> dict[str, float]:
    """paired_accuracy (share of pairs with hack score > clean score, strictly) and auroc over all sides."""
    if scores_hack.shape != scores_clean.shape or scores_hack.dim() != 1:
        raise ValueError(f"want two [P] score tensors, got {tuple(scores_hack.shape)} and {tuple(scores_clean.shape)}")
    paired = float((scores_hack > scores_clean).float().mean())
    return {"paired_accuracy": paired, "auroc": auroc(scores_hack, scores_clean), "n_pairs": int(scores_hack.numel())}


# -----------------------------------------------------------------------------
# the Evil MoE router


class HackRouter(nn.Module):
    """Rank-1 cosine router for two experts: w = sigmoid(scale * cos(u, h - center) + bias).

    With two experts a softmax router is exactly one direction through a sigmoid, so this is the full
    router, not a simplification. ``u`` starts at the given direction (v_act, or a Haar direction for
    the placebo); it is a free parameter after that (the cosine ignores its length).

    scale starts at ``init_scale`` (default 8): cos(v_act, h) on pair features is typically a few
    tenths, so 8 turns it into logits of a few units — w starts informative but not saturated, and
    the pin loss can still move it. It is learned in log space (as CLIP's logit scale), so one
    learning rate moves it by a factor per step whatever its size, and clamped to ``max_scale``
    (100) so a runaway pin cannot saturate w into a step function with no gradient.
    bias starts at 0, i.e. w = 0.5 where the cosine is 0.

    center: cosine from the raw feature would be dominated by the mean activation that every rollout
    shares (all h point roughly the same way). ``set_center`` subtracts a fixed per-feature vector,
    e.g. the mean of all pair-side features, so the cosine measures the hack-vs-clean offset. It is a
    buffer (saved, not trained); zeros until set.

    The router is its own parameter group: train ``router.parameters()`` with its own learning rate.
    """

    def __init__(self, direction: Tensor, init_scale: float = 8.0, init_bias: float = 0.0, max_scale: float = 100.0):
        super().__init__()
        if direction.dim() != 1 or direction.norm() == 0:
            raise ValueError("router direction must be a non-zero [D] vector")
        if not 0 < init_scale <= max_scale:
            raise ValueError(f"init_scale must be in (0, max_scale={max_scale}], got {init_scale}")
        self.max_scale = float(max_scale)
        self.u = nn.Parameter(direction.detach().float().clone())
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.register_buffer("center", torch.zeros_like(self.u))

    @property
    def feature_dim(self) -> int:
        return self.u.numel()

    @property
    def scale(self) -> Tensor:
        """The cosine's multiplier: exp(log_scale), at most max_scale."""
        return self.log_scale.exp().clamp(max=self.max_scale)

    def set_center(self, center: Tensor) -> None:
        """Subtract ``center`` [D] from every feature before the cosine."""
        if center.shape != self.center.shape:
            raise ValueError(f"center must be [{self.feature_dim}], got {tuple(center.shape)}")
        with torch.no_grad():
            self.center.copy_(center.detach().float())

    def cosine(self, pooled: Tensor) -> Tensor:
        """[B] cos(u, h - center)."""
        h = pooled.to(self.u.device, torch.float32) - self.center
        return F.cosine_similarity(h, self.u.unsqueeze(0), dim=1, eps=1e-8)

    def logits(self, pooled: Tensor) -> Tensor:
        """[B] pre-sigmoid router score."""
        if pooled.dim() != 2 or pooled.shape[1] != self.feature_dim:
            raise ValueError(f"router wants [B, {self.feature_dim}] features, got {tuple(pooled.shape)}")
        return self.scale * self.cosine(pooled) + self.bias

    def forward(self, pooled: Tensor) -> Tensor:
        """[B] w in (0, 1): how much of each rollout goes to the hack expert."""
        return torch.sigmoid(self.logits(pooled))


def pin_loss(router: HackRouter, pooled_hack: Tensor, pooled_clean: Tensor) -> tuple[Tensor, float]:
    """(BCE loss, accuracy): w -> 1 on hack sides, w -> 0 on clean sides, averaged over all 2P sides.

    accuracy = share of sides on the right side of w = 0.5 (logit 0). BCE is taken on the logits for
    numerical stability when w saturates.
    """
    logits = router.logits(torch.cat([pooled_hack, pooled_clean], dim=0))
    target = torch.cat([torch.ones(len(pooled_hack)), torch.zeros(len(pooled_clean))]).to(logits)
    loss = F.binary_cross_entropy_with_logits(logits, target)
    accuracy = float(((logits.detach() > 0).float() == target).float().mean())
    return loss, accuracy


def load_balance_loss(w: Tensor, target: float) -> Tensor:
    """(mean(w) - target)^2: keeps the batch's average hack-expert share near ``target``.

    A plain MoE balances load so no expert starves; here the "right" share is the hack rate, which is
    unknown, so this is optional and weak: it only stops the router collapsing to all-0 or all-1.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"load-balance target must be in [0, 1], got {target}")
    return (w.mean() - target) ** 2


# -----------------------------------------------------------------------------
# vGROUT routeA: fixed-vector gate with buffer quantile thresholds


def routeA_scores(pooled: Tensor, v_act: Tensor) -> Tensor:
    """[B] routeA score: pooled features dotted with the hack direction."""
    return pooled.float() @ v_act.to(pooled.device, torch.float32)


def weighted_quantile(values: Tensor, weights: Tensor, q: float) -> float:
    """Smallest value whose cumulative weight share reaches q (inverted CDF; uniform weights give
    numpy's ``method="inverted_cdf"``)."""
    order = torch.argsort(values.double())
    v, w = values.double()[order], weights.double()[order]
    cum = torch.cumsum(w, 0) / w.sum()
    # the small tolerance keeps exact shares like 20/100 from missing by a rounding error
    idx = int(torch.searchsorted(cum, torch.tensor([q - 1e-12], dtype=torch.float64))[0])
    return float(v[min(idx, len(v) - 1)])


def classify_scores(scores: Tensor, thresholds: tuple[float, float] | None) -> list[str]:
    """keep (score <= low), route (score > high), absorb (between); all absorb when thresholds is None."""
    if thresholds is None:
        return ["absorb"] * len(scores)
    low, high = thresholds
    return ["keep" if s <= low else "route" if s > high else "absorb" for s in scores.tolist()]


class RouteAScoreBuffer:
    """Run-spanning buffer of pooled features for routeA's thresholds.

    Stores features (not scores), so when v_act is re-extracted every stored rollout is simply
    re-scored against the new direction: no flush. Bounded: the oldest rows fall out past capacity.
    Recency weight of a row added at step s, read at step t: 0.5 ** ((t - s) / half_life) (uniform
    when half_life is None). Thresholds are the weighted tail_q and 1 - tail_q quantiles; until the
    buffer holds ``warmup`` rows there are none and every rollout absorbs.

    Typical step: ``buf.add(pooled, step); labels = buf.classify(routeA_scores(pooled, v), v, step)``.
    """

    def __init__(self, capacity: int, tail_q: float, warmup: int, half_life: float | None = None):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0.0 < tail_q < 0.5:
            raise ValueError(f"route tail quantile must be in (0, 0.5), got {tail_q}")
        if warmup < 0 or warmup > capacity:
            raise ValueError(f"warmup must be in [0, capacity={capacity}], got {warmup}")
        if half_life is not None and half_life <= 0:
            raise ValueError(f"half_life must be > 0 (or None for uniform weights), got {half_life}")
        self.capacity, self.tail_q, self.warmup, self.half_life = capacity, tail_q, warmup, half_life
        self.features: Tensor | None = None  # [N, D] float32 CPU
        self.steps = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, pooled: Tensor, step: int) -> None:
        """Append a batch of features seen at ``step``; drop the oldest beyond capacity."""
        pooled = pooled.detach().float().cpu()
        if self.features is not None and pooled.shape[1] != self.features.shape[1]:
            raise ValueError(f"feature dim {pooled.shape[1]} != buffer's {self.features.shape[1]}")
        self.features = pooled if self.features is None else torch.cat([self.features, pooled])
        self.steps = torch.cat([self.steps, torch.full((len(pooled),), int(step), dtype=torch.long)])
        self.features, self.steps = self.features[-self.capacity:], self.steps[-self.capacity:]

    def weights(self, step: int) -> Tensor:
        if self.half_life is None:
            return torch.ones(len(self))
        age = (step - self.steps).clamp(min=0).double()
        return torch.pow(0.5, age / self.half_life)

    def thresholds(self, v_act: Tensor, step: int) -> tuple[float, float] | None:
        """(low, high) over the buffer re-scored against v_act; None during warm-up."""
        if len(self) == 0 or len(self) < max(self.warmup, 1):
            return None
        scores = routeA_scores(self.features, v_act.cpu())
        w = self.weights(step)
        return weighted_quantile(scores, w, self.tail_q), weighted_quantile(scores, w, 1.0 - self.tail_q)

    def classify(self, scores: Tensor, v_act: Tensor, step: int) -> list[str]:
        """Labels in {"keep", "absorb", "route"} for ``scores`` against the current thresholds."""
        return classify_scores(scores, self.thresholds(v_act, step))

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity, "tail_q": self.tail_q, "warmup": self.warmup, "half_life": self.half_life,
            "features": None if self.features is None else self.features.clone(), "steps": self.steps.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("capacity", "tail_q", "warmup", "half_life"):
            if state[key] != getattr(self, key):
                raise ValueError(f"routeA buffer {key} was {state[key]} when saved, is {getattr(self, key)} now")
        self.features = None if state["features"] is None else state["features"].clone()
        self.steps = state["steps"].clone()


def label_shares(labels: Sequence[str]) -> dict[str, float]:
    """Share of each routeA label in a batch, for logging."""
    n = max(len(labels), 1)
    return {lab: sum(1 for x in labels if x == lab) / n for lab in ("keep", "absorb", "route")}

