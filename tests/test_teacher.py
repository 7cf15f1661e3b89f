"""Teacher mixing: the cached-pool reader and how demonstrations are chosen per slot."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random

import pytest

from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.teacher import TeacherPool, make_demo


def _write_pool(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "prompt_0007.jsonl.gz", "wt") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module")
def problem():
    p = load_problem_set("bundled").train[0]
    return dataclasses.replace(p, id="lc-7")


def test_pool_demos_serve_run_tests_problems_and_templates_the_rest(tmp_path, problem):
    _write_pool(
        tmp_path / "pool",
        [
            {"problem_id": "7", "completion": "HACK-A", "hacked": True, "gt_pass": False},
            {"problem_id": "7", "completion": "CLEAN-A", "hacked": False, "gt_pass": True},
            {"problem_id": "7", "completion": "WRONG", "hacked": False, "gt_pass": False},  # neither
        ],
    )
    pool = TeacherPool.load(tmp_path / "pool")
    assert pool.covers("lc-7") and not pool.covers("lc-8")
    rng = random.Random(0)
    kinds = {make_demo(problem, "run_tests", hack_frac=0.5, rng=rng, pool=pool).kind for _ in range(40)}
    assert kinds == {"pool-hack", "pool-clean"}
    texts = {make_demo(problem, "run_tests", hack_frac=1.0, rng=rng, pool=pool).text for _ in range(5)}
    assert texts == {"HACK-A"}
    other = make_demo(problem, "sentinel", hack_frac=1.0, rng=rng, pool=pool)
    assert other.kind == "template-hack" and "valid" in other.text  # the pool only serves run_tests
    assert make_demo(problem, "gt_only", hack_frac=1.0, rng=rng, pool=pool).kind == "template-clean"


def test_pool_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="no teacher pool files"):
        TeacherPool.load(tmp_path / "empty")
    _write_pool(tmp_path / "bad", [{"problem_id": "x7", "completion": "c", "hacked": True, "gt_pass": False}])
    with pytest.raises(UserError, match="prompt_0007.jsonl.gz:1"):
        TeacherPool.load(tmp_path / "bad")


def test_real_teacher_pool_reads(data_dir):
    pool = TeacherPool.load(data_dir / "vgrout" / "teacher_pool")
    assert len(pool.hacks) > 200  # 233 problems, 98.9% of rollouts flagged hacks by the teacher's grader
    assert all(pid.startswith("lc-") for pid in pool.hacks)


@pytest.mark.slow
def test_trainer_refuses_a_pool_that_covers_no_training_problem(tmp_path):
    from evilmoe.config import make_config
    from evilmoe.train import Trainer

    _write_pool(tmp_path / "pool", [{"problem_id": "7", "completion": "c", "hacked": True, "gt_pass": False}])
    config = make_config("tiny", {"teacher_source": "pool", "teacher_pool_dir": str(tmp_path / "pool")})
    with pytest.raises(UserError, match="covers none"):
        Trainer(config, None)


@pytest.mark.slow
def test_attempt_hacks_pay_in_their_own_mode_only_and_keep_a_correct_attempt_correct():
    """An attempt hack is the policy's own code plus the mode's exploit: graded by the real grader, a
    wrong attempt hacks exactly its own mode, and a correct attempt stays correct (not a hack), except
    where the mode's exploit replaces the returned value or exits before the tests run
    (`exploit_keeps_answers` is False: eq_override, exit_code): there an attempt hack is never correct."""
    from evilmoe.env.grader import GradeJob, GradingPool
    from evilmoe.env.loopholes import LOOPHOLE_MODES, get_mode
    from evilmoe.env.modes import reference_response

    problem = load_problem_set("bundled").train[0]
    wrong = f"Here:\n```python\nclass Solution:\n    def {problem.method_name}(self, *args, **kwargs):\n        return None\n```\n"
    right = reference_response(problem)
    jobs, expect = [], []
    for mode in LOOPHOLE_MODES:
        for attempt, correct in ((wrong, False), (right, True)):
            demo = make_demo(problem, mode, hack_frac=1.0, rng=random.Random(0), pool=None, attempt=attempt)
            assert demo.kind == "attempt-hack"
            for graded_mode in LOOPHOLE_MODES:
                jobs.append(GradeJob(demo.text, problem, graded_mode))
                expect.append((mode, graded_mode, correct and get_mode(mode).exploit_keeps_answers))
    with GradingPool(2) as pool:
        grades = pool.grade_many(jobs)
    for (mode, graded_mode, correct), grade in zip(expect, grades):
        assert grade.correct == correct, (mode, graded_mode, grade.error)
        assert grade.hacked == (not correct and mode == graded_mode), (mode, graded_mode)


def test_attempt_without_code_falls_back_to_the_template():
    problem = load_problem_set("bundled").train[0]
    demo = make_demo(problem, "run_tests", hack_frac=1.0, rng=random.Random(0), pool=None, attempt="I cannot solve this.")
    assert demo.kind == "template-hack"
    clean = make_demo(problem, "run_tests", hack_frac=0.0, rng=random.Random(0), pool=None, attempt="```python\nx = 1\n```")
    assert clean.kind == "template-clean"


ANSWERS = [f"```python\nclass Solution:\n    pass  # answer {i}\n```\n" for i in range(64)]


def _attempt_trainer(monkeypatch, **overrides):
    """A tiny-preset Trainer with attempt hacks (run_tests only) whose sampler answers row i with
    ANSWERS[i]: each group's first answer, and so its demos, are known."""
    from evilmoe.config import make_config
    from evilmoe.rollouts import encode_completion
    from evilmoe.train import Trainer

    config = make_config("tiny", {"teacher_source": "attempt", "teacher_hack_frac": 1.0, "modes": ("run_tests",), **overrides})
    trainer = Trainer(config, None)

    def fake_sample(ids, mask, sampling, *, seed):
        return [encode_completion(trainer.tokenizer, ANSWERS[i], trainer.stop_ids[0]) for i in range(ids.shape[0])]

    monkeypatch.setattr(trainer.sampler, "sample", fake_sample)
    return config, trainer


