"""`regbench` command line: parse and dispatch. Only the standard library is imported up front, so
`--help`, `status` and `results` start without torch."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

USAGE = """\
usage: regbench <command> [options]

Ablation studies of deep-learning regularization, reproducible and resumable.

commands:
  run [OVERRIDES]        train one configuration composed by Hydra, e.g.
                           regbench run model=mlp optimizer=adamw regularizer=[dropout,weight_decay]
                           regbench run -m seed=0,1,2 regularizer=none,dropout     (a sweep)
                           regbench run experiment=label_corruption -m             (a named study)
                           regbench run debug=tiny                                 (a smoke test in seconds)
                         `regbench run --help` lists the config groups and their options.
  submit [OVERRIDES]     submit a sweep to SLURM as one job array and return (hydra/launcher=slurm), e.g.
                           regbench submit seed=0,1,2 regularizer=none,dropout hydra.launcher.partition=gpu
  status SWEEP_DIR       how many runs of a sweep are completed, running, failed, pending
  results SWEEP_DIR      collect a sweep into results.csv/.parquet and configs.csv (mean ± std over seeds)
  report SWEEP_DIR       write report.md / report.html with ablation tables and figures
  check SWEEP_DIR [OVERRIDES]
                         test a study's claims (conf/experiment/<study>.yaml, claims:) against its results:
                         each held / not held with its numbers; exit 1 when one is not held

options:
  -h, --help             show this message
  --version              print the version

