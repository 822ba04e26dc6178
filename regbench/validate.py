"""Everything `regbench run` can check before anything is written or trained.

:func:`check_command` expands the command into its jobs (one expansion, :func:`regbench.sweep.jobs.command_jobs`,
the same Hydra's basic sweeper does), composes each job's configuration and checks it with the builders'
own checks (:func:`regbench.build.check`). A problem is a :class:`UserError` with one line naming the key
and what is allowed; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
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
    finished: dict | None = None  # a single run already completed (or diverged): its result, nothing to train
    run_dir: Path | None = None  # a single run's directory
    configs: list = field(default_factory=list)  # per job: its composed config, None if finished (or not checked)
    config: object = None  # the first job's composed config


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
    from regbench.sweep.jobs import is_basic_sweeper

    sweep_dir = Path(str(OmegaConf.select(hydra_cfg, "hydra.sweep.dir"))) if multirun else None
    known_dirs = not multirun or is_basic_sweeper(hydra_cfg)  # a sampler's job dirs depend on its draws
    costly_checks_done: set[str] = set()
    plan = Plan(jobs, sweep_dir)
    composer = Composer(config_name, overrides, hydra_cfg)
    for job in itertools.islice(jobs, MAX_CHECKED_JOBS):
        cfg = check_job(list(job.overrides), config_name, costly_checks_done, composer)
        if known_dirs:
            run_dir = sweep_dir / job.dirname if multirun else Path(str(cfg.hydra.run.dir))
            plan.run_dir, plan.finished = run_dir, check_run_dir(run_dir, cfg)
        plan.configs.append(cfg if plan.finished is None else None)
        plan.config = cfg if plan.config is None else plan.config
    if multirun:
        plan.run_dir = plan.finished = None
    return plan


def check_run_dir(run_dir: Path, cfg) -> dict | None:
    """Refuse a job whose directory holds another configuration, foreign files, or a live writer; return its
    result when it is already finished (and resume is on), else None. Nothing is written."""
    from regbench import rundir
    from regbench.config import run_id

    rid = run_id(cfg)
    rundir.check_identity(run_dir, rid)
    busy = rundir.holder(run_dir)
    if busy:
        raise rundir.RunDirBusy(f"{run_dir} is being trained by another process ({busy}); wait for it, or stop it and re-run")
    result = rundir.finished_result(run_dir, rid, cfg.resume)
    if result:
        return result
    _check_writable(run_dir)
    if cfg.resume:
        _check_checkpoint(run_dir, rid, cfg.resume)
    return None


def _check_checkpoint(run_dir: Path, rid: str, mode) -> None:
    """The checkpoint a run will resume from loads and is this configuration's: a damaged file, or one copied in
    from another configuration, is one line now, before anything is written (:func:`regbench.train.start`
    makes the same choice: resume=best takes best.pt only where last.pt cannot be read)."""
    from regbench import checkpoint
    from regbench.errors import DamagedFile

    last, best = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    if best.exists():
        checkpoint.load(best)  # the run ends on it (or continues from it): damaged, it is one line now
    if last.exists():
        try:
            held = checkpoint.load(last)["state"]["run_id"]
        except DamagedFile as e:
            if not best.exists():  # resume=best has nothing to continue from
                raise DamagedFile(e.path, e.reason, "move it away to train that run anew") from None
            if mode != "best":
                raise
            return
        except (KeyError, TypeError):
            raise DamagedFile(last, "holds no run state (not a regbench checkpoint)", "move it away to train that run anew") from None
        if held != rid:
            from regbench.rundir import RunDirConflict

            raise RunDirConflict(f"{last} is a checkpoint of another configuration (run id {held}; this one is {rid}): "
                                 "move it away, or remove that folder")


def _check_writable(run_dir: Path) -> None:
    """The run dir, or the nearest folder above it that exists, must take new files."""
    import os

    path = Path(run_dir).absolute()
    while not path.exists():
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {path}: {'not a directory' if not path.is_dir() else 'permission denied'}; "
                        "choose another hydra.run.dir / hydra.sweep.dir")


class Composer:
    """The configurations of a command's jobs, each as Hydra composes it, at a fraction of the cost.

    Composition costs about 0.1 s a job. Jobs that differ only in values (seeds, rates, strengths) share
    their composition: Hydra composes once per distinct choice of config groups (with the command's fixed
    overrides), and each job's own values are then set on a copy, as Hydra sets value overrides after
    composing (an unknown key is refused, ``+key`` adds, ``~key`` removes). The command's own composition
    (``fixed``, composed with its fixed overrides) serves the jobs that add nothing to it.
    """

    def __init__(self, config_name: str, command_overrides: list[str], fixed):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.config_name, self.parser = config_name, OverridesParser.create()
        parsed = self.parser.parse_overrides(list(command_overrides))
        self.fixed_lines = [o.input_line for o in parsed if not o.is_sweep_override()]
        # A search path adds groups of its own: then every job is composed in full.
        self.shortcut = not any(o.get_key_element().lstrip("+~").startswith("hydra.searchpath") for o in parsed)
        self.cache = {tuple(self.fixed_lines): fixed}

    def compose(self, overrides: list[str]):
        from regbench.config import compose, copy_config

        if not self.shortcut:  # a job's overrides hold no hydra.* ones (as Hydra's): add the command's
            hydra_lines = [line for line in self.fixed_lines if line.lstrip("+~").startswith(("hydra.", "hydra/"))]
            return compose([*hydra_lines, *overrides], self.config_name, return_hydra_config=True)
        own = [o for o in self.parser.parse_overrides(overrides) if o.input_line not in self.fixed_lines]
        groups = tuple(self.fixed_lines + [o.input_line for o in own if self._is_group(o)])
        if groups not in self.cache:
            self.cache[groups] = compose(list(groups), self.config_name, return_hydra_config=True)
        cfg = copy_config(self.cache[groups])
        for o in own:
            if not self._is_group(o):
                self._set(cfg, o)
        return cfg

    @staticmethod
    def _is_group(o) -> bool:
        from regbench.config import CONFIG_DIR

        key = o.get_key_element().lstrip("+~")
        return "/" in key or (CONFIG_DIR / key).is_dir()

    @staticmethod
    def _set(cfg, o) -> None:
        from omegaconf import open_dict

        key = o.get_key_element()
        if o.is_delete():
            with open_dict(cfg):
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                if node is None or leaf not in node:
                    raise ConfigError(f"cannot delete {key}: no such key in the config")
                del node[leaf]
        elif o.is_add() or o.is_force_add():
            with open_dict(cfg):
                OmegaConf.update(cfg, key, o.value(), merge=True, force_add=True)
        else:
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                raise ConfigError(f"unknown option {key!r} (no such key in the config; to add a new key use +{key}=...)")
            OmegaConf.update(cfg, key, o.value(), merge=True)


def check_job(overrides: list[str], config_name: str = "config", costly_checks_done: set | None = None,
              composer: Composer | None = None):
    """Compose one job (with Hydra's node, for its run dir) and check it; the costly checks (data, model)
    once per distinct setting. Returns the composed config."""
    from regbench import build
    from regbench.config import compose, to_yaml

    try:
        if composer is not None:
            cfg = composer.compose(overrides)
        else:
            cfg = compose(overrides, config_name, return_hydra_config=True)
    except UserError:
        raise
    except Exception as e:
        raise config_error(e) from None
    build.check_run(cfg)
    parts = {k: cfg.get(k) for k in ("dataset", "model", "regularizer", "optimizer", "scheduler", "logger")}
    key = to_yaml({k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in parts.items()})
    if costly_checks_done is None or key not in costly_checks_done:
        build.check(cfg)
        if costly_checks_done is not None:
            costly_checks_done.add(key)
    return cfg


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
    if "Could not load '" in text:  # a list member of a multi-select group: regularizer=[dropout,foo]
        missing = text.split("Could not load '")[1].split("'")[0]
        group, _, option = missing.rpartition("/")
        from regbench.config import options

        available = options(group) if group and not group.startswith("hydra") else []
        return ConfigError(f"unknown {group}={option}" + (f"; available: {', '.join(available)}" if available else ""))
    if "not in struct" in text or "Could not override" in text:
        key = text.split("Could not override '")[1].split("'")[0] if "Could not override '" in text else text
        return ConfigError(f"unknown option {key!r} (no such key in the config; to add a new key use +{key}=...). {text.split('. ')[0]}")
    return ConfigError(text)

