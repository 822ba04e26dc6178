"""The README's commands in their smoke form (#32): every fenced ``regbench ...`` line of README.md is what a user
types after ``make run``, so each must still be a command regbench accepts.

- ``run`` and ``submit``: the checks ``regbench run`` makes before anything is written or trained (every job of a
  sweep composed and checked, the tuned protocol's search space too), as :func:`regbench.cli.launch` makes them.
  A paper-scale command (a dataset whose files are not here) only has to compose, job by job.
- ``$ regbench ...`` blocks: the real CLI prints the line the README shows (``…`` stands for what varies).
- ``status``, ``results``, ``report``: run, with the real CLI, on a shrunk run of the study whose sweep dir they name.
- ``python benchmarks/<script>.py --flag`` in README.md and benchmarks/README.md: the script exists and takes the flag.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

import pytest
from helpers import REPO, run_cli

README = REPO / "README.md"
BENCHMARKS_README = REPO / "benchmarks" / "README.md"
#: Datasets a fresh clone has without downloading: a command on any other is paper-scale and only composes.
LOCAL_DATASETS = {"mnist1d", "digits", "synthetic"}
#: A study's run shrunk to seconds (conf/debug/tiny.yaml: one epoch on 100 examples, no tracker), one seed.
SMOKE = ["debug=tiny", "seed=0"]


@dataclass
class Command:
    argv: list[str]  # as a shell splits it, "regbench" first, the comment dropped
    line: str  # as written
    output: list[str] = field(default_factory=list)  # the lines a `$ ` block shows after it


def fenced_commands(text: str) -> list[Command]:
    """Every line of a fenced block that starts with ``regbench `` (or ``$ regbench ``), backslash continuations
    joined; after a ``$ `` line, the block's next lines up to the following ``$`` are its output."""
    commands: list[Command] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
        prompted, shown = False, None  # a `$ ` block; the regbench command whose output follows
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("$ "):
                prompted, shown, line = True, None, line[2:]
            elif prompted:
                if shown is not None:
                    shown.output.append(line)
                continue
            if line.split()[:1] == ["regbench"]:
                commands.append(Command(shlex.split(line, comments=True), line.strip()))
                shown = commands[-1] if prompted else None
    return commands


COMMANDS = fenced_commands(README.read_text())
RUNS = [c for c in COMMANDS if c.argv[1] in ("run", "submit") and not c.output and "--help" not in c.argv]
REFUSALS = [c for c in COMMANDS if c.output]
SWEEP_DIR_COMMANDS = [c for c in COMMANDS if c.argv[1] in ("status", "results", "report")]


def run_args(command: Command):
    """The arguments `regbench run` walks, as ``run`` and ``submit`` hand them over (submit: a sweep on SLURM)."""
    from regbench.cli import parse_run_args

    argv = command.argv[2:]
    if command.argv[1] == "submit":
        argv = ["-m", *argv] + ([] if any(a.startswith("hydra/launcher=") for a in argv) else ["hydra/launcher=slurm"])
    return parse_run_args(argv)


def dataset_of(overrides: list[str]) -> str:
    return next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("dataset=")), "mnist1d")


def test_the_readme_s_commands_are_regbench_s_and_its_version_is_the_release():
    import regbench
    from regbench.cli import COMMANDS as CLI

    assert len(COMMANDS) >= 20 and RUNS and REFUSALS and SWEEP_DIR_COMMANDS, [c.line for c in COMMANDS]
    unknown = [c.line for c in COMMANDS if c.argv[1] not in CLI]
    assert not unknown, f"not a regbench command: {unknown}"
    assert f"This is regbench {regbench.__version__} (`regbench --version`)" in " ".join(README.read_text().split())


@pytest.mark.parametrize("command", RUNS, ids=[c.line.split("#")[0].strip() for c in RUNS])
def test_each_run_and_submit_command_passes_the_checks_made_before_training(command, tmp_path, monkeypatch):
    """What `regbench run` checks before Hydra launches anything (regbench.cli.launch): the group lists, every job
    of the sweep composed and checked (nothing written: the run dirs would land in tmp_path), the search space."""
    from regbench.config import check_group_lists, compose
    from regbench.sweep.jobs import command_jobs
    from regbench.sweep.tune import tuning_of
    from regbench.validate import check_command

    monkeypatch.chdir(tmp_path)  # the command's outputs/ would be here
    args = run_args(command)
    assert not args.info
    if dataset_of(args.overrides) not in LOCAL_DATASETS:  # paper scale: its data is not in a fresh clone
        _, jobs = command_jobs(args.overrides, args.config_name)
        assert jobs and all(compose(list(j.overrides)).dataset.name == dataset_of(args.overrides) for j in jobs)
        return
    check_group_lists(args.overrides)
    plan = check_command(args.overrides, args.config_name, multirun=args.multirun)
    assert plan.jobs and plan.todo == len(plan.jobs), "a README command should start from nothing here"
    if plan.config.get("tune", {}).get("space"):  # the tuned protocol's settings, as launch checks them
        assert args.multirun, "tune.space needs -m"
        assert tuning_of(plan.config) is not None
    if plan.config.get("search", {}).get("space"):  # a search's settings (regbench.sweep.search), likewise
        from regbench.sweep.search import search_of

        assert args.multirun, "search.space needs -m"
        search_of(plan.config)
    assert not any(tmp_path.iterdir()), "the checks wrote something"


