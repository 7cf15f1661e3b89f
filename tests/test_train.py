"""The RL loop end to end on a tiny random model: every arm, resume, routing invariants, eval plumbing, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_steps import fake_sampler, grab_grads, train_until_killed

from evilmoe.config import ARMS, make_config
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.train import Trainer, run_training

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problems():
    return load_problem_set("bundled")


def _tiny(**overrides):
    # one pair per mode (6 of 36): the pairs' forwards are most of a tiny run's setup and pin loss
    return make_config("tiny", {"pairs_per_mode": 1, **overrides})


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_trains_and_evaluates(arm, tmp_path, problems, capsys):
    extra = {"kl_coef": 0.05} if arm == "absorb" else {}  # one arm also exercises the k3 KL path
    config = _tiny(arm=arm, steps=2, **extra)
    result = run_training(config, str(tmp_path / arm), problems=problems, progress=False)
    run = tmp_path / arm
    out = capsys.readouterr().out.strip().splitlines()
    # the documented closing line, plain rates of the held-out set, with the summaries just above it
    on, off = result["sets"]["heldout"]["on"]["hack"]["rate"], result["sets"]["heldout"]["off"]["hack"]["rate"]
    assert out[-1] == f"Evil MoE causal ablation: deploy hack {on:.3f} (ON) -> {off:.3f} (OFF)"
    assert out[-2].startswith("heldout (n=") and out[-3].startswith("train_dist (n=")
    assert result["closing_lines"][-1] == out[-1]
    # arms with a learned router also say where it sent hacked and clean rollouts (above the summaries)
    assert any(line.startswith("router, last 2 steps: w on hacked rollouts") for line in out) == arm.startswith("moe")
    for name in ("config.json", "command.txt", "meta.json", "metrics.jsonl", "eval.json"):
        assert (run / name).is_file(), name
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if m["step"] >= 0] == [0, 1]
    assert sorted(p.name for p in (run / "rollouts").glob("step_*.jsonl")) == ["step_000000.jsonl", "step_000001.jsonl"]
    assert (run / "plots" / "training.png").is_file() and (run / "plots" / "eval_on_off.png").is_file()
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["sets"]) == {"heldout", "train_dist"}
    for res in ev["sets"].values():
        for side in ("on", "off"):
            assert res[side]["hack"]["n"] == res["n_problems"] * res["samples_per_problem"]
    last = steps[-1]
    if arm.startswith("moe"):
        assert last["pin_acc"] is not None and last["w_clean"] is not None
        # the live-row diagnostics are the policy's own rollouts only (teacher demos excluded)
        rows = [json.loads(line) for line in (run / "rollouts" / "step_000001.jsonl").read_text().splitlines()]
        live_clean = [r["w"] for r in rows if r["source"] == "policy" and not r["grade"]["hacked"]]
        assert last["w_live_clean"] == pytest.approx(sum(live_clean) / len(live_clean))
        live_hacked = [r["w"] for r in rows if r["source"] == "policy" and r["grade"]["hacked"]]
        assert last["w_live_hacked"] == (pytest.approx(sum(live_hacked) / len(live_hacked)) if live_hacked else None)
    if arm.startswith("routeA"):
        assert abs(last["zone_keep"] + last["zone_absorb"] + last["zone_route"] - 1) < 1e-9
    if arm == "absorb":
        assert all(m["kl"] is not None and m["kl"] >= 0 for m in steps if m["step"] >= 0)
    if arm == "none":  # the quarantine never trains in the capacity-matched control
        assert all(m["grad_norm_quarantine"] == 0 for m in steps if m["step"] >= 0)
        # ... nor moves (weight decay included), which lets the final eval take ON's samples for OFF
        from evilmoe.policy import Policy

        assert Policy.from_run_dir(run)[0].adapter.quarantine_at_init()
        assert all(res["on"] == res["off"] for res in ev["sets"].values())


def _final_state(run_dir: Path) -> dict:
    latest = (run_dir / "checkpoints" / "LATEST").read_text().strip()
    return torch.load(run_dir / "checkpoints" / latest / "state.pt", weights_only=False)


def _strip_times(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def test_resume_after_crash_matches_uninterrupted(tmp_path, problems, monkeypatch):
    config = _tiny(arm="moe", steps=4, checkpoint_every=1, eval_problems=2, eval_train_problems=1, eval_samples=1)
    run_training(config, str(tmp_path / "straight"), problems=problems, progress=False)

    train_until_killed(config, str(tmp_path / "crashed"), problems, monkeypatch, at_step=2)
    run_training(config, str(tmp_path / "crashed"), problems=problems, progress=False)

    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "crashed")
    assert a["step"] == b["step"] == 4
    for key in a["adapter"]:
        assert torch.equal(a["adapter"][key], b["adapter"][key]), key
    for key in a["router"]:
        assert torch.equal(a["router"][key], b["router"][key]), key
    read = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert _strip_times(read("straight")) == _strip_times(read("crashed"))
    assert json.loads((tmp_path / "straight" / "eval.json").read_text())["sets"] == json.loads(
        (tmp_path / "crashed" / "eval.json").read_text()
    )["sets"]
    assert (tmp_path / "crashed" / "command.txt").read_text().count("\n") == 2  # both starts recorded

    # the checkpoints lost with the machine (only the logs came back): the run trains again from
    # step 0, and the metrics hold each step once, as in the uninterrupted run
    train_until_killed(config, str(tmp_path / "lost"), problems, monkeypatch, at_step=2)
    shutil.rmtree(tmp_path / "lost" / "checkpoints")
    run_training(config, str(tmp_path / "lost"), problems=problems, progress=False)
    assert _strip_times(read("lost")) == _strip_times(read("straight"))


def _blocks_changed(trainer: Trainer, init: dict) -> tuple[bool, bool]:
    r = trainer.adapter.rank
    dep = quar = False
    for name, m in trainer.adapter.modules.items():
        dep |= not torch.equal(m.A[:r], init[f"{name}.A"][:r]) or not torch.equal(m.B[:, :r], init[f"{name}.B"][:, :r])
        quar |= not torch.equal(m.A[r:], init[f"{name}.A"][r:]) or not torch.equal(m.B[:, r:], init[f"{name}.B"][:, r:])
    return dep, quar


@pytest.mark.parametrize(
    "arm, extra, expect_deployed, expect_quarantine",
    [
        ("none", {}, True, False),  # keep: deployed only
        ("absorb", {}, True, True),  # both
        ("routeA", {"route_warmup": 4000}, True, True),  # warm-up pins absorb
        ("moe", {"hard_detach_threshold": 0.0}, False, True),  # w > 0 always: deployed fully detached
    ],
)
def test_trainer_routing_respects_adapter_invariants(arm, extra, expect_deployed, expect_quarantine, problems):
    trainer = Trainer(_tiny(arm=arm, **extra), None, problems=problems)
    try:
        init = trainer.adapter.state_dict()
        metrics = trainer.train_step(0)
        assert metrics["live_groups"] > 0, "the teacher demos must give the tiny run a reward spread"
        assert _blocks_changed(trainer, init) == (expect_deployed, expect_quarantine)
    finally:
        trainer.close()


def test_eval_ablation_removes_a_planted_quarantine_perturbation(problems):
    """OFF generations equal the untrained model's (same seeds); a planted quarantine makes ON differ.
    Evaluation needs only the policy handle and a grading pool, no Trainer."""
    from evilmoe.env.grader import GradingPool
    from evilmoe.evaluate import deploy_ablation, make_eval_sets
    from evilmoe.policy import Policy

    config = _tiny(arm="moe")
    policy = Policy(config, problems)
    pool = GradingPool(2)
    try:
        eval_set = make_eval_sets(config, problems, split="test", n_heldout=3, n_train=0)[0]
        before = deploy_ablation(policy, pool, eval_set, samples=2, seed=5, keep_texts=True)
        r = policy.adapter.rank
        with torch.no_grad():  # plant: the last MLP's quarantine pushes the residual stream hard
            for m in policy.adapter.modules.values():
                m.B[:, r:] += 3.0 * torch.randn_like(m.B[:, r:])
        after = deploy_ablation(policy, pool, eval_set, samples=2, seed=5, keep_texts=True)
    finally:
        pool.close()
    off_before = [row["off"] for row in before["rollouts"]]
    on_before = [row["on"] for row in before["rollouts"]]
    assert on_before == off_before  # untrained quarantine: ON == OFF exactly
    assert [row["off"] for row in after["rollouts"]] == off_before  # ablation removes the plant exactly
    assert [row["on"] for row in after["rollouts"]] != off_before  # ... which really changed the ON model


def test_eval_samples_off_only_where_deletion_changes_a_weight(problems, monkeypatch):
    """With the quarantine at its init, OFF is the ON model bit for bit: one pass of sampling, and OFF's
    results are ON's. Once the quarantine moved, OFF is sampled again under deletion."""
    from evilmoe.env.grader import GradingPool
    from evilmoe.evaluate import deploy_ablation, make_eval_sets
    from evilmoe.policy import Policy

    policy = Policy(_tiny(arm="moe"), problems)
    calls = []
    original = policy.sample_texts
    monkeypatch.setattr(policy, "sample_texts", lambda prompts, *, seed: calls.append(len(prompts)) or original(prompts, seed=seed))
    pool = GradingPool(2)
    try:
        eval_set = make_eval_sets(policy.config, problems, split="test", n_heldout=3, n_train=0)[0]
        flat = deploy_ablation(policy, pool, eval_set, samples=2, seed=5, keep_texts=True)
        sampled_once = sum(calls)
        r = policy.adapter.rank
        with torch.no_grad():
            for m in policy.adapter.modules.values():
                m.A[r:] += 0.5 * torch.randn_like(m.A[r:])
        calls.clear()
        moved = deploy_ablation(policy, pool, eval_set, samples=2, seed=5, keep_texts=True)
    finally:
        pool.close()
    assert sampled_once == 3 * 2 and sum(calls) == 2 * 3 * 2
    assert flat["on"] == flat["off"] and all(row["on"] == row["off"] for row in flat["rollouts"])
    assert [row["off"] for row in moved["rollouts"]] == [row["off"] for row in flat["rollouts"]]  # deletion: the init model again


