"""The jobs a sweep directory expects, from the ``multirun.yaml`` Hydra saved in it.

Hydra writes ``multirun.yaml`` (the composed config, with the command-line overrides in
``hydra.overrides.task`` and an experiment's sweep in ``hydra.sweeper.params``) before it launches
anything. Expanding it the way Hydra's basic sweeper does, with Hydra's own functions, gives every
job's overrides and the folder it will run in, so a tool can tell which runs have not started yet.
A sampling sweeper (Optuna) draws its jobs as it goes: only their number is known in advance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

MULTIRUN_FILE = "multirun.yaml"


@dataclass(frozen=True)
class Job:
    overrides: tuple[str, ...]  # as Hydra hands them to the job: "key=value"
    dirname: str  # its folder under the sweep dir


def load_multirun(sweep_dir: str | Path) -> DictConfig | None:
    """The sweep's config: its multirun.yaml, or, for a sweeper that writes none (Optuna), the Hydra
    config of its latest job, which names the sweeper and its trial budget."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    if path.exists():
        return OmegaConf.load(path)
    jobs = sorted(Path(sweep_dir).glob("*/.hydra/hydra.yaml"), key=lambda p: p.stat().st_mtime)
    if jobs:
        cfg = OmegaConf.load(jobs[-1])
        if not is_basic_sweeper(cfg):
            return cfg
    return None


_ONCE: dict[tuple, object] = {}


def once_per_sweep(sweep_dir: str | Path, what: Callable[[DictConfig | None], object]):
    """``what(load_multirun(sweep_dir))``, None if it raises; computed once per process and multirun.yaml (by
    its mtime and size: a new sweep into the same dir rewrites it). Every job, and every member of a stack,
    asks for the sweep's size or varied factors, and parsing the file cost about 30 ms a time."""
    try:
        stat = (Path(sweep_dir) / MULTIRUN_FILE).stat()
        key = (str(sweep_dir), stat.st_mtime_ns, stat.st_size, what)
    except OSError:  # no multirun.yaml (a sampling sweeper): read anew
        key = None
    if key is None or key not in _ONCE:
        try:
            value = what(load_multirun(sweep_dir))
        except Exception:
            value = None
        if key is None:
            return value
        _ONCE[key] = value
    return _ONCE[key]


def sweep_jobs(sweep_dir: str | Path) -> list[Job] | None:
    """:func:`expected_jobs` of the sweep dir's multirun.yaml, once per process and file (None if unknown: no
    multirun.yaml, a sampling sweeper, a file this version cannot expand). The end of a sweep asks for them twice."""
    return once_per_sweep(sweep_dir, _jobs)


def _jobs(cfg: DictConfig | None) -> list[Job] | None:
    return expected_jobs(cfg) if cfg is not None else None


#: The sweepers that expand a grid as Hydra's basic sweeper does: Hydra's own (in sweep dirs regbench 0.2 wrote) and
#: regbench's (``hydra/sweeper=regbench``, which is Hydra's with each job composed once per group choice).
GRID_SWEEPERS = ("BasicSweeper", "hydra_plugins.regbench_sweeper.regbench_sweeper.RegbenchSweeper")


def is_basic_sweeper(cfg: DictConfig) -> bool:
    """The config's sweeper expands a grid (Hydra's basic sweeper or regbench's), not a sampler drawing as it goes."""
    return str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).endswith(GRID_SWEEPERS)


def sweep_arguments(cfg: DictConfig) -> list[str]:
    """The sweeper's input: the config's ``hydra.sweeper.params`` first, then the command line (which wins)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    if not is_basic_sweeper(cfg):  # a job's own config: its overrides are values drawn, not the sweep
        return [f"{k}={v}" for k, v in params.items()]
    task = OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False) if "overrides" in cfg.hydra else []
    return [*(f"{k}={v}" for k, v in params.items()), *task]


def expected_jobs(cfg: DictConfig, sampled: bool = False) -> list[Job] | None:
    """Every job of a basic-sweeper multirun, in Hydra's launch order; None for a sampling sweeper.

    ``sampled=True`` expands a sampling sweeper's discrete axes too, its sampled keys (``interval(...)``)
    keeping the config's value: the configurations the pre-flight check can see before Optuna draws.
    """
    if not is_basic_sweeper(cfg) and not sampled:
        return None
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    arguments = [o for o in parser.parse_overrides(sweep_arguments(cfg)) if not o.is_interval_sweep()]
    (batch,) = BasicSweeper.split_arguments(arguments, None)
    od = cfg.hydra.job.config.override_dirname
    exclude = list(od.exclude_keys)
    subdir = _Subdir(cfg)
    parsed: dict[str, tuple] = {}  # each distinct "key=value": (one shared string, Hydra's parse), parsed once
    jobs = []
    for num, lines in enumerate(batch):  # (Hydra's parser took 1 ms a job)
        for line in lines:
            if line not in parsed:
                parsed[line] = (line, *parser.parse_overrides([line]))
        lines = tuple(parsed[line][0] for line in lines)
        name = get_overrides_dirname([parsed[line][1] for line in lines], exclude, od.item_sep, od.kv_sep)
        jobs.append(Job(lines, subdir(name, num)))
    return jobs


def command_jobs(overrides: list[str], config_name: str = "config") -> tuple[DictConfig, list[Job]]:
    """The jobs of `regbench run [-m] OVERRIDES`, before Hydra launches them: its fixed overrides composed
    once (with Hydra's config, which holds an experiment's ``hydra.sweeper.params``), then expanded by
    :func:`expected_jobs` exactly as the sweep dir's ``multirun.yaml`` will be."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import open_dict

    from regbench.config import compose

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    cfg = compose(fixed, config_name, return_hydra_config=True)
    with open_dict(cfg):  # as Hydra splits them: hydra.* and hydra/... overrides name no job and no folder
        cfg.hydra.overrides.task = [o.input_line for o in parsed if not o.get_key_element().lstrip("+~").startswith(("hydra.", "hydra/"))]
    return cfg, expected_jobs(cfg, sampled=True)