def test_run_help_prints_hydra_s_view_of_every_group():
    helps = [c for c in COMMANDS if c.argv[1:] == ["run", "--help"]]
    assert helps, "the README shows `regbench run --help`"
    out = run_cli("run", "--help")
    assert out.returncode == 0, out.stderr
    for group in ("dataset", "model", "regularizer", "optimizer", "logger", "experiment"):
        assert f"{group}:" in out.stdout, group


@pytest.mark.parametrize("command", REFUSALS, ids=[c.line for c in REFUSALS])
def test_each_refusal_the_readme_shows_is_the_line_the_cli_prints(command, tmp_path):
    """Exit 2 and one line, the README's line with ``…`` standing for what varies (the data folder's path, the
    message's tail). Data comes from ./data of a fresh folder, as in a fresh clone (REGBENCH_DATA unset)."""
    (expected,) = [line for line in command.output if line.strip()]
    out = run_cli(*command.argv[1:], cwd=tmp_path, env={"REGBENCH_DATA": None})
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-2000:])
    (line,) = out.stderr.strip().splitlines()
    pattern = ".*".join(re.escape(part) for part in expected.strip().split("…"))
    assert re.fullmatch(pattern, line), f"README: {expected}\nCLI:    {line}"
    assert not any(tmp_path.iterdir())


def test_the_sweep_dir_commands_run_on_a_shrunk_run_of_the_study_they_name(tmp_path):
    """The README's status/results/report lines, as written, after the README's own command for that study, shrunk:
    the sweep dir they name is the one that command fills."""
    sweep_dirs = {c.argv[2] for c in SWEEP_DIR_COMMANDS}
    for sweep_dir in sweep_dirs:
        name = re.fullmatch(r"outputs/(\w+)/multirun", sweep_dir)
        assert name, f"{sweep_dir}: the README's sweep dirs are a study's outputs/<name>/multirun"
        study = [c for c in COMMANDS if c.argv[1:] == ["run", "-m", f"experiment={name[1]}"]]
        assert study, f"the README reports {sweep_dir} but never runs `regbench run -m experiment={name[1]}`"
        trained = run_cli(*study[0].argv[1:], *SMOKE, cwd=tmp_path)
        assert trained.returncode == 0, trained.stderr[-3000:]
    for command in SWEEP_DIR_COMMANDS:
        out = run_cli(*command.argv[1:], cwd=tmp_path)
        assert out.returncode == 0, (command.line, out.stderr[-3000:])
        sweep_dir = tmp_path / command.argv[2]
        if command.argv[1] == "status":
            assert re.search(r": (\d+) runs: \1 completed", out.stdout), out.stdout  # every run of it
        elif command.argv[1] == "results":
            assert (sweep_dir / "results.csv").is_file() and (sweep_dir / "configs.csv").is_file()
        else:
            assert (sweep_dir / "report.md").is_file() and (sweep_dir / "report.html").is_file()
            assert any((sweep_dir / "figures").glob("*.png"))


def benchmark_commands(text: str) -> list[str]:
    return re.findall(r"python (benchmarks/\S+\.py(?: [^`\n]*)?)", text)


@pytest.mark.parametrize("readme", [README, BENCHMARKS_README], ids=lambda p: str(p.relative_to(REPO)))
def test_each_benchmark_command_names_a_script_and_flags_it_takes(readme):
    commands = benchmark_commands(readme.read_text())
    assert commands, f"{readme.name} names no benchmark command"
    for command in commands:
        script, *rest = command.split()
        source = (REPO / script).read_text() if (REPO / script).is_file() else None
        assert source is not None, f"{readme.name}: {script} does not exist"
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(rest)):
            assert f'"{flag}"' in source, f"{readme.name}: {script} has no {flag}"


def test_benchmarks_readme_documents_every_script():
    text = BENCHMARKS_README.read_text()
    scripts = sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))
    assert scripts and all(f"`{name}`" in text for name in scripts), scripts
    assert re.search(r"\b2026-\d\d-\d\d\b", text), "the record keeps its dates"
    assert "benchmarks/README.md" in README.read_text(), "the README links the record"


def test_the_readme_keeps_no_log_of_sittings():
    """The benchmark history lives in benchmarks/README.md; the README quotes current figures only."""
    text = README.read_text().lower()
    assert "sitting" not in text and "tried and not" not in text and "not adopted" not in text
    record = BENCHMARKS_README.read_text().lower()
    assert "sitting" in record and "not adopted" in record
