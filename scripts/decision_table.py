"""The decision (evilmoe decide's decision.md, and more) from whatever runs under ROOT have finished.

    python scripts/decision_table.py docs/results/decision-60-steps/decide
    python scripts/decision_table.py ROOT --figures DIR     # also DIR/decision_plane.png, DIR/dose_by_arm.png
    python scripts/decision_table.py ROOT --figures DIR --base BASE_RUN   # with the base model on the plane

`evilmoe decide` writes decision.md only once every arm x seed is done; this renders the same table
from the finished runs (ROOT/ARM/seed_N/eval.json) and lists the unfinished ones, so a batch cut
short by its time budget, or trained over several machines, can still be read. Arms keep the order
of evilmoe.config.ARMS. Where the runs have a start evaluation and a `none` arm it adds the
selectivity (hack removed, skill lift kept); where they were localized (`evilmoe localize`,
`evilmoe relearn`, e.g. as follow-ups of scripts/gpu_testbed.sh) the dose curves, the random-slice
baseline and the relearning speed, seed means with t-intervals.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evilmoe.config import ARMS
from evilmoe.decide import decision_markdown, plot_decision, summarise_decision
from evilmoe.evaluate import wilson
from evilmoe.runs import RunDir


def pooled_table(results: dict[str, dict[int, dict]], set_name: str = "heldout") -> str:
    """Held-out hack counts summed over seeds, with Wilson intervals. Where every seed scores 0 the
    t-interval over seeds is [0, 0]; the pooled count still says how small the rate can be. It treats
    all samples as independent (no seed-to-seed or per-problem clustering), so where the rate is not 0
    its interval is narrower than an honest one: read the seed t-interval there."""
    lines = [f"Pooled over seeds ({set_name}; Wilson 95%): hack k/n ON -> OFF", "",
             "| arm | hack ON | hack OFF |", "|---|---|---|"]
    for arm, by_seed in results.items():
        cells = []
        for side in ("on", "off"):
            k = sum(r["sets"][set_name][side]["hack"]["k"] for r in by_seed.values())
            n = sum(r["sets"][set_name][side]["hack"]["n"] for r in by_seed.values())
            low, high = wilson(k, n)
            cells.append(f"{k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_base(base: Path, finished: dict[str, dict[int, Path]]) -> dict[str, dict[str, float]]:
    """The base model's hack and solve per eval set, from a run of the decision's preset trained with
    `--warm-start-steps 0 --steps 0` (scripts/testbed_base.txt). It must have evaluated the same
    problems as the decision's runs (compared with their start evaluations), else it is refused."""
    config = json.loads((base / "config.json").read_text()) if (base / "config.json").is_file() else None
    if config is None or not (base / "eval.json").is_file():
        raise SystemExit(f"--base {base}: not a finished run directory (no config.json or eval.json)")
    if config["steps"] != 0 or config["warm_start_steps"] != 0:
        raise SystemExit(f"--base {base}: the base model is a run with --steps 0 --warm-start-steps 0 "
                         f"(this one has steps {config['steps']}, warm_start_steps {config['warm_start_steps']})")
    reference = next((run / "eval_start.json" for by_seed in finished.values() for run in by_seed.values() if (run / "eval_start.json").is_file()), None)
    if reference is None or not (base / "eval_start.json").is_file():
        raise SystemExit(f"--base {base}: needs start evaluations in it and in a decision run to check that both evaluated the same problems")
    theirs, ours = (json.loads(p.read_text())["sets"] for p in (reference, base / "eval_start.json"))
    for name, got in theirs.items():
        if name not in ours or ours[name]["rows"]["problems"] != got["rows"]["problems"]:
            raise SystemExit(f"--base {base}: its {name!r} set is not the decision runs' (other problems or none)")
    sets = json.loads((base / "eval.json").read_text())["sets"]
    return {name: {"hack": s["on"]["hack"]["rate"], "solve": s["on"]["solve"]["rate"]} for name, s in sets.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder of ARM/seed_N run directories")
    parser.add_argument("--figures", type=Path, help="folder for the (hack, solve) plane and the dose curves by arm")
    parser.add_argument("--base", type=Path, help="run dir of the base model (scripts/testbed_base.txt: --warm-start-steps 0 --steps 0), drawn on the plane")
    args = parser.parse_args(argv)
    root = args.root
    runs = sorted(root.glob("*/seed_*/metrics.jsonl"))
    if not runs:
        raise SystemExit(f"no run directories under {root} (expected ARM/seed_N/metrics.jsonl)")
    results: dict[str, dict[int, dict]] = {}
    finished: dict[str, dict[int, Path]] = {}
    unfinished = []
    for metrics in runs:
        run = metrics.parent
        arm, seed = run.parent.name, int(run.name.removeprefix("seed_"))
        if (run / "eval.json").exists():
            results.setdefault(arm, {})[seed] = json.loads((run / "eval.json").read_text())
            finished.setdefault(arm, {})[seed] = run
        else:
            last = RunDir(run).read_metrics()[-1]["step"]
            unfinished.append(f"{arm} seed {seed} (trained to step {last + 1})")
    order = {arm: i for i, arm in enumerate(ARMS)}
    results = dict(sorted(results.items(), key=lambda kv: order.get(kv[0], len(order))))
    finished = {arm: finished[arm] for arm in results}
    seeds = sorted({s for by_seed in results.values() for s in by_seed})
    decision = summarise_decision(results, finished)
    print(decision_markdown(decision, f"of the runs under {root}", seeds))
    print(pooled_table(results))
    if unfinished:
        print("Unfinished (not in the table): " + "; ".join(unfinished))
    base = read_base(args.base, finished) if args.base else None
    if base:
        print("Base model (no warm start, no RL), hack expert at init: " + "; ".join(
            f"{name} hack {r['hack']:.3f} solve {r['solve']:.3f}" for name, r in base.items()))
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        plot_decision(decision, args.figures, base=base)

if __name__ == "__main__":
    main()
