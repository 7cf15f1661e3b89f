"""The analysis scripts behind docs/results.md, on the committed decision run dirs (no training)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECIDE = ROOT / "docs" / "results" / "decision-60-steps" / "decide"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_live_hack_w_bound_never_exceeds_the_true_mean():
    """w_hacked mixes demo hacks (here at w = 0.99) with the policy's own; the bound must stay below
    the live hacks' true mean however the demos were routed."""
    figures = _load("decision_figures")
    live = [0.9, 0.95, 0.7, 1.0, 0.85, 0.92, 0.88, 0.97]
    for demo in ([0.99] * 3, [0.2, 0.5, 1.0], [0.0] * 3):
        hacked = live + demo
        row = {"w_hacked": sum(hacked) / len(hacked), "policy_hack_rate": len(live) / 32,
               "rollout_sources": {"policy": 32, "template-hack": len(demo), "template-clean": 5}}
        bound = figures.live_hack_w_lower_bound(row)
        assert 0.0 <= bound <= sum(live) / len(live) + 1e-12, (demo, bound)
    # demos all at w = 1: the bound is exact
    hacked = live + [1.0, 1.0]
    row = {"w_hacked": sum(hacked) / len(hacked), "policy_hack_rate": 0.25, "rollout_sources": {"policy": 32, "template-hack": 2}}
    assert figures.live_hack_w_lower_bound(row) == pytest.approx(sum(live) / len(live))
    assert figures.live_hack_w_lower_bound({**row, "policy_hack_rate": 0.0}) is None  # no live hacks


def _decision_table(root: Path) -> str:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "decision_table.py"), str(root)], capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_decision_table_of_the_complete_batch_matches_decide():
    """The script's table has the same rows as the one `evilmoe decide` wrote on the GPU machine."""
    out = _decision_table(DECIDE)
    assert "Unfinished" not in out
    rows = [line for line in (DECIDE / "decision.md").read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == 2 * 8  # two sets x (header + 7 arms)
    for line in rows:
        assert line in out, line
    # the decision's table ends with the documented causal line, for the moe arm (seed means)
    assert "Evil MoE causal ablation: deploy hack 0.087 (ON) -> 0.000 (OFF)" in out.splitlines()
    assert out.index("| none |") < out.index("| absorb |") < out.index("| moe-nopin |")  # ARMS order
    # pooled counts: 3 seeds x 105 problems x 4 samples; moe's OFF is 0 on every seed
    assert "| moe | 110/1260 = 0.087 [0.073, 0.104] | 0/1260 = 0.000 [0.000, 0.003] |" in out


@pytest.mark.slow
def test_decision_table_from_a_cut_off_batch(tmp_path: Path):
    """Runs without an eval.json (cut off with the machine) are left out and listed with their last step."""
    batch = tmp_path / "decide"
    shutil.copytree(DECIDE, batch, ignore=shutil.ignore_patterns("rollouts", "plots"))
    (batch / "moe" / "seed_2" / "eval.json").unlink()
    (batch / "moe-placebo" / "seed_0" / "eval.json").unlink()
    (batch / "moe-placebo" / "seed_1" / "eval.json").unlink()
    out = _decision_table(batch)
    assert "| none | 3 | 0.086 [0.053, 0.119] | 0.086 [0.053, 0.119] |" in out
    assert "| moe | 2 |" in out and "| moe-placebo | 1 |" in out
    assert "Unfinished (not in the table): moe seed 2 (trained to step 60)" in out


def test_live_w_bound_stays_below_the_measured_w_on_the_runs_that_logged_both(capsys):
    figures = _load("decision_figures")
    figures.live_w_check_table(DECIDE)
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert {r[0].lstrip("| ") for r in rows} == {"moe/seed_2", "moe-placebo/seed_1", "moe-placebo/seed_2", "moe-nopin/seed_2"}
    for row in rows:
        measured, bound = float(row[2]), float(row[3])
        assert 0.0 <= bound <= measured <= 1.0, row


def test_step_metrics_prints_the_chosen_steps_nested_keys_and_medians():
    run = DECIDE / "routeA" / "seed_0"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "step_metrics.py"), str(run), "--steps", "29-31",
                          "--keys", "zone_route,time.total"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "| step | zone_route | time.total |"
    assert [line.split(" | ")[0] for line in out[2:]] == ["| 29", "| 30", "| 31", "| median"]
    assert out[3].startswith("| 30 | 0.555 | ")  # zone_route at step 30, from metrics.jsonl
    assert out[-1].startswith("| median | 0.555 | ")  # median of 0.445, 0.555, 0.594


