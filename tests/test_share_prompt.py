"""Shared-prompt forwards: each prompt computed once for the rows that share it must give exactly
the log-probs, loss and gradients of the unshared forward (float64 on CPU), and rows may share only
under equal row controls (q, g)."""

from __future__ import annotations

import pytest
import torch
from fake_steps import fake_sampler, grab_grads

from evilmoe import update as update_module
from evilmoe.config import make_config
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.grpo import (
    SequenceBatch,
    completion_logprobs,
    prompt_sets,
    shared_prompt_logprobs,
    shared_token_microbatches,
    shares,
    token_microbatches,
)
from evilmoe.lora2r import Lora2rConfig, attach_lora2r, vgrout_control
from evilmoe.models import tiny_model
from evilmoe.rollouts import build_batch
from evilmoe.trainer import Trainer
from evilmoe.update import MICROBATCH_STATS

GROUP = 4


@pytest.fixture(autouse=True)
def float64_norms(monkeypatch):
    """transformers' Llama RMSNorm computes in float32 whatever the model's dtype, so a ".double()"
    model still rounds to float32 there, and any two orders of summing gradients (one row's prompt
    after another, or their sum at once) differ by ~1e-7. Kept in float64 here, the comparisons can
    be 1e-10 tight: they then test the algebra, not float32 rounding."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    for norm in (LlamaRMSNorm, Qwen3RMSNorm):

        def forward(self, hidden: torch.Tensor, original=norm.forward) -> torch.Tensor:
            if hidden.dtype != torch.float64:
                return original(self, hidden)
            return self.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

        monkeypatch.setattr(norm, "forward", forward)


def _model_and_adapter(arch: str = "llama"):
    """A float64 tiny model whose adapter blocks both sit far from their init, so the quarantine
    weight q changes values and the deployed gradient scale g changes gradients."""
    model = tiny_model(arch, seed=3).double()
    adapter = attach_lora2r(model, Lora2rConfig(rank=2, seed=0))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in adapter.modules.values():
            m.A.add_(0.3 * torch.randn(m.A.shape, generator=gen, dtype=m.A.dtype))
            m.B.add_(0.3 * torch.randn(m.B.shape, generator=gen, dtype=m.B.dtype))
    return model, adapter


def _groups_batch() -> SequenceBatch:
    """Three prompts of different lengths (left-padded to one width), GROUP rows each, completions of
    lengths 1 to 7 (right-padded); the middle prompt is two tokens longer than the width of the first."""
    gen = torch.Generator().manual_seed(11)
    prompt_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1]])
    prompts = torch.randint(3, 300, prompt_mask.shape, generator=gen) * prompt_mask
    rows = torch.arange(3).repeat_interleave(GROUP)
    lengths = [3, 1, 7, 5, 2, 6, 4, 1, 7, 3, 5, 2]
    completions = [torch.randint(3, 300, (n,), generator=gen).tolist() for n in lengths]
    return build_batch(prompts[rows], prompt_mask[rows], completions, pad_id=0)


def _controls(kind: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "none":
        return vgrout_control(["keep"] * n)
    if kind == "absorb":
        return vgrout_control(["absorb"] * n)
    if kind == "routeA":  # all three labels in each group, in different orders (9 sets)
        labels = ["keep", "route", "keep", "absorb", "absorb", "absorb", "keep", "route", "route", "keep", "keep", "absorb"]
        return vgrout_control(labels[:n])
    if kind == "moe":  # the learned router's w: continuous, with autograd
        w = torch.rand(n, generator=torch.Generator().manual_seed(5), dtype=torch.float64).requires_grad_()
        return w, (1 - w).detach()
    raise ValueError(kind)


def _grads(model, adapter, q: torch.Tensor, logp: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
    """Back-propagate sum(weights * logp) (its gradient in logp is `weights` in both forwards) and
    return every adapter factor's gradient and q's (the router's), then clear them."""
    (weights * logp).sum().backward()
    out = [p.grad.clone() for m in adapter.modules.values() for p in (m.A, m.B)]
    if q.requires_grad:
        out.append(q.grad.clone())
        q.grad = None
    model.zero_grad(set_to_none=True)
    return out


def _unshared(model, adapter, batch, q, g):
    with adapter.row_control(q, g):
        return completion_logprobs(model, batch, temperature=0.7, chunk_tokens=5)


def _shared(model, adapter, batch, q, g, sets):
    return shared_prompt_logprobs(
        model, batch, sets, temperature=0.7, chunk_tokens=5,
        prompt_context=lambda rows: adapter.row_control(q[rows], g[rows]),
        completion_context=lambda: adapter.row_control(q, g),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "n_sets", "arch"),
    # none/absorb: one set per prompt; routeA: one per (prompt, label) present; moe: every row alone
    [("none", 3, "llama"), ("absorb", 3, "llama"), ("routeA", 9, "llama"), ("moe", 3 * GROUP, "llama"), ("routeA", 9, "qwen3")],
)
def test_shared_prompts_give_the_unshared_logprobs_and_gradients(kind, n_sets, arch):
    model, adapter = _model_and_adapter(arch)
    batch = _groups_batch()
    q, g = _controls(kind, len(batch))
    weights = torch.randn(batch.completion_mask.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    want_logp = _unshared(model, adapter, batch, q, g)
    want = _grads(model, adapter, q, want_logp, weights)

    sets = prompt_sets(batch, q, g)
    assert int(sets.max()) + 1 == n_sets
    if kind == "moe":
        # a control with autograd: no row shares, the update keeps the unshared forward
        assert torch.equal(sets, torch.arange(len(batch))) and not shares(sets)
    # the shared forward itself is exact even with every row alone (sets of one)
    got_logp = _shared(model, adapter, batch, q, g, sets)
    got = _grads(model, adapter, q, got_logp, weights)

    # float32 outputs of float64 values equal to rounding: equal to the last float32 bit or so
    torch.testing.assert_close(got_logp, want_logp, rtol=2.5e-7, atol=0)
    assert torch.equal(got_logp == 0, batch.completion_mask == 0)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12 * float(b.abs().max()))


