"""Randomly initialised models of the shapes the benchmarks report, built from configs in code.

The GPU machine has no network and no model weights; speed and memory depend only on the shapes
(and on how long rollouts run), so the benchmarks time models of the real architectures with random
weights. The shapes are the published configs' numbers:

* `smollm2-135m`: SmolLM2-135M-Instruct, the default model (Llama: hidden 576, 30 layers, 9 heads,
  3 kv heads, MLP 1536, vocab 49,152, tied embeddings, RoPE theta 100,000).
* `qwen3-1.7b`, `qwen3-4b`: Qwen3-1.7B / Qwen3-4B (hidden 2048 / 2560, 28 / 36 layers, 16 / 32
  heads, 8 kv heads, head dim 128, MLP 6144 / 9728, vocab 151,936, tied, RoPE theta 1e6, q/k norms).
* `tiny-llama`, `tiny-qwen3`: toy depth and width with the real vocab sizes, for CPU checks of the
  benchmarks themselves.

`random_model(name, tokenizer, ...)` zeroes the embedding rows of every id the tokenizer lacks and of
its end-of-turn ids (tied weights: those logits are exactly 0, below the top-20 of the ~N(0, 1)
logits of the ids that remain), so with top-k 20 a rollout never stops early and every sampled id
decodes: the worst case for time and memory.
"""

from __future__ import annotations

from typing import Any

import torch

from evilmoe.models import end_of_turn_ids, fix_special_tokens

SMOLLM2_VOCAB = 49152
QWEN3_VOCAB = 151936

# name -> (model_type, config fields). Every field that differs from transformers' defaults is spelled out.
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "smollm2-135m": ("llama", dict(
        vocab_size=SMOLLM2_VOCAB, hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        intermediate_size=1536, rope_theta=100_000.0, rms_norm_eps=1e-5, max_position_embeddings=8192, tie_word_embeddings=True,
    )),
    "qwen3-1.7b": ("qwen3", dict(
        vocab_size=QWEN3_VOCAB, hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
        head_dim=128, intermediate_size=6144, rope_theta=1_000_000.0, rms_norm_eps=1e-6, max_position_embeddings=40960,
        tie_word_embeddings=True,
    )),
    "qwen3-4b": ("qwen3", dict(
        vocab_size=QWEN3_VOCAB, hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
        head_dim=128, intermediate_size=9728, rope_theta=1_000_000.0, rms_norm_eps=1e-6, max_position_embeddings=40960,
        tie_word_embeddings=True,
    )),
    # CPU checks of the benchmarks: the real vocab sizes, toy depth and width
    "tiny-llama": ("llama", dict(
        vocab_size=SMOLLM2_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, rope_theta=100_000.0, max_position_embeddings=8192, tie_word_embeddings=True,
    )),
    "tiny-qwen3": ("qwen3", dict(
        vocab_size=QWEN3_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=128, rope_theta=1_000_000.0, max_position_embeddings=40960, tie_word_embeddings=True,
    )),
}


def build_config(name: str):
    """The transformers config of a named shape."""
    from transformers import LlamaConfig, Qwen3Config

    model_type, fields = SHAPES[name]
    return (LlamaConfig if model_type == "llama" else Qwen3Config)(**fields)


def random_model(name: str, tokenizer, device: torch.device | str, dtype: torch.dtype, *, seed: int = 0):
    """A randomly initialised model of shape `name` (frozen, eval mode) whose sampled ids decode and never stop."""
    from transformers import AutoModelForCausalLM

    if name not in SHAPES:
        raise ValueError(f"unknown random model {name!r}; choose one of {sorted(SHAPES)}")
    config = build_config(name)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} ids, more than {name}'s vocab {config.vocab_size}")
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise directly in the target dtype on the device (no fp32 copy of 4B weights)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to(device=device, dtype=dtype)
    with torch.no_grad():  # see the module docstring
        embed = model.get_input_embeddings().weight
        embed[len(tokenizer) :] = 0
        embed[end_of_turn_ids(tokenizer)] = 0
    fix_special_tokens(tokenizer, model)
    model.eval()
    model.requires_grad_(False)
    return model


def parameter_counts(model) -> dict[str, int]:
    """Parameters of the decoder's projections (what every token multiplies), the LM head, and all."""
    lm_head = model.get_output_embeddings().weight
    embed = model.get_input_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    projections = sum(m.weight.numel() for m in model.get_decoder().modules() if isinstance(m, torch.nn.Linear))
    return {"total": total, "projections": projections, "lm_head": lm_head.numel(), "embedding": embed.numel()}
