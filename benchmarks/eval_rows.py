"""What the rows per generation call cost an evaluation: one held-out set sampled at several
`eval_rows_per_call` values, in the same run, on the same model.

An evaluation (start, validation, final ON/OFF, every dose scale and random slice) generates its
rows in calls of `eval_rows_per_call` rows. On a GPU a 135M model's decode step is bound by kernel
launches, so a call of 256 rows costs little more per step than one of 64, but a call lasts as long as
its longest row. This times the generation alone (the grader is not involved) of one eval set's
prompts at each value, alternating the values over the repeats, and prints seconds and the ratio to
the first value. The model as it is (no adapter training): completions stop where the model stops.

    python benchmarks/eval_rows.py --model tiny-llama --rows 4,16 --problems 8          # CPU smoke run
    python benchmarks/eval_rows.py --model /root/evm/model.gguf --device cuda --preset gpu-small --rows 64,128,256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from evilmoe.config import make_config
from evilmoe.env.problems import load_problem_set
from evilmoe.evaluate import _generate, chunk_seeds, eval_prompts, make_eval_sets
from evilmoe.policy import Policy


def main(argv: list[str] | None = None) -> dict[int, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama", help="model spec (a .gguf path, a Hugging Face id or folder, tiny-llama)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny", help="the config the policy is built with (sampling, lengths)")
    parser.add_argument("--rows", default="64,256", help="comma-separated eval_rows_per_call values; the first is the baseline")
    parser.add_argument("--problems", type=int, default=0, help="held-out problems (0 = the whole set)")
    parser.add_argument("--samples", type=int, default=4, help="samples per problem")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per value, alternated over the values")
    args = parser.parse_args(argv)
    values = [int(v) for v in args.rows.split(",") if v]
    if not values or min(values) < 1:
        raise SystemExit(f"--rows must list positive integers (got {args.rows!r})")

    config = make_config(args.preset, {"model": args.model, "device": args.device, "arm": "none", "eval_rows_per_call": max(values),
                                       "eval_problems": args.problems})
    policy = Policy(config, load_problem_set(config.problem_set, config.data_dir))
    eval_set = make_eval_sets(config, policy.problems, split=config.eval_split, n_heldout=config.eval_problems, n_train=0)[0]
    prompts, _, _ = eval_prompts(policy, eval_set, args.samples)
    sync = torch.cuda.synchronize if policy.device.type == "cuda" else (lambda: None)

    def generate(rows: int) -> tuple[float, int]:
        """The evaluation's own generation path (evaluate._generate) and the count of its completion
        tokens, timed together."""
        sync()
        start = time.perf_counter()
        texts = _generate(policy, prompts, chunk_seeds(0, len(prompts), rows), rows, desc=f"{rows} rows a call")
        tokens = sum(len(policy.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        sync()
        return time.perf_counter() - start, tokens

    generate(values[0])  # warm-up: CUDA graphs, allocator, first-call costs
    times: dict[int, list[float]] = {v: [] for v in values}
    tokens: dict[int, int] = {}
    for _ in range(args.repeats):
        for v in values:
            seconds, tokens[v] = generate(v)
            times[v].append(seconds)
    base = statistics.median(times[values[0]])
    print(f"eval generation: {args.model} on {policy.device}, {len(eval_set.problems)} held-out problems x {args.samples} samples "
          f"= {len(prompts)} rows, median of {args.repeats}")
    print("rows per call | calls | seconds | completion tokens | x the first")
    for v in values:
        med = statistics.median(times[v])
        print(f"{v:13d} | {-(-len(prompts) // v):5d} | {med:7.2f} | {tokens[v]:17d} | {med / base:.2f}")
    return times


if __name__ == "__main__":
    main()
