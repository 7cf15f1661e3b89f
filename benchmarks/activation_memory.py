"""Activation memory of the update's forward, per token and per decoder layer, measured on CPU.

What autograd keeps for the backward of `grpo.completion_logprobs` under the adapter's row control
(the update's training forward) is counted with `torch.autograd.graph.saved_tensors_hooks`: every
saved tensor's storage once, parameters and buffers left out. Models of the chosen shape with 1 and
2 decoder layers, on R and 2R rows, are measured: the differences give exactly one layer's bytes per
token and the bytes per token outside the layers (embedding output, LM-head chunks), with whatever
does not grow with the tokens (the adapter's weights cast to the model's dtype) cancelled out. The
table lists one layer's saved tensors at R rows by shape and dtype. Then it extrapolates to a
microbatch of the full depth: rows x width x (layers x per-layer + outside).

Speed does not matter here, only which tensors are kept, so a CPU in the model's dtype gives the
GPU's numbers, up to the attention kernel's own saved tensors (SDPA's flash/efficient kernels on a
GPU save q, k, v, the output and a [B, H, L] log-sum-exp, as the CPU flash kernel does).

    python benchmarks/activation_memory.py                                  # smollm2-135m shape, bf16
    python benchmarks/activation_memory.py --gradient-checkpointing          # what checkpointing keeps
    python benchmarks/activation_memory.py --microbatch-rows 64 --microbatch-width 550
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

from evilmoe.grpo import SequenceBatch, completion_logprobs
from evilmoe.lora2r import Lora2rConfig, attach_lora2r

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below, however this file is run
from random_models import SHAPES, build_config  # noqa: E402


def saved_bytes(shape: str, layers: int, rows: int, prompt: int, completion: int, dtype: torch.dtype, rank: int,
                checkpointing: bool) -> tuple[int, Counter]:
    """(bytes autograd keeps, bytes by (shape, dtype)) for one training forward of `rows` x (prompt + completion)."""
    from transformers import AutoModelForCausalLM

    config = build_config(shape)
    config.num_hidden_layers = layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(dtype).requires_grad_(False)
    if checkpointing:  # as evilmoe.policy enables it
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    adapter = attach_lora2r(model, Lora2rConfig(rank=rank, alpha=2.0 * rank))
    ids = torch.randint(3, 1000, (rows, prompt + completion))
    batch = SequenceBatch(ids, torch.ones_like(ids), torch.ones(rows, completion, dtype=torch.long), prompt)
    skip = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}
    by_shape: Counter = Counter()

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip and ptr not in seen:
            seen[ptr] = t.untyped_storage().nbytes()
            by_shape[(tuple(t.shape), str(t.dtype).removeprefix("torch."))] += seen[ptr]
        return t

    half = rows // 2  # the Evil MoE control: q, g per row
    q = torch.tensor([0.9] * half + [0.1] * (rows - half))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), adapter.row_control(q, 1 - q):
        completion_logprobs(model, batch, temperature=0.7).sum()
    return sum(seen.values()), by_shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--rows", type=int, default=4, help="rows of the measured forward")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens per row of the measured forward")
    parser.add_argument("--completion", type=int, default=256, help="completion tokens per row of the measured forward")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--microbatch-rows", type=int, default=64, help="the extrapolated microbatch: rows")
    parser.add_argument("--microbatch-width", type=int, default=550, help="the extrapolated microbatch: tokens per row")
    args = parser.parse_args(argv)

    dtype = getattr(torch, args.dtype)
    common = (args.rows, args.prompt, args.completion, dtype, args.rank, args.gradient_checkpointing)
    rest = common[1:]
    one, shapes_one = saved_bytes(args.shape, 1, *common)
    two, shapes_two = saved_bytes(args.shape, 2, *common)
    one_2r, _ = saved_bytes(args.shape, 1, 2 * args.rows, *rest)
    two_2r, _ = saved_bytes(args.shape, 2, 2 * args.rows, *rest)
    tokens = args.rows * (args.prompt + args.completion)  # the tokens that R more rows add
    per_layer = ((two_2r - one_2r) - (two - one)) / tokens
    fixed = (one_2r - one) / tokens - per_layer
    layers = build_config(args.shape).num_hidden_layers
    print(f"activation memory of the training forward: {args.shape}, {args.dtype}, adapter rank {args.rank}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}; measured on {args.rows} rows x "
          f"{args.prompt} + {args.completion} tokens")
    print(f"per token: {per_layer / 1e3:.2f} kB per decoder layer, {fixed / 1e3:.2f} kB outside the layers")
    print(f"{'one layer at ' + str(args.rows) + ' rows: saved tensor (shape, dtype)':<52} {'bytes / token':>13}")
    layer = shapes_two - shapes_one
    for (shape, dt), nbytes in sorted(layer.items(), key=lambda kv: -kv[1]):
        print(f"{str(shape) + ' ' + dt:<52} {nbytes / tokens:>13.0f}")
    mb_tokens = args.microbatch_rows * args.microbatch_width
    total = mb_tokens * (layers * per_layer + fixed)
    print(f"extrapolated: microbatch {args.microbatch_rows} rows x {args.microbatch_width} tokens, {layers} layers: "
          f"{total / 1e9:.1f} GB of saved activations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
