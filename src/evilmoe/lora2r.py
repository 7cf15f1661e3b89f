"""The two-block LoRA ("lora2r"): a deployed block and a deletable quarantine block (hack expert).

Every targeted ``nn.Linear`` (q/k/v/o/gate/up/down by default) gets one LoRA of rank ``2r``:

    A: [2r, d_in]   B: [d_out, 2r]        both trainable, both Gaussian at init
    A0, B0                                frozen copies of that init

    delta(x) = scaling * ( dep(x) + quar(x) )
    dep(x)   = B[:, :r] A[:r] x  - B0[:, :r] A0[:r] x      deployed block, always kept
    quar(x)  = B[:, r:] A[r:] x  - B0[:, r:] A0[r:] x      quarantine block, reset to init at deployment

Subtracting the frozen init makes the delta exactly zero at init while ``A x`` is not zero, so both
A and B get gradient from the first step (plain LoRA's B = 0 would starve A). Because the blocks
only meet in the sum, there are no cross terms: two independent rank-r adapters in one module.
It is computed as ``B (A - A0) x + (B - B0) A0 x`` per block, in one down- and one up-projection for
both blocks (`two_block_delta`): the same value, exact zeros for a block at its init, and the
[..., d_out] output written once.
**Ablation** copies the init back into the quarantine block, which makes ``quar`` exactly zero
(zeroing A/B instead would leave ``-B0 A0 x`` behind).

Per-rollout control (one mechanism for every routing arm), for batch row b:

    y_b = W x_b + scaling * ( dep(x_b) [value kept, gradient * g_b] + q_b * quar(x_b) )

    vGROUT keep   q=0, g=1      only the deployed block trains
    vGROUT route  q=1, g=0      only the quarantine trains (deployed detached)
    vGROUT absorb q=1, g=1      both train
    Evil MoE      q=w, g=1-w    (g=0 where w > threshold for the hard detach)

``q`` may carry autograd (the router's ``w``), so the router's task gradient flows only through the
``q * quar`` term; ``g`` is always detached.

Usage::

    adapter = attach_lora2r(model, Lora2rConfig(rank=16))
    with adapter.capture_pooled(completion_mask) as feats, torch.no_grad():
        model(input_ids, attention_mask=attention_mask)          # e.g. the logp_old forward
    w = router(feats.pooled())
    with adapter.row_control(*moe_control(w, hard_detach_threshold=None)):
        loss = grpo_loss(model(...)); loss.backward()
    with adapter.ablate_quarantine():                              # deployment evaluation
        ...
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from evilmoe.errors import UserError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ROUTE_LABELS = ("keep", "absorb", "route")
FORMAT_TAG = "evilmoe-lora2r-v1"
# a module's saved factors (state_dict keys NAME.A, NAME.B, ...): the trained ones and their init
FACTOR_KEYS = ("A", "B", "A0", "B0")


# -----------------------------------------------------------------------------
# config


@dataclass
class Lora2rConfig:
    """Shape and init of the two-block adapter.

    rank:        r, the rank of EACH block; the LoRA has 2r rows (deployed [:r], quarantine [r:]).
    targets:     last component of the module names to wrap (every nn.Linear whose name ends in one).
    alpha:       output scaling = alpha / rank (the PEFT convention, with r the per-block rank).
    init_std_a:  std of the Gaussian init of A. None -> 1/sqrt(d_in), so each bottleneck unit
                 (A x)_i has about the per-feature rms of x: the routing features read A[:r] x and
                 stay O(1) whatever the width.
    init_std_b:  std of the Gaussian init of B. Small but non-zero (default 1e-3): non-zero so A gets
                 gradient at init (dL/dA = B^T ...), small so an Adam step on A (which moves every
                 element by ~lr regardless of gradient size) changes the output about as much as a
                 step on B, as in plain LoRA. The value of B A x at init never matters (it is
                 subtracted), only these training dynamics.
    seed:        seed of the init (a CPU generator, so the init is the same on every device).
    """

    rank: int = 16
    targets: tuple[str, ...] = DEFAULT_TARGETS
    alpha: float = 32.0
    init_std_a: float | None = None
    init_std_b: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        if self.rank < 1:
            raise UserError(f"lora2r rank must be >= 1, got {self.rank}")
        if not self.targets:
            raise UserError("lora2r targets must name at least one module (e.g. q_proj)")
        if self.alpha <= 0:
            raise UserError(f"lora2r alpha must be > 0, got {self.alpha}")
        if self.init_std_a is not None and self.init_std_a <= 0:
            raise UserError(f"lora2r init_std_a must be > 0 (or None for 1/sqrt(d_in)), got {self.init_std_a}")
        if self.init_std_b <= 0:
            raise UserError(f"lora2r init_std_b must be > 0 (zero would starve A of gradient), got {self.init_std_b}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Lora2rConfig:
        return cls(**json.loads(text))


# -----------------------------------------------------------------------------
# the shared control state every wrapped module reads during its forward


@dataclass
class _Control:
    """What the adapter's context managers set; one object shared by all modules of an adapter."""

    mode: str = "plain"  # "plain" | "scale" | "rows" | "off"
    quarantine_scale: float = 1.0
    row_q: Tensor | None = None  # [B], may carry autograd
    row_g: Tensor | None = None  # [B], detached
    capture: PooledCapture | None = None


