"""The policy handle: the model with its two-block adapter, the tokenizer and a sampler.

Training (evilmoe.trainer), evaluation (evilmoe.evaluate) and the benchmarks all sample through a
`Policy`; `Policy.from_run_dir` rebuilds a trained run's policy from its config and last checkpoint
without the optimizer, the router or anything else of training.

Building one, in order: load the model (or take a given one), optionally merge a supervised warm
start into the base weights, attach the two-block LoRA (seeded), drop the problems whose prompt
would not fit max_prompt_tokens, and make the sampler (the fast folded-weight sampler on CUDA,
HF generate otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evilmoe import distributed as ddp
from evilmoe.config import TrainConfig
from evilmoe.env.modes import assign_modes, build_messages
from evilmoe.env.problems import ProblemSet, load_problem_set
from evilmoe.env.types import Problem
from evilmoe.errors import UserError
from evilmoe.lora2r import Lora2rAdapter, Lora2rConfig, attach_lora2r
from evilmoe.models import chat_prompt, end_of_turn_ids, load_model
from evilmoe.rollouts import HFSampler, SamplingConfig, decode_completion, encode_prompts
from evilmoe.splits import TrainingSplit, split_training


def resolve_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available")
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
    if device.type == "cuda" and ddp.world() > 1:
        return torch.device("cuda", ddp.local_rank())  # one GPU per rank
    return device


def resolve_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]


def enable_recompute(model: nn.Module) -> None:
    """Gradient checkpointing: each layer is recomputed in backward, so a training forward holds the
    activations of one layer at a time (same result, more time)."""
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def lora2r_config(config: TrainConfig) -> Lora2rConfig:
    """The run's adapter shape and init seed."""
    return Lora2rConfig(rank=config.rank, alpha=config.lora_alpha, targets=config.targets, seed=config.seed)


