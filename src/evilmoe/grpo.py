"""Dr.GRPO math: group advantages, completion log-probs, the clipped token-level surrogate, k3 KL.

Kept free of routing: the trainer decides per rollout how the adapter's blocks take the update
(lora2r row controls) and then calls these functions unchanged for every arm.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache


@dataclass
class SequenceBatch:
    """Prompt + completion token rows in the layout the sampler produces.

    input_ids:       [N, Lp + Lc]; prompts left-padded to width Lp, completions right-padded.
    attention_mask:  [N, Lp + Lc]; 1 on real tokens (prompt and completion up to its end-of-turn).
    completion_mask: [N, Lc]; 1 on completion tokens that are trained (including the end-of-turn token).
    prompt_width:    Lp.
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    prompt_width: int

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, index: Tensor | slice) -> SequenceBatch:
        return SequenceBatch(
            self.input_ids[index], self.attention_mask[index], self.completion_mask[index], self.prompt_width
        )

    def trimmed(self) -> SequenceBatch:
        """Drop all-padding columns at the end of the completion (microbatches are shorter)."""
        used = self.completion_mask.any(dim=0).nonzero()
        width = int(used.max()) + 1 if len(used) else 1
        lp = self.prompt_width
        return SequenceBatch(
            self.input_ids[:, : lp + width],
            self.attention_mask[:, : lp + width],
            self.completion_mask[:, :width],
            lp,
        )

    def full_completion_mask(self) -> Tensor:
        """[N, Lp + Lc] mask of the completion positions (what pooling of routing features reads)."""
        pad = torch.zeros_like(self.input_ids[:, : self.prompt_width])
        return torch.cat([pad, self.completion_mask.to(pad.dtype)], dim=1)

    def aligned(self) -> tuple[Tensor, Tensor]:
        """(input_ids, trained) in the training layout of `right_aligned`: real tokens from column 0,
        `trained` [N, W] bool marks the completion tokens that are trained (what pooling reads too)."""
        ids, trained = right_aligned(self.input_ids, self.attention_mask, self.full_completion_mask().bool())
        return ids, trained

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.completion_mask.to(device), self.prompt_width
        )


