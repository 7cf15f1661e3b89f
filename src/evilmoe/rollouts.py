"""Rollouts: prompts -> sampled completions -> token batches the GRPO step trains on.

The reference sampler is Hugging Face `generate` (left-padded prompts, stop per row at the end of
the chat turn). A faster sampler can replace it as long as it returns the same things.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from evilmoe.grpo import SequenceBatch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int


def encode_prompts(tokenizer, prompts: list[str], device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Tokenize chat-rendered prompts, left-padded (so every completion starts at the same column)."""
    # The chat template already wrote the special tokens; do not let the tokenizer add a BOS twice.
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def cut_at_stop(tokens: list[int], stop_ids: set[int]) -> list[int]:
    """Keep tokens up to and including the first stop token (the end of the chat turn)."""
    for i, t in enumerate(tokens):
        if t in stop_ids:
            return tokens[: i + 1]
    return tokens


def build_batch(prompt_ids: Tensor, prompt_mask: Tensor, completions: list[list[int]], pad_id: int) -> SequenceBatch:
    """Put completions after their (left-padded) prompts; mask the trained completion tokens."""
    n = prompt_ids.shape[0]
    if len(completions) != n:
        raise ValueError(f"{len(completions)} completions for {n} prompts")
    width = max(1, max(len(c) for c in completions))
    comp = torch.full((n, width), pad_id, dtype=torch.long)
    comp_mask = torch.zeros((n, width), dtype=torch.long)
    for i, c in enumerate(completions):
        if c:
            comp[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            comp_mask[i, : len(c)] = 1
    device = prompt_ids.device
    comp, comp_mask = comp.to(device), comp_mask.to(device)
    return SequenceBatch(
        input_ids=torch.cat([prompt_ids, comp], dim=1),
        attention_mask=torch.cat([prompt_mask, comp_mask], dim=1),
        completion_mask=comp_mask,
        prompt_width=prompt_ids.shape[1],
    )


class HFSampler:
    """Sampling with transformers' `generate` (the reference path)."""

    def __init__(self, model, tokenizer, stop_ids: list[int]):
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids)

    @torch.no_grad()
    def sample(
        self, prompt_ids: Tensor, prompt_mask: Tensor, sampling: SamplingConfig, *, seed: int, greedy: bool = False
    ) -> list[list[int]]:
        """One completion per prompt row (repeat rows for groups). Same seed -> same samples."""
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id)
        if greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else None,
            )
        out = self.model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, **kwargs)
        new = out[:, prompt_ids.shape[1] :].tolist()
        stops = set(self.stop_ids)
        return [cut_at_stop(row, stops) for row in new]


def encode_completion(tokenizer, text: str, stop_id: int) -> list[int]:
    """Tokens of a demonstration / pair completion, ending with the end-of-turn token."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [stop_id]


def tokens_before(tokenizer, text: str, offset: int) -> int:
    """How many leading tokens of `text`'s encoding (encode_completion's) lie wholly in text[:offset]:
    the common prefix of the encodings of the text and of text[:offset]. A token that merges across
    the offset (say "\n" + "\n" into "\n\n") counts as after it."""
    if offset <= 0:
        return 0
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    head = tokenizer(text[:offset], add_special_tokens=False)["input_ids"]
    n = 0
    for a, b in zip(full, head):
        if a != b:
            break
        n += 1
    return n


def decode_completion(tokenizer, tokens: list[int]) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True)