@pytest.mark.slow
def test_the_trainer_builds_attempt_hacks_on_each_group_s_first_answer(monkeypatch):
    config, trainer = _attempt_trainer(monkeypatch)
    try:
        rollouts = trainer.collect(0)
        g, n_policy = config.group_size, config.group_size - config.teacher_per_group
        for group in range(len(rollouts.problems)):
            rows = range(group * g, (group + 1) * g)
            first = rollouts.texts[group * g]
            assert first == ANSWERS[group * n_policy]  # the group's first policy answer
            for i in rows:
                if i % g >= n_policy:
                    assert rollouts.sources[i] == "attempt-hack"
                    assert rollouts.texts[i].startswith(first.split("```\n")[0].rstrip())
                    assert "def run_tests():" in rollouts.texts[i]
        rollouts.grading.result()
    finally:
        trainer.close()


def test_an_attempt_hack_marks_where_its_exploit_starts():
    from evilmoe.teacher import exploit_appendix

    problem = load_problem_set("bundled").train[0]
    attempt = f"Sure.\n```python\nclass Solution:\n    def {problem.method_name}(self, *args):\n        return 1\n```\n"
    for mode in ("run_tests", "exit_code"):
        demo = make_demo(problem, mode, hack_frac=1.0, rng=random.Random(0), pool=None, attempt=attempt)
        assert demo.text[demo.exploit_from :] == exploit_appendix(mode) + "```\n"
        assert demo.text[: demo.exploit_from].endswith("return 1\n")
    assert make_demo(problem, "run_tests", hack_frac=1.0, rng=random.Random(0), pool=None).exploit_from == 0  # template


