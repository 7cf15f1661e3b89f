"""loophole_free_share: the config field, its flag, and the one training partition that the train_dist
eval set shares (the partition itself is tested in test_env_modes.py)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from evilmoe.config import TrainConfig, make_config, parse_field_value
from evilmoe.env.loopholes import LOOPHOLE_MODES
from evilmoe.env.problems import load_problem_set
from evilmoe.errors import UserError
from evilmoe.evaluate import make_eval_sets
from evilmoe.policy import Policy


@pytest.fixture(scope="module")
def problems():
    return load_problem_set("bundled")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(loophole_free_share=1.2), "loophole_free_share must be in \\[0, 1\\]"),
        (dict(loophole_free_share=-0.5), "loophole_free_share must be in \\[0, 1\\]"),
        (dict(loophole_free_share=float("nan")), "loophole_free_share must be in \\[0, 1\\]"),
        (dict(loophole_free_share=0.5, modes=LOOPHOLE_MODES), "add gt_only to modes"),
        (dict(loophole_free_share=0.0, modes=("run_tests",)), "add gt_only to modes"),
        (dict(loophole_free_share=0.5, modes=("gt_only",)), "modes has none"),
    ],
)
def test_bad_loophole_free_share_is_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        make_config("tiny", overrides)


def test_good_loophole_free_share_is_kept_and_recorded():
    assert make_config("tiny").loophole_free_share is None  # the default: the even partition
    assert make_config("tiny", dict(loophole_free_share=1.0, modes=("gt_only",))).loophole_free_share == 1.0
    config = make_config("tiny", dict(loophole_free_share=0.5))
    assert config.to_dict()["loophole_free_share"] == 0.5  # config.json holds it
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert parse_field_value("loophole_free_share", "0.5") == 0.5
    assert parse_field_value("loophole_free_share", "none") is None
    with pytest.raises(UserError, match="bad value 'half' for loophole_free_share"):
        parse_field_value("loophole_free_share", "half")


def test_training_partition_takes_the_share(problems):
    n = len(problems.train)
    even = Counter(Policy.mode_partition(make_config("tiny"), problems).values())
    assert even["gt_only"] in (n // 7, n // 7 + 1)  # without the share: one mode of seven
    modes = Policy.mode_partition(make_config("tiny", dict(loophole_free_share=0.6)), problems)
    counts = Counter(modes.values())
    assert set(modes) == {p.id for p in problems.train}
    assert counts["gt_only"] == round(0.6 * n) > even["gt_only"]
    rest = [counts[m] for m in LOOPHOLE_MODES]
    assert min(rest) > 0 and max(rest) - min(rest) <= 1


@pytest.mark.parametrize("share", [None, 0.6, 1.0])
def test_train_dist_eval_uses_the_training_modes(problems, share):
    config = make_config("tiny", dict(loophole_free_share=share))
    training = Policy.mode_partition(config, problems)
    sets = {s.name: s for s in make_eval_sets(config, problems, split="test", n_heldout=20, n_train=40)}
    train_dist = sets["train_dist"]
    assert len(train_dist.problems) == 40
    assert train_dist.modes == {p.id: training[p.id] for p in train_dist.problems}
    if share == 1.0:
        assert set(train_dist.modes.values()) == {"gt_only"}
    # the held-out set keeps the even partition whatever the share
    heldout = Counter(sets["heldout"].modes.values())
    assert max(heldout.values()) - min(heldout.values()) <= 1 and len(heldout) == 7


def test_train_dist_keeps_the_training_modes_when_rl_trains_on_a_subset(problems):
    """A policy's problems.train is the RL share of the training problems (warm-start and skill splits
    take the rest); dealing the modes again over that subset would give most of them another mode."""
    config = make_config("tiny", dict(loophole_free_share=0.5))
    training = Policy.mode_partition(config, problems)
    subset = dataclasses.replace(problems, train=problems.train[::2])
    redealt = Policy.mode_partition(config, subset)
    assert any(redealt[p.id] != training[p.id] for p in subset.train)  # the trap this guards against
    train_dist = next(s for s in make_eval_sets(config, subset, split="test", n_heldout=0, n_train=20, train_modes=training) if s.name == "train_dist")
    assert train_dist.modes == {p.id: training[p.id] for p in train_dist.problems}
