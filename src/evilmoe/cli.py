"""The `evilmoe` command line. Argument parsing only: each command calls one function elsewhere.

Heavy modules (torch, transformers) are imported inside the handlers so `evilmoe problems` and
`evilmoe grade` start fast and the environment layer stays torch-free.
"""

from __future__ import annotations

import argparse
import os
import sys

from evilmoe.errors import UserError


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the LeetCode data (see ../shared/data/README.md); "
        "defaults to $EVILMOE_DATA. Not needed for the bundled set.",
    )


def _env_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("problems", help="print problem counts per split and mode for a problem set")
    p.add_argument("--set", dest="set_name", default="bundled", help="bundled | leetcode-easy | leetcode-medhard | leetcode-all")
    _add_data_dir(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the mode partition")

    p = sub.add_parser("grade", help="grade one raw model response; prints one JSON object")
    p.add_argument("--set", dest="set_name", default="bundled")
    p.add_argument("--problem-id", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--eval-markers", action="store_true", help="use the held-out marker family")
    _add_data_dir(p)
    p.add_argument("response_file", help="file with the raw response (markdown with a fenced block); - for stdin")

    p = sub.add_parser("env", help="environment utilities")
    env_sub = p.add_subparsers(dest="env_command", required=True)
    env_sub.add_parser("check", help="quick self-check: hack matrix + hostile responses")


def _model_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="model utilities")
    model_sub = p.add_subparsers(dest="model_command", required=True)
    q = model_sub.add_parser("info", help="architecture, parameter count, targeted modules, one short answer")
    q.add_argument("--model", default=None, help="default SmolLM2-135M-Instruct; a .gguf path, HF dir, HF id, or tiny-llama / tiny-qwen3")
    q.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")


def _add_config_fields(p: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One --field-name option per TrainConfig field (values parsed into the field's type later)."""
    from evilmoe.config import config_field_help

    group = p.add_argument_group("config overrides (TrainConfig fields; on top of the preset)")
    for name, doc in config_field_help().items():
        if name in skip:
            continue
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", default=None, metavar="V", help=doc)


def _overrides(args: argparse.Namespace) -> dict:
    from evilmoe.config import parse_field_value

    return {
        key[4:]: parse_field_value(key[4:], value)
        for key, value in vars(args).items()
        if key.startswith("cfg_") and value is not None
    }


def _train_commands(sub: argparse._SubParsersAction) -> None:
    from evilmoe.arms import ARMS
    from evilmoe.config import PRESETS

    presets = " | ".join(PRESETS)
    p = sub.add_parser("train", help="train one arm (resumes if --out holds a checkpoint), then deploy-ablation eval")
    p.add_argument("--preset", default="cpu-demo", help=presets)
    p.add_argument("--out", default=None, help="run directory (default runs/<preset>-<arm>-s<seed>)")
    p.add_argument("--time-budget-s", type=float, default=None, help="checkpoint and stop after this many seconds")
    _add_config_fields(p)

    p = sub.add_parser(
        "run",
        help="the main job, sized to the machine: on a CUDA machine the gpu-small experiment (arms moe and none, "
        "via decide), on CPU the cpu-demo run of arm moe; ends with the causal ablation line",
    )
    p.add_argument("--preset", default=None, help=f"{presets} (default: gpu-small with CUDA, else cpu-demo)")
    p.add_argument("--out", default=None, help="run directory (default runs/<preset>-<arm>-s<seed>; runs/gpu-small-decision for the GPU experiment)")
    p.add_argument("--time-budget-s", type=float, default=None, help="checkpoint and stop after this many seconds")
    _add_config_fields(p)

    p = sub.add_parser("eval", help="re-run the deploy-ablation evaluation of a run directory (last checkpoint)")
    p.add_argument("run_dir")

    p = sub.add_parser("localize", help="dose curve over the hack expert's scale and the random norm-matched slice baseline of a run (last checkpoint)")
    p.add_argument("run_dir")
    p.add_argument("--scales", default="0,0.25,0.5,0.75,1", help="hack expert scales (1 = as trained, 0 = deleted)")
    p.add_argument("--slices", type=int, default=10, help="random rank-r slices to delete (at least 2)")
    p.add_argument("--samples", type=int, default=None, help="samples per problem (default: the run's eval_samples)")
    p.add_argument("--sets", default="heldout,skill,heldout_clean", help="eval sets (those the run has)")
    p.add_argument("--grading-workers", type=int, default=None, help="grading processes (default: the run's grading_workers, else the CPUs)")

    p = sub.add_parser("relearn", help="train a run's deployed model alone N more steps in the hacking environment: how fast hacking comes back")
    p.add_argument("run_dir")
    p.add_argument("--steps", type=int, default=20, help="relearning steps")
    p.add_argument("--condition", default="deleted", help="deleted (the run's deployed model) | start (the starting model, the baseline)")
    p.add_argument("--grading-workers", type=int, default=None, help="grading processes (default: the run's grading_workers, else the CPUs)")

    p = sub.add_parser("export", help="write a run's deployed model (hack expert removed) as a Hugging Face model directory")
    p.add_argument("run_dir", help="run directory with a checkpoint")
    p.add_argument("--out", required=True, help="folder to write (must not exist or be empty)")
    p.add_argument(
        "--adapter", action="store_true", help="write a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) instead of merged weights"
    )
    p.add_argument("--hack-expert-on", action="store_true", help="keep the hack expert: the model as trained (for comparison)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16: dtype of the written weights")

    p = sub.add_parser("report", help="write one self-contained report.html for a run or a decision directory")
    p.add_argument("run_dir", help="run directory, or decision directory (one report for the batch)")
    p.add_argument("--out", default=None, help="file to write (default RUN_DIR/report.html)")

    p = sub.add_parser("decide", help="train + evaluate arms x seeds back to back (resumable); one comparison table")
    p.add_argument("--preset", default="cpu-demo", help=presets)
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--out", required=True, help="decision directory (one run directory per arm and seed inside)")
    p.add_argument("--time-budget-s", type=float, default=None, help="checkpoint and stop after this many seconds")
    p.add_argument("--parallel", type=int, default=1, help="runs trained at once, one process each, spread round-robin over the visible GPUs "
                   "(with --batched: that many batches, one process each)")
    p.add_argument("--batched", action="store_true", help="train the runs together in one process sharing one frozen model "
                   "(each run exactly as alone, given the same rollouts; see docs/design.md#several-runs-on-one-gpu)")
    p.add_argument("--update-rows", type=int, default=None, help="with --batched: the most rows in one training forward "
                   "(default: every run's microbatch in one forward, each layer recomputed in backward; microbatch: a solo run's memory, no recomputation)")
    p.add_argument("--localize", action="store_true", help="once trained, localize every run (dose curve and 10 random slices, held-out and "
                   "skill sets) and relearn its deployed model (the none arm's: the starting model); the decision then reports them")
    p.add_argument("--relearn-steps", type=int, default=20, help="with --localize: relearning steps per run")
    _add_config_fields(p, skip=("arm", "seed"))


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse's default prints the usage block above it)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evilmoe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _env_commands(sub)
    _model_commands(sub)
    _train_commands(sub)
    return parser


# OS errors that mean "this path is wrong" (missing, not a folder, no permission), not a bug
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)

# commands that run data-parallel under torchrun (evilmoe.distributed); a no-op in one process
DISTRIBUTED_COMMANDS = ("train", "run", "eval", "decide")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from_torchrun = args.command in DISTRIBUTED_COMMANDS
    try:
        if from_torchrun:
            from evilmoe import distributed

            distributed.init()
        return _dispatch(args) or 0
    except UserError as exc:  # bad config / data / paths: one clear line, no traceback
        print(f"evilmoe: error: {exc}", file=sys.stderr)
        return 2
    except PATH_ERRORS as exc:  # a path the user gave that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"evilmoe: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. `| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except KeyboardInterrupt:
        print("evilmoe: interrupted (checkpoints already written are kept: the same command resumes)", file=sys.stderr)
        return 130
    finally:
        if from_torchrun:
            distributed.shutdown()


def _dispatch(args: argparse.Namespace) -> int | None:
    if args.command == "problems":
        from evilmoe.env.problems import cmd_problems

        return cmd_problems(args.set_name, args.data_dir, seed=args.seed)
    if args.command == "grade":
        from evilmoe.env.commands import cmd_grade

        return cmd_grade(args.set_name, args.problem_id, args.mode, args.data_dir, args.eval_markers, args.response_file)
    if args.command == "env":
        from evilmoe.env.commands import cmd_env_check

        return cmd_env_check()
    if args.command == "model":
        from evilmoe.models import cmd_model_info

        return cmd_model_info(args.model, device=args.device)
    if args.command == "train":
        return _train(args)
    if args.command == "run":
        return _run(args)
    if args.command == "eval":
        from pathlib import Path

        from evilmoe.train import evaluate_run_dir

        if not (Path(args.run_dir) / "config.json").is_file():
            raise UserError(f"{args.run_dir} is not a run directory (no config.json)")

        evaluate_run_dir(args.run_dir)
        return 0
    if args.command in ("localize", "relearn") and args.grading_workers is not None and args.grading_workers < 1:
        raise UserError(f"--grading-workers must be at least 1 (got {args.grading_workers})")
    if args.command == "localize":
        from evilmoe.localization import localize_run_dir

        try:
            scales = tuple(float(x) for x in args.scales.split(","))
        except ValueError:
            raise UserError(f"--scales wants comma-separated numbers, got {args.scales!r}") from None
        if args.slices < 2:
            raise UserError("--slices must be at least 2 (a spread needs two draws)")
        localize_run_dir(
            args.run_dir, scales=scales, draws=args.slices, samples=args.samples, sets=tuple(args.sets.split(",")), grading_workers=args.grading_workers
        )
        return 0
    if args.command == "relearn":
        from evilmoe.localization import relearn_run_dir

        relearn_run_dir(args.run_dir, steps=args.steps, condition=args.condition, grading_workers=args.grading_workers)
        return 0
    if args.command == "export":
        from evilmoe.export import ExportOptions, export_run

        out = export_run(args.run_dir, args.out, ExportOptions(adapter=args.adapter, hack_expert_on=args.hack_expert_on, dtype=args.dtype))
        kind = "PEFT adapter" if args.adapter else "model"
        print(f"wrote {kind} ({'hack expert kept' if args.hack_expert_on else 'deployed: hack expert removed'}) to {out}")
        return 0
    if args.command == "report":
        from evilmoe.report import write_report

        print(f"report: {write_report(args.run_dir, args.out)}")
        return 0
    if args.command == "decide":
        from evilmoe.decide import run_decision

        arms = [a for a in args.arms.split(",") if a]
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x]
        except ValueError:
            raise UserError(f"--seeds must be comma-separated integers (got {args.seeds!r})") from None
        table = run_decision(
            args.preset, arms, seeds, args.out, _overrides(args), time_budget_s=args.time_budget_s, parallel=args.parallel,
            batched=args.batched, update_rows=args.update_rows, localize=args.localize, relearn_steps=args.relearn_steps,
        )
        return 0 if table is not None else 3
    raise AssertionError(f"unhandled command {args.command}")


def _train(args: argparse.Namespace) -> int:
    import time

    from evilmoe.config import make_config
    from evilmoe.train import run_training

    config = make_config(args.preset, _overrides(args))
    out = args.out or f"runs/{args.preset}-{config.arm}-s{config.seed}"
    deadline = time.monotonic() + args.time_budget_s if args.time_budget_s else None
    result = run_training(config, out, deadline=deadline)
    return 0 if result is not None else 3


# What `evilmoe run` says it will take (measured: docs/results.md); update with the presets.
RUN_ESTIMATES = {
    "cpu-demo": "about 11-13 minutes on 2 CPU cores (~1 more the first time, to fetch and convert the model)",
    "gpu-small": "roughly 15-20 minutes for both runs on one H100 (60 GRPO steps per run at ~4.5-5 s each, then the ON/OFF eval)",
}


def _run(args: argparse.Namespace) -> int:
    """`evilmoe run`: the real small experiment where there is a GPU, the demonstration on CPU."""
    import time

    import torch

    from evilmoe import distributed as ddp
    from evilmoe.config import make_config

    overrides = _overrides(args)
    cuda = torch.cuda.is_available() and overrides.get("device") != "cpu"
    preset = args.preset or ("gpu-small" if cuda else "cpu-demo")
    deadline = time.monotonic() + args.time_budget_s if args.time_budget_s else None
    say = print if ddp.is_main() else (lambda *a, **k: None)
    estimate = RUN_ESTIMATES.get(preset, "time depends on the preset")
    where = f"CUDA device {torch.cuda.get_device_name(0)}" if cuda else "no CUDA device"
    if cuda and preset == "gpu-small" and "arm" not in overrides:
        from evilmoe.decide import run_decision

        seed = overrides.pop("seed", 0)
        out = args.out or "runs/gpu-small-decision"
        say(
            f"evilmoe run: {where}: the gpu-small experiment, arm moe and its capacity-matched baseline none, "
            f"seed {seed}, trained and evaluated one after the other (evilmoe decide) into {out}; {estimate}."
        )
        table = run_decision(preset, ["moe", "none"], [seed], out, overrides, time_budget_s=args.time_budget_s)
        return 0 if table is not None else 3
    from evilmoe.train import run_training

    overrides.setdefault("arm", "moe")
    config = make_config(preset, overrides)
    out = args.out or f"runs/{preset}-{config.arm}-s{config.seed}"
    say(
        f"evilmoe run: {where}: preset {preset}, arm {config.arm}, seed {config.seed}, {config.steps} steps, "
        f"into {out}; {estimate}."
        + (" A short demonstration of the pipeline, not an experiment: run it on a CUDA machine for the real one." if preset == "cpu-demo" else "")
    )
    result = run_training(config, out, deadline=deadline)
    return 0 if result is not None else 3


if __name__ == "__main__":
    raise SystemExit(main())