def test_rows_under_different_controls_must_not_share():
    """The reason sharing needs equal (q, g): sharing routeA's groups by prompt alone (every row's
    prompt run under its set's first row's control) changes the log-probs and the gradients."""
    model, adapter = _model_and_adapter()
    batch = _groups_batch()
    q, g = _controls("routeA", len(batch))
    weights = torch.ones(batch.completion_mask.shape, dtype=torch.float64)
    want_logp = _unshared(model, adapter, batch, q, g)
    want = _grads(model, adapter, q, want_logp, weights)
    by_prompt = prompt_sets(batch)
    assert int(by_prompt.max()) + 1 == 3
    wrong_logp = _shared(model, adapter, batch, q, g, by_prompt)
    wrong = _grads(model, adapter, q, wrong_logp, weights)
    assert float((wrong_logp - want_logp).detach().abs().max()) > 1e-4
    assert max(float((a - b).abs().max()) for a, b in zip(wrong, want)) > 1e-4


def test_prompt_sets_group_by_real_prompt_tokens_and_every_control():
    batch = _groups_batch()
    # the same prompt with more left padding is the same prompt
    wider = SequenceBatch(
        torch.nn.functional.pad(batch.input_ids, (2, 0)), torch.nn.functional.pad(batch.attention_mask, (2, 0)),
        batch.completion_mask, batch.prompt_width + 2,
    )  # fmt: skip
    assert prompt_sets(wider).tolist() == prompt_sets(batch).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    q = torch.tensor([0.0, 1.0, 0.0, 1.0] * 3)
    g = torch.tensor([1.0, 1.0, 1.0, 0.0] * 3)
    assert prompt_sets(batch, q, g).tolist() == [0, 1, 0, 2, 3, 4, 3, 5, 6, 7, 6, 8]
    with pytest.raises(ValueError, match="controls"):
        prompt_sets(batch, q[:5])