def expected_count(cfg: DictConfig) -> int | None:
    """How many jobs the sweep launches: the product of its axes, or the sampler's ``n_trials``."""
    jobs = expected_jobs(cfg)
    if jobs is not None:
        return len(jobs)
    n = OmegaConf.select(cfg, "hydra.sweeper.n_trials", default=None)
    return int(n) if n is not None else None


def varied_keys(cfg: DictConfig) -> list[str]:
    """The keys the sweep varies (more than one value, or sampled), seed included, in sweep order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out: dict[str, None] = {}
    for o in OverridesParser.create().parse_overrides(sweep_arguments(cfg)):
        key = o.get_key_element().lstrip("+~")
        if o.is_sweep_override():
            if not o.is_discrete_sweep() or len(list(o.sweep_string_iterator())) > 1:
                out[key] = None
            else:
                out.pop(key, None)
        else:
            out.pop(key, None)  # a later fixed value (the command line) replaces the config's sweep
    return list(out)


class _Subdir:
    """``hydra.sweep.subdir`` as Hydra resolves it for each job (regbench's is ``${regbench.dirname:...}``).

    The config the template may refer to is built once; each job only sets its ``override_dirname`` and
    ``num`` before resolving (merging the whole config per job cost 10-25 ms a job)."""

    #: Templates resolved without OmegaConf (parsing the interpolation again cost 1 ms a job): regbench's and Hydra's.
    KNOWN = {"${regbench.dirname:${hydra.job.override_dirname}}": "regbench", "${hydra.job.override_dirname}": "hydra"}

    def __init__(self, cfg: DictConfig):
        import regbench.config  # noqa: F401  (registers the regbench.dirname resolver)

        template = cfg.hydra.sweep._get_node("subdir")._value()
        self.known = self.KNOWN.get(template) if isinstance(template, str) else None
        if self.known:
            return
        job = OmegaConf.to_container(cfg.hydra.job, resolve=False)
        self.cfg = OmegaConf.merge({k: v for k, v in cfg.items() if k != "hydra"}, {"hydra": {
            "job": {**job, "override_dirname": "", "num": 0},
            "sweep": {"subdir": template}}})

    def __call__(self, override_dirname: str, num: int) -> str:
        if self.known == "regbench":
            from regbench.config import _dirname

            return _dirname(override_dirname)
        if self.known == "hydra":
            return override_dirname
        self.cfg.hydra.job.override_dirname, self.cfg.hydra.job.num = override_dirname, num
        try:
            return str(self.cfg.hydra.sweep.subdir)
        except Exception:  # a template that cannot be resolved outside Hydra: Hydra's default layout
            return str(num)


#: Set to 1 while ``regbench run`` launches a sweep whose every job its pre-check has composed and checked.
PRECHECKED = "REGBENCH_PRECHECKED"


@contextmanager
def prechecked(all_checked: bool):
    """Launch without Hydra's second validation when regbench's pre-check has composed and checked every job.

    Hydra's basic sweeper composes every job of a batch once to validate it (``validate_batch_is_legal``) before its
    launcher composes it again to run it. The pre-check (:func:`regbench.validate.check_command`) has already composed
    every job and refused the command on the first that fails, so that pass only repeats it: regbench's sweeper skips
    it when this process says so (an environment variable, not an override: the sweep's ``multirun.yaml`` records
    the command as it was given)."""
    before = os.environ.get(PRECHECKED)
    if all_checked:
        os.environ[PRECHECKED] = "1"
    else:
        os.environ.pop(PRECHECKED, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PRECHECKED, None)
        else:
            os.environ[PRECHECKED] = before
