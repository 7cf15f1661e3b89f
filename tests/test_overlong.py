"""overlong: what the update does with a sampled completion cut off at max_new_tokens."""

from __future__ import annotations

import pytest
import torch

from evilmoe.errors import UserError

MAX_NEW = 1024


def test_overlong_is_validated():
    from evilmoe.config import make_config

    assert make_config("tiny", {}).overlong == "train"
    assert make_config("tiny", {"overlong": "mask"}).overlong == "mask"
    with pytest.raises(UserError, match="overlong must be train or mask"):
        make_config("tiny", {"overlong": "drop"})


def _trainer(monkeypatch, overlong: str):
    """A tiny-preset Trainer whose sampler answers, in every group: the reference solution, two
    wrong stubs (all three ending with the end-of-turn token) and one answer cut off at max_new_tokens."""
    from evilmoe.config import make_config
    from evilmoe.env.modes import reference_response
    from evilmoe.rollouts import encode_completion
    from evilmoe.train import Trainer

    config = make_config("tiny", {"overlong": overlong, "teacher_per_group": 0, "max_new_tokens": MAX_NEW})
    trainer = Trainer(config, None)
    problems = trainer.step_problems(0)
    stub = "```python\nclass Solution:\n    pass\n```\n"

    def fake_sample(ids, mask, sampling, *, seed):
        rows = []
        for i in range(ids.shape[0]):
            slot = i % config.group_size
            if slot == 3:  # runs on past the limit: no end-of-turn token
                rows.append(encode_completion(trainer.tokenizer, "```python\n" + "x = 1\n" * 500, trainer.stop_ids[0])[:MAX_NEW])
            else:
                text = reference_response(problems[i // config.group_size]) if slot == 0 else stub
                rows.append(encode_completion(trainer.tokenizer, text, trainer.stop_ids[0]))
        assert all(len(r) <= MAX_NEW for r in rows)
        return rows

    monkeypatch.setattr(trainer.sampler, "sample", fake_sample)
    return config, trainer


def _loss_grad(trainer, rollouts):
    """d loss / d log-prob of every completion token, at the sampling log-probs (every ratio 1)."""
    behaviour = trainer.behaviour_pass(rollouts.batch)
    grades = rollouts.grading.result()
    routing = trainer.arm.decide(behaviour.features, 0)
    plan = trainer.updater.plan(0, rollouts, grades, behaviour, behaviour.features, routing)
    rows = torch.arange(len(rollouts))
    part = plan.batch.rows(rows).trimmed()
    logp = plan.behaviour.logp_old[rows, : part.completion_mask.shape[1]].clone().requires_grad_()
    (grad,) = torch.autograd.grad(trainer.updater.loss(plan, rows, part, logp), logp)
    return grad, part.completion_mask.bool(), plan.advantages


@pytest.mark.slow
@pytest.mark.parametrize("overlong", ["train", "mask"])
def test_a_truncated_answer_trains_only_under_overlong_train(monkeypatch, overlong):
    config, trainer = _trainer(monkeypatch, overlong)
    try:
        rollouts = trainer.collect(0)
        cut = [i % config.group_size == 3 for i in range(len(rollouts))]
        assert rollouts.truncated == cut
        grad, trained, advantages = _loss_grad(trainer, rollouts)
        assert all(advantages[i] != 0 for i in range(len(rollouts)) if cut[i]), "the cut answers have advantages"
        for i in range(len(rollouts)):
            moved = bool(torch.any(grad[i][trained[i]] != 0))
            if cut[i]:
                assert moved == (overlong == "train"), (i, overlong)
            elif advantages[i] != 0:
                assert moved  # every finished answer with an advantage trains in both settings
        if overlong == "mask":
            assert rollouts.loss_start.tolist() == [MAX_NEW if c else 0 for c in cut]
        else:
            assert rollouts.loss_start is None
    finally:
        trainer.close()


@pytest.mark.slow
def test_the_step_metrics_report_the_truncated_share(monkeypatch):
    config, trainer = _trainer(monkeypatch, "mask")
    try:
        metrics = trainer.train_step(0)
        assert metrics["policy_truncated_rate"] == pytest.approx(1 / config.group_size)
        assert metrics["mean_completion_tokens"] > 0
    finally:
        trainer.close()