def group_advantages(rewards: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """Dr.GRPO advantage: reward minus its group's mean (no std scaling).

    rewards is [num_groups * group_size], grouped contiguously. Returns (advantages, live) where
    live[i] says whether row i's group has any reward spread (groups without spread are skipped).
    """
    grouped = rewards.view(-1, group_size)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    live = (grouped.max(dim=1).values - grouped.min(dim=1).values) > 0
    return advantages.reshape(-1), live.repeat_interleave(group_size)


def position_ids_for(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only, so left padding does not shift them (as generate does)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def right_aligned(input_ids: Tensor, attention_mask: Tensor, *position_masks: Tensor) -> tuple[Tensor, ...]:
    """Shift every row left past its left padding, so its real tokens start at column 0.

    Why: with the padding only at the end of each row, plain causal attention with no mask is
    exactly right for every real token (a real token never sees a later padding token), positions
    are simply 0..L-1, and the decoder can take SDPA's flash / memory-efficient kernels. A padded
    4D mask forces the math path, which materialises [B, H, L, L] scores, and had all-masked rows
    that give NaN in fused kernels (docs/results.md: the update went from 2.4 s to 1.35 s).
    Columns past a row's real end hold repeated tokens whose outputs are never read.

    Returns the shifted input_ids and each of `position_masks` ([N, L] masks over the same columns,
    e.g. which positions are completion tokens) shifted the same way, all cut to the longest row.
    """
    length = input_ids.shape[1]
    lead = attention_mask.long().argmax(dim=1)  # left-padding width = index of the first real token
    count = attention_mask.long().sum(dim=1)
    columns = torch.arange(int(count.max()), device=input_ids.device)[None]
    index = (columns + lead[:, None]).clamp(max=length - 1)
    real = columns < count[:, None]  # a clamped index repeats the last column: never a real position
    out = [input_ids.gather(1, index)]
    for mask in position_masks:
        if mask.dtype != torch.bool:
            raise TypeError(f"position masks must be bool, got {mask.dtype}")
        out.append(mask.gather(1, index) & real)
    return tuple(out)


# Full-vocabulary fp32 logits exist for at most this many elements at a time (~270 MB): ~1,400
# positions of a 49k vocabulary, ~440 of Qwen3's 152k. The LM-head GEMM of a chunk stays large.
LOGIT_CHUNK_ELEMENTS = 2**26


def _token_logprobs(hidden: Tensor, targets: Tensor, lm_head: torch.nn.Module, temperature: float) -> Tensor:
    """log softmax(lm_head(hidden) / temperature) at `targets`, without a [n, V] log-prob tensor.

    Half-precision logits are upcast to float32; float64 ones stay float64 (a float64 model then
    gives float64-exact log-probs and gradients, which is what the exactness tests compare)."""
    logits = lm_head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def lm_head_logprobs(
    hidden: Tensor, targets: Tensor, lm_head: torch.nn.Module, *, temperature: float, chunk_tokens: int | None = None
) -> Tensor:
    """log softmax(lm_head(hidden) / temperature) at `targets`: hidden [n, d], targets [n] -> [n].

    In chunks of `chunk_tokens` positions (default: LOGIT_CHUNK_ELEMENTS / vocabulary size), so
    full-vocabulary fp32 logits exist for one chunk at a time, in the forward and in the backward.

    Each chunk runs under activation checkpointing when a gradient is needed: autograd then keeps
    only the chunk's hidden states and targets, and the backward recomputes one chunk's logits at a
    time. Why checkpointing and not a hand-written autograd.Function (its forward keeping only the
    per-token logsumexp, its backward forming (onehot - softmax) / temperature in place): with a
    prototype of that Function, measured on CPU (peak RSS, two chunks of 1,365 positions of a 49k
    vocabulary, bf16 and fp32), the backward's transient peak was ~4.4 fp32 chunks (1.2 GB) here
    against ~2 (0.55 GB) for the Function. Both are bounded by the chunk, not by the tokens, and the
    0.6 GB between them is under 2% of the update's peak, which is the decoder's saved activations
    (benchmarks/activation_memory.py: ~683 kB per token over 30 layers against 0.9 kB outside
    them). So the simpler one stays.
    """
    if chunk_tokens is None:
        chunk_tokens = max(1, LOGIT_CHUNK_ELEMENTS // lm_head.weight.shape[0])
    # a frozen LM head with hidden states that need no gradient (the no-grad passes) has nothing to
    # recompute; a trainable head alone would still hold every chunk's logits without checkpointing
    recompute = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in lm_head.parameters()))
    pieces = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h = hidden[start : start + chunk_tokens]
        t = targets[start : start + chunk_tokens]
        if recompute:
            pieces.append(checkpoint(_token_logprobs, h, t, lm_head, temperature, use_reentrant=False))
        else:
            pieces.append(_token_logprobs(h, t, lm_head, temperature))
    if not pieces:
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        return torch.zeros(0, dtype=dtype, device=hidden.device)
    return torch.cat(pieces)


def completion_logprobs(
    model: torch.nn.Module,
    batch: SequenceBatch,
    *,
    temperature: float,
    chunk_tokens: int | None = None,
) -> Tensor:
    """Float32 log-probs [N, Lc] of the completion tokens under `model` (zeros where completion_mask is 0).

    Runs the decoder once, then applies the LM head only at the positions that predict completion
    tokens, in chunks under activation checkpointing (`lm_head_logprobs`).
    """
    decoder = model.get_decoder()
    lm_head = model.get_output_embeddings()
    input_ids, trained = batch.aligned()
    hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state
    # hidden state at column t predicts the token at column t + 1; row-major order keeps each
    # row's completion tokens in order, the order masked_scatter fills `out` below
    predicts_trained = trained[:, 1:]
    selected_hidden = hidden[:, :-1][predicts_trained]
    selected_targets = input_ids[:, 1:][predicts_trained]
    mask = batch.completion_mask.bool()
    logp = lm_head_logprobs(selected_hidden, selected_targets, lm_head, temperature=temperature, chunk_tokens=chunk_tokens)
    # float32 for every model, as callers store it (a float64 model's log-probs are rounded only here)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    if logp.numel():
        out = out.masked_scatter(mask, logp.float())
    return out


def concat_batches(parts: Sequence[SequenceBatch]) -> SequenceBatch:
    """Rows of several batches in one: prompts left-padded and completions right-padded to the
    widest. Extra padding changes no real token's output: training forwards shift every row past
    its left padding and attend causally (grpo.right_aligned)."""
    lp = max(p.prompt_width for p in parts)
    lc = max(p.completion_mask.shape[1] for p in parts)
    ids, att, comp = [], [], []
    for p in parts:
        left, right = lp - p.prompt_width, lc - p.completion_mask.shape[1]
        ids.append(torch.nn.functional.pad(p.input_ids, (left, right)))
        att.append(torch.nn.functional.pad(p.attention_mask, (left, right)))
        comp.append(torch.nn.functional.pad(p.completion_mask, (0, right)))
    return SequenceBatch(torch.cat(ids), torch.cat(att), torch.cat(comp), lp)


def prompt_sets(batch: SequenceBatch, *controls: Tensor) -> Tensor:
    """[N] index of each row's sharing set: rows with the same real prompt tokens and equal values in
    every per-row control ([N] tensors, e.g. the row control's q and g) get the same index; sets are
    numbered 0, 1, ... in order of their first row.

    A control that carries autograd (the learned router's w) makes every row a set of its own: two
    rows' w may be equal in value and still differ in their gradient, so sharing one forward would
    send both rows' router gradient through one of them.
    """
    n, lp = len(batch), batch.prompt_width
    for control in controls:
        if control.shape != (n,):
            raise ValueError(f"prompt_sets wants [N] = [{n}] controls, got shape {tuple(control.shape)}")
    if any(control.requires_grad for control in controls):
        return torch.arange(n, device=batch.input_ids.device)
    real = batch.attention_mask[:, :lp].bool()
    prompts = [tuple(row[keep].tolist()) for row, keep in zip(batch.input_ids[:, :lp], real)]
    values = [c.detach().cpu().tolist() for c in controls]
    first: dict[tuple, int] = {}
    index = [first.setdefault((prompts[b], *(v[b] for v in values)), len(first)) for b in range(n)]
    return torch.tensor(index, dtype=torch.long, device=batch.input_ids.device)


def shares(sets: Tensor) -> bool:
    """Whether some set of `prompt_sets` holds more than one row (else sharing saves nothing)."""
    return len(sets) > 0 and int(sets.max()) + 1 < len(sets)


def _layout_lengths(batch: SequenceBatch) -> Tensor:
    """Each row's real prompt length, after checking the sampler's layout that the shared forward
    relies on: the prompt left-padded (its real tokens end at column prompt_width), the completion
    right-padded from column prompt_width, trained tokens only where the completion is."""
    lp, mask = batch.prompt_width, batch.attention_mask.long()
    prompt, completion = mask[:, :lp], mask[:, lp:]
    if (prompt.diff(dim=1) < 0).any() or (completion.diff(dim=1) > 0).any():
        raise ValueError("shared-prompt forward wants left-padded prompts and right-padded completions")
    if (batch.completion_mask.bool() & ~completion.bool()).any():
        raise ValueError("shared-prompt forward: a trained completion token lies outside the attention mask")
    lengths = prompt.sum(dim=1)
    if (lengths == 0).any():
        raise ValueError("shared-prompt forward: a row has no prompt token (nothing predicts its first completion token)")
    return lengths


def _cache_keyword(decoder: torch.nn.Module) -> str:
    """The decoder's keyword for a KV cache: `cache` in recent transformers, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def shared_prompt_logprobs(
    model: torch.nn.Module,
    batch: SequenceBatch,
    sets: Tensor,
    *,
    temperature: float,
    chunk_tokens: int | None = None,
    prompt_context: Callable[[Tensor], contextlib.AbstractContextManager] | None = None,
    completion_context: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> Tensor:
    """`completion_logprobs` with each set's prompt computed once: the same log-probs, to rounding.

    sets [N] (`prompt_sets`): rows with the same index must have the same prompt and must be run under
    the same controls; the prompts of a set's rows are checked, the controls are the caller's word.
    Two forwards: the decoder over one row per set (its prompt, right-aligned as in
    `right_aligned`, no mask) with a KV cache, then over every row's completion tokens with that
    cache repeated per row (`batch_select_indices`, an indexing op: the gradient of each shared key
    and value is the sum of its rows'), a padding mask hiding the cache columns past the row's
    prompt, and positions continuing from the prompt's length, so every completion token sees
    exactly the keys and values it sees in the unshared forward. The first completion token is
    predicted by the prompt's last hidden state, also indexed per row.

    prompt_context(rows of the prompt forward, one per set) and completion_context() wrap the two
    forwards: the adapter's row control of those rows, a feature capture of the completion forward.
    The backward needs no control: without layer recomputation autograd keeps what each forward used.
    Layer recomputation (gradient checkpointing) is refused: transformers drops a layer's cache
    when it checkpoints it, and a recomputed layer would run under the control set at backward time.
    """
    # the property's name since transformers 5.2x; `is_gradient_checkpointing` before
    checkpointing = getattr(model, "is_activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if torch.is_grad_enabled() and model.training and checkpointing:
        raise RuntimeError("shared-prompt forward with gradient checkpointing on: layers would drop the prompt's cache")
    decoder = model.get_decoder()
    lm_head = model.get_output_embeddings()
    n, lp = len(batch), batch.prompt_width
    if sets.shape != (n,):
        raise ValueError(f"sets must be [N] = [{n}], got shape {tuple(sets.shape)}")
    prompt_len = _layout_lengths(batch)
    n_sets = int(sets.max()) + 1
    if sorted(set(sets.tolist())) != list(range(n_sets)):
        raise ValueError("sets must number the sharing sets 0, 1, ... without gaps")
    # one row per set (its first); every row of a set must carry that row's prompt
    first = torch.full((n_sets,), n, device=sets.device).scatter_reduce(0, sets, torch.arange(n, device=sets.device), "amin")
    same = (batch.input_ids[:, :lp] == batch.input_ids[first[sets], :lp]) | ~batch.attention_mask[:, :lp].bool()
    if not (same.all() and torch.equal(prompt_len, prompt_len[first[sets]])):
        raise ValueError("rows of one sharing set have different prompts")

    keyword = _cache_keyword(decoder)
    (prompt_ids,) = right_aligned(batch.input_ids[first, :lp], batch.attention_mask[first, :lp])
    width = prompt_ids.shape[1]
    cache = DynamicCache()
    with prompt_context(first) if prompt_context else contextlib.nullcontext():
        prompt_hidden = decoder(input_ids=prompt_ids, use_cache=True, **{keyword: cache}).last_hidden_state
    cache.batch_select_indices(sets)  # each row's copy of its set's keys and values (differentiable)

    completion_ids = batch.input_ids[:, lp:]
    columns = torch.arange(width, device=sets.device)
    length = prompt_len[:, None]
    # past the row's own prompt the cache holds another set's longer prompt or padding: hidden; the
    # completion's own padding is at its end, so causality alone keeps it from any real token
    attention_mask = torch.cat([columns[None] < length, torch.ones_like(completion_ids, dtype=torch.bool)], dim=1)
    positions = length + torch.arange(completion_ids.shape[1], device=sets.device)[None]
    with completion_context() if completion_context else contextlib.nullcontext():
        completion_hidden = decoder(
            input_ids=completion_ids, attention_mask=attention_mask.long(), position_ids=positions, use_cache=True, **{keyword: cache}
        ).last_hidden_state

    # the hidden state before completion token j: the prompt's last for j = 0, completion j - 1 after
    last = prompt_hidden[sets, prompt_len - 1]
    predicting = torch.cat([last[:, None], completion_hidden[:, :-1]], dim=1)
    mask = batch.completion_mask.bool()
    logp = lm_head_logprobs(predicting[mask], completion_ids[mask], lm_head, temperature=temperature, chunk_tokens=chunk_tokens)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=completion_hidden.device)
    if logp.numel():
        out = out.masked_scatter(mask, logp.float())
    return out


def token_microbatches(rows: Tensor, lengths: Tensor, max_rows: int, max_tokens: int = 0) -> list[Tensor]:
    """Split `rows` (row indices, [n]) into the update's microbatches; lengths [n]: each row's real tokens.

    max_tokens = 0: consecutive chunks of `max_rows` rows in the given order.
    max_tokens > 0: the rows sorted by length, longest first, and packed greedily so that a
    microbatch holds at most `max_rows` rows and at most `max_tokens` padded tokens (rows x its
    longest row: the training layout of `right_aligned` pads every row to the longest). Activation
    memory then follows the tokens, not the rows, and rows of similar length share a microbatch, so
    less padding is computed. A row longer than max_tokens is a microbatch of its own.

    The composition of the microbatches does not change the summed loss or its gradient (each row's
    loss is its own, divided by a constant), only the memory and the order of the float sums.
    Each microbatch's indices are in ascending order.
    """
    if max_rows <= 0 or max_tokens < 0:
        raise ValueError(f"max_rows must be > 0 and max_tokens >= 0 (got {max_rows}, {max_tokens})")
    if max_tokens == 0:
        return [rows[start : start + max_rows] for start in range(0, len(rows), max_rows)]
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    sizes = lengths.tolist()
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        # sorted longest first: a microbatch's first row is its longest
        if group is None or len(group) == max_rows or (len(group) + 1) * sizes[group[0]] > max_tokens:
            groups.append([i])
        else:
            group.append(i)
    return [rows[torch.tensor(sorted(g), device=rows.device)] for g in groups]


def shared_token_microbatches(
    rows: Tensor, sets: Tensor, prompt_lengths: Tensor, completion_lengths: Tensor, max_rows: int, max_tokens: int
) -> list[Tensor]:
    """`token_microbatches` for shared-prompt forwards: the rows (row indices, [n]) of one prompt
    (sets [n], `prompt_sets` by prompt) stay together, and a microbatch's tokens are counted as its
    two forwards pad them: each distinct prompt once at the longest prompt's width, plus every row's
    completion at the longest completion's. So memory follows the tokens computed, and sorting rows
    by length does not scatter a prompt's rows over microbatches (which would leave nothing to share).

    Prompts are sorted by padded length (prompt + longest completion), longest first, and packed
    greedily under at most `max_rows` rows and `max_tokens` tokens. A prompt with more rows than fit
    in one microbatch on its own is cut into consecutive pieces that do (at least one row each).
    Each microbatch's indices are in ascending order.
    """
    if max_rows <= 0 or max_tokens <= 0:
        raise ValueError(f"max_rows and max_tokens must be > 0 (got {max_rows}, {max_tokens})")
    p_len, c_len = prompt_lengths.tolist(), completion_lengths.tolist()

    def cost(members: list[list[int]]) -> int:  # members: one list of positions per prompt
        flat = [i for m in members for i in m]
        return len(members) * max(p_len[i] for i in flat) + len(flat) * max(c_len[i] for i in flat)

    # one unit per prompt, cut where it alone breaks a limit
    units: list[list[int]] = []
    for s in range(int(sets.max()) + 1 if len(sets) else 0):
        piece: list[int] = []
        for i in (sets == s).nonzero().squeeze(1).tolist():
            if piece and (len(piece) == max_rows or cost([[*piece, i]]) > max_tokens):
                units.append(piece)
                piece = []
            piece.append(i)
        units.append(piece)
    units.sort(key=lambda u: -(p_len[u[0]] + max(c_len[i] for i in u)))  # stable: ties keep row order
    packs: list[list[list[int]]] = []
    for unit in units:
        pack = packs[-1] if packs else None
        if pack is None or sum(map(len, pack)) + len(unit) > max_rows or cost([*pack, unit]) > max_tokens:
            packs.append([unit])
        else:
            pack.append(unit)
    return [rows[torch.tensor(sorted(i for u in pack for i in u), device=rows.device)] for pack in packs]


def trained_from(completion_mask: Tensor, loss_start: Tensor | None) -> Tensor:
    """The completion mask with each row's tokens before loss_start[row] taken out of the loss (None:
    the mask itself)."""
    if loss_start is None:
        return completion_mask
    columns = torch.arange(completion_mask.shape[1], device=completion_mask.device)
    return completion_mask * (columns.unsqueeze(0) >= loss_start.unsqueeze(1)).to(completion_mask.dtype)


def clipped_surrogate(
    logp_new: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    completion_mask: Tensor,
    *,
    clip_eps: float,
    normaliser: float,
    dual_clip: float = 0.0,
    token_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Token-level PPO-clip loss summed over tokens and divided by a constant (Dr.GRPO).

    dual_clip > 1 also bounds the loss of negative-advantage tokens at dual_clip * |A| (dual-clip
    PPO): plain PPO-clip leaves ratio * A unbounded when A < 0, so a token that the training forward
    likes far more than the sampling policy did gets an arbitrarily large push.
    token_weights ([N, Lc], no gradient) multiply each token's loss: the truncated importance
    weights of decoupled PPO, when the ratio is taken against a policy other than the sampler.
    Returns (loss, stats): clipped-token fraction, dual-clipped fraction, mean and max ratio.
    """
    mask = completion_mask.float()
    ratio = torch.exp(logp_new - logp_old)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)
    dual = torch.zeros_like(per_token, dtype=torch.bool)
    if dual_clip:
        bound = -dual_clip * adv  # = dual_clip * |A| where A < 0
        dual = (adv < 0) & (per_token > bound)
        per_token = torch.where(dual, bound.expand_as(per_token), per_token)
    if token_weights is not None:
        per_token = per_token * token_weights.detach()
    loss = (per_token * mask).sum() / normaliser
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        is_clipped = ((ratio - 1).abs() > clip_eps).float()
        stats = {
            "clip_frac": float((is_clipped * mask).sum() / n),
            "dual_clip_frac": float((dual.float() * mask).sum() / n),
            "ratio_mean": float((ratio * mask).sum() / n),
            "ratio_max": float((ratio * mask).max()) if mask.any() else 1.0,
        }
    return loss, stats


def k3_kl(logp_new: Tensor, logp_ref: Tensor, completion_mask: Tensor, *, normaliser: float) -> Tensor:
    """Schulman's k3 estimator of KL(new || ref) per token: exp(ref-new) - (ref-new) - 1, summed / normaliser."""
    diff = logp_ref - logp_new
    per_token = torch.exp(diff) - diff - 1
    return (per_token * completion_mask.float()).sum() / normaliser
