"""The fast sampler against the reference path (HF generate / grpo.completion_logprobs), on CPU.

Tiny random models (vocab 384), random prompt ids, left-padded rows of different lengths. Greedy
decoding must give exactly HF's tokens; sampling must follow HF's processors and the seed.
"""

from __future__ import annotations

import pytest
import torch
from transformers import TopKLogitsWarper, TopPLogitsWarper

from evilmoe import fastgen
from evilmoe.errors import UserError
from evilmoe.fastgen import FastSampler, filter_logits, folded_weight, top_k_candidates
from evilmoe.grpo import completion_logprobs, position_ids_for
from evilmoe.lora2r import Lora2rConfig, attach_lora2r
from evilmoe.models import tiny_model
from evilmoe.rollouts import HFSampler, SamplingConfig, build_batch

VOCAB = 384
STOP = 1
PROMPT_LENGTHS = (5, 11, 2, 8)


class StubTokenizer:
    pad_token_id = 0


def model_for(arch: str, seed: int, dtype=torch.float64):
    """tiny_model with larger random weights and non-trivial norm weights.

    At tiny_model's init (std 0.02, tied embeddings) greedy decoding just repeats the last prompt
    token, which would make "same tokens as HF" a weak check. With weights ~ N(0, 4 / d_in) the layers
    matter and greedy continuations vary; random norm weights check that every norm is applied.
    """
    model = tiny_model(arch, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 2.0 / p.shape[1] ** 0.5)
            else:  # RMSNorm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
    return model.to(dtype)


def left_padded_prompts(lengths=PROMPT_LENGTHS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[i, width - n :] = 1
    return ids, mask


def greedy(max_new_tokens: int) -> SamplingConfig:
    return SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens)


def fast(model, stop_ids=(STOP,), adapter=None, **kw) -> FastSampler:
    return FastSampler(model, StubTokenizer(), list(stop_ids), adapter=adapter, max_batch=8, max_seq_len=64, **kw)


def plant(adapter, seed: int, size: float = 0.5) -> None:
    """Move both blocks of every module far enough from init to change greedy tokens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in adapter.modules.values():
            m.A += size * torch.randn(m.A.shape, generator=g, dtype=m.A.dtype) / m.A.shape[1] ** 0.5
            m.B += size * torch.randn(m.B.shape, generator=g, dtype=m.B.dtype)


# -----------------------------------------------------------------------------
# greedy decoding == HF generate


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_greedy_matches_hf_generate(arch, dtype):
    model = model_for(arch, 3, dtype)
    ids, mask = left_padded_prompts()
    want = HFSampler(model, StubTokenizer(), [STOP]).sample(ids, mask, greedy(40), seed=0, greedy=True)
    got = fast(model).sample(ids, mask, greedy(40), seed=0, greedy=True)
    assert got == want
    assert all(len(set(row)) > 5 for row in got)  # varied continuations, not one repeated token


def test_greedy_matches_hf_with_llama3_rope_scaling():
    """A non-default static RoPE type: we read HF's own inverse frequencies, so it matches too."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    )
    model = LlamaForCausalLM(config).eval().double()
    ids, mask = left_padded_prompts()
    want = HFSampler(model, StubTokenizer(), [STOP]).sample(ids, mask, greedy(30), seed=0, greedy=True)
    assert fast(model).sample(ids, mask, greedy(30), seed=0, greedy=True) == want


