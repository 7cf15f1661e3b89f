"""Shared test fixtures: where the LeetCode data lives, and a guard that CI never silently skips it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One intra-op thread: on a 2-core CI box the tests' grading subprocesses compete with torch, and
# OpenMP threads that spin-wait for a busy core make small matmuls ~10x slower (measured here).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    """$EVILMOE_DATA, else ../shared/data beside the checkout (where CI has it), else None."""
    env = os.environ.get("EVILMOE_DATA")
    if env:
        return Path(env)
    sibling = REPO.parent / "shared" / "data"
    return sibling if sibling.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = find_data_dir()
    if path is None or not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail("LeetCode data not found under CI: set EVILMOE_DATA or put shared/data beside the checkout")
        pytest.skip("LeetCode data not found (set EVILMOE_DATA)")
    return path


@pytest.fixture(scope="session")
def trained_tiny_run(tmp_path_factory) -> Path:
    """One real tiny-model run shared by the output tests (export, tracking, report): the moe arm
    (router w logged), a warm start, the starting model's evaluation, periodic validation,
    TensorBoard tracking, and a large learning rate so both adapter blocks and the warm start move
    far from zero. Tests that change it copy it."""
    from evilmoe.config import make_config
    from evilmoe.env.problems import load_problem_set
    from evilmoe.train import run_training

    out = tmp_path_factory.mktemp("trained") / "run"
    overrides = dict(
        arm="moe", steps=2, lr=0.05, warm_start_steps=1, warm_start_lr=0.05, eval_every=1,
        eval_problems=2, eval_train_problems=1, eval_samples=2, report_to="tensorboard",
        warm_start_cache="none",  # trained here, not read from (or written to) the user's cache
        eval_start=True, pairs_per_mode=1,
    )
    run_training(make_config("tiny", overrides), str(out), problems=load_problem_set("bundled"), progress=False)
    return out
