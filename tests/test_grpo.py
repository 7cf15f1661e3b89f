"""Dr.GRPO math: advantages, completion log-probs against a plain full-logits reference, the loss."""

from __future__ import annotations

import math

import pytest
import torch

from evilmoe import grpo
from evilmoe.grpo import (
    SequenceBatch,
    clipped_surrogate,
    completion_logprobs,
    group_advantages,
    k3_kl,
    lm_head_logprobs,
    position_ids_for,
    token_microbatches,
)
from evilmoe.models import tiny_model
from evilmoe.rollouts import build_batch, cut_at_stop


def test_group_advantages_and_skip():
    rewards = torch.tensor([1.0, 0.0, 3.5, 0.5, 2.0, 2.0, 2.0, 2.0])
    adv, live = group_advantages(rewards, 4)
    assert torch.allclose(adv[:4], rewards[:4] - rewards[:4].mean())
    assert torch.equal(adv[4:], torch.zeros(4))  # no spread: zero advantage ...
    assert live.tolist() == [True] * 4 + [False] * 4  # ... and the group is skipped


def test_cut_at_stop_keeps_the_stop_token():
    assert cut_at_stop([5, 6, 2, 7, 2], {2}) == [5, 6, 2]
    assert cut_at_stop([5, 6], {2}) == [5, 6]


def _batch() -> SequenceBatch:
    torch.manual_seed(0)
    prompt_ids = torch.tensor([[0, 0, 11, 12], [21, 22, 23, 24]])
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    return build_batch(prompt_ids, prompt_mask, [[31, 32, 2], [41]], pad_id=0)


def test_completion_logprobs_match_full_logits_reference():
    model = tiny_model("llama", seed=1).double()
    batch = _batch()
    got = completion_logprobs(model, batch, temperature=0.7, chunk_tokens=2)
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids_for(batch.attention_mask)
    ).logits
    logp = (logits / 0.7).log_softmax(-1)
    lp = batch.prompt_width
    for row in range(2):
        for j in range(batch.completion_mask.shape[1]):
            if batch.completion_mask[row, j]:
                want = logp[row, lp + j - 1, batch.input_ids[row, lp + j]]
                assert torch.allclose(got[row, j], want.float(), atol=1e-5)
            else:
                assert got[row, j] == 0


def test_left_padding_does_not_change_logprobs():
    """A row's completion log-probs are the same alone and inside a left-padded batch."""
    model = tiny_model("llama", seed=2).double()
    batch = _batch()
    together = completion_logprobs(model, batch, temperature=1.0)
    alone = build_batch(torch.tensor([[11, 12]]), torch.tensor([[1, 1]]), [[31, 32, 2]], pad_id=0)
    single = completion_logprobs(model, alone, temperature=1.0)
    assert torch.allclose(together[0, :3], single[0, :3], atol=1e-6)


def test_logprob_gradients_flow_through_chunked_checkpointing():
    model = tiny_model("llama", seed=3).double()
    for p in model.parameters():
        p.requires_grad_(True)
    batch = _batch()
    completion_logprobs(model, batch, temperature=1.0, chunk_tokens=1).sum().backward()
    chunked = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    completion_logprobs(model, batch, temperature=1.0, chunk_tokens=10_000).sum().backward()
    for a, p in zip(chunked, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-9)