class PooledCapture:
    """Holder yielded by ``capture_pooled``: the masked mean of A[:r] x per module and row."""

    def __init__(self, completion_mask: Tensor, module_names: Sequence[str]):
        if completion_mask.dim() != 2:
            raise ValueError(f"completion_mask must be [B, T], got shape {tuple(completion_mask.shape)}")
        self.mask = completion_mask
        self.module_names = list(module_names)
        self.by_module: dict[str, Tensor] = {}
        # the float mask and its row counts, made once per device for every module of the forward
        self._weights: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def record(self, name: str, bottleneck: Tensor) -> None:
        """Pool ``bottleneck`` [B, T, r] over the completion positions of each row."""
        if name in self.by_module:
            raise RuntimeError(
                f"capture_pooled saw a second forward through {name}: use one forward per capture "
                "(one capture_pooled block per minibatch)"
            )
        if bottleneck.shape[:2] != self.mask.shape:
            raise ValueError(
                f"capture_pooled mask has shape {tuple(self.mask.shape)} but {name} saw activations of "
                f"shape {tuple(bottleneck.shape[:2])} (batch, seq): pass the mask of the batch you forward"
            )
        if bottleneck.device not in self._weights:
            mask = self.mask.to(device=bottleneck.device, dtype=torch.float32)
            self._weights[bottleneck.device] = (mask, mask.sum(dim=1, keepdim=True).clamp(min=1.0))  # rows without completion pool to 0
        mask, counts = self._weights[bottleneck.device]
        summed = torch.einsum("btr,bt->br", bottleneck.detach().float(), mask)
        self.by_module[name] = summed / counts

    def pooled(self) -> Tensor:
        """[B, n_modules * r] float32, modules in adapter order, detached."""
        missing = [n for n in self.module_names if n not in self.by_module]
        if missing:
            raise RuntimeError(f"capture_pooled: no forward reached {len(missing)} modules (first: {missing[0]})")
        return torch.cat([self.by_module[n] for n in self.module_names], dim=1)


# -----------------------------------------------------------------------------
# the adapter term, shared by one run's module and the run-batched one


class _GatedUp(torch.autograd.Function):
    """z @ up.mT (the up-projection of both blocks' bottleneck), with the gradient through the
    deployed block's columns (the first `split` of z and of up) scaled by `gate` (detached, one value
    per row, broadcasting over z's rows).

    The same gradients as scaling the gradient of the deployed block's [..., d_out] output by the
    gate, since the gate is constant along d_out: (G * g) @ up = g * (G @ up) and (G * g)^T z =
    G^T (g * z). Taken on the rank-sized side, the backward writes no [..., d_out] tensor of its own
    and the forward is one product instead of one per block plus their sum.
    """

    @staticmethod
    def forward(ctx, z: Tensor, up: Tensor, gate: Tensor, split: int) -> Tensor:
        ctx.save_for_backward(z, up, gate)
        ctx.split = split
        return z @ up.mT

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        z, up, gate = ctx.saved_tensors
        s = ctx.split
        grad_z = grad_up = None
        if ctx.needs_input_grad[0]:
            grad_z = grad @ up
            grad_z[..., :s] *= gate
        if ctx.needs_input_grad[1]:
            gated = torch.cat([z[..., :s] * gate, z[..., s:]], dim=-1)
            grad_up = _factor_grad(grad, gated, up.shape)
        return grad_z, grad_up, None, None


