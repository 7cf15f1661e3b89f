"""What the two-block adapter adds to a training forward and backward, against the base model alone.

The update's forward (`grpo.completion_logprobs`) and its backward on a randomly initialised model of
a published shape, timed in four controls on the same rows in the same run:

    base      the adapter off (`adapter.disabled()`: the frozen model alone, forward only: nothing to train)
    plain     both blocks on, no routing control (the `none` arm's update)
    rows      per-row control (q = w, g = 1 - w: the `moe` arm's update; the router's w carries autograd)
    rows, fw  the same, forward only (the behaviour pass, under no_grad)

and prints each as a ratio to `base` forward, plus the absolute seconds. The adapter's own cost is what
the ratios show above the base. Parameters are trained, so the adapter's factors are perturbed from
their init first (at init every block's term is exactly zero, which would flatter nothing but is not
the case being timed).

    python benchmarks/adapter_overhead.py                                  # CPU, 4 layers of the default model's shape
    python benchmarks/adapter_overhead.py --device cuda --layers 30 --rows 64 --tokens 550
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from evilmoe.grpo import SequenceBatch, completion_logprobs
from evilmoe.lora2r import Lora2rConfig, attach_lora2r

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below, however this file is run
from random_models import SHAPES, build_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (the shape's own count: 30 for the default model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["bfloat16", "float32"])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256, help="tokens per row (half of them completion)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each control (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    config = build_config(args.shape)
    config.num_hidden_layers = args.layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(device=device, dtype=dtype).requires_grad_(False)
    model.train()
    adapter = attach_lora2r(model, Lora2rConfig(rank=args.rank, alpha=2.0 * args.rank))
    with torch.no_grad():  # a trained adapter, not the init (where every block's term is zero)
        for p in adapter.parameters():
            p.add_(0.01 * torch.randn_like(p))
    prompt = args.tokens // 2
    ids = torch.randint(3, 1000, (args.rows, args.tokens), device=device)
    batch = SequenceBatch(ids, torch.ones_like(ids), torch.ones(args.rows, args.tokens - prompt, dtype=torch.long, device=device), prompt)
    w = torch.linspace(0.05, 0.95, args.rows, device=device).requires_grad_(True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def clear() -> None:
        for p in adapter.parameters():
            p.grad = None
        w.grad = None

    def base() -> None:
        with torch.no_grad(), adapter.disabled():
            completion_logprobs(model, batch, temperature=0.7)

    def plain() -> None:
        completion_logprobs(model, batch, temperature=0.7).sum().backward()

    def rows() -> None:
        with adapter.row_control(w, (1 - w).detach()):
            completion_logprobs(model, batch, temperature=0.7).sum().backward()

    def rows_forward() -> None:
        with torch.no_grad(), adapter.row_control(w.detach(), (1 - w).detach()):
            completion_logprobs(model, batch, temperature=0.7)

    controls = {"base (adapter off), forward": base, "plain, forward + backward": plain,
                "rows, forward + backward": rows, "rows, forward (no_grad)": rows_forward}  # fmt: skip
    for fn in controls.values():  # warm-up (allocator, kernels, autotuning)
        fn()
        clear()
    # round-robin: each repeat times every control once, so a drifting machine load hits all alike
    runs: dict[str, list[float]] = {name: [] for name in controls}
    for _ in range(args.repeats):
        for name, fn in controls.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            runs[name].append(time.perf_counter() - t0)
            clear()
    times = {name: statistics.median(ts) for name, ts in runs.items()}
    ref = times["base (adapter off), forward"]
    print(f"adapter overhead: {args.shape} shape, {args.layers} layers, {args.dtype} on {args.device}, "
          f"{args.rows} rows x {args.tokens} tokens, rank {args.rank}, median of {args.repeats}")
    print(f"{'control':<32} {'seconds':>9} {'x base forward':>15}")
    for name, t in times.items():
        print(f"{name:<32} {t:>9.4f} {t / ref:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