def _head(vocab: int, dim: int, *, trainable: bool, seed: int) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """A float64 LM head and n = 10 hidden states (scaled so the logits spread over several nats) with targets."""
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(dim, vocab, bias=False, dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, dim, generator=g, dtype=torch.float64))
    head.weight.requires_grad_(trainable)
    hidden = torch.randn(10, dim, generator=g, dtype=torch.float64)
    targets = torch.randint(0, vocab, (10,), generator=g)
    return head, hidden, targets


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.6])
@pytest.mark.parametrize("chunk_tokens", [1, 3, 4, 10, 64, None])
@pytest.mark.parametrize("trainable_head", [True, False])
def test_lm_head_logprobs_and_gradients_equal_full_logits_in_float64(chunk_tokens, temperature, trainable_head, monkeypatch):
    """Chunked, checkpointed log-probs against one log_softmax over the full [n, V] logits: the
    values and the gradients wrt the hidden states and (when it trains) the head's weight, for
    chunks that divide n = 10 and chunks that do not (3, 4), one chunk, and the default chunk
    size (here LOGIT_CHUNK_ELEMENTS of 3 rows of the vocabulary: 3 positions per chunk)."""
    vocab = 50
    monkeypatch.setattr(grpo, "LOGIT_CHUNK_ELEMENTS", 3 * vocab)
    head, hidden, targets = _head(vocab, 16, trainable=trainable_head, seed=0)
    upstream = torch.linspace(-1.5, 2.0, 10, dtype=torch.float64)  # unequal weights: not just the sum's gradient

    h = hidden.clone().requires_grad_(True)
    got = lm_head_logprobs(h, targets, head, temperature=temperature, chunk_tokens=chunk_tokens)
    (got * upstream).sum().backward()
    got_h = h.grad
    got_w = None if head.weight.grad is None else head.weight.grad.clone()
    head.weight.grad = None

    h = hidden.clone().requires_grad_(True)
    want = (head(h) / temperature).log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    (want * upstream).sum().backward()

    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_h, h.grad, rtol=1e-12, atol=1e-12)
    if trainable_head:
        torch.testing.assert_close(got_w, head.weight.grad, rtol=1e-12, atol=1e-12)
    else:
        assert got_w is None and head.weight.grad is None  # a frozen head gets no weight gradient
    with torch.no_grad():  # the behaviour pass's path: no checkpointing, the same values
        torch.testing.assert_close(lm_head_logprobs(hidden, targets, head, temperature=temperature, chunk_tokens=chunk_tokens), want)


@pytest.mark.parametrize("trainable_head", [True, False])
def test_no_full_vocabulary_logits_are_kept_for_the_backward(trainable_head):
    """What autograd saves for the backward of the chunked log-probs: nothing as wide as the
    vocabulary (the logits are recomputed per chunk in the backward), while the plain computation
    keeps [n, V] logits. The head's weight [V, d] is a parameter and not counted."""
    vocab = 50
    head, hidden, targets = _head(vocab, 16, trainable=trainable_head, seed=1)
    hidden.requires_grad_(True)
    saved: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t is not head.weight:
            saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lm_head_logprobs(hidden, targets, head, temperature=0.7, chunk_tokens=3)
    assert saved and all(shape[-1] != vocab for shape in saved)
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        grpo._token_logprobs(hidden, targets, head, 0.7)  # the same computation without checkpointing
    assert (10, vocab) in saved


def _ragged_batch() -> SequenceBatch:
    """Rows with left-padded prompts, completions of 3, 1, 0 and 5 tokens (right-padded), so 9
    trained tokens in all: chunks of 2 and 4 end inside a row and do not divide the count."""
    prompt_ids = torch.tensor([[0, 0, 11, 12], [21, 22, 23, 24], [0, 31, 32, 33], [0, 0, 0, 41]])
    prompt_mask = (prompt_ids != 0).long()
    return build_batch(prompt_ids, prompt_mask, [[51, 52, 2], [61], [], [71, 72, 73, 74, 2]], pad_id=0)


@pytest.mark.parametrize("temperature", [0.7, 1.3])
@pytest.mark.parametrize("chunk_tokens", [None, 1, 2, 4, 9])
def test_chunked_logprobs_and_gradients_equal_the_full_logits_reference(chunk_tokens, temperature):
    """The chunked, checkpointed LM head (default chunk size: by vocabulary) against one plain forward
    with full [N, L, V] logits and log_softmax, in float64: same log-probs (up to their rounding to
    the float32 output), zeros on padding and on the row without a completion, and the same
    gradients of every weight (the tied embedding / LM head included)."""
    model = tiny_model("qwen3", seed=4).double()
    for p in model.parameters():
        p.requires_grad_(True)
    batch = _ragged_batch()
    assert int(batch.completion_mask.sum()) == 9
    weights = torch.linspace(0.5, 2.0, batch.completion_mask.numel(), dtype=torch.float32).view_as(batch.completion_mask.float())
    got = completion_logprobs(model, batch, temperature=temperature, chunk_tokens=chunk_tokens)
    (got * weights).sum().backward()
    got_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=position_ids_for(batch.attention_mask)).logits
    lp = batch.prompt_width
    logp = (logits[:, lp - 1 : -1] / temperature).log_softmax(-1).gather(-1, batch.input_ids[:, lp:, None]).squeeze(-1)
    want = logp * batch.completion_mask
    (want * weights).sum().backward()
    assert got.dtype == torch.float32
    assert bool((got[batch.completion_mask == 0] == 0).all())
    # one float32 rounding of a float64 value (the two float64 values may round to neighbours)
    torch.testing.assert_close(got, want.float(), rtol=2**-23, atol=1e-12)
    for a, p in zip(got_grads, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-10, atol=1e-12)


