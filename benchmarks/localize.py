"""What a run's localization (the dose curve and the random-slice baseline) costs: the measurement as
`evilmoe localize` makes it against the plain way, on the same policy, sets and seeds, in one run.

* plain: every condition (5 dose scales, then ON, the real deletion and each slice) sampled and then
  graded before the next is sampled (`sample_and_grade`), in a pool without memo: the GPU idles
  while the CPUs grade and the other way round, and the ON / real-deletion conditions are sampled
  twice (as dose scales 1 and 0 and as the slices' ends).
* localize: `evilmoe.localization.localize` -- each condition sampled while the pool grades the
  ones before, the slices' ends taken from the dose curve's, identical responses graded once.

Both must give the same rates (checked; the grades of a response near the CPU budget could differ
between two gradings, which would show as a mismatch). Prints seconds, graded rows and the ratio.

    python benchmarks/localize.py --model tiny-llama --problems 4 --draws 3              # CPU smoke run
    python benchmarks/localize.py --run /root/runs/decide/moe/seed_0 --grading-workers 8   # a trained run (GPU)

Without --run the policy is the preset's with its hack expert moved off its init at random (so the
conditions differ); with --run it is the run's last checkpoint, on the sets and seeds of its final
evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from evilmoe.config import make_config
from evilmoe.env.grader import GradingPool
from evilmoe.env.problems import load_problem_set
from evilmoe.evaluate import make_eval_sets, sample_and_grade, summarise
from evilmoe.localization import DOSE_SCALES, dose_conditions, localize, scaled_components, slice_plan
from evilmoe.policy import Policy
from evilmoe.train import final_eval_plan


def plain(policy: Policy, pool: GradingPool, eval_sets, *, samples: int, seed: int, draws: int) -> dict:
    """Conditions one after the other, each graded before the next is sampled (the rates only)."""
    slices, _ = slice_plan(policy, seed=seed, draws=draws)
    conditions = dose_conditions(policy, DOSE_SCALES) | slices
    out = {}
    for eval_set in eval_sets:
        for label, keep in conditions.items():
            with scaled_components(policy, keep) if keep is not None else contextlib.nullcontext():
                summary = summarise(sample_and_grade(policy, pool, eval_set, samples=samples, seed=seed))
            out[eval_set.name, label] = (summary["hack"]["rate"], summary["solve"]["rate"])
    return out


def rates_of(result: dict) -> dict:
    out = {}
    for name, rows in result["dose"]["sets"].items():
        out.update({(name, f"scale {r['scale']:g}"): (r["hack"]["rate"], r["solve"]["rate"]) for r in rows})
    for name, got in result["slices"]["sets"].items():
        out.update({(name, label): (r["hack"], r["solve"]) for label, r in got["rates"].items()})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a trained run directory (its last checkpoint); else a random hack expert on --model")
    parser.add_argument("--model", default="tiny-llama", help="model spec without --run (a .gguf path, a Hugging Face id or folder, tiny-llama)")
    parser.add_argument("--device", default="cpu", help="device without --run")
    parser.add_argument("--preset", default="tiny", help="config without --run")
    parser.add_argument("--problems", type=int, default=4, help="held-out problems without --run")
    parser.add_argument("--sets", default="heldout,skill", help="eval sets (those the policy has)")
    parser.add_argument("--samples", type=int, default=2, help="samples per problem")
    parser.add_argument("--draws", type=int, default=10, help="random slices")
    parser.add_argument("--grading-workers", type=int, default=0, help="grading processes (0: the config's, else the CPUs)")
    args = parser.parse_args(argv)

    if args.run:
        policy, _ = Policy.from_run_dir(args.run)
        every, seed = final_eval_plan(policy)
    else:
        config = make_config(args.preset, {"model": args.model, "device": args.device, "arm": "moe", "eval_problems": args.problems})
        policy = Policy(config, load_problem_set(config.problem_set, config.data_dir))
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # a hack expert away from its init, so that the conditions differ
            for m in policy.adapter.modules.values():
                m.B[:, m.rank :] += 0.5 * torch.randn(m.B[:, m.rank :].shape, generator=gen).to(m.B.device, m.B.dtype)
        policy.refresh_sampler()
        every, seed = make_eval_sets(policy.config, policy.problems, split="test", n_heldout=args.problems, n_train=0), 3
    eval_sets = [s for s in every if s.name in args.sets.split(",")]
    if not eval_sets:
        raise SystemExit(f"none of the sets {args.sets} exists here (there are {', '.join(s.name for s in every)})")
    workers = args.grading_workers or policy.config.grading_workers or None

    timings = {}
    with GradingPool(workers) as pool:
        start = time.perf_counter()
        reference = plain(policy, pool, eval_sets, samples=args.samples, seed=seed, draws=args.draws)
        timings["plain"] = time.perf_counter() - start
    with GradingPool(workers, memo=True) as pool:
        start = time.perf_counter()
        result = localize(policy, pool, eval_sets, samples=args.samples, seed=seed, draws=args.draws)
        timings["localize"] = time.perf_counter() - start
        memo_hits = pool.memo_hits
    got = rates_of(result)
    mismatched = sorted(k for k in reference if reference[k] != got[k])
    rows_per_condition = sum(len(s.problems) for s in eval_sets) * args.samples
    print(f"{len(eval_sets)} sets, {rows_per_condition} rows a condition, {len(DOSE_SCALES)} scales + {args.draws} slices, {pool.workers} grading workers")
    print(f"plain    : {timings['plain']:7.1f} s, {len(reference) * rows_per_condition // len(eval_sets)} rows sampled and graded")
    t = result["timing"]
    print(f"localize : {timings['localize']:7.1f} s, {t['sampled_rows']} rows sampled, {memo_hits} identical responses not graded again; "
          f"sampling {sum(t['sampling_seconds'].values()):.1f} s, grading done {t['grading_wait_after_sampling_seconds']:.1f} s after")
    print(f"localize / plain: {timings['localize'] / timings['plain']:.2f}x the time; rates identical: {not mismatched}")
    if mismatched:
        print("differing conditions: " + ", ".join(f"{s} {c}" for s, c in mismatched))
    return {"seconds": timings, "memo_hits": memo_hits, "mismatched": mismatched, "sampled_rows": t["sampled_rows"]}


if __name__ == "__main__":
    main()
