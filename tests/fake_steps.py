"""Helpers of the exactness and resume tests (data parallel, run-batched, interrupted runs): fake
rollouts that do not depend on how the rows are split, the gradients the optimizer sees, and a run
killed at a given step. Imported by test modules, not collected."""

from __future__ import annotations

import random
import zlib


def fake_sampler(trainer, *, seeded: bool):
    """Completions that depend only on the prompt and the row's place in its group (groups are never
    split), so the rollouts are the same however the rows are divided. `seeded` adds the call's
    sampling seed to the key (a batched run draws as alone); without it ranks with different seeds
    still draw the same rows."""
    vocab, stop = len(trainer.tokenizer), trainer.stop_ids[0]
    special = set(trainer.stop_ids) | {trainer.tokenizer.pad_token_id}

    def sample(prompt_ids, prompt_mask, sampling, *, seed, greedy=False):
        seen: dict[tuple, int] = {}
        out = []
        for ids, mask in zip(prompt_ids.tolist(), prompt_mask.tolist()):
            key = tuple(i for i, m in zip(ids, mask) if m)
            k = seen[key] = seen.get(key, -1) + 1
            rng = random.Random(zlib.crc32(repr((key, k, seed) if seeded else (key, k)).encode()))
            tokens = [t for t in (rng.randrange(vocab) for _ in range(rng.randint(2, sampling.max_new_tokens - 1))) if t not in special]
            out.append(tokens + [stop])
        return out

    return sample


def named_params(trainer):
    """(name, parameter) of the adapter's factors and the arm's own parameters."""
    for name, m in trainer.adapter.modules.items():
        yield f"{name}.A", m.A
        yield f"{name}.B", m.B
    yield from trainer.arm.named_parameters()


def grab_grads(trainer, grads: dict) -> None:
    """Record into `grads` (name -> tensor) the gradients the optimizer sees at its step."""
    names = {id(p): n for n, p in named_params(trainer)}
    original = trainer.optimizer.step

    def step(*args, **kwargs):
        for group in trainer.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    grads[names[id(p)]] = p.grad.detach().clone()
        return original(*args, **kwargs)

    trainer.optimizer.step = step


def train_until_killed(config, out_dir: str, problems, monkeypatch, at_step: int) -> None:
    """Train `config` into out_dir as a process killed when it reaches step `at_step` would: the
    checkpoints written before it survive, nothing after. Trainer.train_step is restored afterwards."""
    import pytest

    from evilmoe.train import Trainer, run_training

    original = Trainer.train_step

    def killed(self, step):
        if step == at_step:
            raise KeyboardInterrupt("simulated kill")
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", killed)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_training(config, out_dir, problems=problems, progress=False)
    finally:
        monkeypatch.setattr(Trainer, "train_step", original)