def _factor_grad(grad: Tensor, z: Tensor, shape: torch.Size) -> Tensor:
    """grad.mT @ z summed to `shape` ([..., d_out, c], broadcast against z's leading dims), without
    materialising one [d_out, c] product per row where the factor is shared: the shared dims are
    folded into the matmul's inner dimension first."""
    lead = shape[:-2]
    if all(n == 1 for n in lead):  # one factor for every row (a solo adapter)
        folded = grad.reshape(-1, grad.shape[-1]).mT @ z.reshape(-1, z.shape[-1])
        return folded.view(shape)
    if len(lead) == grad.dim() - 2 and lead[0] == grad.shape[0] and all(n == 1 for n in lead[1:]):  # stacked runs: [K, 1, ..]
        k = lead[0]
        folded = grad.reshape(k, -1, grad.shape[-1]).mT @ z.reshape(k, -1, z.shape[-1])
        return folded.view(shape)
    return (grad.mT @ z).sum_to_size(shape)


def two_block_delta(
    x: Tensor,
    A: Tensor,
    A0: Tensor,
    B: Tensor,
    B0: Tensor,
    rank: int,
    scaling: float,
    *,
    quar_weight: float | Tensor | None = None,
    dep_grad: Tensor | None = None,
    capture: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """scaling * (dep(x) + quar_weight * quar(x)), the gradient of dep scaled by dep_grad.

    x [..., d_in]; A, A0 [..., 2r, d_in] and B, B0 [..., d_out, 2r] (leading dims broadcast with x's:
    several runs' factors stacked); quar_weight a float or a tensor broadcasting over x's rows (may
    carry autograd: the router's w); dep_grad likewise (detached); capture receives A[:r] x.

    Each block b is written as (A_b - A0_b) x -> B_b plus A0_b x -> (B_b - B0_b), which is
    B_b A_b x - B0_b A0_b x exactly in real arithmetic, so the four rank-r products of both blocks are
    one down-projection to 4r and one up-projection back: the [..., d_out] output is written once
    (under a gradient gate too: `_GatedUp`), not once per product and again per subtraction. A block
    whose A and B equal their init (at init, after ablation) contributes exact zeros, since every product has a
    zero factor; so does a block at weight 0. The differences are taken in the parameters' dtype before
    the cast to x's, so a bf16 forward does not cancel two large products of the init.
    """
    r, dt = rank, x.dtype
    dA, A0c = (A - A0).to(dt), A0.to(dt)
    Bc, dB = B.to(dt), (B - B0).to(dt)
    # the columns of h: [(A-A0)_dep x, A0_dep x, (A-A0)_quar x, A0_quar x], each r wide
    down = torch.cat([dA[..., :r, :], A0c[..., :r, :], dA[..., r:, :], A0c[..., r:, :]], dim=-2)
    up = torch.cat([Bc[..., :r], dB[..., :r], Bc[..., r:], dB[..., r:]], dim=-1)
    h = x @ down.mT
    if capture is not None:
        capture(h[..., :r] + h[..., r : 2 * r])  # A_dep x, the router's features
    # the quarantine weight multiplies the rank-4r bottleneck, not the [..., d_out] output: same value,
    # but autograd then keeps only small tensors for the router's gradient
    if quar_weight is None:
        z = h * scaling
    else:
        z = torch.cat([h[..., : 2 * r] * scaling, h[..., 2 * r :] * (quar_weight * scaling)], dim=-1)
    if dep_grad is None:
        return z @ up.mT
    return _GatedUp.apply(z, up, dep_grad, 2 * r)  # value z @ up.mT; the deployed block's gradient * dep_grad


def split_factors(state: dict[str, Tensor], rank: int, what: str = "the adapter state") -> dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """name -> (A, B, A0, B0) of a lora2r state dict (keys NAME.A, NAME.B, NAME.A0, NAME.B0), in the
    dict's order. Checked (UserError naming `what`): every module has all four factors, shaped for
    `rank` per block, and nothing else is in the dict."""
    modules = {}
    for name in dict.fromkeys(key.rpartition(".")[0] for key in state):
        missing = [k for k in FACTOR_KEYS if f"{name}.{k}" not in state]
        if missing:
            raise UserError(f"{what} lacks {', '.join(missing)} of {name}")
        A, B, A0, B0 = (state[f"{name}.{k}"] for k in FACTOR_KEYS)
        if A.dim() != 2 or B.dim() != 2 or A.shape[0] != 2 * rank or B.shape[1] != 2 * rank or A0.shape != A.shape or B0.shape != B.shape:
            raise UserError(
                f"{what}'s factors of {name} (A {tuple(A.shape)}, B {tuple(B.shape)}, A0 {tuple(A0.shape)}, "
                f"B0 {tuple(B0.shape)}) do not fit its rank {rank}"
            )
        modules[name] = (A, B, A0, B0)
    if len(modules) * len(FACTOR_KEYS) != len(state):
        raise UserError(f"{what} holds keys other than {'/'.join(FACTOR_KEYS)} per module")
    return modules


@torch.no_grad()
def factor_delta(A: Tensor, B: Tensor, A0: Tensor, B0: Tensor, rank: int, scaling: float, scale: float = 1.0) -> Tensor:
    """One module's scaling * (dep + scale * quar) as a [d_out, d_in] float32 matrix, from its factors.

    The one place this arithmetic lives: `Lora2rAdapter.merged_delta` and the warm start (which keeps
    only the factors and rebuilds its delta when merging) both call it, so a delta rebuilt from saved
    factors on the same device is bit for bit the one the live adapter gives.
    """
    r = rank
    A, B, A0, B0 = (t.float() for t in (A, B, A0, B0))
    dA, dB = A - A0, B - B0  # as in two_block_delta: exact zeros for a block at its init
    dep = B[:, :r] @ dA[:r] + dB[:, :r] @ A0[:r]
    quar = B[:, r:] @ dA[r:] + dB[:, r:] @ A0[r:]
    return scaling * (dep + scale * quar)


# -----------------------------------------------------------------------------
# one wrapped Linear


class Lora2rLinear(nn.Module):
    """A frozen ``nn.Linear`` plus the two-block adapter. See the module docstring for the math.

    Parameters are kept in float32 (float64 if the base is float64) for the optimizer; the forward
    casts them to the input's dtype, so bf16 models compute the adapter in bf16.
    """

    def __init__(self, base: nn.Linear, rank: int, scaling: float, A_init: Tensor, B_init: Tensor,
                 control: _Control, name: str):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = scaling
        self.name = name
        self._control = control  # plain attribute: shared, not a submodule
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(A_init.clone())
        self.B = nn.Parameter(B_init.clone())
        self.register_buffer("A0", A_init.clone())
        self.register_buffer("B0", B_init.clone())

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: Tensor) -> Tensor:
        delta = self.delta(x)
        return self.base(x) if delta is None else self.base(x) + delta

    def delta(self, x: Tensor) -> Tensor | None:
        """The adapter's term scaling * (dep + quar) under the current control (None when "off")."""
        ctl = self._control
        if ctl.mode == "off":  # the starting model (e.g. reference log-probs for the KL term)
            return None
        quar_weight = dep_grad = None
        if ctl.mode == "scale":
            quar_weight = ctl.quarantine_scale
        elif ctl.mode == "rows":
            quar_weight, dep_grad = self._row_view(ctl.row_q, x), self._row_view(ctl.row_g, x)
        capture = None if ctl.capture is None else (lambda feats: ctl.capture.record(self.name, feats))
        return two_block_delta(
            x, self.A, self.A0, self.B, self.B0, self.rank, self.scaling, quar_weight=quar_weight, dep_grad=dep_grad, capture=capture
        )

    def _row_view(self, per_row: Tensor, x: Tensor) -> Tensor:
        """[B] -> [B, 1, ..., 1] in x's dtype/device, checking the batch dimension matches."""
        if x.dim() < 2 or x.shape[0] != per_row.shape[0]:
            raise RuntimeError(
                f"row_control was given {per_row.shape[0]} rows but {self.name} got input of shape "
                f"{tuple(x.shape)}: the batch dimension must come first and match"
            )
        return per_row.to(device=x.device, dtype=x.dtype).view((-1,) + (1,) * (x.dim() - 1))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank=2x{self.rank}, scaling={self.scaling:g}"


