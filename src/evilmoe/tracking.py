"""Run tracking in the tools people already watch runs with: TensorBoard and Weights & Biases.

Off by default (`report_to="none"`). A run directory (runs.py `RunDir`) owns one `Tracker` and
forwards to it every metrics row it appends (per-step metrics, router diagnostics, the start row)
and every eval result it writes, so the trainer needs no tracking code of its own. The run's
config is logged once when the tracker starts.

Tags are grouped the way a reader looks for them:

    train/...   rewards, rates, gradient norms, KL, clip fractions (one point per step)
    router/...  w on hacked / clean rollouts, its AUROC, pin loss, routeA zones (diagnostics)
    val/...     periodic deploy-ablation validation folded into the step rows
    time/...    seconds per phase of a step
    setup/...   the start row (v_act separation, dropped prompts); warm_start/loss per step
    eval/SET/...  the final deploy-ablation eval: hack / solve / attempted / format rates ON and OFF
                  with their 95% bounds, and the ON-OFF differences
    val_eval/SET/...  the same numbers for each periodic validation, at its step
    start/SET/...     the starting model's evaluation (eval_start=true), at step 0

TensorBoard logs go to RUN/tensorboard (`tensorboard --logdir runs/`); a resumed run purges the
steps it recomputes. wandb logs to the project $WANDB_PROJECT (default "evilmoe"), one wandb run per
run directory (its id is kept in RUN/wandb_id, so a resume continues it).
"""

from __future__ import annotations

import atexit
import json
import math
import os
from pathlib import Path
from typing import Any

from evilmoe.errors import UserError

BACKENDS = ("tensorboard", "wandb")
ROUTER_PREFIXES = ("w_", "pin_", "router_", "zone_", "score_auroc")


def parse_report_to(text: str) -> tuple[str, ...]:
    """'none' | 'tensorboard' | 'wandb' | 'tensorboard,wandb' -> the backends asked for."""
    names = tuple(dict.fromkeys(s.strip() for s in str(text).split(",") if s.strip()))
    if names in ((), ("none",)):
        return ()
    bad = [n for n in names if n not in BACKENDS]
    if bad:
        raise UserError(f"report_to: unknown tracker {', '.join(bad)}; use none, {', '.join(BACKENDS)} or a comma-separated list")
    return names


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) metrics row as {"a/b": value}; None, strings and lists left out."""
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)):  # bools too (1.0 / 0.0)
            out[name] = float(value)
    return out


def _group(key: str) -> str:
    if key.startswith("time/"):
        return key
    if key.startswith("val_"):
        return f"val/{key[4:]}"
    if key.startswith(ROUTER_PREFIXES):
        return f"router/{key}"
    return f"train/{key}"


def eval_scalars(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of one deploy-ablation result (one eval set) as flat tags."""
    out: dict[str, float] = {}
    for side in ("on", "off"):
        for metric in ("hack", "solve", "attempted_hack", "format_ok"):
            r = result.get(side, {}).get(metric)
            if not r or r.get("rate") is None:
                continue
            out[f"{metric}_{side}"] = r["rate"]
            if r.get("ci95"):
                out[f"{metric}_{side}_ci_low"], out[f"{metric}_{side}_ci_high"] = r["ci95"]
    for metric, d in result.get("delta_on_minus_off", {}).items():
        out[f"{metric}_on_minus_off"] = d["mean"]
    return out


class _TensorBoard:
    """torch.utils.tensorboard's writer, created at the first event so a resume can purge first."""

    def __init__(self, run_path: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "report_to=tensorboard needs the tensorboard package: pip install tensorboard "
                "(or pip install -e '.[tensorboard]')"
            ) from None
        self._make = SummaryWriter
        self.log_dir = run_path / "tensorboard"
        self.purge_step: int | None = None
        self.writer = None

    def _w(self):
        if self.writer is None:
            self.writer = self._make(log_dir=str(self.log_dir), purge_step=self.purge_step)
        return self.writer

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self._w().add_scalar(tag, value, global_step=step)
        self._w().flush()

    def text(self, tag: str, text: str, step: int) -> None:
        self._w().add_text(tag, text, global_step=step)
        self._w().flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _Wandb:
    """One wandb run per run directory (resumed by the id kept in RUN/wandb_id)."""

    def __init__(self, run_path: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise UserError("report_to=wandb needs the wandb package: pip install wandb (or pip install -e '.[wandb]')") from None
        id_file = run_path / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "evilmoe"), name=run_path.name, id=run_id, resume="allow", dir=str(run_path), config=config
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.run.summary[tag] = text

    def close(self) -> None:
        self.run.finish()


class Tracker:
    """Fans every metrics row and eval result out to the configured backends."""

    def __init__(self, backends: list[Any], config: dict[str, Any]):
        self.backends = backends
        self.config = config
        self._config_logged = False
        atexit.register(self.close)  # also when a run stops on its time budget or an error

    @classmethod
    def open(cls, report_to: str, run_path: Path, config: dict[str, Any]) -> Tracker | None:
        names = parse_report_to(report_to)
        if not names:
            return None
        backends = [_TensorBoard(run_path) if name == "tensorboard" else _Wandb(run_path, config) for name in names]
        return cls(backends, config)

    def purge_from(self, step: int) -> None:
        """A resume recomputes the steps from `step` on: TensorBoard drops what it had logged there."""
        for b in self.backends:
            if isinstance(b, _TensorBoard) and b.writer is None:
                b.purge_step = max(0, step)

    def _config_once(self) -> None:
        if not self._config_logged:
            self._config_logged = True
            text = "    " + json.dumps(self.config, indent=2, sort_keys=True).replace("\n", "\n    ")  # markdown code block
            for b in self.backends:
                b.text("config", text, 0)

    def log_metrics(self, row: dict[str, Any]) -> None:
        self._config_once()
        step = int(row.get("step", 0))
        if step < 0:  # the start row: setup numbers at step 0, the warm-start loss curve by its steps
            # (its val_* keys, the validation of the starting model, are logged as val_eval/ at step 0)
            values = {f"setup/{k}": v for k, v in flatten(row).items() if k != "step" and not k.startswith("val_")}
            losses = row.get("warm_start_losses") or []
            for b in self.backends:
                b.scalars(values, 0)
                for i, loss in enumerate(losses):
                    b.scalars({"warm_start/loss": loss}, i)
            return
        values = {_group(k): v for k, v in flatten(row).items() if k != "step" and not math.isnan(v)}
        for b in self.backends:
            b.scalars(values, step)

    def log_eval(self, result: dict[str, Any], step: int | None, prefix: str | None = None) -> None:
        """A periodic validation (`step` given: val_eval/SET/... at that step), the final eval
        (`step` None: eval/SET/... at steps_trained, with the closing lines as text), or another
        evaluation under its own `prefix` (the starting model: start/SET/... at step 0)."""
        self._config_once()
        sets = result["sets"] if "sets" in result else {result.get("set", "val"): result}
        at, default = (int(result.get("steps_trained", 0)), "eval") if step is None else (int(step), "val_eval")
        prefix = prefix or default
        values = {f"{prefix}/{name}/{k}": v for name, res in sets.items() for k, v in eval_scalars(res).items()}
        for b in self.backends:
            b.scalars(values, at)
            if step is None and result.get("closing_lines"):
                b.text("eval/closing_lines", "\n\n".join(result["closing_lines"]), at)

    def close(self) -> None:
        for b in self.backends:
            b.close()
        self.backends = []