Outputs go to outputs/<name>/runs/<overrides>/ (single runs) and outputs/<name>/multirun/<overrides>/
(sweeps). Each holds config.yaml, metrics.jsonl, result.json, checkpoints/ and the log.
"""

# Hydra flags that print information and train nothing (no validation before them).
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--resolve")
# Hydra flags followed by a value.
VALUE_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--cfg", "-c", "--package", "-p",
               "--experimental-rerun")
# Hydra's short flags, by their long names.
LONG_FLAGS = {"-h": "--help", "-c": "--cfg", "-i": "--info", "-sc": "--shell-completion", "-m": "--multirun"}


@dataclass
class RunArgs:
    """`regbench run`'s arguments, walked once: Hydra's overrides, the config name, the mode."""

    flags: list[str] = field(default_factory=list)  # Hydra's flags with their values, in order
    overrides: list[str] = field(default_factory=list)
    config_name: str = "config"
    multirun: bool = False
    info: bool = False  # an information flag: Hydra prints and nothing trains
    named: set[str] = field(default_factory=set)  # the flags given, by their long names (not their values)


def parse_run_args(argv: list[str]) -> RunArgs:
    """Walk the arguments once. Flags may come anywhere (`regbench run model=mlp -m seed=0,1`): Hydra gets
    them first, as its parser needs."""
    args = RunArgs()
    it = iter(argv)
    for a in it:
        flag = a.split("=", 1)[0]
        if not a.startswith("-"):
            args.overrides.append(a)
            continue
        if flag not in INFO_FLAGS and flag not in VALUE_FLAGS and a not in ("-m", "--multirun"):
            _error(f"unknown flag {a!r} (Hydra flags: -m, --cfg, --info, -cn; see regbench run --help)")
        args.flags.append(a)
        args.named.add(LONG_FLAGS.get(flag, flag))
        if a in VALUE_FLAGS:  # the value is the next argument
            value = next(it, None)
            if value is not None:
                args.flags.append(value)
            if a in ("--config-name", "-cn"):
                args.config_name = value or "config"
        elif flag == "--config-name":
            args.config_name = a.split("=", 1)[1]
        args.multirun |= a in ("-m", "--multirun")
        args.info |= flag in INFO_FLAGS
    return args


def _check_modes(args: RunArgs) -> None:
    """Hydra runs one mode and refuses two with a traceback: here, one line. A help flag prints and exits first."""
    if args.named & {"--help", "--hydra-help"}:
        return
    modes = [f for f in ("--multirun", "--cfg", "--info", "--shell-completion") if f in args.named]
    if len(modes) > 1:
        _error(f"{' and '.join(modes)} cannot be combined: Hydra runs one of --multirun (-m), --cfg, --info and "
               "--shell-completion")
    if "--resolve" in args.named and "--cfg" not in args.named:
        _error("--resolve goes with --cfg (or --help): it resolves the interpolations of the config --cfg prints")


def run(argv: list[str]) -> int:
    from regbench.errors import UserError
    from regbench.sweep.machine import LAUNCHER_PID

    args = parse_run_args(argv)
    _check_modes(args)
    os.environ[LAUNCHER_PID] = str(os.getpid())  # a launcher's worker processes end when this command is gone
    try:  # the pre-check imports torch only once the composition and the cheap checks passed (regbench.validate)
        return launch(args)
    except UserError as e:  # bad input, found before anything trained: one line, exit 2
        _error(str(e))


def launch(args: RunArgs, tuned_phase: bool = False, table: bool = True, busy=None, planned=None) -> int:
    """Check the command, then let Hydra run it; a sweep ends with its table. A study with a search space
    (``tune.space``) runs the tuned protocol (:mod:`regbench.sweep.tune`), and one with ``search.space`` a search
    (:mod:`regbench.sweep.search`), whose phases come back here (``tuned_phase``). Bad input
    is a UserError, raised before anything is written, which the caller prints in one line. ``busy(sweep_dir)``: a sweep's run dirs
    to leave out (`regbench submit`: those an earlier submission has queued or running); ``planned(plan)``, if given, sees
    the checked plan before the stacks are planned."""
    plan = None
    if not args.info:
        from regbench.config import check_group_lists
        from regbench.validate import check_command

        check_group_lists(args.overrides)
        plan = check_command(args.overrides, args.config_name, multirun=args.multirun, busy=busy)
        if plan.finished is not None:  # nothing to train, nothing to write: the run dir may even be read-only
            from regbench.console import print_result

            print_result({**plan.finished, "skipped": True}, plan.run_dir)
            return 0
        if plan.config is not None and plan.config.get("tune", {}).get("space"):
            from regbench.errors import UserError
            from regbench.sweep.tune import tuning_of

            if not args.multirun:
                raise UserError("tune.space runs the tuned protocol, which is a sweep: add -m (regbench run -m ...)")
            tuning_of(plan.config)  # a bad search space is one line before the sweep dir is touched
        if plan.config is not None and plan.config.get("search", {}).get("space") and not tuned_phase:
            from regbench.errors import UserError
            from regbench.sweep.search import search_of

            if not args.multirun:
                raise UserError("search.space runs a search, which is a sweep: add -m (regbench run -m ...)")
            if plan.config.get("tune", {}).get("space"):
                raise UserError("search.space and tune.space are two protocols: give one of them")
            search_of(plan.config)  # bad search settings are one line before the sweep dir is touched
        if args.multirun and not tuned_phase:  # one sweep into a sweep dir at a time, held until the sweep ends
            from regbench.rundir import hold_sweep

            with hold_sweep(plan.sweep_dir):
                return _launch_checked(args, plan, tuned_phase, table, planned)
    return _launch_checked(args, plan, tuned_phase, table, planned)


def _launch_checked(args: RunArgs, plan, tuned_phase: bool, table: bool, planned=None) -> int:
    """:func:`launch` once the command is checked (``plan``: None for an information flag)."""
    if plan is not None:
        if planned is not None and args.multirun:
            planned(plan)
        if args.multirun and not tuned_phase and plan.config is not None and plan.config.get("tune", {}).get("space"):
            from regbench.sweep import tune

            return tune.run(args, plan, lambda phase, table=True: launch(phase, tuned_phase=True, table=table))
        if args.multirun and not tuned_phase and plan.config is not None and plan.config.get("search", {}).get("space"):
            from regbench import app
            from regbench.sweep import search

            return search.run(args, plan, lambda phase, table=True: launch(phase, tuned_phase=True, table=table),
                              app.hydra_main)
        if args.multirun and not tuned_phase and _nothing_to_launch(plan):
            from regbench.sweep.end import end_of_sweep

            # Hydra would rewrite every job's folder (its .hydra/ and log) for nothing
            return end_of_sweep(plan.sweep_dir, [], started=time.time())
        if args.multirun:
            from regbench.sweep.stacks import prepare

            prepare(plan)
    from regbench import app
    from regbench.sweep.jobs import prechecked

    sys.argv = ["regbench run", *args.flags, *args.overrides]
    with prechecked(plan is not None and args.multirun and len(plan.configs) == len(plan.jobs)):
        app.hydra_main()
    if args.multirun and not args.info:
        from regbench.sweep.submit import take_refusal

        if (refused := take_refusal()) is not None:  # SLURM refused the array: nothing was submitted
            raise refused
        from regbench.sweep.end import end_of_sweep

        if not table:  # the caller prints the table (the tuned protocol, once for all its final sweeps)
            return 1 if any(status == "failed" for _, status in app.JOB_STATUSES) else 0
        return end_of_sweep(plan.sweep_dir if plan else None, app.JOB_STATUSES)
    return 1 if any(status == "failed" for _, status in app.JOB_STATUSES) else 0


def _nothing_to_launch(plan) -> bool:
    """Every job of this sweep finished earlier, in the sweep Hydra launched last into this dir (its multirun.yaml
    lists the same jobs): the table is all that is left, and a finished job's folder may even be read-only."""
    from regbench.sweep.jobs import is_basic_sweeper, sweep_jobs

    if plan.todo or plan.sweep_dir is None or not is_basic_sweeper(plan.config):
        return False
    launched = sweep_jobs(plan.sweep_dir)
    return launched is not None and [j.dirname for j in launched] == [j.dirname for j in plan.jobs]


