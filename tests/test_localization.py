"""Localization controls: the dose curve's end points are exactly ON and OFF, component scaling
restores the adapter, slice norms are what the Gram matrix says, slices are norm-matched, the
selectivity arithmetic, and `evilmoe localize` end to end on a tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evilmoe.cli import main as cli_main
from evilmoe.config import make_config
from evilmoe.env.grader import GradingPool
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.evaluate import make_eval_sets, sample_and_grade
from evilmoe.localization import (
    component_norms,
    dose_curve,
    localize,
    quarantine_keep,
    random_slices,
    removed_norm,
    scaled_components,
    selectivity,
)
from evilmoe.policy import Policy
from evilmoe.train import run_training

# trains or loads real models end to end: the full suite, not the fast tier (pytest -m 'not slow')
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool():
    pool = GradingPool(2)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def policy():
    """The policy handle alone (no Trainer): what localization measures."""
    problems = load_problem_set("bundled")
    handle = Policy(make_config("tiny", dict(arm="moe", eval_problems=3, max_new_tokens=12)), problems)
    # a quarantine block far from its init, so that ON and OFF sample different texts
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in handle.adapter.modules.values():
            r = m.rank
            m.B[:, r:] += 0.5 * torch.randn(m.B[:, r:].shape, generator=gen)
            m.B[:, :r] += 0.1 * torch.randn(m.B[:, :r].shape, generator=gen)
    yield handle


def _texts(policy, pool, eval_set):
    return sample_and_grade(policy, pool, eval_set, samples=2, seed=5).texts


def test_dose_end_points_are_exactly_on_and_off(policy, pool):
    eval_set = make_eval_sets(policy.config, policy.problems, split="test", n_heldout=3, n_train=0)[0]
    on = _texts(policy, pool, eval_set)
    with policy.deployed():
        off = _texts(policy, pool, eval_set)
    assert on != off  # the test can tell them apart
    with scaled_components(policy, quarantine_keep(policy, 1.0)):
        assert _texts(policy, pool, eval_set) == on
    with scaled_components(policy, quarantine_keep(policy, 0.0)):
        assert _texts(policy, pool, eval_set) == off


def test_dose_and_slices_of_an_untrained_quarantine_sample_once_per_set(pool, monkeypatch):
    """Every scale of a quarantine still at its init is the same model (the `none` arm): one sampling
    pass per set, the same rates at every scale; a moved quarantine is sampled at every scale."""
    handle = Policy(make_config("tiny", dict(arm="none", eval_problems=2, max_new_tokens=8)), load_problem_set("bundled"))
    eval_set = make_eval_sets(handle.config, handle.problems, split="test", n_heldout=2, n_train=0)[0]
    calls = []
    original = handle.sample_texts
    monkeypatch.setattr(handle, "sample_texts", lambda prompts, *, seed: calls.append(len(prompts)) or original(prompts, seed=seed))
    flat = dose_curve(handle, pool, [eval_set], samples=1, seed=3, scales=(0.0, 0.5, 1.0))
    assert sum(calls) == 2 and len(flat["sets"][eval_set.name]) == 3
    rows = flat["sets"][eval_set.name]
    assert all(r["hack"] == rows[0]["hack"] and r["solve"] == rows[0]["solve"] for r in rows)
    calls.clear()  # the slices too: matched to a norm of 0, every slice is the ON model
    slices = random_slices(handle, pool, [eval_set], samples=1, seed=3, draws=3)
    assert sum(calls) == 2 and slices["target_norm"] == 0.0
    assert all(v == slices["sets"][eval_set.name]["rates"]["on"] for v in slices["sets"][eval_set.name]["rates"].values())
    with torch.no_grad():
        for m in handle.adapter.modules.values():
            m.B[:, m.rank :] += 0.5
    calls.clear()
    dose_curve(handle, pool, [eval_set], samples=1, seed=3, scales=(0.0, 0.5, 1.0))
    assert sum(calls) == 3 * 2


def test_localize_measures_dose_and_slices_together_with_the_same_numbers(policy, pool, monkeypatch):
    """One pass for both analyses: the slices' ON and real deletion are the dose curve's scales 1 and
    0 (not sampled twice), and every rate equals the one each analysis measures alone."""
    eval_set = make_eval_sets(policy.config, policy.problems, split="test", n_heldout=2, n_train=0)[0]
    scales = (0.0, 0.5, 1.0)
    dose = dose_curve(policy, pool, [eval_set], samples=1, seed=3, scales=scales)
    slices = random_slices(policy, pool, [eval_set], samples=1, seed=3, draws=2)
    calls = []
    original = policy.sample_texts
    monkeypatch.setattr(policy, "sample_texts", lambda prompts, *, seed: calls.append(len(prompts)) or original(prompts, seed=seed))
    both = localize(policy, pool, [eval_set], samples=1, seed=3, scales=scales, draws=2)
    assert sum(calls) == (len(scales) + 2) * len(eval_set.problems)
    assert both["dose"] == dose and both["slices"] == slices
    timing = both["timing"]
    assert timing["sampled_rows"] == sum(calls) and len(timing["sampling_seconds"]) == len(scales) + 2


def test_scaling_restores_the_adapter_exactly(policy):
    before = policy.adapter.state_dict()
    keep = {n: torch.rand(2 * policy.adapter.rank, dtype=torch.float64) for n in policy.adapter.modules}
    with pytest.raises(RuntimeError, match="boom"):
        with scaled_components(policy, keep):
            raise RuntimeError("boom")
    after = policy.adapter.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gram_norms_equal_the_removed_delta(policy):
    r = policy.adapter.rank
    grams = component_norms(policy)
    quarantine = {n: torch.cat([torch.zeros(r), torch.ones(r)]).double() for n in grams}
    full, deleted = policy.adapter.merged_delta(1.0), policy.adapter.merged_delta(0.0)
    direct = math.sqrt(sum(float(((full[n] - deleted[n]).double() ** 2).sum()) for n in full))
    assert removed_norm(grams, quarantine) == pytest.approx(direct, rel=1e-5)
    # an arbitrary partial removal: the same identity, via scaled components
    removed = {n: torch.rand(2 * r, dtype=torch.float64) for n in grams}
    with scaled_components(policy, {n: 1 - c for n, c in removed.items()}):
        kept = policy.adapter.merged_delta(1.0)
    direct = math.sqrt(sum(float(((full[n] - kept[n]).double() ** 2).sum()) for n in full))
    assert removed_norm(grams, removed) == pytest.approx(direct, rel=1e-4)


def test_random_slices_are_norm_matched_and_the_real_deletion_is_off(policy, pool):
    eval_set = make_eval_sets(policy.config, policy.problems, split="test", n_heldout=2, n_train=0)[0]
    out = random_slices(policy, pool, [eval_set], samples=1, seed=3, draws=3)
    for s in out["slices"]:
        assert s["norm"] == pytest.approx(out["target_norm"], rel=1e-6) or s["under_matched"]
        assert 0 < s["strength"] <= 1
    rates = out["sets"]["heldout"]["rates"]
    with policy.deployed():
        off = sample_and_grade(policy, pool, eval_set, samples=1, seed=3)
    assert rates["real"]["hack"] == sum(g.hacked for g in off.grades) / len(off.grades)
    assert set(out["sets"]["heldout"]["position"]) <= {"hack", "solve"}
    with pytest.raises(ValueError, match="at least 2"):
        random_slices(policy, pool, [eval_set], samples=1, seed=3, draws=1)


def test_selectivity_arithmetic():
    on = {"hack": {"rate": 0.4}, "solve": {"rate": 0.2}}
    off = {"hack": {"rate": 0.1}, "solve": {"rate": 0.25}}
    got = selectivity(on, off, start_solve=0.1, none_solve=0.3)
    assert got["hack_removed"] == pytest.approx(0.75) and got["lift_kept"] == pytest.approx(0.75)
    none_hack = {"hack": {"rate": 0.0}, "solve": {"rate": 0.2}}
    assert selectivity(none_hack, off, start_solve=0.1, none_solve=0.1) == {"hack_removed": None, "lift_kept": None}


def test_localize_command_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    config = make_config("tiny", dict(arm="absorb", steps=1, pairs_per_mode=1, eval_problems=2, eval_train_problems=0, eval_samples=1))
    run_training(config, str(run), progress=False)
    assert cli_main(["localize", str(run), "--slices", "2", "--scales", "0,1", "--sets", "heldout"]) == 0
    result = json.loads((run / "localization.json").read_text())
    assert [r["scale"] for r in result["dose"]["sets"]["heldout"]] == [0.0, 1.0]
    final = json.loads((run / "eval.json").read_text())["sets"]["heldout"]
    # scale 1 and 0 reproduce the final eval's ON and OFF (same prompts and seeds)
    assert result["dose"]["sets"]["heldout"][1]["hack"] == final["on"]["hack"]
    assert result["dose"]["sets"]["heldout"][0]["solve"] == final["off"]["solve"]
    assert (run / "plots" / "dose_curve.png").is_file()
    assert result["timing"]["grading_workers"] == 2 and result["timing"]["identical_responses_not_regraded"] >= 0
    out = capsys.readouterr().out
    assert "dose heldout:" in out and "localize took" in out
    assert cli_main(["localize", str(run), "--slices", "2", "--scales", "0,1", "--sets", "heldout", "--grading-workers", "3"]) == 0
    assert json.loads((run / "localization.json").read_text())["timing"]["grading_workers"] == 3
    assert json.loads((run / "localization.json").read_text())["dose"] == result["dose"]
    assert cli_main(["localize", str(run), "--grading-workers", "0"]) == 2
    assert cli_main(["localize", str(run), "--slices", "1"]) == 2
    assert cli_main(["localize", str(tmp_path / "nothing")]) == 2


def test_reset_adapter_state_gives_the_deployed_and_the_starting_model(policy):
    from evilmoe.localization import reset_adapter_state

    state = policy.adapter.state_dict()
    r = policy.adapter.rank
    deployed = policy.adapter.merged_delta(0.0)
    try:
        policy.adapter.load_state_dict(reset_adapter_state(state, r, quarantine_only=True))
        after = policy.adapter.merged_delta(1.0)
        assert all(torch.equal(after[n], deployed[n]) for n in after)  # the hack expert is gone, the rest kept
        policy.adapter.load_state_dict(reset_adapter_state(state, r, quarantine_only=False))
        assert all(float(d.abs().max()) == 0.0 for d in policy.adapter.merged_delta(1.0).values())  # the start
    finally:
        policy.adapter.load_state_dict(state)
        policy.refresh_sampler()


def test_relearning_summary():
    from evilmoe.localization import relearning_summary

    assert relearning_summary([0.0, 0.1, 0.3, 0.5], on_hack=0.5) == {"steps_to_half": 3, "auc": pytest.approx(0.225)}
    assert relearning_summary([0.0, None], on_hack=0.5) == {"steps_to_half": None, "auc": 0.0}
    assert relearning_summary([0.2], on_hack=0.0)["steps_to_half"] is None  # nothing to regain


def test_relearn_command(tmp_path, capsys):
    run = tmp_path / "run"
    config = make_config("tiny", dict(arm="moe", steps=1, pairs_per_mode=1, eval_problems=1, eval_train_problems=0, eval_samples=1))
    run_training(config, str(run), progress=False)
    assert cli_main(["relearn", str(run), "--steps", "1", "--grading-workers", "1"]) == 0
    result = json.loads((run / "relearn-deleted.json").read_text())
    assert result["condition"] == "deleted" and len(result["hack_curve"]) == 1
    relearned = json.loads((run / "relearn-deleted" / "config.json").read_text())
    assert relearned["arm"] == "none" and relearned["steps"] == 1  # the deployed block alone learns
    assert relearned["grading_workers"] == 1
    assert "relearn deleted:" in capsys.readouterr().out
    assert cli_main(["relearn", str(run), "--condition", "bogus"]) == 2


def _eval(hack_on, hack_off, solve_on, solve_off):
    rate = lambda v: {"rate": v}  # noqa: E731
    return {"on": {"hack": rate(hack_on), "solve": rate(solve_on)}, "off": {"hack": rate(hack_off), "solve": rate(solve_off)}}


def test_selectivity_table_from_runs():
    from evilmoe.decide import render_markdown, selectivity_table

    start = {"sets": {"skill": {"on": {"solve": {"rate": 0.1}}}}}
    results = {
        "none": {0: {"sets": {"skill": _eval(0.3, 0.3, 0.3, 0.3)}}, 1: {"sets": {"skill": _eval(0.2, 0.2, 0.5, 0.5)}}},
        "moe": {0: {"sets": {"skill": _eval(0.4, 0.0, 0.2, 0.4)}}, 1: {"sets": {"skill": _eval(0.5, 0.1, 0.2, 0.1)}}},
    }
    starts = {arm: {0: start, 1: start} for arm in results}
    table = selectivity_table(results, starts)
    moe = table["moe"]["skill"]
    assert table["none"]["skill"]["none_solve"] == pytest.approx(0.4)  # the none arm's mean OFF solve
    assert moe["hack_removed"]["per_seed"] == pytest.approx([1.0, 0.8])
    assert moe["lift_kept"]["per_seed"] == pytest.approx([1.0, 0.0])  # (0.4 - 0.1) / 0.3 and (0.1 - 0.1) / 0.3
    assert table["none"]["skill"]["hack_removed"]["per_seed"] == [0.0, 0.0]
    assert moe["lift_off"]["per_seed"] == pytest.approx([0.3, 0.0])  # solve OFF - start, per seed
    assert selectivity_table({"moe": results["moe"]}, starts) == {}  # no none arm: no lift to compare with
    assert selectivity_table(results, {arm: {0: None, 1: None} for arm in results}) == {}  # no start evals
    md = render_markdown({}, "tiny", [0, 1], table)
    assert "| moe | skill | 0.900 [" in md and "| lift OFF (solve OFF - start) |" in md


def test_decide_writes_selectivity_and_the_plane(tmp_path):
    from evilmoe.decide import run_decision

    overrides = dict(steps=1, pairs_per_mode=1, eval_start=True, skill_holdout=0.1, eval_problems=1, eval_train_problems=1, eval_samples=1)
    run_decision("tiny", ["none", "absorb"], [0], str(tmp_path / "d"), overrides)
    decision = json.loads((tmp_path / "d" / "decision.json").read_text())
    assert set(decision["selectivity"]) == {"none", "absorb"}
    assert "skill" in decision["selectivity"]["absorb"] and "skill" in decision["table"]["absorb"]
    assert (tmp_path / "d" / "decision_plane.png").is_file()
    assert "## Selectivity" in (tmp_path / "d" / "decision.md").read_text()
    # the attempted-hack rate ON and OFF per arm and set, as the final evals measured it
    absorb = json.loads((tmp_path / "d" / "absorb" / "seed_0" / "eval.json").read_text())["sets"]["heldout"]
    entry = decision["table"]["absorb"]["heldout"]
    assert entry["attempted_hack_on"]["mean"] == absorb["on"]["attempted_hack"]["rate"]
    assert entry["attempted_hack_off"]["mean"] == absorb["off"]["attempted_hack"]["rate"]
    assert "| attempted ON | attempted OFF |" in (tmp_path / "d" / "decision.md").read_text()


def _localization_file(run, hack_by_scale, real_drop, slice_mean, z):
    rate = lambda v: {"rate": v, "ci95": None}  # noqa: E731
    run.mkdir(parents=True)
    (run / "localization.json").write_text(json.dumps({
        "dose": {"scales": sorted(hack_by_scale), "sets": {"heldout": [
            {"scale": s, "hack": rate(h), "solve": rate(0.1)} for s, h in sorted(hack_by_scale.items())]}},
        "slices": {"sets": {"heldout": {"position": {"hack": {
            "real_drop": real_drop, "slice_mean": slice_mean, "z": z, "share_at_least": 0.0, "slice_drops": []}}}}},
    }))


def test_localization_summary_takes_seed_means_over_the_runs_that_have_the_files(tmp_path):
    from evilmoe.localization import localization_summary, render_localization_markdown

    _localization_file(tmp_path / "moe0", {0.0: 0.0, 1.0: 0.4}, real_drop=0.4, slice_mean=0.1, z=3.0)
    _localization_file(tmp_path / "moe1", {0.0: 0.2, 1.0: 0.6}, real_drop=0.4, slice_mean=0.2, z=None)  # no spread: no z
    relearned = lambda **kw: json.dumps({"steps": 3, **kw})  # noqa: E731
    (tmp_path / "moe1" / "relearn-deleted.json").write_text(relearned(steps_to_half=2, auc=0.3, on_hack=0.5, hack_curve=[0.1, 0.3, 0.5]))
    # a step with nothing sampled is None in its run's curve: left out of that step's mean
    (tmp_path / "moe0" / "relearn-deleted.json").write_text(relearned(steps_to_half=None, auc=0.1, on_hack=0.3, hack_curve=[0.0, None, 0.1]))
    (tmp_path / "bare").mkdir()
    summary = localization_summary({"moe": {0: tmp_path / "moe0", 1: tmp_path / "moe1"}, "none": {0: tmp_path / "bare"}})
    assert set(summary) == {"moe"}  # an arm with no localization file is left out
    dose = summary["moe"]["dose"]["heldout"]
    assert [p["scale"] for p in dose] == [0.0, 1.0]
    assert dose[0]["hack"]["mean"] == pytest.approx(0.1) and dose[1]["hack"]["mean"] == pytest.approx(0.5)
    assert dose[1]["hack"]["ci95"] is not None  # two seeds: a t-interval
    cell = summary["moe"]["slices"]["heldout"]["hack"]
    assert cell["slice_mean"]["mean"] == pytest.approx(0.15)
    assert cell["z"]["per_seed"] == [3.0] and cell["z"]["n_runs"] == 2  # the undefined z is left out, and said so
    relearn = summary["moe"]["relearn"]["deleted"]
    assert relearn["steps_to_half"] == [None, 2] and relearn["auc"]["mean"] == pytest.approx(0.2)
    curve = relearn["curve"]
    assert [c["per_seed"] for c in curve] == [pytest.approx([0.0, 0.1]), pytest.approx([0.3]), pytest.approx([0.1, 0.5])]
    assert curve[2]["mean"] == pytest.approx(0.3) and curve[1]["ci95"] is None  # one run at step 2: no interval
    from evilmoe.localization import plot_relearning_by_arm

    plot_relearning_by_arm(summary, tmp_path / "fig" / "relearning.png")
    assert (tmp_path / "fig" / "relearning.png").stat().st_size > 0
    md = render_localization_markdown(summary)
    assert "| moe | heldout | 2 | 0.100 [" in md  # the hack dose row
    assert "+3.000 (1 of 2 runs)" in md
    assert "| moe | deleted | 2 | -, 2 (of 3) | 0.200 [" in md


def test_decide_localize_reports_dose_slices_and_relearning_and_resumes(tmp_path, monkeypatch):
    import evilmoe.localization as localization
    from evilmoe.decide import _localize_runs, run_decision

    # no skill hold-out, one held-out problem: the analyses' own sets are then the held-out one alone
    overrides = dict(steps=1, pairs_per_mode=1, skill_holdout=0.0, eval_problems=1, eval_train_problems=0, eval_samples=1, grading_workers=1)
    root = tmp_path / "d"
    run_decision("tiny", ["none", "absorb"], [0], str(root), overrides, localize=True, relearn_steps=1)
    absorb, none = root / "absorb" / "seed_0", root / "none" / "seed_0"
    assert set(json.loads((absorb / "localization.json").read_text())["dose"]["sets"]) == {"heldout"}
    assert (absorb / "relearn-deleted.json").is_file() and not (absorb / "relearn-start.json").exists()
    assert (none / "relearn-start.json").is_file() and not (none / "relearn-deleted.json").exists()
    text = (root / "decision.md").read_text()
    assert "## Dose curve" in text and "## Random slices" in text and "| absorb | deleted | 1 |" in text and "| none | start | 1 |" in text
    assert (root / "dose_by_arm.png").is_file() and (root / "relearning_by_arm.png").is_file()
    assert set(json.loads((root / "decision.json").read_text())["localization"]) == {"none", "absorb"}
    # with --parallel the analyses run in spawned processes, one run each: the same files come back
    written = [absorb / "localization.json", absorb / "relearn-deleted.json", none / "localization.json", none / "relearn-start.json"]
    for path in written:
        path.unlink()
    assert _localize_runs({"none": {0: none}, "absorb": {0: absorb}}, 1, None, parallel=2)
    assert all(path.is_file() for path in written)
    # again: every run and every analysis is there, so nothing is trained or analysed a second time
    calls = []
    monkeypatch.setattr(localization, "localize_run_dir", lambda *a, **k: calls.append("localize"))
    monkeypatch.setattr(localization, "relearn_run_dir", lambda *a, **k: calls.append("relearn"))
    run_decision("tiny", ["none", "absorb"], [0], str(root), overrides, localize=True, relearn_steps=1)
    assert calls == []
    with pytest.raises(UserError, match="relearn-steps"):
        run_decision("tiny", ["none"], [0], str(root), overrides, localize=True, relearn_steps=0)


def test_router_dynamics_takes_window_means_per_run_then_seed_means(tmp_path):
    from evilmoe.decide import decision_markdown, router_dynamics, summarise_decision

    def write_run(arm, seed, rows):
        run = tmp_path / arm / f"seed_{seed}"
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return run

    def rows(offset, steps=30):
        # a header row (step -1), then per step: w on live hacks rising with the step, a live hack
        # only from step 5 (before that w_live_hacked is None and is left out of the mean)
        out = [{"step": -1, "initial_v_act_separation": 0.5}]
        for s in range(steps):
            out.append({"step": s, "policy_hack_rate": 0.1 * (s >= 5), "w_live_hacked": (s / 100 + offset) if s >= 5 else None,
                        "w_live_clean": 0.2, "w_auroc": 0.9, "pin_acc": 1.0, "quarantine_update_share": 0.5 + offset})
        return out

    dirs = {"moe": {0: write_run("moe", 0, rows(0.0)), 1: write_run("moe", 1, rows(0.1))},
            # an arm without a router logs none of its keys: left out
            "none": {0: write_run("none", 0, [{"step": s, "policy_hack_rate": 0.3, "pin_acc": None} for s in range(30)])}}
    got = router_dynamics(dirs)
    assert set(got) == {"moe"} and list(got["moe"]) == ["0-9", "10-19", "20-29"]
    first = got["moe"]["0-9"]
    # steps 5-9 only: mean of 0.05..0.09 = 0.07, plus each seed's offset
    assert first["w_live_hacked"]["per_seed"] == pytest.approx([0.07, 0.17])
    assert first["w_live_hacked"]["mean"] == pytest.approx(0.12)
    assert first["policy_hack_rate"]["per_seed"] == pytest.approx([0.05, 0.05])
    assert got["moe"]["20-29"]["w_live_hacked"]["per_seed"] == pytest.approx([0.245, 0.345])
    assert got["moe"]["10-19"]["quarantine_update_share"]["mean"] == pytest.approx(0.55)
    lo, hi = first["w_live_hacked"]["ci95"]
    assert lo < 0.12 < hi
    assert router_dynamics({"none": dirs["none"]}) == {}
    # and it is part of the decision's markdown
    sizes = {"n_problems": 2, "samples_per_problem": 1}
    results = {"moe": {0: {"sets": {"heldout": _eval(0.4, 0.0, 0.2, 0.2) | sizes}}, 1: {"sets": {"heldout": _eval(0.5, 0.1, 0.2, 0.1) | sizes}}}}
    text = decision_markdown(summarise_decision(results, {"moe": dirs["moe"]}), "t", [0, 1])
    assert "## Router dynamics" in text and "| moe | 20-29 | 2 | 0.100" in text
    assert text.index("## Router dynamics") < text.index("closing line:")  # the causal line stays last