class Policy:
    """The model being trained and everything needed to sample from it.

    problems: the run's problem set with the problems whose prompts exceed max_prompt_tokens
    dropped (the sampler's cache is sized for the longest kept prompt, `prompt_width`);
    dropped_long_prompts counts them per split; its `train` is what RL trains on. split: the
    training problems' division into warm start / RL / skill hold-out (evilmoe.splits);
    skill_problems: the skill hold-out whose prompts fit (evaluated only). train_modes: each
    training problem's mode (the same partition for every arm and seed). warm_start: the merged
    warm start ({"factors", "rank", "scaling", "losses", "key"}, or {"deltas", "losses", "key"}
    from a checkpoint written before the factors were kept; see evilmoe.warmstart) or None;
    checkpoints carry it so a resumed run re-merges instead of retraining.
    """

    def __init__(
        self,
        config: TrainConfig,
        problems: ProblemSet,
        *,
        warm_start: dict[str, Any] | None = None,
        model: tuple[nn.Module, Any] | None = None,
        adapter: Lora2rAdapter | None = None,
        attach: Callable[[nn.Module], Lora2rAdapter] | None = None,
    ):
        """adapter: this run's adapter, already attached to `model`, whose base already holds
        `warm_start` (runs that share one model, evilmoe.batched); nothing is merged or attached.
        attach: how to attach the adapter after the warm start (default: one seeded lora2r)."""
        if adapter is not None and (model is None or (config.warm_start_steps > 0) != (warm_start is not None)):
            raise ValueError("a shared adapter needs its model and, with a warm start, the warm start merged into it")
        self.config = config
        self.device = resolve_device(config)
        self.dtype = resolve_dtype(config, self.device)
        if self.device.type == "cpu":
            # leave a core to the grading subprocesses: OpenMP threads spin-waiting for a busy core
            # made small matmuls ~10x slower on a 2-core box (measured)
            torch.set_num_threads(max(1, ddp.cores_per_rank() - 1))
        self.problems = problems
        self.train_modes = self.mode_partition(config, problems)
        try:  # warm start / RL / skill hold-out (evilmoe.splits); without them RL gets every training problem
            self.split: TrainingSplit = split_training(
                problems.train,
                warm_start=config.warm_start_steps > 0,
                warm_start_families=config.warm_start_families,
                rl_families=config.rl_families,
                skill_holdout=config.skill_holdout,
            )
        except ValueError as exc:
            raise UserError(f"{config.problem_set}: {exc}") from None

        # model (or the one given, e.g. a benchmark's), optional warm start merged into the base,
        # then the two-block adapter
        self.model, self.tokenizer = model if model is not None else load_model(config.model, device=self.device, dtype=self.dtype)
        self.stop_ids = end_of_turn_ids(self.tokenizer)
        if adapter is not None:  # a shared model: prepared and attached by the caller
            self.warm_start, self.adapter = warm_start, adapter
        else:
            self._prepare_model(warm_start, attach or (lambda m: attach_lora2r(m, lora2r_config(config))))
        self.problems, self.prompt_width, self.dropped_long_prompts = self._drop_long_prompts(self.problems)
        # from here on `problems.train` is what RL trains on; the skill hold-out is evaluated only
        kept = {p.id for p in self.problems.train}
        self.skill_problems = [p for p in self.split.skill if p.id in kept]
        rl_problems = [p for p in self.split.rl if p.id in kept]
        if not rl_problems:
            raise UserError("every RL training problem's prompt is longer than max_prompt_tokens")
        self.problems = dataclasses.replace(self.problems, train=rl_problems)
        self.sampler = self._make_sampler()
        self.sampling = SamplingConfig(config.temperature, config.top_p, config.top_k, config.max_new_tokens)

    def _prepare_model(self, warm_start: dict[str, Any] | None, attach: Callable[[nn.Module], Lora2rAdapter]) -> None:
        """Gradient checkpointing, the warm start merged into the base, then the seeded adapter."""
        config = self.config
        if config.gradient_checkpointing:
            enable_recompute(self.model)
        self.warm_start = self._warm_start(warm_start)
        self.adapter: Lora2rAdapter = attach(self.model)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> tuple[Policy, int]:
        """A trained run's policy: its config.json, its problem set and its last checkpoint's adapter
        (and warm start). Returns (policy, the number of steps the checkpoint trained)."""
        from evilmoe.runs import RunDir, read_json

        path = Path(run_dir)
        if not (path / "config.json").is_file():
            raise UserError(f"{run_dir} is not a run directory (no config.json)")
        config = TrainConfig.from_dict(read_json(path / "config.json"))
        config.validate()
        state = RunDir(path).load_latest_checkpoint()
        if state is None:
            raise UserError(f"{run_dir} has no checkpoint to evaluate (train it first)")
        policy = cls(config, load_problem_set(config.problem_set, config.data_dir), warm_start=state.get("warm_start"))
        policy.load_adapter(state["adapter"])
        return policy, int(state["step"])

    @staticmethod
    def mode_partition(config: TrainConfig, problems: ProblemSet) -> dict[str, str]:
        """Each training problem's loophole mode: the same partition for every arm and seed (the
        train_dist eval set deals its modes with the same call)."""
        return assign_modes([p.id for p in problems.train], config.modes, config.mode_seed, loophole_free_share=config.loophole_free_share)

    # --- setup pieces ---------------------------------------------------------------------------
    def _tokens(self, problem: Problem, mode: str, eval_markers: bool = False) -> int:
        text = chat_prompt(self.tokenizer, build_messages(problem, mode, eval_markers=eval_markers))
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _drop_long_prompts(self, problems: ProblemSet) -> tuple[ProblemSet, int, dict[str, int]]:
        """Drop problems whose prompt exceeds max_prompt_tokens (bounds memory and the KV cache).

        A problem's longest prompt is bounded by its hint-free prompt plus the largest hint excess
        over every mode and marker family (measured once), plus a few tokens for merges at the hint's
        edges: one render per problem instead of fourteen. The fast sampler still checks every
        batch's real width against its cache.
        """
        limit = self.config.max_prompt_tokens
        probe = problems.train[0]
        base = self._tokens(probe, "gt_only")
        hint_extra = max(self._tokens(probe, m, e) - base for m in self.config.modes for e in (False, True))
        bound = lambda p: self._tokens(p, "gt_only") + max(0, hint_extra) + 8  # noqa: E731
        kept: dict[str, list[Problem]] = {}
        dropped: dict[str, int] = {}
        width = 1
        for split in ("train", "validation", "test"):
            lengths = [(p, bound(p)) for p in getattr(problems, split)]
            kept[split] = [p for p, n in lengths if n <= limit]
            dropped[split] = len(lengths) - len(kept[split])
            width = max([width] + [n for _, n in lengths if n <= limit])
        if not kept["train"]:
            raise UserError(f"every training problem's prompt is longer than max_prompt_tokens={limit}")
        trimmed = dataclasses.replace(problems, train=kept["train"], validation=kept["validation"], test=kept["test"])
        return trimmed, width, dropped

    def _make_sampler(self):
        """Fast folded-weight sampler on CUDA (or when asked), HF generate otherwise."""
        cfg = self.config
        kind = cfg.sampler if cfg.sampler != "auto" else ("fast" if self.device.type == "cuda" else "hf")
        if kind == "hf":
            return HFSampler(self.model, self.tokenizer, self.stop_ids)
        from evilmoe.fastgen import FastSampler

        return FastSampler(
            self.model,
            self.tokenizer,
            self.stop_ids,
            adapter=self.adapter,
            max_batch=max(cfg.prompts_per_step // ddp.world() * cfg.group_size, cfg.eval_rows_per_call),
            max_seq_len=self.prompt_width + cfg.max_new_tokens,
        )

    def _warm_start(self, saved: dict[str, Any] | None) -> dict[str, Any] | None:
        """Optional supervised warm start merged into the base weights (re-applied from the
        checkpoint on resume rather than retrained, so a resumed run sees the same base)."""
        if self.config.warm_start_steps == 0:
            return None
        from evilmoe.warmstart import merge_warm_start, obtain_warm_start

        if saved is None:
            got = obtain_warm_start(
                self.model, self.tokenizer, self.stop_ids[0], self.split.warm_start, self.train_modes,
                self.config, self.device, self.dtype, self.split.describe(),
            )
            # sorted names: one rank may have trained the warm start (adapter order) while another read
            # it from the cache (safetensors keeps keys sorted), and the broadcast pairs tensors by position
            factors = {k: got["factors"][k].cpu() for k in sorted(got["factors"])}
            saved = {"factors": factors, "rank": got["rank"], "scaling": got["scaling"], "losses": got["losses"], "key": got["key"]}
            # every rank trained (or loaded) the same seeded warm start; rank 0's factors, merged by the
            # same arithmetic on each rank's (identical) device, make the bases bit-identical
            ddp.broadcast_tensors_(list(factors.values()))
        merge_warm_start(self.model, saved)
        return saved

    # --- use ------------------------------------------------------------------------------------
    def load_adapter(self, state: dict[str, Any]) -> None:
        """Load the adapter's weights (a checkpoint's "adapter" entry) and re-fold the sampler."""
        self.adapter.load_state_dict(state)
        self.refresh_sampler()

    def refresh_sampler(self) -> None:
        """The fast sampler decodes from a folded copy of the weights: re-fold after any change."""
        if hasattr(self.sampler, "refresh"):
            self.sampler.refresh(1.0)

    @contextlib.contextmanager
    def deployed(self):
        """The deployment model: quarantine reset to its init (and the sampler's fold updated)."""
        try:
            with self.adapter.ablate_quarantine():
                self.refresh_sampler()
                yield
        finally:
            self.refresh_sampler()  # back to the trained quarantine (also after an error)

    def chat_prompt(self, problem: Problem, mode: str, *, eval_markers: bool = False) -> str:
        """The rendered chat prompt of a problem in a mode (train or held-out eval markers)."""
        return chat_prompt(self.tokenizer, build_messages(problem, mode, eval_markers=eval_markers))

    def sample_texts(self, prompts: list[str], *, seed: int) -> list[str]:
        """One completion per prompt (one sampling call, seeded), decoded."""
        ids, mask = encode_prompts(self.tokenizer, prompts, self.device)
        return [decode_completion(self.tokenizer, tokens) for tokens in self.sampler.sample(ids, mask, self.sampling, seed=seed)]
