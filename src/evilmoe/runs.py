"""Run directories: a self-describing folder per training run, written atomically.

    RUN/
      config.json        the full resolved TrainConfig
      command.txt        the exact command line (one line per start/resume)
      meta.json          package / torch / transformers versions, device, seeds, git commit
      metrics.jsonl      one JSON object per step (truncated to the checkpoint on resume)
      rollouts/          step_NNNNNN.jsonl: every rollout's text, source, grade, advantage, route
      checkpoints/       step_NNNNNN/state.pt + LATEST (the only checkpoint a resume reads)
      eval/              eval_step_NNNNNN.json (periodic) ; RUN/eval.json is the final one
      plots/             PNGs
Every file is written to a temporary name and renamed, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from evilmoe import __version__
from evilmoe.config import TrainConfig
from evilmoe.errors import UserError
from evilmoe.tracking import Tracker


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"missing file {path}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"corrupt JSON in {path}: {exc}") from None


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# Config fields that say how a run is executed, not what it computes: a resume may change them
# (grading workers; rows per forward/backward, which changes only the float summation order).
# `evilmoe decide --parallel` gives each run its share of the CPU cores, and a smaller microbatch
# lets several runs share one GPU; the warm-start cache folder only says where a shared warm start
# is kept; report_to only says where else the metrics are logged.
EXECUTION_ONLY_FIELDS = ("grading_workers", "microbatch", "warm_start_cache", "report_to")


class RunDir:
    """One run's folder. `open` creates it or checks that a resumed run has the same config."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tracker: Tracker | None = None  # set by `open` when the config asks for tracking

    # --- creation / resume ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, config: TrainConfig, *, resume_ok: bool = True) -> RunDir:
        run = cls(Path(path))
        config_path = run.path / "config.json"
        if config_path.exists():
            existing, wanted = read_json(config_path), _jsonable(config.to_dict())
            # a field added to TrainConfig after this run was made: its default reproduces what the
            # run did before the field existed (that is the rule for adding a field)
            defaults = _jsonable(TrainConfig().to_dict())
            existing = {**{k: v for k, v in defaults.items() if k not in existing}, **existing}
            for field in EXECUTION_ONLY_FIELDS:  # how the run is executed, not what it computes
                existing.pop(field, None)
                wanted.pop(field, None)
            if existing != wanted:
                diff = sorted(k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k))
                raise UserError(
                    f"{run.path} holds a run with a different config (fields differ: {', '.join(diff)}); "
                    "use another --out, or the same settings to resume"
                )
            if not resume_ok:
                raise UserError(f"{run.path} already holds a run")
        else:
            run.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(config_path, config.to_dict())
        run._record_start(config)
        run.tracker = Tracker.open(config.report_to, run.path, config.to_dict())
        return run

    def _record_start(self, config: TrainConfig) -> None:
        command = " ".join(shlex.quote(a) for a in sys.argv)
        with open(self.path / "command.txt", "a") as f:
            f.write(command + "\n")
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            import transformers

            atomic_write_json(
                meta_path,
                {
                    "evilmoe_version": __version__,
                    "git_commit": _git_commit(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "seed": config.seed,
                    "mode_seed": config.mode_seed,
                    "command": command,
                },
            )

    # --- metrics -------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row, sort_keys=True, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.tracker is not None:
            self.tracker.log_metrics(row)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
        return rows

    def truncate_metrics(self, before_step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (they will be recomputed)."""
        kept = [r for r in self.read_metrics() if r.get("step", -1) < before_step]
        if self.tracker is not None:
            self.tracker.purge_from(before_step)
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    # --- rollouts ------------------------------------------------------------------------------
    def write_rollouts(self, step: int, rows: list[dict[str, Any]]) -> None:
        self.write_rollouts_file(f"step_{step:06d}.jsonl", rows)

    def write_rollouts_file(self, name: str, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
        atomic_write_text(self.path / "rollouts" / name, text)

    def read_rollouts_file(self, name: str) -> list[dict[str, Any]] | None:
        """The rows of rollouts/NAME, or of rollouts/NAME.gz (how committed run dirs keep them); None
        where neither exists."""
        import gzip

        for path, opener in ((self.path / "rollouts" / name, open), (self.path / "rollouts" / f"{name}.gz", gzip.open)):
            if path.exists():
                with opener(path, "rt") as f:
                    return [json.loads(line) for line in f if line.strip()]
        return None

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        return self.path / "checkpoints"

    def save_checkpoint(self, step: int, state: dict[str, Any], keep: int = 2) -> Path:
        """Write checkpoints/step_N/state.pt, then point LATEST at it; keep the newest `keep`."""
        root = self.checkpoint_root
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step_{step:06d}"
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        torch.save(state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / "LATEST", final.name + "\n")
        for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_latest_checkpoint(self) -> dict[str, Any] | None:
        latest = self.checkpoint_root / "LATEST"
        if not latest.exists():
            return None
        path = self.checkpoint_root / latest.read_text().strip() / "state.pt"
        if not path.exists():
            raise UserError(f"{latest} points at a missing checkpoint {path}")
        return torch.load(path, map_location="cpu", weights_only=False)

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.path / name, obj)
        if self.tracker is not None and name == "eval_start.json":  # the starting model's evaluation
            self.tracker.log_eval(obj, 0, prefix="start")
        return self.path / name

    def write_eval(self, obj: dict[str, Any], step: int | None = None) -> Path:
        path = self.path / "eval.json" if step is None else self.path / "eval" / f"eval_step_{step:06d}.json"
        atomic_write_json(path, obj)
        if self.tracker is not None:
            self.tracker.log_eval(obj, step)
        return path


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))