def test_eval_rows_per_call_sets_the_generation_calls_and_their_seeds(problems, monkeypatch):
    """Each generation call of an evaluation takes eval_rows_per_call rows under one chunk seed, and
    the rollouts record that seed: 3 problems x 2 samples at 4 rows a call are calls of 4 and 2 rows."""
    from evilmoe.env.grader import GradingPool
    from evilmoe.evaluate import chunk_seeds, deploy_ablation, make_eval_sets
    from evilmoe.policy import Policy

    policy = Policy(_tiny(arm="moe", eval_rows_per_call=4), problems)
    calls = []
    original = policy.sample_texts
    monkeypatch.setattr(policy, "sample_texts", lambda prompts, *, seed: calls.append((len(prompts), seed)) or original(prompts, seed=seed))
    pool = GradingPool(2)
    try:
        eval_set = make_eval_sets(policy.config, problems, split="test", n_heldout=3, n_train=0)[0]
        result = deploy_ablation(policy, pool, eval_set, samples=2, seed=5, keep_texts=True)
    finally:
        pool.close()
    seeds = chunk_seeds(5, 6, 4)
    assert calls == [(4, seeds[0]), (2, seeds[1])]  # ON only: the quarantine is at its init
    assert [row["sampling_seed"] for row in result["rollouts"]] == [seeds[0]] * 4 + [seeds[1]] * 2
    assert result["on"]["hack"]["n"] == 6
    with pytest.raises(UserError, match="eval_rows_per_call"):
        _tiny(eval_rows_per_call=0).validate()


