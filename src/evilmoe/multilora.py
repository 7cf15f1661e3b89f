"""Several runs' two-block adapters on one shared, frozen model (run-batched training).

Every targeted ``nn.Linear`` is wrapped once in a `MultiLora2rLinear` that holds one `Lora2rLinear`
per run, all over the same frozen base. Each run keeps its own `Lora2rAdapter` (its own A, B,
init, controls and state dict), exactly what `attach_lora2r` gives a solo run, so a run's
optimizer, checkpoints and routing code do not know the model is shared.

Which run a forward belongs to is set on the group, never guessed:

    with group.only(i):             the model is exactly run i's model (its adapter and its controls);
                                    used for everything a run does alone (sampling with HF
                                    generate, pair probes, evaluation)
    with group.rows([n_0, ...]):    the forward's batch is K consecutive blocks of rows, n_i rows of
                                    run i: the frozen base GEMM runs once over all rows, each run's
                                    adapter term over its own block (each under its own controls:
                                    row_control, capture_pooled, disabled)

A forward with neither set raises, so a run can never silently train on another's adapter.

Exactness: block i of a `rows` forward computes base(x)[block] + run i's adapter term on its own
rows, the arithmetic of run i's solo forward base(x_i) + delta(x_i); only the base GEMM sees more
rows. Equal blocks under one kind of control take one batched matmul per adapter factor for all
runs (the kernel count does not grow with K); unequal ones a loop over the runs. Each run's
gradient comes from its own rows only, so a sum of the runs' losses back-propagates into each run
exactly its own loss's gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from evilmoe.errors import UserError
from evilmoe.lora2r import Lora2rAdapter, Lora2rConfig, Lora2rLinear, build_lora2r, replace_module, targeted_linears, two_block_delta


@dataclass
class _Selection:
    """Which run(s) a forward serves; one object shared by every wrapped module of the group."""

    only: int | None = None
    row_counts: list[int] | None = None


class MultiLora2rLinear(nn.Module):
    """One frozen ``nn.Linear`` with K runs' two-block adapters (see the module docstring)."""

    def __init__(self, base: nn.Linear, runs: Sequence[Lora2rLinear], selection: _Selection, name: str):
        super().__init__()
        self.base = base
        self.runs = nn.ModuleList(runs)
        self.name = name
        self._selection = selection

    def forward(self, x: Tensor) -> Tensor:
        sel = self._selection
        if sel.only is not None:
            return self.runs[sel.only](x)
        counts = sel.row_counts
        if counts is None:
            raise RuntimeError(
                f"{self.name} serves {len(self.runs)} runs: select one (RunGroup.only) or give each run's rows (RunGroup.rows)"
            )
        if x.shape[0] != sum(counts):
            raise RuntimeError(f"RunGroup.rows was given {sum(counts)} rows but {self.name} got input of shape {tuple(x.shape)}")
        out = self.base(x)
        present = [i for i, n in enumerate(counts) if n]
        modes = {self.runs[i]._control.mode for i in present}
        if len({counts[i] for i in present}) == 1 and len(modes) == 1 and modes <= {"plain", "rows", "off"}:
            return self._stacked(x, out, present, modes.pop())
        pieces = []
        for run, y, chunk in zip(self.runs, out.split(counts), x.split(counts)):
            if chunk.shape[0] == 0:
                continue
            delta = run.delta(chunk)
            pieces.append(y if delta is None else y + delta)
        return torch.cat(pieces)

    def _stacked(self, x: Tensor, out: Tensor, present: list[int], mode: str) -> Tensor:
        """Equal row blocks under one kind of control: every run's adapter term in one batched
        matmul per factor, whatever the number of runs (Lora2rLinear.delta's own two_block_delta
        over the runs' stacked factors; torch.stack is differentiable, so each run's A and B get
        their own gradients)."""
        if mode == "off":
            return out
        runs = [self.runs[i] for i in present]
        first, k = runs[0], len(runs)
        r, scaling = first.rank, first.scaling
        blocks = x.view(k, -1, *x.shape[1:])  # [K, n, ..., d_in]
        lead = (1,) * (blocks.dim() - 3)  # broadcast each run's [d_in, 2r] factor over its rows' dims

        def stacked(name: str) -> Tensor:  # in the parameters' dtype: two_block_delta casts
            factor = torch.stack([getattr(m, name) for m in runs])
            return factor.view(k, *lead, *factor.shape[1:])

        def capture(feats: Tensor) -> None:
            for j, m in enumerate(runs):
                if m._control.capture is not None:
                    m._control.capture.record(m.name, feats[j])

        quar_weight = dep_grad = None
        if mode == "rows":
            quar_weight = self._per_row([m._control.row_q for m in runs], blocks)
            dep_grad = self._per_row([m._control.row_g for m in runs], blocks)
        delta = two_block_delta(
            blocks, stacked("A"), stacked("A0"), stacked("B"), stacked("B0"), r, scaling,
            quar_weight=quar_weight, dep_grad=dep_grad, capture=capture,
        )  # fmt: skip
        return out + delta.view(out.shape)

    def _per_row(self, values: list[Tensor], blocks: Tensor) -> Tensor:
        """Each run's [n] row control -> [K, n, 1, ..., 1] in the blocks' dtype and device."""
        n = blocks.shape[1]
        if any(v.shape != (n,) for v in values):
            raise RuntimeError(f"{self.name}: row controls of {[tuple(v.shape) for v in values]} rows for blocks of {n}")
        return torch.stack(values).to(device=blocks.device, dtype=blocks.dtype).view(len(values), n, *(1,) * (blocks.dim() - 2))

    def extra_repr(self) -> str:
        return f"runs={len(self.runs)}"