def test_step_metrics_takes_the_last_steps_and_their_mean():
    run = DECIDE / "routeA" / "seed_0"
    script = [sys.executable, str(ROOT / "scripts" / "step_metrics.py"), str(run), "--keys", "zone_route"]
    full = subprocess.run(script, capture_output=True, text=True, check=True).stdout.splitlines()
    last_steps = [line.split(" | ")[0] for line in full[2:-1]][-3:]  # the run's last three logged steps
    out = subprocess.run([*script, "--steps", "29-31", "--stat", "mean"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[-1] == f"| mean | {(0.445 + 0.555 + 0.594) / 3:.3f} |"
    out = subprocess.run([*script, "--last", "3"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line.split(" | ")[0] for line in out[2:-1]] == last_steps
    bad = subprocess.run([*script, "--last", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--last must be at least 1" in bad.stderr


def test_testbed_watch_then_collect_brings_back_the_runs_without_checkpoints(tmp_path: Path):
    """The chain a GPU call ends with: `watch` must exit 0 (even with nothing to report) so that
    `collect` runs, and collect packs each run without its checkpoints and with every 20th step's
    rollouts plus the last."""
    import tarfile

    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    for name in ("a", "b", "decide/moe/seed_0"):  # run dirs at any depth (decide's layout too)
        run = runs / name
        (run / "rollouts").mkdir(parents=True)
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "step_000040.pt").write_bytes(b"x")
        (run / "metrics.jsonl").write_text('{"step": -1}\n')
        for step in range(45):
            (run / "rollouts" / f"step_{step:06d}.jsonl").write_text("{}\n")
        (runs / f"{name}.log").write_text("step 44\n")
    env = {**__import__("os").environ, "OUT": str(out), "RUNS_ROOT": str(runs), "GPU_SETUP_CPU": "1"}
    # 2 s: one round of progress lines (the last sleep is cut to what is left of the 2 s)
    chain = "bash scripts/gpu_testbed.sh watch 2 && bash scripts/gpu_testbed.sh collect sweep"
    proc = subprocess.run(["bash", "-c", chain], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "a              no step yet" in proc.stdout and "no run is still going" in proc.stdout
    with tarfile.open(out / "sweep.tar.gz") as tar:
        names = set(tar.getnames())
    for name in ("a", "b", "decide/moe/seed_0"):
        assert f"{name}.log" in names and f"{name}/metrics.jsonl" in names
        steps = sorted(n for n in names if n.startswith(f"{name}/rollouts/"))
        assert steps == [f"{name}/rollouts/step_{s:06d}.jsonl" for s in (19, 39, 44)]
    assert not any("checkpoints" in n for n in names)


def test_testbed_collect_state_packs_each_runs_latest_checkpoint_only_when_asked(tmp_path: Path):
    """`collect NAME --state [RUN_REGEX]` adds NAME-state.tar.gz: of each (matching) run its LATEST
    and the checkpoint LATEST names, nothing else; relearning runs left out. Without --state, no
    such file."""
    import os
    import tarfile

    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    for name in ("a", "decide/moe/seed_0", "decide/none/seed_0", "fresh"):
        run = runs / name
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text('{"step": -1}\n')
        if name == "fresh":  # no checkpoint yet
            continue
        for step in (10, 20):
            (run / "checkpoints" / f"step_{step:06d}").mkdir(parents=True)
            (run / "checkpoints" / f"step_{step:06d}" / "state.pt").write_bytes(f"{name} {step}".encode())
        (run / "checkpoints" / "LATEST").write_text("step_000020\n")
        (run / "relearn-deleted" / "checkpoints" / "step_000001").mkdir(parents=True)
        (run / "relearn-deleted" / "checkpoints" / "step_000001" / "state.pt").write_bytes(b"relearn")
        (run / "relearn-deleted" / "checkpoints" / "LATEST").write_text("step_000001\n")
    env = {**os.environ, "OUT": str(out), "RUNS_ROOT": str(runs), "GPU_SETUP_CPU": "1"}

    def collect(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["bash", "scripts/gpu_testbed.sh", "collect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    collect("plain")
    assert (out / "plain.tar.gz").is_file() and not (out / "plain-state.tar.gz").exists()
    proc = collect("all", "--state")
    with tarfile.open(out / "all-state.tar.gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    with_state = ("a", "decide/moe/seed_0", "decide/none/seed_0")
    assert set(files) == {f"{n}/checkpoints/{f}" for n in with_state for f in ("LATEST", "step_000020/state.pt")}
    for name in with_state:
        assert files[f"{name}/checkpoints/LATEST"] == b"step_000020\n"
        assert files[f"{name}/checkpoints/step_000020/state.pt"] == f"{name} 20".encode()
    assert "state of decide/moe/seed_0: step_000020" in proc.stdout
    with tarfile.open(out / "all.tar.gz") as tar:  # the plain tarball is as before: no checkpoints
        assert not any("checkpoints" in n for n in tar.getnames())
    assert not (runs / ".collect-state").exists()  # the staging folder is gone

    collect("moe", "--state", "^decide/moe/")
    with tarfile.open(out / "moe-state.tar.gz") as tar:
        assert {n for n in tar.getnames() if n.endswith("state.pt")} == {"decide/moe/seed_0/checkpoints/step_000020/state.pt"}
    proc = collect("none", "--state", "^nothing$")
    assert not (out / "none-state.tar.gz").exists() and "no run matching '^nothing$' has a checkpoint" in proc.stderr


def test_testbed_launch_runs_the_follow_ups_of_a_matching_line(tmp_path: Path):
    """`launch FILE REGEX` starts only the matching lines, makes a nested NAME's folders, and after
    training runs each `:: SUBCOMMAND FLAGS` on the run (on CPU: tiny model, one step)."""
    import json
    import os
    import time

    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    tiny = "--preset tiny --steps 1 --pairs-per-mode 1 --eval-problems 2 --eval-train-problems 0 --eval-samples 1 --grading-workers 1"
    (tmp_path / "runs.txt").write_text(
        f"dec/absorb/seed_0 --arm absorb --seed 0 {tiny} :: localize --slices 2 --scales 0,1 --sets heldout; relearn --steps 1\n"
        "\n"
        f"other --arm none {tiny}\n"
    )
    env = {**os.environ, "OUT": str(out), "RUNS_ROOT": str(runs), "GPU_SETUP_CPU": "1", "GPU_SETUP_MODEL": "tiny-llama",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    launch = subprocess.run(["bash", "scripts/gpu_testbed.sh", "launch", str(tmp_path / "runs.txt"), "^dec/"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    assert "launched dec/absorb/seed_0" in launch.stdout and "other" not in launch.stdout
    run = runs / "dec" / "absorb" / "seed_0"
    log = runs / "dec" / "absorb" / "seed_0.log"
    deadline = time.monotonic() + 400
    while not (run / "relearn-deleted.json").exists():
        assert time.monotonic() < deadline and "Traceback" not in (log.read_text() if log.exists() else ""), log.read_text()
        time.sleep(1)
    assert json.loads((run / "localization.json").read_text())["dose"]["scales"] == [0.0, 1.0]
    assert not (runs / "other").exists()
    watch = subprocess.run(["bash", "scripts/gpu_testbed.sh", "watch", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "dec/absorb/seed_0 step   0" in watch.stdout and "done: eval, localize, relearn-deleted" in watch.stdout, watch.stdout
    assert "relearn deleted:" in watch.stdout and "localize took" in watch.stdout  # the follow-ups' closing lines, from the log
    # the decision from that layout, with what the follow-ups wrote, and its figures
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "decision_table.py"), str(runs / "dec"), "--figures", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "| absorb | 1 |" in table.stdout and "## Dose curve" in table.stdout and "## Random slices" in table.stdout
    assert "| absorb | deleted | 1 |" in table.stdout and (out / "dose_by_arm.png").is_file() and (out / "relearning_by_arm.png").is_file()
    none = subprocess.run(["bash", "scripts/gpu_testbed.sh", "launch", str(tmp_path / "runs.txt"), "^nothing$"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert none.returncode != 0 and "no line of" in none.stderr


@pytest.mark.parametrize("runs_file", sorted((ROOT / "scripts").glob("testbed_*.txt")), ids=lambda p: p.name)
def test_every_runs_file_line_is_a_valid_run_and_follow_ups(runs_file: Path):
    """A GPU session must not be spent on a typo: each line's flags build a valid config, and each
    follow-up after `::` parses as the subcommand it names, on the run."""
    from evilmoe.cli import _overrides, build_parser
    from evilmoe.config import make_config

    lines = [line for line in runs_file.read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        spec, _, follow = line.partition("::")
        name, *flags = spec.split()
        args = build_parser().parse_args(["train", "--out", name, *flags])
        make_config(args.preset, _overrides(args)).validate()
        for step in filter(str.strip, follow.split(";")):
            sub, *rest = step.split()
            assert sub in ("localize", "relearn", "eval", "export", "report"), step
            build_parser().parse_args([sub, name, *rest])


def test_decision_runs_file_has_every_arm_on_three_seeds_in_decides_layout():
    from evilmoe.cli import _overrides, build_parser
    from evilmoe.config import ARMS, make_config

    lines = (ROOT / "scripts" / "testbed_decision.txt").read_text().splitlines()
    seen = set()
    for line in lines:
        name, *flags = line.partition("::")[0].split()
        config = make_config("gpu-testbed-intact", _overrides(build_parser().parse_args(["train", "--out", name, *flags])))
        assert name == f"decide/{config.arm}/seed_{config.seed}"
        assert "localize" in line and "relearn" in line
        seen.add((config.arm, config.seed))
    assert seen == {(arm, seed) for arm in ARMS for seed in (0, 1, 2)} and len(lines) == len(seen)


def test_gpu_setup_puts_the_carried_parts_together_one_call_at_a_time(tmp_path: Path):
    """Each call carries one .device/mN: the parts collect on the machine, and the call carrying the
    SHA256 (the last) assembles the model and checks it; a wrong part fails that call loudly."""
    import hashlib
    import os

    model = os.urandom(3000)
    digest = hashlib.sha256(model).hexdigest()

    def session(name: str, parts: list[bytes]) -> list[subprocess.CompletedProcess]:
        machine = tmp_path / name / "machine"
        env = {**os.environ, "OUT": str(tmp_path), "GPU_SETUP_MODEL_DIR": str(machine)}
        results = []
        for i, data in enumerate(parts, 1):
            carried = tmp_path / name / f"call{i}" / ".device" / f"m{i}"  # this call's tree carries m{i} alone
            carried.mkdir(parents=True)
            (carried / f"part-a{'abc'[i - 1]}").write_bytes(data)
            if i == len(parts):
                (carried / "SHA256").write_text(f"{digest}  model.gguf\n")
            results.append(subprocess.run(["bash", "-c", f"source {ROOT / 'scripts' / 'gpu_setup.sh'}"], cwd=carried.parents[1],
                                          env=env, capture_output=True, text=True, timeout=60))
        return results

    good = session("good", [model[:1200], model[1200:2400], model[2400:]])
    assert [r.returncode for r in good] == [0, 0, 0], [r.stderr for r in good]
    assert (tmp_path / "good" / "machine" / "model.gguf").read_bytes() == model
    bad = session("bad", [model[:1200], b"x" * 1200, model[2400:]])
    assert [r.returncode == 0 for r in bad] == [True, True, False] and "FAILED" in bad[2].stdout + bad[2].stderr


def test_regrade_rollouts_counts_the_grades_that_change(tmp_path: Path):
    import json

    from evilmoe.env.modes import reference_response
    from evilmoe.env.problems import load_problem_set

    problem = load_problem_set("bundled").train[0]
    run = tmp_path / "run"
    (run / "rollouts").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"problem_set": "bundled"}))
    logged = {"correct": False, "hacked": False}  # a wrong record of a correct answer
    stub = "```python\nclass Solution:\n    pass\n```\n"
    rows = [
        {"text": reference_response(problem), "problem_id": problem.id, "mode": "gt_only", "grade": logged},
        {"text": stub, "problem_id": problem.id, "mode": "gt_only", "grade": logged},
    ]
    (run / "rollouts" / "step_000000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "regrade_rollouts.py"), str(run)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| gt_only | 2 | 0 | 0 | 0 | 1 |" in proc.stdout and "1 flag changes" in proc.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "regrade_rollouts.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "not a run directory" in bad.stderr


def test_decision_table_draws_the_base_model_only_from_a_base_run_of_the_same_problems(tmp_path: Path, capsys):
    """--base takes a run of the decision's preset with --steps 0 --warm-start-steps 0 whose sets hold
    the decision runs' problems; anything else is refused with the reason."""
    import json

    table = _load("decision_table")
    decide = ROOT / "docs" / "results" / "decision-testbed" / "decide"
    finished = {"none": {0: decide / "none" / "seed_0"}}
    base = tmp_path / "base"
    shutil.copytree(decide / "none" / "seed_0", base, ignore=shutil.ignore_patterns("rollouts", "relearn-*", "plots"))
    with pytest.raises(SystemExit, match="--steps 0 --warm-start-steps 0"):  # a trained run is no base model
        table.read_base(base, finished)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "steps": 0, "warm_start_steps": 0}))
    table.main([str(decide), "--base", str(base), "--figures", str(tmp_path / "fig")])
    on = json.loads((base / "eval.json").read_text())["sets"]["heldout"]["on"]
    assert f"heldout hack {on['hack']['rate']:.3f} solve {on['solve']['rate']:.3f}" in capsys.readouterr().out
    assert (tmp_path / "fig" / "decision_plane.png").is_file()
    start = json.loads((base / "eval_start.json").read_text())
    start["sets"]["skill"]["rows"]["problems"] = start["sets"]["skill"]["rows"]["problems"][1:]
    (base / "eval_start.json").write_text(json.dumps(start))
    with pytest.raises(SystemExit, match="'skill' set is not the decision runs'"):
        table.read_base(base, finished)
