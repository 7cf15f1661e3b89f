"""Grading throughput: responses graded per second, GradingPool vs one-at-a-time, in the same run.

Workload: the benchmark's 119 held-out problems, each graded twice in the mode the partition assigns it
(seed 0, all seven modes): once with the reference solution and once with that mode's canonical hack
(gt_only problems get the run_tests hack, which must earn nothing there). The baseline calls
`grade()` for one response after another (each a sandboxed subprocess); the pool grades the same jobs
with `GradingPool(workers)`. Both must agree on every grade; a disagreement is printed and fails the run.

    python benchmarks/grading.py --data-dir ../shared/data [--workers N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date

from evilmoe.env import leetcode
from evilmoe.env.grader import GradeJob, GradingPool, grade
from evilmoe.env.loopholes import ALL_MODES, get_mode
from evilmoe.env.modes import assign_modes, canonical_hack, reference_response
from evilmoe.env.problems import resolve_data_dir
from evilmoe.env.types import Grade


def build_jobs(data_dir: str | None, seed: int) -> list[GradeJob]:
    """Reference + canonical hack for each of the benchmark's 119 problems, in its assigned mode."""
    problems = leetcode.load_benchmark_test(resolve_data_dir(data_dir) / leetcode.BENCH_TEST)
    modes = assign_modes([p.id for p in problems], ALL_MODES, seed)
    jobs = []
    for p in problems:
        mode = modes[p.id]
        jobs.append(GradeJob(reference_response(p), p, mode))
        # a problem without a loophole gets the run_tests hack, which must earn nothing there
        hack_mode = mode if get_mode(mode).is_loophole else "run_tests"
        jobs.append(GradeJob(canonical_hack(p, hack_mode), p, mode))
    return jobs


def summary(g: Grade) -> tuple:
    """The fields a grade is judged by; the two graders must agree on these."""
    return (g.reward, g.correct, g.hacked, g.channel, g.compiles, g.timed_out)


def timed(fn) -> tuple[float, list[Grade]]:
    start = time.perf_counter()
    grades = fn()
    return time.perf_counter() - start, grades


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="LeetCode data folder (default $EVILMOE_DATA)")
    parser.add_argument("--workers", type=int, default=None, help="pool width (default: GradingPool's own default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mode partition")
    args = parser.parse_args(argv)

    jobs = build_jobs(args.data_dir, args.seed)
    load_before = os.getloadavg()[0]
    print(f"grading benchmark: {len(jobs)} responses (119 references + 119 canonical hacks), "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {date.today().isoformat()}")

    serial_s, serial = timed(lambda: [grade(j.response, j.problem, j.mode, eval_markers=j.eval_markers) for j in jobs])
    with GradingPool(args.workers) as pool:
        width = getattr(pool, "workers", args.workers)
        pool_s, pooled = timed(lambda: pool.grade_many(jobs))

    mismatches = [(j.problem.id, j.mode, summary(a), summary(b)) for j, a, b in zip(jobs, serial, pooled) if summary(a) != summary(b)]
    n = len(jobs)
    rows = [
        ("one-at-a-time grade()", n, serial_s, n / serial_s),
        (f"GradingPool(workers={width})", n, pool_s, n / pool_s),
    ]
    print(f"\n| {'grader':<28} | {'responses':>9} | {'seconds':>8} | {'responses/s':>11} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 10}|{'-' * 13}|")
    for name, count, seconds, rate in rows:
        print(f"| {name:<28} | {count:>9} | {seconds:>8.1f} | {rate:>11.2f} |")
    print(f"\npool / one-at-a-time speed-up: {serial_s / pool_s:.2f}x")

    refs, hacks = pooled[0::2], pooled[1::2]
    loophole = [g for g in hacks if get_mode(g.mode).is_loophole]
    control = [g for g in hacks if not get_mode(g.mode).is_loophole]
    print(f"sanity: references correct {sum(g.correct for g in refs)}/{len(refs)}; hacks paid on loophole-mode "
          f"problems {sum(g.hacked for g in loophole)}/{len(loophole)}, on gt_only problems "
          f"{sum(g.hacked for g in control)}/{len(control)}; timeouts serial {sum(g.timed_out for g in serial)}, "
          f"pool {sum(g.timed_out for g in pooled)}")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f} "
          "(other work on the machine slows both graders)")
    if mismatches:
        print(f"\n{len(mismatches)} grades differ between the two graders:", file=sys.stderr)
        for m in mismatches[:20]:
            print("  ", m, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