class RunGroup:
    """K runs' adapters attached to one model, and the selection of which run(s) a forward serves."""

    def __init__(self, model: nn.Module, adapters: list[Lora2rAdapter], selection: _Selection):
        self.model, self.adapters, self._selection = model, adapters, selection

    def __len__(self) -> int:
        return len(self.adapters)

    @contextlib.contextmanager
    def _select(self, **fields) -> Iterator[None]:
        sel = self._selection
        if sel.only is not None or sel.row_counts is not None:
            raise RuntimeError("a run selection is already active; selections do not nest")
        for k, v in fields.items():
            setattr(sel, k, v)
        try:
            yield
        finally:
            sel.only, sel.row_counts = None, None

    def only(self, index: int):
        """Context manager: the model is run `index`'s model, exactly as in a solo run."""
        if not 0 <= index < len(self):
            raise IndexError(f"run {index} of {len(self)}")
        return self._select(only=index)

    def rows(self, counts: Sequence[int]):
        """Context manager: a forward over K consecutive row blocks, counts[i] rows of run i."""
        counts = [int(c) for c in counts]
        if len(counts) != len(self) or min(counts) < 0:
            raise ValueError(f"rows wants one non-negative count per run ({len(self)}), got {counts}")
        return self._select(row_counts=counts)


def attach_lora2r_runs(model: nn.Module, configs: Sequence[Lora2rConfig]) -> RunGroup:
    """Wrap every targeted nn.Linear of `model` with one adapter per config (run), in place.

    Run i's adapter is initialised exactly as `attach_lora2r(model, configs[i])` would (same seed,
    same order), so a run's adapter is the same whether it trains alone or in a group.
    """
    if not configs:
        raise ValueError("attach_lora2r_runs needs at least one run")
    if any(isinstance(m, (Lora2rLinear, MultiLora2rLinear)) for m in model.modules()):
        raise RuntimeError("this model already has a lora2r adapter attached")
    if len({(c.targets, c.rank, c.alpha) for c in configs}) != 1:
        raise UserError("runs that share a model must adapt the same modules with the same rank and alpha")
    found = targeted_linears(model, configs[0])
    for p in model.parameters():
        p.requires_grad_(False)
    selection = _Selection()
    adapters = [build_lora2r(model, config, found) for config in configs]
    for name, linear in found:
        replace_module(model, name, MultiLora2rLinear(linear, [a.modules[name] for a in adapters], selection, name))
    return RunGroup(model, adapters, selection)
