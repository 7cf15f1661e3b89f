"""Data parallelism with torch.distributed, launched by torchrun (docs/design.md#data-parallel).

    torchrun --nproc-per-node N -m evilmoe train ...

Every rank holds the whole model, adapter, router and optimizer (they are small next to the
rollouts). Per step each rank samples, grades and back-propagates its contiguous share of the
prompts (whole GRPO groups, so advantages stay local); the rollout-loss gradients are summed over
ranks in one collective; routing inputs (features, rewards) are gathered so every rank makes the
routing decision one process would make; only rank 0 writes the run directory.

Without torchrun (WORLD_SIZE unset or 1) nothing is initialised and every helper here returns its
input unchanged: a single process runs exactly the single-process code, with no collectives.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from evilmoe.errors import UserError

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# who am I
# --------------------------------------------------------------------------------------------
def init() -> None:
    """Join the process group torchrun describes (RANK / WORLD_SIZE / LOCAL_RANK); no-op without it.

    Backend: NCCL when CUDA is available (each rank takes GPU LOCAL_RANK), else gloo (CPU tests).
    """
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())  # "cuda" now means this rank's GPU everywhere
        backend = "nccl"
    else:
        backend = "gloo"
    # a generous timeout: rank 0 may grade or write a checkpoint while the others wait in a collective
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_world() -> int:
    """Ranks on this machine (they share its CPU cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", str(world())))


def cores_per_rank() -> int:
    """This rank's share of the machine's CPU cores (ranks on one machine split them)."""
    return max(1, (os.cpu_count() or 2) // local_world())


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective buffers must live: this rank's GPU under NCCL, the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# --------------------------------------------------------------------------------------------
# sharding
# --------------------------------------------------------------------------------------------
def shard_bounds(n: int) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous share of n items (earlier ranks get the extra ones)."""
    w, r = world(), rank()
    return r * n // w, (r + 1) * n // w


def shard(items: Sequence[T]) -> list[T]:
    """This rank's contiguous share; concatenating every rank's share in rank order gives `items`."""
    start, stop = shard_bounds(len(items))
    return list(items[start:stop])


# --------------------------------------------------------------------------------------------
# collectives (each one is the identity in a single process)
# --------------------------------------------------------------------------------------------
def all_reduce_grads(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum .grad over ranks, one collective per (dtype, device) group (in practice one per step).

    A parameter without a gradient on this rank contributes zeros; one that has none on ANY rank
    keeps grad None (AdamW then skips it, as a single process would). The "has a gradient" flags
    travel in the same buffer as the gradients, so this costs no extra collective.
    """
    if world() == 1:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    comm = _comm_device()
    for (dtype, device), group in groups.items():
        pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group]
        flags = torch.tensor([float(p.grad is not None) for p in group], dtype=dtype, device=device)
        flat = torch.cat(pieces + [flags]).to(comm)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat.to(device)
        offset = 0
        for p, had_any in zip(group, flat[-len(group):].tolist()):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone() if had_any > 0 else None
            offset += n


def all_gather_rows(x: Tensor) -> Tensor:
    """Concatenate every rank's [n_r, ...] tensor along dim 0 in rank order (n_r may differ)."""
    if world() == 1:
        return x
    comm = _comm_device()
    counts = [int(c) for c in all_gather_object(int(x.shape[0]))]
    longest = max(counts)
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=comm)
    padded[: x.shape[0]] = x.to(comm)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)]).to(x.device)


def all_gather_object(obj: T) -> list[T]:
    """Every rank's picklable `obj`, in rank order."""
    if world() == 1:
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def all_gather_concat(items: list[T]) -> list[T]:
    """Concatenate every rank's list in rank order (the inverse of `shard`)."""
    return [x for part in all_gather_object(items) for x in part]


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (e.g. a stop decision: all ranks must take the same branch)."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_tensors_(tensors: Sequence[Tensor]) -> None:
    """Overwrite each tensor in place with rank 0's copy."""
    if world() == 1:
        return
    comm = _comm_device()
    for t in tensors:
        buf = t.detach().to(comm).contiguous()
        dist.broadcast(buf, src=0)
        with torch.no_grad():
            t.copy_(buf.to(t.device))


def main_only(fn: Callable[[], T]) -> T | None:
    """Run fn on rank 0 only; its result there, None on the other ranks.

    If it raises on rank 0 the other ranks raise too (a UserError with the same message, so e.g. a
    run directory with a different config gives one clear line everywhere) instead of waiting
    forever in their next collective.
    """
    if world() == 1:
        return fn()
    result: Any = None
    failure: tuple[bool, str] | None = None
    if is_main():
        try:
            result = fn()
        except Exception as exc:
            failure = (isinstance(exc, UserError), str(exc))
            broadcast_object(failure)
            raise
    failure = broadcast_object(failure)
    if failure is not None:
        is_user_error, message = failure
        raise UserError(message) if is_user_error else RuntimeError(f"rank 0 failed: {message}")
    return result