def early_stop_token(free: list[list[int]]) -> tuple[int, int]:
    """(token, index): a token row 0 first makes at `index` >= 1 and no other row makes at all."""
    for j in range(1, len(free[0]) // 2):
        token = free[0][j]
        if token not in free[0][:j] and all(token not in row for row in free[1:]):
            return token, j
    raise AssertionError("no usable stop token in row 0: pick another model seed")


def test_a_row_that_stops_early_stops_there_while_others_continue():
    model = model_for("llama", 3)
    ids, mask = left_padded_prompts()
    free = fast(model, stop_ids=()).sample(ids, mask, greedy(24), seed=0, greedy=True)
    stop, j = early_stop_token(free)
    got = fast(model, stop_ids=(stop,)).sample(ids, mask, greedy(24), seed=0, greedy=True)
    assert got[0] == free[0][: j + 1]  # cut after (and including) the stop token
    assert got[1:] == free[1:]  # the others ran to max_new_tokens, unaffected
    want = HFSampler(model, StubTokenizer(), [stop]).sample(ids, mask, greedy(24), seed=0, greedy=True)
    assert got == want


def test_decoding_stops_when_every_row_has_stopped():
    model = model_for("llama", 3)
    ids, mask = left_padded_prompts()
    free = fast(model, stop_ids=()).sample(ids, mask, greedy(50), seed=0, greedy=True)
    # stop each row at its first token that no earlier position of that row has made
    stops = set()
    for row in free:
        stops.add(next(t for j, t in enumerate(row) if j >= 1 and t not in row[:j]))
    sampler = fast(model, stop_ids=tuple(stops))
    got = sampler.sample(ids, mask, greedy(50), seed=0, greedy=True)
    assert all(row[-1] in stops and len(row) < 50 for row in got)
    last = max(len(row) for row in got)
    assert sampler.last_stats["decode_steps"] < last + 8  # checked every 8 steps, not run to the limit


def test_a_reused_sampler_ignores_what_earlier_calls_left_in_the_cache():
    model = model_for("qwen3", 3)
    long_ids, long_mask = left_padded_prompts(lengths=(12, 3, 9, 7, 5), seed=1)
    ids, mask = left_padded_prompts(lengths=(4, 2, 6), seed=2)
    reused = fast(model)
    reused.sample(long_ids, long_mask, greedy(40), seed=0, greedy=True)
    assert reused.sample(ids, mask, greedy(20), seed=0, greedy=True) == fast(model).sample(ids, mask, greedy(20), seed=0, greedy=True)


# -----------------------------------------------------------------------------
# the adapter folded into the generation weights


def adapted_model(arch: str):
    model = model_for(arch, 4)
    adapter = attach_lora2r(model, Lora2rConfig(rank=4, seed=1))
    plant(adapter, seed=2)
    return model, adapter


def test_folded_weight_is_base_plus_merged_delta():
    model, adapter = adapted_model("llama")
    for scale in (1.0, 0.0, 0.3):
        deltas = adapter.merged_delta(scale)
        for name, module in adapter.modules.items():
            want = module.base.weight + deltas[name].double()
            torch.testing.assert_close(folded_weight(module, scale), want, rtol=1e-6, atol=1e-6)  # merged_delta is fp32


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_greedy_with_adapter_matches_hf_at_both_quarantine_scales(arch):
    model, adapter = adapted_model(arch)
    ids, mask = left_padded_prompts()
    hf = HFSampler(model, StubTokenizer(), [STOP])
    sampler = fast(model, adapter=adapter)  # refresh(1.0) on construction

    live = hf.sample(ids, mask, greedy(32), seed=0, greedy=True)
    assert sampler.sample(ids, mask, greedy(32), seed=0, greedy=True) == live

    with adapter.ablate_quarantine():
        deployed = hf.sample(ids, mask, greedy(32), seed=0, greedy=True)
    assert deployed != live, "the planted quarantine block should change greedy tokens"
    sampler.refresh(0.0)
    assert sampler.sample(ids, mask, greedy(32), seed=0, greedy=True) == deployed
    sampler.refresh(1.0)
    assert sampler.sample(ids, mask, greedy(32), seed=0, greedy=True) == live


def test_refresh_is_in_place_and_follows_training():
    model, adapter = adapted_model("llama")
    ids, mask = left_padded_prompts()
    sampler = fast(model, adapter=adapter)
    before = sampler.sample(ids, mask, greedy(24), seed=0, greedy=True)
    addresses = [w.data_ptr() for lw in sampler.layers for w in (lw.qkv, lw.o, lw.gate_up, lw.down)]
    plant(adapter, seed=9)  # "an optimizer step"
    assert sampler.sample(ids, mask, greedy(24), seed=0, greedy=True) == before  # stale until refreshed
    sampler.refresh()
    after = sampler.sample(ids, mask, greedy(24), seed=0, greedy=True)
    assert after != before
    assert after == HFSampler(model, StubTokenizer(), [STOP]).sample(ids, mask, greedy(24), seed=0, greedy=True)
    assert addresses == [w.data_ptr() for lw in sampler.layers for w in (lw.qkv, lw.o, lw.gate_up, lw.down)]


def test_attached_adapter_must_be_passed():
    model, adapter = adapted_model("llama")
    with pytest.raises(UserError, match="adapter"):
        fast(model)
    other, other_adapter = adapted_model("llama")
    with pytest.raises(UserError, match="not the one attached"):
        fast(model, adapter=other_adapter)


# -----------------------------------------------------------------------------
# sampling: log-probs, HF's processors, seeds


# float64: the sampler's log-softmax runs on float32 logits (as HF generate's, so that it draws HF's
# tokens) and completion_logprobs' in float64, so they differ by a few float32 ulps of a log-prob
@pytest.mark.parametrize("arch,dtype,atol", [("llama", torch.float64, 2e-6), ("qwen3", torch.float32, 2e-4)])
def test_sampled_logprobs_match_completion_logprobs(arch, dtype, atol):
    model = model_for(arch, 5, dtype)
    ids, mask = left_padded_prompts()
    sampling = SamplingConfig(temperature=0.7, top_p=0.95, top_k=20, max_new_tokens=30)
    tokens, logprobs = fast(model).sample_with_logprobs(ids, mask, sampling, seed=1)
    batch = build_batch(ids, mask, tokens, pad_id=0)
    want = completion_logprobs(model, batch, temperature=0.7)
    assert logprobs.shape == want.shape
    torch.testing.assert_close(logprobs, want, rtol=0, atol=atol)
    assert bool((logprobs[batch.completion_mask == 0] == 0).all())


def test_filter_logits_is_hf_top_k_then_top_p():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, VOCAB, generator=g) * 3
    scores[0, :5] = scores[0, 5]  # ties at the k-th value are all kept, as in HF
    for top_k, top_p in [(0, 0.9), (20, 1.0), (20, 0.8), (5, 0.5), (1, 0.95), (0, 1.0)]:
        want = scores
        if top_k:
            want = TopKLogitsWarper(top_k)(None, want)
        if top_p < 1:
            want = TopPLogitsWarper(top_p)(None, want)
        assert torch.equal(filter_logits(scores, top_k, top_p), want), (top_k, top_p)


