"""Sampling K runs' rollouts in one decode: a shared base plus each run's LoRA per row.

`FastSampler` folds one adapter into a private copy of the weights; K runs would need K copies
and K decode loops, each bound by kernel launches. Multi-adapter LoRA serving shows the way out:
keep the base weights unfolded and shared, and add each row's own adapter with two small batched
matmuls per projection. `MultiRunSampler` is a `FastSampler` (same prefill, decode loop, CUDA
graphs, sampling order) over a batch whose rows are K equal blocks, block k = run k's rows:

    y = W x + B_k (A_k x)        for every row x of run k

with, per projection (q/k/v stacked, gate/up stacked, as the folded sampler stacks them),

    A_k = [A_dep; A_quar; A0_dep; A0_quar]                        (4r rows per wrapped module)
    B_k = scaling * [B_dep, s B_quar, -B0_dep, -s B0_quar]         (block-diagonal over modules)

so B_k A_k = scaling * (dep + s * quar), exactly the delta `folded_weight` adds (s = the
quarantine scale). The value is the folded sampler's up to rounding; the random stream is one
generator over every run's rows, so a run's samples differ from the ones it would draw alone
(the update is exact given the rollouts, see evilmoe.batched).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from evilmoe.fastgen import BATCH_BUCKET, FastSampler, _linear_weight, _round_up
from evilmoe.lora2r import Lora2rAdapter
from evilmoe.rollouts import SamplingConfig

# (generation weight, the projections stacked in it), per layer
PROJECTIONS = (("qkv", ("self_attn", ("q_proj", "k_proj", "v_proj"))), ("o", ("self_attn", ("o_proj",))),
               ("gate_up", ("mlp", ("gate_proj", "up_proj"))), ("down", ("mlp", ("down_proj",))))


class MultiRunSampler(FastSampler):
    """One decode for K runs sharing a model (evilmoe.multilora): `sample_runs` takes each run's
    prompt rows and returns each run's completions.

    rows_per_run: the most rows a run samples per call (sizes the cache: K blocks of it, rounded
    up to the decode batch bucket). Call `refresh()` after the runs' optimizer steps.
    """

    def __init__(self, model: nn.Module, tokenizer, stop_ids: list[int], *, adapters: Sequence[Lora2rAdapter],
                 rows_per_run: int, max_seq_len: int, compile: bool | None = None):
        self.adapters = list(adapters)
        if len({(a.rank, a.config.scaling) for a in self.adapters}) != 1:
            raise ValueError("the runs of one decode must share the adapter's rank and scaling")
        self.block = _round_up(rows_per_run, BATCH_BUCKET)
        super().__init__(model, tokenizer, stop_ids, adapter=self.adapters[0], max_batch=len(self.adapters) * self.block,
                         max_seq_len=max_seq_len, compile=compile)

    @property
    def runs(self) -> int:
        return len(self.adapters)

    def _modules(self, layer: nn.Module, name: str) -> list[nn.Module]:
        parent, children = dict(PROJECTIONS)[name]
        return [getattr(getattr(layer, parent), child) for child in children]

    @torch.no_grad()
    def _fold(self, quarantine_scale: float) -> None:
        """Base weights into the generation copies (unfolded) and every run's factors, in place
        (tensor addresses never change: captured CUDA graphs stay valid); one stacked copy per
        module and factor for all runs."""
        layers = self.model.get_decoder().layers
        if not hasattr(self, "factors"):
            self.factors = [{name: self._allocate_factors(layer, name) for name, _ in PROJECTIONS} for layer in layers]
        for layer, lw, factors in zip(layers, self.layers, self.factors):
            for name, _ in PROJECTIONS:
                modules, dst = self._modules(layer, name), getattr(lw, name)
                A, B = factors[name]  # [K, d_in, R], [K, R, d_out]: applied as (x @ A) @ B
                row = 0
                for j, module in enumerate(modules):
                    weight = _linear_weight(module)
                    rows = slice(row, row + weight.shape[0])
                    dst[rows].copy_(weight)
                    runs = [adapter.modules[module.name] for adapter in self.adapters]
                    r, s = runs[0].rank, runs[0].scaling
                    qs, c = s * quarantine_scale, 4 * r * j  # module j's columns: A, A0 rows of 2r each
                    A[:, :, c : c + 2 * r].copy_(torch.stack([m.A for m in runs]).transpose(1, 2))
                    A[:, :, c + 2 * r : c + 4 * r].copy_(torch.stack([m.A0 for m in runs]).transpose(1, 2))
                    trained = torch.stack([m.B for m in runs]).transpose(1, 2)  # [K, 2r, d_out]
                    init = torch.stack([m.B0 for m in runs]).transpose(1, 2)
                    for offset, part, scale in ((0, trained[:, :r], s), (r, trained[:, r:], qs), (2 * r, init[:, :r], -s), (3 * r, init[:, r:], -qs)):
                        B[:, c + offset : c + offset + r, rows].copy_(part * scale)
                    row += weight.shape[0]
        self.quarantine_scale = float(quarantine_scale)

    def _allocate_factors(self, layer: nn.Module, name: str) -> tuple[Tensor, Tensor]:
        modules = self._modules(layer, name)
        d_in = _linear_weight(modules[0]).shape[1]
        d_out = sum(_linear_weight(m).shape[0] for m in modules)
        rank = 4 * self.adapters[0].rank * len(modules)
        A = torch.zeros(self.runs, d_in, rank, dtype=self.dtype, device=self.device)
        B = torch.zeros(self.runs, rank, d_out, dtype=self.dtype, device=self.device)  # off-diagonal blocks stay 0
        return A, B

    def _project(self, h: Tensor, i: int, name: str) -> Tensor:
        """Shared base GEMM over every row, plus each run's low-rank term over its own block."""
        A, B = self.factors[i][name]
        per_run = h.reshape(self.runs, -1, h.shape[-1])  # rows are K equal blocks, run-major
        delta = torch.bmm(torch.bmm(per_run, A), B)
        return super()._project(h, i, name) + delta.view(*h.shape[:-1], -1)

    def stack_prompts(self, prompts: dict[int, tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Run k's (left-padded ids, mask) as block k of one batch: every run's rows padded to one
        block (filler rows repeat the run's last prompt), the prompts to one width (more left
        padding: positions and masks skip it). A run not given gets another run's rows as filler."""
        if not prompts or not set(prompts) <= set(range(self.runs)):
            raise ValueError(f"wants prompts of some of runs 0..{self.runs - 1}, got runs {sorted(prompts)}")
        counts = [ids.shape[0] for ids, _ in prompts.values()]
        if not 0 < min(counts) <= max(counts) <= self.block:
            raise ValueError(f"every run needs 1 to {self.block} prompt rows, got {counts}")
        width = max(ids.shape[1] for ids, _ in prompts.values())
        ids = torch.full((self.runs * self.block, width), self.tokenizer.pad_token_id or 0, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        filler = next(iter(prompts))
        for k in range(self.runs):
            run_ids, run_mask = prompts.get(k, prompts[filler])
            rows = torch.arange(self.block, device=self.device).clamp(max=run_ids.shape[0] - 1)
            block = slice(k * self.block, (k + 1) * self.block)
            ids[block, width - run_ids.shape[1] :] = run_ids.to(self.device)[rows]
            mask[block, width - run_ids.shape[1] :] = run_mask.to(self.device)[rows]
        return ids, mask

    def sample_runs(self, prompts: dict[int, tuple[Tensor, Tensor]], sampling: SamplingConfig, *, seed: int) -> dict[int, list[list[int]]]:
        """Run k's (left-padded prompt ids, mask) in as prompts[k]; run k's completions out, for
        every run given, in one decode (`stack_prompts` lays the rows out)."""
        completions = self.sample(*self.stack_prompts(prompts), sampling, seed=seed)
        return {k: completions[k * self.block : k * self.block + ids.shape[0]] for k, (ids, _) in prompts.items()}