# -----------------------------------------------------------------------------
# the adapter: attach, control, ablate, capture, save/load


class Lora2rAdapter:
    """All Lora2rLinear modules of one model, in model order, and the controls over them."""

    def __init__(self, model: nn.Module, config: Lora2rConfig, modules: dict[str, Lora2rLinear], control: _Control):
        self.model = model
        self.config = config
        self.modules = modules  # ordered: name -> Lora2rLinear
        self._control = control

    # -- shape ---------------------------------------------------------------
    @property
    def n_modules(self) -> int:
        return len(self.modules)

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def feature_dim(self) -> int:
        """Length of the routing feature: n_modules * rank."""
        return self.n_modules * self.rank

    def parameters(self) -> list[nn.Parameter]:
        """A and B of every module (what the optimizer trains), in adapter order."""
        return [p for m in self.modules.values() for p in (m.A, m.B)]

    # -- diagnostics: where the update energy goes ---------------------------
    def block_grad_sq_norms(self) -> tuple[float, float]:
        """(deployed, quarantine) squared L2 norm of the current .grad, summed over modules."""
        r = self.rank
        dep = quar = 0.0
        for m in self.modules.values():
            for grad, rows in ((m.A.grad, True), (m.B.grad, False)):
                if grad is None:
                    continue
                g = grad.detach().float()
                d, q = (g[:r], g[r:]) if rows else (g[:, :r], g[:, r:])
                dep += float(d.square().sum())
                quar += float(q.square().sum())
        return dep, quar

    def quarantine_at_init(self) -> bool:
        """True when every module's quarantine block holds exactly its init values: deleting the hack
        expert (or scaling it) then changes no weight, so the deployed model is the trained one, bit
        for bit (the `none` arm never trains that block)."""
        r = self.rank
        with torch.no_grad():
            return all(torch.equal(m.A[r:], m.A0[r:]) and torch.equal(m.B[:, r:], m.B0[:, r:]) for m in self.modules.values())

    def block_delta_sq_norms(self) -> tuple[float, float]:
        """(deployed, quarantine) squared distance of A and B from their init: how far each block moved."""
        r = self.rank
        dep = quar = 0.0
        with torch.no_grad():
            for m in self.modules.values():
                dA, dB = (m.A - m.A0).float(), (m.B - m.B0).float()
                dep += float(dA[:r].square().sum() + dB[:, :r].square().sum())
                quar += float(dA[r:].square().sum() + dB[:, r:].square().sum())
        return dep, quar

    # -- controls ------------------------------------------------------------
    @contextlib.contextmanager
    def _set_control(self, **fields) -> Iterator[None]:
        ctl = self._control
        if ctl.mode != "plain":
            raise RuntimeError(f"a lora2r control ({ctl.mode!r}) is already active; controls do not nest")
        for k, v in fields.items():
            setattr(ctl, k, v)
        try:
            yield
        finally:
            ctl.mode, ctl.quarantine_scale, ctl.row_q, ctl.row_g = "plain", 1.0, None, None

    def row_control(self, quarantine_weight: Tensor, deployed_grad_scale: Tensor):
        """Context manager: per batch row b, y = W x + dep [grad * g_b] + q_b * quar.

        quarantine_weight (q) [B] may carry autograd (the router's w); deployed_grad_scale (g) [B] is
        detached here. Build them with ``vgrout_control`` or ``moe_control``.
        """
        q, g = quarantine_weight, deployed_grad_scale
        if q.dim() != 1 or g.dim() != 1 or q.shape != g.shape:
            raise ValueError(f"row_control wants two [B] tensors, got {tuple(q.shape)} and {tuple(g.shape)}")
        return self._set_control(mode="rows", row_q=q, row_g=g.detach())

    def quarantine_scale(self, s: float):
        """Context manager: the quarantine output times s for every row (1 = as trained, 0 = off)."""
        return self._set_control(mode="scale", quarantine_scale=float(s))

    def disabled(self):
        """Context manager: both blocks off, the model is exactly its base (the KL reference policy)."""
        return self._set_control(mode="off")

    @contextlib.contextmanager
    def ablate_quarantine(self) -> Iterator[None]:
        """Deployment: copy the init back into the quarantine block; restore the trained values on exit."""
        r = self.rank
        saved = []
        with torch.no_grad():
            for m in self.modules.values():
                saved.append((m.A[r:].clone(), m.B[:, r:].clone()))
                m.A[r:].copy_(m.A0[r:])
                m.B[:, r:].copy_(m.B0[:, r:])
        try:
            yield
        finally:
            with torch.no_grad():
                for m, (a, b) in zip(self.modules.values(), saved):
                    m.A[r:].copy_(a)
                    m.B[:, r:].copy_(b)

    @contextlib.contextmanager
    def capture_pooled(self, completion_mask: Tensor) -> Iterator[PooledCapture]:
        """Record, per module, the masked mean over completion positions of A[:r] x (one forward).

        Yields a holder; after the forward ``holder.pooled()`` is [B, feature_dim] float32, detached.
        """
        if self._control.capture is not None:
            raise RuntimeError("capture_pooled is already active; captures do not nest")
        holder = PooledCapture(completion_mask, list(self.modules))
        self._control.capture = holder
        try:
            yield holder
        finally:
            self._control.capture = None

    # -- folding, for the fast generation path -------------------------------
    def merged_delta(self, scale: float = 1.0) -> dict[str, Tensor]:
        """name -> scaling * (B A - B0 A0) as a [d_out, d_in] float32 matrix, quarantine block times scale.

        Adding it to a copy of each base weight reproduces ``quarantine_scale(scale)`` without paying
        for the adapter at every decoded token.
        """
        return {name: factor_delta(m.A, m.B, m.A0, m.B0, self.rank, m.scaling, scale) for name, m in self.modules.items()}

    # -- state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """name.{A,B,A0,B0} for every module (the trained state plus the init it is measured from)."""
        out = {}
        for name, m in self.modules.items():
            for key in FACTOR_KEYS:
                out[f"{name}.{key}"] = getattr(m, key).detach().clone()
        return out

    def deployed_state(self) -> dict[str, Tensor]:
        """state_dict() with the quarantine block reset to init: exactly what deployment keeps."""
        r, out = self.rank, self.state_dict()
        for name in self.modules:
            out[f"{name}.A"][r:] = out[f"{name}.A0"][r:]
            out[f"{name}.B"][:, r:] = out[f"{name}.B0"][:, r:]
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy A, B, A0, B0 of every module from ``state`` (keys as in state_dict)."""
        expected = set(self.state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise UserError(
                f"adapter state does not match this model: {len(missing)} missing keys "
                f"(e.g. {sorted(missing)[:1]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:1]})"
            )
        with torch.no_grad():
            for name, m in self.modules.items():
                for key in FACTOR_KEYS:
                    dst, src = getattr(m, key), state[f"{name}.{key}"]
                    if dst.shape != src.shape:
                        raise UserError(f"adapter tensor {name}.{key} has shape {tuple(src.shape)}, model wants {tuple(dst.shape)}")
                    dst.copy_(src)

    def save(self, path: str | Path, extra_config: dict | None = None, router: nn.Module | None = None) -> None:
        """Adapter (+ router, keys prefixed "router.") as safetensors; configs in the file's metadata."""
        from safetensors.torch import save_file

        tensors = {f"adapter.{k}": v.contiguous().cpu() for k, v in self.state_dict().items()}
        if router is not None:
            tensors.update({f"router.{k}": v.detach().contiguous().cpu() for k, v in router.state_dict().items()})
        metadata = {
            "format": FORMAT_TAG,
            "lora2r_config": self.config.to_json(),
            "module_names": json.dumps(list(self.modules)),
            "extra_config": json.dumps(extra_config or {}, sort_keys=True),
            "has_router": json.dumps(router is not None),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)  # atomic: a crash mid-save never leaves a half-written checkpoint

    def load(self, path: str | Path, router: nn.Module | None = None) -> dict:
        """Load a file written by ``save`` into this adapter (and router); returns its extra_config."""
        from safetensors.torch import load_file

        config, extra, names, has_router = read_lora2r_metadata(path)
        if config != self.config:
            raise UserError(f"{path}: saved lora2r config {config} differs from this adapter's {self.config}")
        if names != list(self.modules):
            raise UserError(f"{path}: saved adapter wraps different modules than this model ({len(names)} vs {self.n_modules})")
        tensors = load_file(str(path))
        self.load_state_dict({k[len("adapter."):]: v for k, v in tensors.items() if k.startswith("adapter.")})
        if router is not None:
            if not has_router:
                raise UserError(f"{path} holds no router state, but a router was passed to load it into")
            router.load_state_dict({k[len("router."):]: v for k, v in tensors.items() if k.startswith("router.")})
        return extra


