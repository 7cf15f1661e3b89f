"""Generation throughput: FastSampler vs plain HF `generate`, and vs the memory-bandwidth bound.

Same model, same prompts, same sampling (T 0.7, top-p 0.95, top-k 20) for both paths, in one run.
Prompts are random non-special token ids, left-padded, with lengths spread over [0.8 L, L] for each
prompt length L. Every row generates exactly --new-tokens tokens in both paths, so both produce the
same number of tokens: HF gets `min_new_tokens = max_new_tokens` (its own processor masks the stop
tokens until then), and the fast sampler is built with no stop ids (no row ever stops). Both
are checked to have produced full-length rows.

tokens/s = rows * new tokens / wall time of one sampling call (prefill included), after a warm-up
call (HF: one small generate; fast: the same call once, which captures its CUDA graphs; the
capture/warm-up time is printed separately).

Bandwidth bound of the fast decode: each decode step must read every weight once (projections,
norms, the LM head; embedding rows are negligible) plus every row's real KV entries so far. Summed
over the steps and divided by the device's copy bandwidth (a large device-to-device copy measured
in this run, counting read + write), that is the least time the decode loop could take; "bound %" is
that over the measured decode time (prefill excluded).

Where a decode step's time goes: after each configuration's timed call, one decode step at the last
kv-length bucket is timed alone (the CUDA-graph replay, or the eager step on CPU: "step ms") and so
is the sampling that follows it (temperature, top-k, top-p, multinomial, log-prob: "sample ms"); the
rest of "ms/step" is the loop around them. With --inductor the same step of a sampler built without
torch.compile is timed too, in the same run, as its baseline. --profile-batch B prints a torch.profiler table of
the kernels of one eager decode step plus its sampling at batch B (the same kernels a graph
replays), sorted by device time, and --trace writes its Chrome trace.

--random-init NAME times a randomly initialised model of a published shape instead (smollm2-135m,
qwen3-1.7b, qwen3-4b; `benchmarks/random_models.py`) with the byte-level tokenizer built in code:
no weights and no network needed, and every row runs to the length limit either way.
--hf-new-tokens N caps plain `generate` at N new tokens (its tokens/s then comes from that shorter
run, which flatters it slightly: its per-token cost grows with the length); 0 skips it.

With --checks (default on CUDA) it also reports, on the first prompt set: greedy tokens of the fast
path vs HF (rows identical over all tokens, and the shortest common prefix), CUDA graphs vs eager
(must be identical), and the largest |log-prob| difference against grpo.completion_logprobs.

    # GPU (the configuration the docs report)
    python benchmarks/generation.py --device cuda --json gen.json
    # GPU, random Qwen3-4B at batch 64, plain generate capped at 32 tokens
    python benchmarks/generation.py --device cuda --random-init qwen3-4b --batch-sizes 64 --prompt-lens 150 --hf-new-tokens 32
    # CPU quick check (< 3 min)
    python benchmarks/generation.py --model tiny-llama --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from evilmoe.fastgen import KV_BUCKET, FastSampler, next_tokens
from evilmoe.grpo import completion_logprobs
from evilmoe.models import end_of_turn_ids, load_model, tiny_tokenizer
from evilmoe.rollouts import HFSampler, SamplingConfig, build_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below, however this file is run
from random_models import SHAPES, random_model  # noqa: E402

SAMPLING = dict(temperature=0.7, top_p=0.95, top_k=20)
GPU_DEFAULTS = dict(batch_sizes="32,128", prompt_lens="150,600", new_tokens=256)
CPU_DEFAULTS = dict(batch_sizes="8", prompt_lens="64", new_tokens=32)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_copy_bandwidth(device: torch.device, megabytes: int) -> float:
    """Bytes/s of a large device-to-device copy, counting the read and the write."""
    n = megabytes * 2**20
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    synchronize(device)
    repeats = 20 if device.type == "cuda" else 5
    started = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    synchronize(device)
    return 2 * n * repeats / (time.perf_counter() - started)


def make_prompts(tokenizer, vocab_size: int, rows: int, length: int, device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random prompts of non-special tokens, lengths spread over [0.8 L, L]."""
    g = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(vocab_size) if i not in special], dtype=torch.long)
    lengths = torch.randint(max(1, int(0.8 * length)), length + 1, (rows,), generator=g)
    lengths[0] = length  # the batch is exactly L wide
    ids = torch.full((rows, length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(rows, length, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        ids[i, length - n :] = allowed[torch.randint(0, len(allowed), (n,), generator=g)]
        mask[i, length - n :] = 1
    return ids.to(device), mask.to(device)


def timed(device: torch.device, fn):
    synchronize(device)
    started = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - started, out


def hf_generate(model, tokenizer, stop_ids, ids, mask, new_tokens: int, seed: int) -> list[list[int]]:
    """Plain generate, sampling, forced to exactly new_tokens tokens per row (min_new_tokens)."""
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, **SAMPLING,
    )
    return out[:, ids.shape[1] :].tolist()


def decode_bytes(sampler: FastSampler, mask: torch.Tensor, new_tokens: int) -> tuple[float, float]:
    """(weight bytes read per decode step, KV bytes read over all decode steps), the ideal minimum."""
    weights = [sampler.lm_head, sampler.final_norm]
    for lw in sampler.layers:
        weights += [lw.input_norm, lw.qkv, lw.o, lw.post_norm, lw.gate_up, lw.down]
        weights += [w for w in (lw.q_norm, lw.k_norm) if w is not None]
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    arch = sampler.arch
    per_token = 2 * arch.n_layers * arch.kv_size * sampler.k_cache[0].element_size()  # K and V, every layer
    prompt_tokens = float(mask.sum())
    rows = mask.shape[0]
    # decode step t (1 .. new_tokens - 1) attends over each row's prompt + t keys
    steps = new_tokens - 1
    kv_tokens = steps * prompt_tokens + rows * steps * (steps + 1) / 2
    return float(weight_bytes), kv_tokens * per_token


def mean_ms(device: torch.device, fn, repeats: int) -> float:
    """Mean milliseconds of fn() over `repeats` calls after one untimed call."""
    fn()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return 1e3 * (time.perf_counter() - started) / repeats


def last_kv_bucket(sampler: FastSampler) -> int:
    """The kv length the last decode step of the sampler's last call attended over (its graph exists)."""
    stats = sampler.last_stats
    column = int(stats["prompt_width"]) + max(0, int(stats["decode_steps"]) - 1)  # the column that step wrote
    return min(-(-(column + 1) // KV_BUCKET) * KV_BUCKET, sampler.key_valid.shape[1])


def step_breakdown(sampler: FastSampler, rows: int, sampling: SamplingConfig, repeats: int) -> dict:
    """One decode step (graph replay on CUDA) and its sampling, timed alone at the last kv bucket.

    Runs after a sampling call, on what it left in the static inputs: the step rewrites the cache
    column of that call's last step, which nothing reads any more.
    """
    stats = sampler.last_stats
    batch = int(stats["batch_bucket"])
    kv_len = last_kv_bucket(sampler)
    generator = torch.Generator(device=sampler.device).manual_seed(0)
    logits = sampler._run_decode_step(batch, kv_len)[:rows].clone()
    step_ms = mean_ms(sampler.device, lambda: sampler._run_decode_step(batch, kv_len), repeats)
    sample_ms = mean_ms(sampler.device, lambda: next_tokens(logits, sampling, False, generator), repeats)
    return {"kv_len": kv_len, "step_ms": step_ms, "sample_ms": sample_ms}


def profile_decode_step(sampler: FastSampler, rows: int, sampling: SamplingConfig, *, repeats: int = 5,
                        trace: str | None = None, row_limit: int = 25) -> str:
    """torch.profiler table of `repeats` eager decode steps + sampling (the kernels a graph replays).

    Sorted by self device time on CUDA (self CPU time on CPU); the totals are over all `repeats` steps.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    device = sampler.device
    stats = sampler.last_stats
    batch = int(stats["batch_bucket"])
    kv_len = last_kv_bucket(sampler)
    generator = torch.Generator(device=device).manual_seed(0)

    def step():
        with record_function("decode_step"):
            logits = sampler._decode_step(batch, kv_len)[:rows]
        with record_function("sampling"):
            next_tokens(logits, sampling, False, generator)

    step()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step()
        synchronize(device)
    if trace:
        prof.export_chrome_trace(trace)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    header = (f"profile: {repeats} eager decode steps + sampling, batch {batch} ({rows} rows), kv length {kv_len}, "
              f"sorted by {sort_by} (totals over the {repeats} steps)")
    return header + "\n" + prof.key_averages().table(sort_by=sort_by, row_limit=row_limit, max_name_column_width=60)


def run_config(model, tokenizer, stop_ids, device, batch: int, length: int, new_tokens: int, bandwidth: float,
               seed: int, inductor: bool, hf_new_tokens: int | None, profile: dict | None) -> dict:
    """One (batch, prompt length) configuration: plain generate, the fast sampler, the bound, the breakdown.

    profile: None, or profile_decode_step's keyword arguments to print a kernel table for this configuration.
    """
    vocab = model.config.vocab_size
    ids, mask = make_prompts(tokenizer, vocab, batch, length, device, seed)
    sampling = SamplingConfig(max_new_tokens=new_tokens, **SAMPLING)
    result: dict = {"batch": batch, "prompt_len": length, "new_tokens": new_tokens}

    hf_tokens = new_tokens if hf_new_tokens is None else min(hf_new_tokens, new_tokens)
    if hf_tokens > 0:
        hf_s, hf_rows = timed(device, lambda: hf_generate(model, tokenizer, stop_ids, ids, mask, hf_tokens, seed))
        assert all(len(r) == hf_tokens for r in hf_rows), "HF stopped early despite min_new_tokens"
        result.update(hf_new_tokens=hf_tokens, hf_s=hf_s, hf_tokens_per_s=batch * hf_tokens / hf_s)

    sampler = FastSampler(model, tokenizer, [], max_batch=batch, max_seq_len=length + new_tokens, inductor=inductor)
    warm_s, _ = timed(device, lambda: sampler.sample(ids, mask, sampling, seed=seed))
    fast_s, fast_rows = timed(device, lambda: sampler.sample(ids, mask, sampling, seed=seed + 1))
    assert all(len(r) == new_tokens for r in fast_rows), "fast sampler produced short rows"
    stats = dict(sampler.last_stats)

    weight_bytes, kv_bytes = decode_bytes(sampler, mask, new_tokens)
    steps = new_tokens - 1
    bound_s = (steps * weight_bytes + kv_bytes) / bandwidth
    result.update({
        "fast_tokens_per_s": batch * new_tokens / fast_s, "fast_s": fast_s, "fast_warmup_s": warm_s,
        "fast_prefill_s": stats["prefill_s"], "fast_decode_s": stats["decode_s"],
        "decode_ms_per_step": 1e3 * stats["decode_s"] / max(1, steps),
        "bound_ms_per_step": 1e3 * bound_s / max(1, steps),
        "bound_fraction": bound_s / stats["decode_s"],
        "weight_bytes_per_step": weight_bytes, "kv_bytes_total": kv_bytes,
    })
    if "hf_s" in result:
        result["speedup"] = result["fast_tokens_per_s"] / result["hf_tokens_per_s"]
    repeats = 20 if device.type == "cuda" else 3
    result.update(step_breakdown(sampler, batch, sampling, repeats))
    if inductor:  # the baseline in the same run: the same step without torch.compile
        plain = FastSampler(model, tokenizer, [], max_batch=batch, max_seq_len=length + new_tokens)
        plain.sample(ids, mask, sampling, seed=seed + 1)
        result["plain_step_ms"] = step_breakdown(plain, batch, sampling, repeats)["step_ms"]
        del plain
    if profile is not None:
        print(profile_decode_step(sampler, batch, sampling, **profile), flush=True)
    return result  # the sampler and its cache go with this frame; the caller empties the CUDA cache


def correctness_checks(model, tokenizer, stop_ids, device, length: int, seed: int) -> dict:
    """Greedy vs HF, graphs vs eager, sampled log-probs vs completion_logprobs (8 rows, 64 tokens)."""
    ids, mask = make_prompts(tokenizer, model.config.vocab_size, 8, length, device, seed + 100)
    greedy = SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=64)
    hf = HFSampler(model, tokenizer, stop_ids).sample(ids, mask, greedy, seed=0, greedy=True)
    fast = FastSampler(model, tokenizer, stop_ids, max_batch=8, max_seq_len=length + 64)
    got = fast.sample(ids, mask, greedy, seed=0, greedy=True)
    prefixes = []
    for a, b in zip(hf, got):
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefixes.append(same)
    out = {
        "greedy_rows_identical_to_hf": sum(a == b for a, b in zip(hf, got)),
        "greedy_rows": len(hf),
        "greedy_min_common_prefix": min(prefixes),
    }
    if device.type == "cuda":
        eager = FastSampler(model, tokenizer, stop_ids, max_batch=8, max_seq_len=length + 64, compile=False)
        out["graphs_equal_eager"] = eager.sample(ids, mask, greedy, seed=0, greedy=True) == got
    sampling = SamplingConfig(max_new_tokens=64, **SAMPLING)
    tokens, logprobs = fast.sample_with_logprobs(ids, mask, sampling, seed=1)
    batch = build_batch(ids, mask, tokens, pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        want = completion_logprobs(model, batch, temperature=SAMPLING["temperature"])
    diff = (logprobs - want).abs()[batch.completion_mask.bool()]
    out["logprob_max_abs_diff"] = float(diff.max())
    out["logprob_mean_abs_diff"] = float(diff.mean())
    return out


def load(args: argparse.Namespace, device: torch.device, dtype: torch.dtype | None):
    """(model, tokenizer, model name) from --random-init or --model."""
    if args.random_init:
        tokenizer = tiny_tokenizer("qwen3" if SHAPES[args.random_init][0] == "qwen3" else "chatml")
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        return random_model(args.random_init, tokenizer, device, dtype, seed=args.seed), tokenizer, f"random {args.random_init}"
    model, tokenizer = load_model(args.model, device=device, dtype=dtype)
    return model, tokenizer, args.model or "default"


def write_json(path: str | None, payload: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(payload, f, indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model spec for load_model (default: the default model; tiny-llama for a quick check)")
    parser.add_argument("--random-init", default=None, choices=sorted(SHAPES),
                        help="a randomly initialised model of this shape instead of --model (no weights needed)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"], help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 32,128 on CUDA, 8 on CPU)")
    parser.add_argument("--prompt-lens", default=None, help="comma-separated (default 150,600 on CUDA, 64 on CPU)")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 256 on CUDA, 32 on CPU")
    parser.add_argument("--hf-new-tokens", type=int, default=None,
                        help="new tokens of the plain-generate side (default: --new-tokens; 0 = skip it)")
    parser.add_argument("--inductor", action="store_true", help="also torch.compile the decode step (one compile per bucket)")
    parser.add_argument("--profile-batch", type=int, default=None,
                        help="print a per-kernel profile of one decode step for configurations of this batch size")
    parser.add_argument("--trace", default=None, help="with --profile-batch: write the profiler's Chrome trace here")
    parser.add_argument("--checks", dest="checks", action="store_true", default=None, help="correctness checks (default on CUDA)")
    parser.add_argument("--no-checks", dest="checks", action="store_false")
    parser.add_argument("--no-cudnn-sdp", action="store_true",
                        help="disable the cuDNN SDPA backend (if CUDA-graph capture fails inside attention)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (on a busy shared CPU, 1 avoids OpenMP spin-wait stalls)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write all numbers here (rewritten after every configuration)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    batch_sizes = [int(x) for x in (args.batch_sizes or defaults["batch_sizes"]).split(",")]
    prompt_lens = [int(x) for x in (args.prompt_lens or defaults["prompt_lens"]).split(",")]
    new_tokens = args.new_tokens or defaults["new_tokens"]
    checks = device.type == "cuda" if args.checks is None else args.checks
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_cudnn_sdp:
        torch.backends.cuda.enable_cudnn_sdp(False)

    started = time.perf_counter()
    model, tokenizer, model_name = load(args, device, dtype)
    stop_ids = end_of_turn_ids(tokenizer)
    load_s = time.perf_counter() - started
    bandwidth = measure_copy_bandwidth(device, 1024 if device.type == "cuda" else 256)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    header = {
        "model": model_name, "device": name, "dtype": str(next(model.parameters()).dtype),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "copy_bandwidth_GBps": bandwidth / 1e9, "threads": torch.get_num_threads(), "load_s": load_s,
        "sampling": SAMPLING, "inductor": args.inductor,
    }
    print(f"generation benchmark: {header['model']} ({header['parameters'] / 1e9:.3f}B parameters, {header['dtype']}) on {name}, "
          f"torch {torch.__version__}, transformers {header['transformers']}; copy bandwidth {bandwidth / 1e9:.1f} GB/s; "
          f"sampling {SAMPLING}", flush=True)

    if args.hf_new_tokens != 0:  # warm HF once (cuBLAS init, first-call overheads) so the first timed config is not penalised
        ids, mask = make_prompts(tokenizer, model.config.vocab_size, 2, 16, device, args.seed)
        hf_generate(model, tokenizer, stop_ids, ids, mask, 4, args.seed)

    results: list[dict] = []
    payload = {"header": header, "results": results, "checks": None}
    columns = f"{'prompt':>6} {'batch':>5} {'new':>4} | {'HF tok/s':>9} {'fast tok/s':>10} {'ratio':>6} | " \
              f"{'warmup s':>8} {'prefill s':>9} {'ms/step':>7} {'step ms':>7} {'sample ms':>9} {'bound ms':>8} {'bound %':>7}"
    print(columns)
    fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
    for length in prompt_lens:
        for batch in batch_sizes:
            profile = dict(trace=args.trace) if batch == args.profile_batch else None
            r = run_config(model, tokenizer, stop_ids, device, batch, length, new_tokens, bandwidth, args.seed, args.inductor,
                           args.hf_new_tokens, profile)
            results.append(r)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the last configuration's sampler and KV cache
            print(f"{length:>6} {batch:>5} {new_tokens:>4} | {fmt(r.get('hf_tokens_per_s'), '.0f'):>9} {r['fast_tokens_per_s']:>10.0f} "
                  f"{'-' if r.get('speedup') is None else format(r['speedup'], '.1f') + 'x':>6} | {r['fast_warmup_s']:>8.2f} {r['fast_prefill_s']:>9.3f} "
                  f"{r['decode_ms_per_step']:>7.2f} {r['step_ms']:>7.2f} {r['sample_ms']:>9.3f} {r['bound_ms_per_step']:>8.3f} "
                  f"{100 * r['bound_fraction']:>6.1f}%", flush=True)
            if "plain_step_ms" in r:
                print(f"       step ms: torch.compile {r['step_ms']:.2f}, without it {r['plain_step_ms']:.2f} "
                      f"({r['plain_step_ms'] / r['step_ms']:.2f}x faster compiled)", flush=True)
            write_json(args.json, payload)  # after every configuration: a cut run keeps what it measured

    if checks:
        payload["checks"] = correctness_checks(model, tokenizer, stop_ids, device, prompt_lens[0], args.seed)
        print("checks: " + ", ".join(f"{k} {v}" for k, v in payload["checks"].items()))
    write_json(args.json, payload)
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