def status(argv: list[str]) -> int:
    from regbench.sweep import status as command

    return _one_line_errors(command.main, _sweep_dir_args("status", argv))


def results(argv: list[str]) -> int:
    from regbench.sweep import results as command

    return _one_line_errors(command.main, _sweep_dir_args("results", argv))


def report(argv: list[str]) -> int:
    from regbench import report as command

    return _one_line_errors(command.main, _sweep_dir_args("report", argv))


def check(argv: list[str]) -> int:
    from regbench.report import claims

    parser = argparse.ArgumentParser(prog="regbench check", description="a study's claims against its results")
    parser.add_argument("sweep_dir")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the claims, e.g. claims.0.value=0.9")
    ns = parser.parse_args(argv)
    return _one_line_errors(lambda ns: claims.main(ns.sweep_dir, ns.overrides), ns)


def _one_line_errors(command, ns) -> int:
    """A sweep dir's command; a file it cannot use (a damaged tuned.json, …) is one line and exit 2."""
    from regbench.errors import UserError

    try:
        return command(ns)
    except UserError as e:
        _error(str(e))


def submit(argv: list[str]) -> int:
    from regbench.errors import UserError
    from regbench.sweep import submit as command

    try:
        return command.main(argv, parse_run_args, launch)
    except UserError as e:
        _error(str(e))


COMMANDS = {"run": run, "submit": submit, "status": status, "results": results, "report": report, "check": check}


def entry() -> int:
    """The ``regbench`` command (console script, ``python -m regbench``): :func:`main`, then everything it
    created moved out of the garbage collector's sight (``gc.freeze``) before the interpreter exits. Python's
    exit otherwise ends with a collection over every object alive (torch, torch._dynamo, Hydra, pandas): about
    0.5 s of every command here, after its work is done and its files are closed."""
    import gc

    code = main()
    gc.freeze()
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] == "--version":
        from regbench import __version__

        print(f"regbench {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        _error(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)} (see regbench --help)")
    return command(argv[1:])


def _sweep_dir_args(command: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"regbench {command}")
    parser.add_argument("sweep_dir")
    if command == "report":
        parser.add_argument("--baseline", default=None, help="the configuration others are compared to (overrides, e.g. 'regularizer=none')")
        parser.add_argument("--metric", default="test_acc", help="metric the effects are computed on")
        parser.add_argument("--format", default="md,html", help="comma-separated: md, html")
    ns = parser.parse_args(argv)
    from pathlib import Path

    if not Path(ns.sweep_dir).is_dir():
        _error(f"{ns.sweep_dir} is not a directory (give the sweep dir, e.g. outputs/<name>/multirun)")
    return ns


def _error(message: str, code: int = 2):
    print(f"regbench: error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())