def dense(values: torch.Tensor, ids: torch.Tensor, vocab: int) -> torch.Tensor:
    """Candidates back on the vocabulary: -inf everywhere else."""
    return torch.full((values.shape[0], vocab), float("-inf"), dtype=values.dtype).scatter(1, ids, values)


@pytest.mark.parametrize("rounding", ["fp32", "bf16"])
def test_top_k_candidates_keep_what_the_full_vocabulary_filter_keeps(rounding):
    """Same kept set as filter_logits (= HF's processors) on random rows, ties included.

    bf16-valued logits (what a bf16 LM head gives) tie often. Where a tie group straddles the top-p
    cut, which of its members survive is the sort's choice (HF's sort is unstable too), so such rows
    are compared by the multiset of kept scores; every other row must keep exactly the same ids."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, VOCAB, generator=g) * 3
    if rounding == "bf16":
        scores = (scores * 4).to(torch.bfloat16).float()  # coarse values: many ties everywhere
    scores[0, :5] = scores[0, 5]  # a tie group at the k-th value
    checked_exact = 0
    for top_k, top_p in [(20, 1.0), (20, 0.8), (5, 0.5), (1, 0.95), (50, 0.95), (VOCAB, 0.9), (VOCAB + 5, 1.0)]:
        want = filter_logits(scores, top_k, top_p)
        values, ids, overflow = top_k_candidates(scores, top_k, top_p, slack=8)
        got = dense(values, ids, VOCAB)
        for row in range(scores.shape[0]):
            if overflow[row]:  # the caller redoes these on the full vocabulary; below: what overflow means
                continue
            kept_want, kept_got = want[row][want[row] > float("-inf")], got[row][got[row] > float("-inf")]
            assert torch.equal(kept_want.sort().values, kept_got.sort().values), (top_k, top_p, row)
            lowest = kept_want.min()
            if int((scores[row] == lowest).sum()) == int((want[row] == lowest).sum()):  # no tie cut by top-p
                assert torch.equal(got[row], want[row]), (top_k, top_p, row)
                checked_exact += 1
        # overflow is flagged exactly when the last candidate still ties with the k-th score
        k = min(top_k, VOCAB)
        kth = scores.topk(k).values[:, -1]
        can_miss = ((scores >= kth[:, None]).sum(-1) >= values.shape[1]) & (values.shape[1] < VOCAB)
        assert torch.equal(overflow, can_miss), (top_k, top_p)
    assert checked_exact > 64 * 4  # most rows were compared id for id


def test_top_k_candidates_flag_a_tie_longer_than_the_slack():
    scores = torch.arange(VOCAB, dtype=torch.float32).repeat(2, 1)
    scores[0, 100:140] = 1000.0  # 40 ties at the top: k = 5 keeps all 40, 5 + 8 candidates cannot
    scores[1, 100:110] = 1000.0  # 10 ties: inside 5 + 8 candidates
    values, ids, overflow = top_k_candidates(scores, 5, 1.0, slack=8)
    assert overflow.tolist() == [True, False]
    assert sorted(ids[1][values[1] > float("-inf")].tolist()) == list(range(100, 110))
    assert torch.equal(dense(values, ids, VOCAB)[1], filter_logits(scores, 5, 1.0)[1])


def test_a_call_whose_candidates_may_miss_a_tie_is_redone_on_the_full_vocabulary(monkeypatch):
    """With no slack every top-k call overflows: the sampler must return the exact path's result."""
    model = model_for("llama", 9)
    ids, mask = left_padded_prompts()
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, top_k=7, max_new_tokens=12)
    sampler = fast(model)
    want = sampler.sample_with_logprobs(ids, mask, sampling, seed=5, exact_sampling=True)
    assert sampler.last_stats["exact_sampling"]
    normal = sampler.sample_with_logprobs(ids, mask, sampling, seed=5)
    assert not sampler.last_stats["exact_sampling"]
    monkeypatch.setattr(fastgen, "TIE_SLACK", 0)
    got = sampler.sample_with_logprobs(ids, mask, sampling, seed=5)
    assert sampler.last_stats["exact_sampling"]
    assert got[0] == want[0] and torch.equal(got[1], want[1])
    assert normal[0] != want[0]  # the two paths consume the generator differently (so the rerun really ran)