def test_shared_token_packing_keeps_a_prompts_rows_together_and_counts_it_once():
    gen = torch.Generator().manual_seed(4)
    sets = torch.arange(6).repeat_interleave(4)  # 6 prompts x 4 rows
    prompt_len = torch.randint(20, 60, (6,), generator=gen)[sets]
    completion_len = torch.randint(1, 30, (24,), generator=gen)
    rows = torch.arange(100, 124)  # row indices are returned, positions are what sets describe
    packed = shared_token_microbatches(rows, sets, prompt_len, completion_len, max_rows=9, max_tokens=300)
    assert sorted(torch.cat(packed).tolist()) == rows.tolist()  # every row exactly once
    for mb in packed:
        at = mb - 100
        assert mb.tolist() == sorted(mb.tolist()) and len(mb) <= 9
        prompts = sets[at].unique()
        # the tokens the two forwards compute: each prompt once, every completion
        tokens = len(prompts) * int(prompt_len[at].max()) + len(at) * int(completion_len[at].max())
        assert tokens <= 300 or len(prompts) == 1
    # nothing scattered: each prompt's rows sit in one microbatch (a prompt's 4 rows fit the limits)
    assert all(sum(bool((sets[mb - 100] == s).any()) for mb in packed) == 1 for s in range(6))
    # plain token packing sorts rows by length and scatters the prompts' rows
    plain = token_microbatches(rows, prompt_len + completion_len, max_rows=9, max_tokens=300)
    assert any(sum(bool((sets[mb - 100] == s).any()) for mb in plain) > 1 for s in range(6))
    # a prompt too large for one microbatch is cut into pieces that fit
    cut = shared_token_microbatches(rows, torch.zeros(24, dtype=torch.long), prompt_len * 0 + 50, completion_len * 0 + 10, 9, 200)
    assert [len(mb) for mb in cut] == [9, 9, 6][: len(cut)] or all(50 + 10 * len(mb) <= 200 for mb in cut)
    assert all(50 + 10 * len(mb) <= 200 and len(mb) <= 9 for mb in cut) and sum(map(len, cut)) == 24
    with pytest.raises(ValueError):
        shared_token_microbatches(rows, sets, prompt_len, completion_len, max_rows=9, max_tokens=0)


def test_the_shared_forward_refuses_a_layout_it_cannot_share():
    model, _ = _model_and_adapter()
    batch = _groups_batch()
    sets = prompt_sets(batch)
    with pytest.raises(ValueError, match="different prompts"):
        shared_prompt_logprobs(model, batch, torch.zeros_like(sets), temperature=1.0)
    with pytest.raises(ValueError, match="without gaps"):
        shared_prompt_logprobs(model, batch, sets * 2, temperature=1.0)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    with pytest.raises(RuntimeError, match="gradient checkpointing"):
        shared_prompt_logprobs(model, batch, sets, temperature=1.0)
    model.eval()
    lp = batch.prompt_width
    flip = lambda x: torch.cat([x[:, :lp].flip(1), x[:, lp:]], dim=1)  # noqa: E731  (prompt padding on its right)
    right_padded = SequenceBatch(flip(batch.input_ids), flip(batch.attention_mask), batch.completion_mask, lp)
    with pytest.raises(ValueError, match="left-padded prompts"):
        shared_prompt_logprobs(model, right_padded, sets, temperature=1.0)


# --------------------------------------------------------------------------------------------
# the whole update: a trainer's step with share_prompt on and off
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def problems():
    return load_problem_set("bundled")