def test_token_microbatches_pack_rows_by_padded_tokens():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 60, (37,), generator=g)
    rows = torch.arange(100, 137)
    # off: today's consecutive chunks of rows
    plain = token_microbatches(rows, lengths, 8)
    assert [t.tolist() for t in plain] == [rows[i : i + 8].tolist() for i in range(0, 37, 8)]
    packed = token_microbatches(rows, lengths, 8, max_tokens=150)
    assert sorted(torch.cat(packed).tolist()) == rows.tolist()  # every row exactly once
    length_of = dict(zip(rows.tolist(), lengths.tolist()))
    for mb in packed:
        assert mb.tolist() == sorted(mb.tolist()) and 1 <= len(mb) <= 8
        padded = len(mb) * max(length_of[r] for r in mb.tolist())
        assert padded <= 150 or len(mb) == 1  # a row longer than the budget goes alone
    # sorting by length pads less than consecutive chunks of the same average size
    padded_total = lambda mbs: sum(len(mb) * max(length_of[r] for r in mb.tolist()) for mb in mbs)  # noqa: E731
    same_count = token_microbatches(rows, lengths, -(-37 // len(packed)))
    assert padded_total(packed) < padded_total(same_count)
    with pytest.raises(ValueError):
        token_microbatches(rows, lengths, 0)


def test_the_gradient_does_not_depend_on_how_rows_are_packed():
    """The summed per-token loss over token-packed microbatches has the gradient of one forward over all rows."""
    model = tiny_model("llama", seed=5).double()
    for p in model.parameters():
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]])
    prompt_ids = torch.randint(3, 300, prompt_mask.shape, generator=g) * prompt_mask
    completions = [[31, 32, 2], [41], [51, 52, 53, 54, 55, 2], [61, 62], [71, 72, 73, 2]]
    batch = build_batch(prompt_ids, prompt_mask, completions, pad_id=0)
    weights = torch.randn(batch.completion_mask.shape, generator=g)

    def loss(rows: torch.Tensor) -> torch.Tensor:
        part = batch.rows(rows).trimmed()
        width = part.completion_mask.shape[1]
        return (completion_logprobs(model, part, temperature=0.9) * weights[rows, :width]).sum()

    loss(torch.arange(5)).backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lengths = batch.attention_mask.sum(dim=1)
    microbatches = token_microbatches(torch.arange(5), lengths, max_rows=3, max_tokens=14)
    assert len(microbatches) > 1
    for mb in microbatches:
        loss(mb).backward()
    for a, p in zip(want, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-9, atol=1e-12)


def test_clipped_surrogate_values():
    mask = torch.tensor([[1, 1, 0]])
    old = torch.zeros(1, 3)
    # on-policy (ratio 1): loss = -adv * tokens / normaliser
    loss, stats = clipped_surrogate(old.clone(), old, torch.tensor([2.0]), mask, clip_eps=0.2, normaliser=4.0)
    assert torch.isclose(loss, torch.tensor(-2.0 * 2 / 4))
    assert stats["clip_frac"] == 0.0
    # ratio e^1 with positive advantage is clipped at 1.2
    new = torch.tensor([[1.0, 0.0, 5.0]])
    loss, stats = clipped_surrogate(new, old, torch.tensor([1.0]), mask, clip_eps=0.2, normaliser=1.0)
    assert torch.isclose(loss, torch.tensor(-(1.2 + 1.0)))
    assert stats["clip_frac"] == 0.5