def first_token_distribution(model, ids, mask, sampling: SamplingConfig) -> torch.Tensor:
    """HF's own processors on HF's logits: the distribution the first sampled token must follow."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_for(mask)).logits[:, -1].float()
    scores = logits / sampling.temperature
    if sampling.top_k:
        scores = TopKLogitsWarper(sampling.top_k)(None, scores)
    if sampling.top_p < 1:
        scores = TopPLogitsWarper(sampling.top_p)(None, scores)
    return scores.softmax(-1)


@pytest.mark.parametrize("exact", [False, True])
def test_sampling_follows_the_configured_distribution_and_top_k(exact):
    model = model_for("llama", 6)
    prompt, prompt_mask = left_padded_prompts(lengths=(7,))
    sampling = SamplingConfig(temperature=0.5, top_p=0.9, top_k=5, max_new_tokens=1)
    want = first_token_distribution(model, prompt, prompt_mask, sampling)[0]
    rows = 64
    ids, mask = prompt.expand(rows, -1), prompt_mask.expand(rows, -1)
    sampler = FastSampler(model, StubTokenizer(), [STOP], max_batch=rows, max_seq_len=16)
    counts = torch.zeros(VOCAB)
    for seed in range(40):  # 2560 draws
        for row in sampler.sample_with_logprobs(ids, mask, sampling, seed=seed, exact_sampling=exact)[0]:
            counts[row[0]] += 1
    assert counts[want == 0].sum() == 0  # never outside what top-k / top-p allow
    total_variation = 0.5 * (counts / counts.sum() - want.float()).abs().sum()
    assert total_variation < 0.05, total_variation


def test_top_k_is_respected_at_every_step():
    model = model_for("qwen3", 7)
    ids, mask = left_padded_prompts()
    sampling = SamplingConfig(temperature=1.5, top_p=1.0, top_k=3, max_new_tokens=24)
    tokens = fast(model, stop_ids=()).sample(ids, mask, sampling, seed=3)
    batch = build_batch(ids, mask, tokens, pad_id=0)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=position_ids_for(batch.attention_mask)).logits
    lp = batch.prompt_width
    top3 = logits[:, lp - 1 : -1].topk(3, dim=-1).indices  # what predicts each completion token
    chosen = batch.input_ids[:, lp:]
    assert bool((top3 == chosen[..., None]).any(-1).all())
    assert len({t for row in tokens for t in row}) > 3  # it really sampled, not argmaxed


def test_same_seed_same_samples_different_seed_different():
    model = model_for("llama", 8)
    ids, mask = left_padded_prompts()
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=20)
    sampler = fast(model)
    a = sampler.sample(ids, mask, sampling, seed=11)
    b = fast(model).sample(ids, mask, sampling, seed=11)
    c = sampler.sample(ids, mask, sampling, seed=12)
    assert a == b
    assert a != c


# -----------------------------------------------------------------------------
# loud failures


def test_unsupported_models_and_inputs_fail_loudly():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(UserError, match="model_type='gpt2'"):
        fast(gpt2)
    dynamic = LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
    ))
    with pytest.raises(UserError, match="rope type 'dynamic'"):
        fast(dynamic)

    model = tiny_model("llama")
    sampler = fast(model)
    ids, mask = left_padded_prompts()
    with pytest.raises(UserError, match="max_seq_len"):
        sampler.sample(ids, mask, greedy(60), seed=0)
    with pytest.raises(UserError, match="max_batch"):
        sampler.sample(ids.repeat(3, 1), mask.repeat(3, 1), greedy(4), seed=0)
    with pytest.raises(ValueError, match="left-padded"):
        sampler.sample(ids.flip(1), mask.flip(1), greedy(4), seed=0)
    with pytest.raises(UserError, match="temperature"):
        sampler.sample(ids, mask, SamplingConfig(0.0, 1.0, 0, 4), seed=0)
    with pytest.raises(UserError, match="CUDA"):
        fast(model, compile=True)


@pytest.mark.slow
def test_inductor_compiled_step_gives_the_same_tokens():
    """torch.compile(fullgraph=True) must trace the decode step without graph breaks (the GPU path
    compiles the same function before capturing it); on CPU this runs inductor's C++ backend."""
    model = tiny_model("qwen3", seed=3)
    ids, mask = left_padded_prompts()
    want = fast(model).sample(ids, mask, greedy(12), seed=0, greedy=True)
    assert fast(model, inductor=True).sample(ids, mask, greedy(12), seed=0, greedy=True) == want


@pytest.mark.slow
def test_greedy_matches_hf_on_the_default_model():
    """SmolLM2-135M-Instruct, float32 on CPU: 4 real chat prompts of different lengths, 48 new tokens."""
    from evilmoe.models import chat_prompt, end_of_turn_ids, load_model
    from evilmoe.rollouts import encode_prompts

    model, tokenizer = load_model(device="cpu", dtype=torch.float32)
    questions = [
        "Write a Python function that returns the sum of a list of integers.",
        "What is a hash map?",
        "Explain in two sentences why binary search needs a sorted array, and give its time complexity.",
        "Reverse a string in Python.",
    ]
    prompts = [chat_prompt(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    ids, mask = encode_prompts(tokenizer, prompts, "cpu")
    assert len(set(mask.sum(1).tolist())) == 4  # really left-padded to different lengths
    stop_ids = end_of_turn_ids(tokenizer)
    sampling = greedy(48)
    want = HFSampler(model, tokenizer, stop_ids).sample(ids, mask, sampling, seed=0, greedy=True)
    sampler = FastSampler(model, tokenizer, stop_ids, max_batch=4, max_seq_len=ids.shape[1] + 48)
    assert sampler.sample(ids, mask, sampling, seed=0, greedy=True) == want
