"""Everything `regbench run` can check before anything is written or trained.

:func:`check_command` expands the command into its jobs (one expansion, :func:`regbench.sweep.jobs.command_jobs`,
the same Hydra's basic sweeper does), composes each job's configuration and checks it with the builders'
own checks (:func:`regbench.build.check`). A problem is a :class:`UserError` with one line naming the key
and what is allowed; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from regbench.errors import ConfigError, UserError

#: A sweep larger than this is checked on its first jobs only (composition costs milliseconds per job).
MAX_CHECKED_JOBS = 2000


@dataclass
class Plan:
    """What a checked command will run."""

    jobs: list  # regbench.sweep.jobs.Job, in launch order (a single run is a sweep of one)
    sweep_dir: Path | None  # hydra.sweep.dir for -m, else None


def check_command(overrides: list[str], config_name: str = "config", multirun: bool = False) -> Plan:
    from regbench.sweep.jobs import command_jobs

    if not multirun:
        sweeps = [o for o in overrides if _is_sweep(o)]
        if sweeps:
            raise ConfigError(f"{sweeps[0]} is a sweep; add -m to run every value (regbench run -m ...)")
    try:
        hydra_cfg, jobs = command_jobs(overrides, config_name)
    except UserError:
        raise
    except Exception as e:
        raise config_error(e) from None
    costly_checks_done: set[str] = set()
    for job in itertools.islice(jobs, MAX_CHECKED_JOBS):
        check_job(list(job.overrides), config_name, costly_checks_done)
    sweep_dir = Path(str(OmegaConf.select(hydra_cfg, "hydra.sweep.dir"))) if multirun else None
    return Plan(jobs, sweep_dir)


def check_job(overrides: list[str], config_name: str = "config", costly_checks_done: set | None = None) -> None:
    """Compose one job and check it; the costly checks (data files, building the model) once per distinct setting."""
    from regbench import build
    from regbench.config import compose

    try:
        cfg = compose(overrides, config_name)
    except Exception as e:
        raise config_error(e) from None
    build.check_run(cfg)
    key = OmegaConf.to_yaml({k: cfg.get(k) for k in ("dataset", "model", "regularizer", "optimizer", "scheduler", "logger")})
    if costly_checks_done is None or key not in costly_checks_done:
        build.check(cfg)
        if costly_checks_done is not None:
            costly_checks_done.add(key)


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception as e:
        raise config_error(e) from None
    return parsed.is_sweep_override()


def config_error(e: Exception) -> ConfigError:
    """Hydra's composition errors, in one line that names the key and the allowed values."""
    from regbench.config import one_line

    text = one_line(e)
    if "Could not find '" in text and "Available options" in text:
        # "In 'config': Could not find 'model/foo' Available options in 'model': cnn mlp ..." → one line
        missing = text.split("Could not find '")[1].split("'")[0]
        group, _, option = missing.rpartition("/")
        listed = text.split("Available options in")[1].split(":", 1)[1].split("Config search path")[0].split()
        available = [o for o in listed if not o.startswith("_")]  # _base files hold shared keys, they are no options
        return ConfigError(f"unknown {group}={option}; available: {', '.join(available)}")
    if "not in struct" in text or "Could not override" in text:
        key = text.split("Could not override '")[1].split("'")[0] if "Could not override '" in text else text
        return ConfigError(f"unknown option {key!r} (no such key in the config; to add a new key use +{key}=...). {text.split('. ')[0]}")
    return ConfigError(text)