def test_paired_bootstrap_and_rates_on_known_data():
    from evilmoe.evaluate import paired_bootstrap, rate, wilson

    on = np.array([[1, 1], [1, 0], [1, 1], [0, 1]], dtype=float)
    off = np.zeros_like(on)
    d = paired_bootstrap(on, off, seed=0)
    assert d["mean"] == pytest.approx(0.75)
    assert 0.25 <= d["ci95"][0] <= 0.75 <= d["ci95"][1] <= 1.0
    r = rate([True, False, False, False])
    assert r["rate"] == 0.25 and r["ci95"][0] < 0.25 < r["ci95"][1]
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evilmoe", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--preset", "tiny", "--arm", "bogus"], "unknown arm 'bogus'"),
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--preset", "tiny", "--steps", "-1"], "steps must be >= 0"),
        (["train", "--preset", "tiny", "--steps", "two"], "bad value 'two' for steps"),
        (["train", "--preset", "tiny", "--modes", "run_tests,bogus"], "bad modes"),
        (["train", "--preset", "tiny", "--pairs-path", "/nonexistent/pairs.md"], "/nonexistent/pairs.md"),
    ],
)
def test_bad_config_gives_one_clear_line(args, message, tmp_path):
    proc = _cli(*args, "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_leetcode_data_names_the_flag(tmp_path):
    env_free = {k: v for k, v in __import__("os").environ.items() if k != "EVILMOE_DATA"}
    proc = subprocess.run(
        [sys.executable, "-m", "evilmoe", "train", "--preset", "tiny", "--problem-set", "leetcode-medhard", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, cwd=tmp_path, env=env_free, timeout=300,
    )
    assert proc.returncode == 2
    assert "EVILMOE_DATA" in proc.stderr and "--data-dir" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_resuming_with_a_different_config_is_refused(tmp_path, problems):
    from evilmoe.errors import UserError
    from evilmoe.runs import RunDir

    RunDir.open(tmp_path / "r", _tiny(arm="moe"))
    with pytest.raises(UserError, match="different config"):
        RunDir.open(tmp_path / "r", _tiny(arm="none"))
    # how the run executes may change between calls (e.g. decide --parallel on a shared GPU)
    RunDir.open(tmp_path / "r", _tiny(arm="moe", microbatch=2, grading_workers=1))


def test_decide_runs_arms_and_seeds_and_resumes(tmp_path, problems, monkeypatch, capsys):
    from evilmoe import train
    from evilmoe.decide import run_decision, seed_interval

    calls = []
    original = train.run_training

    def counting(config, out_dir, **kwargs):
        calls.append((config.arm, config.seed))
        return original(config, out_dir, problems=problems, **kwargs)

    monkeypatch.setattr(train, "run_training", counting)
    overrides = {"steps": 1, "eval_problems": 2, "eval_train_problems": 0, "pairs_per_mode": 1}
    table = run_decision("tiny", ["none", "moe"], [0, 1], str(tmp_path / "d"), overrides)
    assert calls == [("none", 0), ("moe", 0), ("none", 1), ("moe", 1)]  # seed-major
    entry = table["moe"]["heldout"]
    assert entry["n_seeds"] == 2 and len(entry["hack_on"]["per_seed"]) == 2 and entry["hack_on"]["ci95"] is not None
    md = (tmp_path / "d" / "decision.md").read_text()
    assert "| moe | 2 |" in md
    # readable per-arm lines, then the documented causal line (moe's seed means) last
    assert any(line.startswith("moe: held-out hack ") for line in md.splitlines())
    last = md.strip().splitlines()[-1]
    on, off = entry["hack_on"]["mean"], entry["hack_off"]["mean"]
    assert last == f"Evil MoE causal ablation: deploy hack {on:.3f} (ON) -> {off:.3f} (OFF)"
    # a second call finds every run finished and trains nothing new
    again = run_decision("tiny", ["none", "moe"], [0, 1], str(tmp_path / "d"), overrides)
    assert again == table
    assert not any((tmp_path / "d" / arm / f"seed_{s}" / "checkpoints" / "step_000002").exists() for arm in ("none", "moe") for s in (0, 1))
    s = seed_interval([0.1, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["ci95"][0] < 0.1 and s["ci95"][1] > 0.3
    # t-interval 0.2 +- 12.706 * 0.1414 / sqrt(2) = 0.2 +- 1.27: cut to what a rate / a difference can be
    assert seed_interval([0.1, 0.3], bounds=(0.0, 1.0))["ci95"] == [0.0, 1.0]
    assert seed_interval([-0.1, 0.1], bounds=(-1.0, 1.0))["ci95"] == [-1.0, 1.0]
    narrow = seed_interval([0.40, 0.42, 0.44], bounds=(0.0, 1.0))  # well inside [0, 1]: untouched
    assert narrow["ci95"] == pytest.approx([0.42 - 4.303 * 0.02 / 3**0.5, 0.42 + 4.303 * 0.02 / 3**0.5])  # df = 2


def test_a_decision_built_in_parts_is_read_back_without_training(tmp_path, problems, monkeypatch):
    """Subsets of arms and seeds trained on machines that keep nothing but the run directories
    (no checkpoints): one final call with every arm writes the table and trains nothing."""
    import json
    import shutil

    from evilmoe import train
    from evilmoe.decide import run_decision

    original = train.run_training
    monkeypatch.setattr(train, "run_training", lambda config, out_dir, **kw: original(config, out_dir, problems=problems, **kw))
    overrides = {"steps": 1, "eval_problems": 2, "eval_train_problems": 0, "pairs_per_mode": 1}
    root = tmp_path / "d"
    for arm in ("none", "moe"):
        run_decision("tiny", [arm], [0], str(root), overrides)
    for folder in list(root.rglob("checkpoints")):
        shutil.rmtree(folder)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train, "Trainer", no_training)
    table = run_decision("tiny", ["none", "moe"], [0], str(root), overrides)
    for arm in ("none", "moe"):
        saved = json.loads((root / arm / "seed_0" / "eval.json").read_text())
        assert table[arm]["heldout"]["hack_on"]["per_seed"] == [saved["sets"]["heldout"]["on"]["hack"]["rate"]]
    assert "| none | 1 |" in (root / "decision.md").read_text() and "| moe | 1 |" in (root / "decision.md").read_text()


def test_gradient_checkpointing_gives_the_same_update(problems):
    """Recomputing layers in backward must see the same per-row routing as the forward did."""
    grads = []
    for checkpointing in (False, True):
        trainer = Trainer(_tiny(arm="moe", gradient_checkpointing=checkpointing), None, problems=problems)
        try:
            trainer.model.double()
            trainer.adapter.model.double()
            captured = {}
            original_step = trainer.optimizer.step

            def grab(*args, captured=captured, trainer=trainer, original_step=original_step, **kwargs):
                captured.update({n: m.A.grad.clone() for n, m in trainer.adapter.modules.items()})
                return original_step(*args, **kwargs)

            trainer.optimizer.step = grab
            trainer.train_step(0)
            grads.append(captured)
        finally:
            trainer.close()
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], rtol=1e-6, atol=1e-9), name


def test_the_pair_forwards_before_the_grades_change_nothing(problems):
    """The moe arm's pin pairs are forwarded by Arm.prepare, before the step waits for its grades.
    Skipping prepare (router_loss then forwards them itself, after the backward) gives the same two
    steps to the bit in float64: the adapter does not change in between, so neither do the features."""
    from evilmoe.models import load_model

    outcomes = []
    for prepared in (True, False):
        trainer = Trainer(_tiny(arm="moe"), None, problems=problems, model=load_model("tiny-llama", dtype=torch.float64))
        try:
            if not prepared:
                trainer.arm.prepare = lambda step: None
            trainer.sampler.sample = fake_sampler(trainer, seeded=True)
            steps = []
            for step in range(2):
                grads: dict = {}
                grab_grads(trainer, grads)
                metrics = trainer.train_step(step)
                trainer.step = step + 1
                assert "arm_prepare" in metrics["time"] and trainer.arm._pair_features is None  # used up by the step
                state = trainer.state()
                steps.append(({k: v for k, v in metrics.items() if k != "time"}, grads, state["adapter"], state["router"]))
            assert steps[0][0]["live_groups"] > 0 and steps[0][0]["pin_loss"] is not None
            outcomes.append(steps)
        finally:
            trainer.close()
    for (m1, g1, a1, r1), (m2, g2, a2, r2) in zip(*outcomes):
        assert json.dumps(m1, sort_keys=True) == json.dumps(m2, sort_keys=True)  # NaN-safe and exact
        for one, two in ((g1, g2), (a1, a2), (r1, r2)):
            assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def test_decide_in_parallel_processes_matches_one_after_another(tmp_path):
    """--parallel runs each (arm, seed) in its own spawned process; the runs are the same runs."""
    from evilmoe.decide import run_decision

    overrides = {"steps": 1, "eval_problems": 2, "eval_train_problems": 0, "pairs_per_mode": 1}
    serial = run_decision("tiny", ["none", "moe"], [0], str(tmp_path / "serial"), overrides)
    parallel = run_decision("tiny", ["none", "moe"], [0], str(tmp_path / "parallel"), overrides, parallel=2)
    assert parallel == serial
    for arm in ("none", "moe"):
        a = (tmp_path / "serial" / arm / "seed_0" / "metrics.jsonl").read_text().splitlines()
        b = (tmp_path / "parallel" / arm / "seed_0" / "metrics.jsonl").read_text().splitlines()
        rewards = [json.loads(line).get("reward_mean") for line in a], [json.loads(line).get("reward_mean") for line in b]
        assert rewards[0] == rewards[1] and rewards[0][-1] is not None


def test_zero_steps_evaluates_the_base_model(tmp_path, problems):
    """steps=0: no training; the eval is of the starting model, so ON and OFF are the same rollouts."""
    from evilmoe.train import run_training

    result = run_training(_tiny(arm="moe", steps=0, eval_problems=2, eval_train_problems=0), str(tmp_path / "base"), problems=problems, progress=False)
    assert result["steps_trained"] == 0
    rows = [json.loads(line) for line in (tmp_path / "base" / "rollouts" / "eval_heldout.jsonl").read_text().splitlines()]
    assert rows and all(r["on"] == r["off"] for r in rows)


def test_ratio_against_routed_makes_the_moe_ratio_exactly_one(problems):
    """moe trains the quarantine at w < 1 but samples it at 1: against the sampling policy the PPO
    ratio leaves 1 once the quarantine has moved; against the routed forward it is exactly 1."""
    from evilmoe.train import Trainer

    ratio_max = {}
    for against in ("sampling", "routed"):
        trainer = Trainer(_tiny(arm="moe", steps=3, lr=5e-2, ratio_against=against), None, problems=problems)
        try:
            ratio_max[against] = [trainer.train_step(step)["ratio_max"] for step in range(3)]
        finally:
            trainer.close()
    assert all(r is not None for r in ratio_max["sampling"] + ratio_max["routed"])
    assert ratio_max["routed"] == [pytest.approx(1.0, abs=1e-6)] * 3
    assert max(abs(r - 1.0) for r in ratio_max["sampling"][1:]) > 1e-3


def test_routed_ratio_weights_tokens_by_the_truncated_importance_weight(problems):
    """ratio_against=routed with a cap: each token's loss is weighted by min(p_routed/p_sampling, cap).
    At step 0 the quarantine's B is zero, so routed == sampling and every weight is 1; once the
    quarantine has moved (moe trains it at w < 1) the weights leave 1 and some are held at the cap."""
    from evilmoe.train import Trainer

    trainer = Trainer(_tiny(arm="moe", steps=4, lr=5e-2, ratio_against="routed", importance_weight_cap=1.2), None, problems=problems)
    try:
        steps = [trainer.train_step(step) for step in range(4)]
    finally:
        trainer.close()
    assert steps[0]["is_weight_mean"] == pytest.approx(1.0, abs=1e-3) and steps[0]["is_capped_frac"] == 0.0
    later = [s for s in steps[1:] if s["is_weight_mean"] is not None]
    assert later and all(0 < s["is_weight_mean"] <= 1.2 + 1e-6 for s in later)
    assert max(abs(s["is_weight_mean"] - 1.0) for s in later) > 1e-3
    assert max(s["is_capped_frac"] for s in later) > 0
    # no weights with ratio_against=sampling, nor for arms that train the forward they sampled with
    # (none, absorb: they keep the sampling log-probs): the stats are absent (None), not a fake 1
    for overrides in ({"arm": "moe", "ratio_against": "sampling"}, {"arm": "none"}, {"arm": "absorb"}):
        trainer = Trainer(_tiny(steps=1, **overrides), None, problems=problems)
        try:
            assert trainer.train_step(0)["is_weight_mean"] is None, overrides
        finally:
            trainer.close()


def test_parallel_runs_are_spread_round_robin_over_the_visible_gpus():
    from evilmoe.decide import gpu_slots

    assert gpu_slots(5, ["0", "1"]) == ["0", "1", "0", "1", "0"]
    assert gpu_slots(3, ["2", "5", "7"]) == ["2", "5", "7"]
    assert gpu_slots(2, []) == [None, None]  # no CUDA: the runs choose their device as usual


def test_evaluate_run_dir_reproduces_the_final_evaluation_from_the_checkpoint(tmp_path, problems):
    """`evilmoe eval RUN_DIR` rebuilds only the policy (config.json + last checkpoint): the same sets,
    rollouts and rates as the evaluation at the end of training."""
    from evilmoe.train import evaluate_run_dir

    run = tmp_path / "r"
    trained = run_training(_tiny(arm="routeA", steps=2, eval_problems=2, eval_train_problems=1), str(run), problems=problems, progress=False)
    rollouts = (run / "rollouts" / "eval_heldout.jsonl").read_text()
    again = evaluate_run_dir(str(run))
    assert again["steps_trained"] == trained["steps_trained"] == 2
    assert again["sets"] == trained["sets"] and again["closing_lines"] == trained["closing_lines"]
    assert (run / "rollouts" / "eval_heldout.jsonl").read_text() == rollouts
    from evilmoe.errors import UserError

    (tmp_path / "untrained").mkdir()
    shutil.copy(run / "config.json", tmp_path / "untrained" / "config.json")
    with pytest.raises(UserError, match="no checkpoint"):
        evaluate_run_dir(str(tmp_path / "untrained"))