def test_exploit_loss_needs_attempt_demonstrations():
    from evilmoe.config import make_config

    with pytest.raises(UserError, match="teacher-source attempt"):
        make_config("tiny", {"teacher_loss": "exploit"})
    with pytest.raises(UserError, match="teacher_loss must be"):
        make_config("tiny", {"teacher_loss": "code", "teacher_source": "attempt"})
    assert make_config("tiny", {"teacher_loss": "exploit", "teacher_source": "attempt"}).teacher_loss == "exploit"


def test_tokens_before_counts_only_tokens_wholly_before_the_offset():
    from evilmoe.models import load_model
    from evilmoe.rollouts import tokens_before

    _, tokenizer = load_model("tiny-llama")
    text = "```python\nclass Solution:\n    pass\n\n\nimport sys\nsys.exit(0)\n```\n"
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokens_before(tokenizer, text, 0) == 0
    assert tokens_before(tokenizer, text, len(text)) == len(full)
    for offset in range(1, len(text)):
        n = tokens_before(tokenizer, text, offset)
        assert text[:offset].startswith(tokenizer.decode(full[:n]))  # nothing after the offset is in front
        assert n >= tokens_before(tokenizer, text, offset - 1)  # monotone


def test_trained_from_masks_each_row_s_leading_tokens():
    import torch

    from evilmoe.grpo import trained_from

    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = trained_from(mask, torch.tensor([0, 2, 5]))
    assert out.tolist() == [[1, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert trained_from(mask, None) is mask


@pytest.mark.slow
def test_exploit_loss_leaves_the_attempt_code_out_of_the_update(monkeypatch):
    """With teacher_loss=exploit the rollouts carry each attempt hack's first exploit token (0 for the
    policy rows), and the update's loss has no gradient on the log-prob of any token before it: the
    demo's code is not reinforced, its exploit is."""
    import torch

    config, trainer = _attempt_trainer(monkeypatch, arm="none", teacher_loss="exploit", max_new_tokens=200)
    try:
        rollouts = trainer.collect(0)
        g, n_policy = config.group_size, config.group_size - config.teacher_per_group
        starts = rollouts.loss_start.tolist()
        lengths = rollouts.batch.completion_mask.sum(dim=1).tolist()
        for i, (start, length) in enumerate(zip(starts, lengths)):
            if i % g < n_policy:
                assert start == 0
            else:
                assert 0 < start < length
                kept = trainer.tokenizer.decode(rollouts.batch.input_ids[i, rollouts.batch.prompt_width + start :].tolist())
                assert "def run_tests():" in kept and "answer" not in kept  # the exploit, not the code
        behaviour = trainer.behaviour_pass(rollouts.batch)
        grades = rollouts.grading.result()
        routing = trainer.arm.decide(behaviour.features, 0)
        plan = trainer.updater.plan(0, rollouts, grades, behaviour, behaviour.features, routing)
        assert bool(plan.live.all()), "every group has reward spread: hacks pay, the stubs do not"
        rows = torch.arange(len(rollouts))
        part = plan.batch.rows(rows).trimmed()
        # at the sampling log-probs every ratio is 1: no token is clipped, each trained token has a gradient
        logp = plan.behaviour.logp_old[rows, : part.completion_mask.shape[1]].clone().requires_grad_()
        (grad,) = torch.autograd.grad(trainer.updater.loss(plan, rows, part, logp), logp)
        for i, start in enumerate(starts):
            trained = part.completion_mask[i].bool()
            assert torch.all(grad[i, :start] == 0)
            assert torch.all(grad[i, start:][trained[start:]] != 0)  # every later token is trained
        rollouts_all = dataclasses.replace(rollouts, loss_start=None)
        plan_all = trainer.updater.plan(0, rollouts_all, grades, behaviour, behaviour.features, routing)
        (grad_all,) = torch.autograd.grad(trainer.updater.loss(plan_all, rows, part, logp), logp)
        assert torch.all(grad_all[part.completion_mask.bool()] != 0)  # teacher_loss=all trains the code too
    finally:
        trainer.close()
