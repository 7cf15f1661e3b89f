"""The decision table (evilmoe decide's decision.md) from whatever runs under ROOT have finished.

    python scripts/decision_table.py docs/results/decision-60-steps/decide

`evilmoe decide` writes decision.md only once every arm x seed is done; this renders the same table
from the finished runs (ROOT/ARM/seed_N/eval.json) and lists the unfinished ones, so a batch cut
short by its time budget can still be read. Arms keep the order of evilmoe.config.ARMS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from evilmoe.config import ARMS
from evilmoe.decide import comparison_table, render_markdown
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


def main(root: Path) -> None:
    runs = sorted(root.glob("*/seed_*/metrics.jsonl"))
    if not runs:
        raise SystemExit(f"no run directories under {root} (expected ARM/seed_N/metrics.jsonl)")
    results: dict[str, dict[int, dict]] = {}
    unfinished = []
    for metrics in runs:
        run = metrics.parent
        arm, seed = run.parent.name, int(run.name.removeprefix("seed_"))
        if (run / "eval.json").exists():
            results.setdefault(arm, {})[seed] = json.loads((run / "eval.json").read_text())
        else:
            last = RunDir(run).read_metrics()[-1]["step"]
            unfinished.append(f"{arm} seed {seed} (trained to step {last + 1})")
    order = {arm: i for i, arm in enumerate(ARMS)}
    results = dict(sorted(results.items(), key=lambda kv: order.get(kv[0], len(order))))
    seeds = sorted({s for by_seed in results.values() for s in by_seed})
    print(render_markdown(comparison_table(results), f"of the runs under {root}", seeds))
    print(pooled_table(results))
    if unfinished:
        print("Unfinished (not in the table): " + "; ".join(unfinished))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