def read_lora2r_metadata(path: str | Path) -> tuple[Lora2rConfig, dict, list[str], bool]:
    """(config, extra_config, module names, has_router) of a saved adapter file, without loading tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"adapter file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT_TAG:
        raise UserError(f"{path} is not an evilmoe lora2r file (format {meta.get('format')!r}, want {FORMAT_TAG!r})")
    return (
        Lora2rConfig.from_json(meta["lora2r_config"]),
        json.loads(meta["extra_config"]),
        json.loads(meta["module_names"]),
        json.loads(meta["has_router"]),
    )


# -----------------------------------------------------------------------------
# attaching


def attach_lora2r(model: nn.Module, config: Lora2rConfig) -> Lora2rAdapter:
    """Wrap every targeted nn.Linear of ``model`` in place; freeze all model parameters but A and B.

    Module names stay addressable: ``adapter.modules["model.layers.0.self_attn.q_proj"]``.
    Raises UserError if a target name matches no Linear (a typo would otherwise train nothing there).
    """
    if any(isinstance(m, Lora2rLinear) for m in model.modules()):
        raise RuntimeError("this model already has a lora2r adapter attached")
    found = targeted_linears(model, config)

    for p in model.parameters():
        p.requires_grad_(False)
    adapter = build_lora2r(model, config, found)
    for name, wrapped in adapter.modules.items():
        replace_module(model, name, wrapped)
    return adapter


def targeted_linears(model: nn.Module, config: Lora2rConfig) -> list[tuple[str, nn.Linear]]:
    """(name, nn.Linear) of every module the config targets, in model order; UserError on a target
    that matches nothing (a typo would otherwise train nothing there)."""
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in config.targets]
    hit = {name.rsplit(".", 1)[-1] for name, _ in found}
    unmatched = [t for t in config.targets if t not in hit]
    if unmatched:
        raise UserError(f"lora2r targets {unmatched} match no nn.Linear in this model; check the target names")
    return found


def build_lora2r(model: nn.Module, config: Lora2rConfig, found: list[tuple[str, nn.Linear]]) -> Lora2rAdapter:
    """A two-block adapter over the given Linears (seeded init), not yet placed in the model."""
    gen = torch.Generator().manual_seed(config.seed)
    control = _Control()
    modules: dict[str, Lora2rLinear] = {}
    for name, linear in found:
        w = linear.weight
        dtype = torch.promote_types(w.dtype, torch.float32)
        d_in, d_out, two_r = linear.in_features, linear.out_features, 2 * config.rank
        std_a = config.init_std_a if config.init_std_a is not None else 1.0 / math.sqrt(d_in)
        A = (torch.randn(two_r, d_in, generator=gen, dtype=torch.float64) * std_a).to(dtype)
        B = (torch.randn(d_out, two_r, generator=gen, dtype=torch.float64) * config.init_std_b).to(dtype)
        modules[name] = Lora2rLinear(linear, config.rank, config.scaling, A.to(w.device), B.to(w.device), control, name)
    return Lora2rAdapter(model, config, modules, control)


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


# -----------------------------------------------------------------------------
# building per-row controls for the arms


def vgrout_control(labels: Sequence[str]) -> tuple[Tensor, Tensor]:
    """(q, g) for vGROUT labels: keep = (0, 1), absorb = (1, 1), route = (1, 0). float32 CPU tensors."""
    table = {"keep": (0.0, 1.0), "absorb": (1.0, 1.0), "route": (1.0, 0.0)}
    bad = [lab for lab in labels if lab not in table]
    if bad:
        raise ValueError(f"unknown vGROUT labels {sorted(set(bad))}; use {ROUTE_LABELS}")
    q = torch.tensor([table[lab][0] for lab in labels], dtype=torch.float32)
    g = torch.tensor([table[lab][1] for lab in labels], dtype=torch.float32)
    return q, g


def moe_control(w: Tensor, hard_detach_threshold: float | None = None) -> tuple[Tensor, Tensor]:
    """(q, g) for Evil MoE: q = w (keeps the router's autograd), g = 1 - w, or 0 where w > threshold."""
    g = (1.0 - w).detach()
    if hard_detach_threshold is not None:
        g = torch.where(w.detach() > hard_detach_threshold, torch.zeros_like(g), g)
    return w, g