def test_k3_kl_zero_when_equal_and_positive_otherwise():
    mask = torch.ones(1, 4)
    a = torch.randn(1, 4)
    assert k3_kl(a, a, mask, normaliser=1.0) == 0
    assert k3_kl(a, a + 0.3, mask, normaliser=1.0) > 0


def test_right_aligned_layout_when_a_row_ends_at_the_last_column():
    """A row whose tokens end at the last column while a longer row sets the width: the shift clamps
    its index, and the repeated column must not count as a trained position (it would be trained twice)."""
    from evilmoe.grpo import right_aligned

    batch = build_batch(torch.tensor([[0, 11, 12], [21, 22, 23]]), torch.tensor([[0, 1, 1], [1, 1, 1]]), [[31, 32], [41, 42]], pad_id=0)
    ids, trained = right_aligned(batch.input_ids, batch.attention_mask, batch.full_completion_mask().bool())
    assert ids.tolist()[1] == [21, 22, 23, 41, 42]
    assert ids.tolist()[0][:4] == [11, 12, 31, 32]
    assert trained.tolist() == [[False, False, True, True, False], [False, False, False, True, True]]
    model = tiny_model("llama", seed=3).double()
    together = completion_logprobs(model, batch, temperature=1.0)
    alone = completion_logprobs(model, build_batch(torch.tensor([[11, 12]]), torch.tensor([[1, 1]]), [[31, 32]], pad_id=0), temperature=1.0)
    assert torch.allclose(together[0], alone[0], atol=1e-9)


def test_dual_clip_bounds_negative_advantage_tokens_with_huge_ratios():
    """Plain PPO-clip gives ratio * |A| for A < 0 and a ratio far above 1 (here 100): unbounded.
    Dual-clip caps that token's loss at c * |A| and stops its gradient; other tokens are unchanged."""
    logp_old = torch.zeros(2, 2)
    logp_new = torch.tensor([[4.6052, 0.05], [0.05, 4.6052]], requires_grad=True)  # ratios ~100 and ~1.05
    adv = torch.tensor([-1.0, 1.0])
    mask = torch.ones(2, 2)
    plain, _ = clipped_surrogate(logp_new, logp_old, adv, mask, clip_eps=0.2, normaliser=1.0)
    (g_plain,) = torch.autograd.grad(plain, logp_new)
    bounded, stats = clipped_surrogate(logp_new, logp_old, adv, mask, clip_eps=0.2, normaliser=1.0, dual_clip=3.0)
    (g_bounded,) = torch.autograd.grad(bounded, logp_new)
    assert g_plain[0, 0] == pytest.approx(100.0, rel=1e-3)  # the blow-up dual-clip exists for
    assert g_bounded[0, 0] == 0 and stats["dual_clip_frac"] == 0.25
    # the positive-advantage token with ratio 100 is PPO-clipped either way; near-1 ratios untouched
    assert torch.equal(g_plain[:, 1], g_bounded[:, 1]) and g_bounded[1, 1] == 0 and g_bounded[0, 1] != 0
    assert float(bounded.detach()) == pytest.approx(3.0 + float(plain.detach()) - math.exp(4.6052), abs=1e-4)  # float32 sums
    assert stats["ratio_max"] == pytest.approx(100.0, rel=1e-3)


def test_token_weights_scale_each_tokens_gradient_and_carry_none_themselves():
    """Decoupled PPO: with the ratio against the routed forward (ratio 1) the gradient of token t is
    weight_t * A / normaliser; the weights are constants (no gradient flows into them)."""
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    weights = torch.tensor([[2.0, 0.25, 1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0]])
    loss, stats = clipped_surrogate(logp, logp.detach(), torch.tensor([-0.5]), mask, clip_eps=0.2, normaliser=2.0, token_weights=weights)
    (g,) = torch.autograd.grad(loss, logp)
    assert torch.allclose(g, torch.tensor([[0.5, 0.0625, 0.0]]))  # -(-0.5) * w / 2, masked token 0
    assert float(loss.detach()) == pytest.approx(0.5 * (2.0 + 0.25) / 2)
    assert stats["ratio_max"] == 1.0
    assert weights.grad is None