def _step(problems, arm: str, share: bool, **settings) -> dict:
    """One float64 step on fake rollouts: the optimizer's gradients, the behaviour pass and the metrics,
    and how many forwards shared a prompt (behaviour pass, update)."""
    config = make_config("tiny", dict(arm=arm, prompts_per_step=3, group_size=GROUP, pairs_per_mode=1, kl_coef=0.05, share_prompt=share, **settings))
    trainer = Trainer(config, None, problems=problems)
    calls = {"behaviour": 0, "update": 0}
    original = update_module.shared_prompt_logprobs

    def counting(*args, **kwargs):
        calls["update" if kwargs.get("prompt_context") else "behaviour"] += 1
        return original(*args, **kwargs)

    try:
        trainer.model.double()
        trainer.sampler.sample = fake_sampler(trainer, seeded=True)
        grads: dict = {}
        grab_grads(trainer, grads)
        behaviour = []
        passes = trainer.behaviour_pass
        trainer.behaviour_pass = lambda batch: behaviour.append(passes(batch)) or behaviour[-1]
        routing = []
        decide = trainer.arm.decide
        trainer.arm.decide = lambda features, step: routing.append(decide(features, step)) or routing[-1]
        update_module.shared_prompt_logprobs = counting
        metrics = trainer.train_step(0)
    finally:
        update_module.shared_prompt_logprobs = original
        trainer.close()
    return {"grads": grads, "behaviour": behaviour[0], "metrics": metrics, "calls": calls, "labels": routing[0].labels}


# 12 rows in groups of 4 (prompts of ~1,000 byte tokens, completions <= 16): whole groups per
# microbatch; groups split over microbatches; packed by tokens (unshared: one row per microbatch;
# shared: one prompt and its rows)
SETTINGS = {"rows-8": dict(microbatch=8), "rows-3": dict(microbatch=3), "tokens": dict(microbatch=5, microbatch_tokens=2000)}
# each case trains a step twice; one (split groups, a label mix) stays in the fast tier
STEP_CASES = [
    pytest.param(arm, settings, id=f"{name}-{arm}", marks=() if (name, arm) == ("rows-3", "routeA") else pytest.mark.slow)
    for name, settings in SETTINGS.items()
    for arm in ("none", "absorb", "routeA", "moe")
]


@pytest.mark.parametrize(("arm", "settings"), STEP_CASES)
def test_a_step_with_shared_prompts_is_the_unshared_step(problems, arm, settings):
    off = _step(problems, arm, False, **settings)
    on = _step(problems, arm, True, **settings)
    assert off["calls"] == {"behaviour": 0, "update": 0}
    assert on["calls"]["behaviour"] > 0  # the behaviour pass runs no row control: groups always share
    if arm == "moe":
        assert on["calls"]["update"] == 0  # the router's w carries autograd: every row alone
    else:
        assert on["calls"]["update"] > 0
    if arm == "routeA":
        assert len(set(on["labels"])) > 1, "the step must mix routing labels"
    assert on["metrics"]["live_groups"] > 0, "the demos must give some group a reward spread"

    assert on["grads"].keys() == off["grads"].keys() and on["grads"]
    for name, want in off["grads"].items():
        # the router's parameters stay float32 (the model is float64): 1e-6 of the scale there
        tol = 1e-6 if name.startswith("router.") else 1e-10
        torch.testing.assert_close(on["grads"][name], want, rtol=tol, atol=tol * float(want.abs().max()), msg=name)
    for key in ("logp_old", "logp_ref"):
        torch.testing.assert_close(getattr(on["behaviour"], key), getattr(off["behaviour"], key), rtol=2.5e-7, atol=0)
    torch.testing.assert_close(on["behaviour"].features, off["behaviour"].features, rtol=1e-6, atol=1e-7)
    assert on["labels"] == off["labels"]
    # a token budget packs a prompt's rows together when sharing: other microbatches, so the means
    # over microbatches of per-microbatch statistics may differ (the loss and gradients may not)
    repacked = set(MICROBATCH_STATS) if "microbatch_tokens" in settings else set()
    for key, a in off["metrics"].items():
        if key == "time" or key in repacked:
            continue
        b = on["metrics"][key]
        if isinstance(a, float):
            assert b == pytest.approx(a, rel=1e-6, abs=1e-9), key
        else:
            assert b == a, key


def test_share_prompt_refuses_what_it_does_not_support():
    with pytest.raises(UserError, match="gradient_checkpointing"):
        make_config("tiny", dict(share_prompt=True, gradient_checkpointing=True)).validate()
    from evilmoe.batched import check_batchable

    with pytest.raises(UserError, match="batched"):
        check_batchable([make_config("tiny", dict(share_prompt=True, arm=arm)) for arm in ("none", "moe")])
