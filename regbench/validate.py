"""Everything `regbench run` can check before anything is written or trained.

:func:`check_command` expands the command into its jobs (one expansion, :func:`regbench.sweep.jobs.command_jobs`,
the same Hydra's basic sweeper does), composes each job's configuration and checks it: first the keys that need
no torch (:func:`check_run`), then the builders' own checks (:func:`regbench.build.check`), the command's first
import of torch. A problem is a :class:`UserError` with one line naming the key and what is allowed; the CLI
prints it and exits with code 2.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from regbench.errors import ConfigError, UserError, check_choice, check_int, check_range, config_key

#: The parts of a configuration whose checks are costly (data, model): checked once per distinct setting.
COSTLY_PARTS = ("dataset", "model", "regularizer", "optimizer", "scheduler", "logger")
#: Trainer keys :func:`regbench.build.check` reads beyond :func:`check_run`'s.
COSTLY_TRAINER_KEYS = ("trainer.precision", "trainer.channels_last", "trainer.device")


@dataclass
class Plan:
    """What a checked command will run."""

    jobs: list  # regbench.sweep.jobs.Job, in launch order (a single run is a sweep of one)
    sweep_dir: Path | None  # hydra.sweep.dir for -m, else None
    finished: dict | None = None  # a single run already completed (or diverged): its result, nothing to train
    run_dir: Path | None = None  # a single run's directory
    # per job: its composed config (a sweep's without Hydra's node, composed again when asked for: see JobConfigs),
    # None if finished
    configs: Sequence = field(default_factory=list)
    config: object = None  # the first job's composed config, Hydra's node included
    todo: int = 0  # jobs still to train (not finished)
    busy: int = 0  # jobs left out because another process has them (`regbench submit`: an earlier submission's task)


class JobConfigs(Sequence):
    """A sweep's per-job configurations, as :meth:`Composer.compose_task` composes them, made again each time one
    is asked for (about half a millisecond): holding the composed configs of a 10,000-job sweep took 150 KB a job.
    A finished job's is None."""

    def __init__(self, composer: Composer, jobs: list, finished: bytearray):
        self.composer, self.jobs, self.finished = composer, jobs, finished

    def __len__(self) -> int:
        return len(self.finished)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if self.finished[index]:
            return None
        return self.composer.compose_task(list(self.jobs[index].overrides))


def check_command(overrides: list[str], config_name: str = "config", multirun: bool = False,
                  busy: Callable[[Path], Collection[str]] | None = None) -> Plan:
    """Expand the command into its jobs and check every one of them; nothing is written. ``busy(sweep_dir)``, asked
    once the sweep dir is known and before any job is checked, names the folders taken on elsewhere (a SLURM task
    queued or running): their jobs are checked but left out, as finished ones are.

    A sweep's jobs are checked on their configuration without Hydra's node (:meth:`Composer.compose_task`),
    which is all the checks and a job's id read; 2-4 ms and under 25 KB a job on a 2-core CPU (``benchmarks/precheck.py``)."""
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
    taken = frozenset(busy(sweep_dir)) if busy is not None and multirun else frozenset()
    known_dirs = not multirun or is_basic_sweeper(hydra_cfg)  # a sampler's job dirs depend on its draws
    costly_checks_done: set = set()
    plan = Plan(jobs, sweep_dir)
    composer = Composer(config_name, overrides, hydra_cfg)
    finished = bytearray(len(jobs))
    # Each job's config is garbage once checked, freed by the cycle collector (a node refers to its parent): the
    # objects alive before the check (torch, Hydra, ...) are left out of its collections, which otherwise traversed
    # them all, more often the larger the sweep (a third of the check's time at 6,000 jobs).
    gc.freeze()
    try:
        for n, job in enumerate(jobs):
            if n == 0 or not multirun:  # the first job's whole config: the command's mode, launcher, run dir
                cfg = plan.config = check_job(list(job.overrides), config_name, costly_checks_done, composer)
            else:
                cfg = _check_task(list(job.overrides), costly_checks_done, composer)
            done = None
            if known_dirs:
                run_dir = sweep_dir / job.dirname if multirun else Path(str(cfg.hydra.run.dir))
                if multirun and job.dirname in taken:
                    finished[n] = 1
                    plan.busy += 1
                    continue
                done = check_run_dir(run_dir, cfg)
                if not multirun:
                    plan.run_dir, plan.finished = run_dir, done
            finished[n] = done is not None
            plan.todo += done is None
            if not multirun:
                plan.configs = [cfg if done is None else None]
    finally:
        gc.unfreeze()
    if multirun:
        plan.configs = JobConfigs(composer, jobs, finished)
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
    """The configurations of a sweep's jobs, each as Hydra composes it, at a fraction of the cost.

    Composition costs about 0.1 s a job. Jobs that differ only in values (seeds, rates, strengths) share
    their composition: Hydra composes once per distinct choice of config groups (with the command's fixed
    overrides), and each job's own values are then set on a copy, as Hydra sets value overrides after
    composing (an unknown key is refused, ``+key`` adds, ``~key`` removes). The command's own composition
    (``fixed``, composed with its fixed overrides) serves the jobs that add nothing to it. Each distinct
    override is parsed once (Hydra's parser took 2 ms a job). A job with an override of Hydra's node of its own
    is composed whole, as is every job when a search path adds groups of its own.

    One composer, used twice: by the pre-check (:func:`check_command`: ``command_overrides`` is the command) and
    by regbench's sweeper, whose launcher composes each job again to run it (``hydra_plugins.regbench_sweeper``:
    ``command_overrides`` is the sweep's ``hydra.overrides.hydra``, ``loader`` the launcher's). Both compose through
    Hydra's public ``ConfigLoader.load_configuration``, which is what ``hydra.compose`` and Hydra's launchers call.
    """

    def __init__(self, config_name: str, command_overrides: list[str], fixed=None, loader=None):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.config_name, self.parser = config_name, OverridesParser.create()
        self.loader = loader if loader is not None else compose_api_loader()
        self.parsed: dict[str, object] = {}  # override line → Hydra's Override
        self.groups: dict[str, bool] = {}  # override key → names a config group
        parsed = self.parse(list(command_overrides))
        self.fixed_lines = [o.input_line for o in parsed if not o.is_sweep_override()]
        self.hydra_lines = [o.input_line for o in parsed if not o.is_sweep_override() and o.is_hydra_override()]
        # a job's overrides hold the fixed ones as Hydra's sweeper writes them again ("~key" as "~key=null")
        self.fixed_set = {*self.fixed_lines, *(_as_swept(o) for o in parsed if not o.is_sweep_override())}
        # A search path adds groups of its own: then every job is composed in full.
        self.shortcut = not any(o.get_key_element().lstrip("+~").startswith("hydra.searchpath") for o in parsed)
        self.cache = {} if fixed is None else {tuple(self.fixed_lines): fixed}
        self.tasks: dict[tuple, bytes | None] = {}  # groups → the pickled composition without Hydra's node

    def parse(self, lines: list[str]) -> list:
        """Hydra's parse of each line (each is parsed on its own, as Hydra's ``parse_overrides`` does), once per line."""
        out = []
        for line in lines:
            o = self.parsed.get(line)
            if o is None:
                (o,) = self.parser.parse_overrides([line])
                self.parsed[line] = o
            out.append(o)
        return out

    def split(self, overrides: list[str]) -> tuple[tuple, list]:
        """The job's config-group overrides (with the command's fixed ones: the key of its composition) and its own
        value overrides, in order."""
        own = [o for o in self.parse(overrides) if o.input_line not in self.fixed_set]
        groups = tuple(self.fixed_lines + [o.input_line for o in own if self._is_group(o)])
        return groups, [o for o in own if not self._is_group(o)]

    def composition(self, groups: tuple):
        if groups not in self.cache:
            self.cache[groups] = self.composed(list(groups))
        return self.cache[groups]

    def composed(self, lines: list[str]):
        """Hydra's composition of these overrides, with its node (what ``hydra.compose`` and a launcher return)."""
        from hydra.types import RunMode

        return self.loader.load_configuration(config_name=self.config_name, overrides=lines, run_mode=RunMode.RUN)

    def compose(self, overrides: list[str]):
        """The job's configuration with Hydra's node, as Hydra composes it."""
        from regbench.config import copy_config

        if not self.shortcut or any(o.is_hydra_override() for o in self.parse(overrides)):
            # as Hydra composes a job: its sweep's hydra.* overrides (a job's own hold none), then the job's
            return self.composed([*self.hydra_lines, *overrides])
        groups, values = self.split(overrides)
        cfg = copy_config(self.composition(groups))
        self._set(cfg, values)
        self._record(cfg, overrides)
        return cfg

    def _record(self, cfg, overrides: list[str]) -> None:
        """The job's overrides in Hydra's node, as Hydra records them: ``hydra.overrides.task`` (the command's and the
        job's, ``hydra.*`` ones left out) and ``hydra.job.override_dirname``."""
        from hydra._internal.config_loader_impl import get_overrides_dirname
        from omegaconf import open_dict

        own = self.parse(overrides)
        held = {line for o in own for line in (o.input_line, _as_swept(o))}
        fixed = [line for line, o in zip(self.fixed_lines, self.parse(self.fixed_lines))  # a sampler's jobs: its draws only
                 if line not in held and _as_swept(o) not in held]
        task = [o for o in self.parse(fixed) + own if not o.is_hydra_override()]
        od = cfg.hydra.job.config.override_dirname
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in task]
            cfg.hydra.job.override_dirname = get_overrides_dirname(task, list(od.exclude_keys), od.item_sep, od.kv_sep)

    def compose_task(self, overrides: list[str]):
        """The job's configuration without Hydra's node (a tenth of the copy: Hydra's node is two thirds of a
        composed config), which is everything the checks and the job's id read. A composition that refers to
        Hydra's node (``${hydra.…}``), or a job's value that does, keeps the node (:meth:`compose`)."""
        import pickle

        if not self.shortcut:
            return self.compose(overrides)
        groups, values = self.split(overrides)
        if groups not in self.tasks:
            self.tasks[groups] = self._task(self.composition(groups))
        blob = self.tasks[groups]
        if blob is None or any("${" in str(o.value()) or o.is_hydra_override() for o in values):
            return self.compose(overrides)
        cfg = pickle.loads(blob)
        self._set(cfg, values)
        return cfg

    @staticmethod
    def _task(composed) -> bytes | None:
        import pickle

        from omegaconf import open_dict

        from regbench.config import copy_config

        cfg = copy_config(composed)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            OmegaConf.to_container(cfg, resolve=True)  # resolves without Hydra's node
        except Exception:
            return None
        return pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL)

    def costly_key(self, overrides: list[str]) -> tuple:
        """Jobs with equal keys have equal settings for the costly checks (:data:`COSTLY_PARTS`): the same
        composition and the same value overrides inside those parts."""
        groups, values = self.split(overrides)
        return groups, tuple(o.input_line for o in values if _costly(o.get_key_element().lstrip("+~")))

    def _is_group(self, o) -> bool:
        """The override selects a config group's option (``model=mlp``, ``hydra/launcher=joblib``), as the config
        loader's groups say: it is part of the composition, not a value set on it."""
        key = o.key_or_group
        if key not in self.groups:
            parent, _, name = key.rpartition("/")
            self.groups[key] = o.package is not None or name in self.loader.list_groups(parent)
        return self.groups[key]

    @staticmethod
    def _set(cfg, values: list) -> None:
        """The job's value overrides on its copy, with Hydra's own function (as Hydra applies them after composing:
        an unknown key is refused, ``+key`` adds, ``~key`` removes)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        if values:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)


def compose_api_loader():
    """Hydra's config loader for regbench's config folder, as the compose API makes it (``initialize_config_dir``;
    ``hydra.compose`` composes through it)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from regbench.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return GlobalHydra.instance().config_loader()


def _as_swept(o) -> str:
    """A fixed override as Hydra's basic sweeper writes it into every job's overrides."""
    return f"{o.get_key_element()}={o.get_value_element_as_str()}"


def _costly(key: str) -> bool:
    return key.split(".")[0] in COSTLY_PARTS or key.startswith(COSTLY_TRAINER_KEYS)


def check_job(overrides: list[str], config_name: str = "config", costly_checks_done: set | None = None,
              composer: Composer | None = None):
    """Compose one job (with Hydra's node, for its run dir) and check it; the costly checks (data, model)
    once per distinct setting. Returns the composed config."""
    from regbench.config import compose

    try:
        if composer is not None:
            cfg = composer.compose(overrides)
        else:
            cfg = compose(overrides, config_name, return_hydra_config=True)
    except UserError:
        raise
    except Exception as e:
        raise config_error(e) from None
    _check(cfg, composer.costly_key(overrides) if composer is not None else None, costly_checks_done)
    return cfg


def _check_task(overrides: list[str], costly_checks_done: set, composer: Composer):
    """:func:`check_job` on the job's configuration without Hydra's node (:meth:`Composer.compose_task`)."""
    try:
        cfg = composer.compose_task(overrides)
    except UserError:
        raise
    except Exception as e:
        raise config_error(e) from None
    _check(cfg, composer.costly_key(overrides), costly_checks_done)
    return cfg


def _check(cfg, key, costly_checks_done: set | None) -> None:
    """The cheap checks (:func:`check_run`, without torch: a typo is refused before torch is imported), then the
    builders' (:func:`regbench.build.check`), the command's first torch work, once per distinct costly part."""
    from regbench.config import to_yaml

    check_run(cfg)
    if key is None:
        parts = {k: cfg.get(k) for k in COSTLY_PARTS}
        key = to_yaml({k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in parts.items()})
    if costly_checks_done is None or key not in costly_checks_done:
        from regbench import build
        from regbench.process import flush_denormals

        flush_denormals()  # before the builders start torch's CPU threads, so that they inherit it
        build.check(cfg)
        if costly_checks_done is not None:
            costly_checks_done.add(key)


# ------------------------------------------------------------------ the cheap checks, without torch

#: A study name is one folder under outputs/: letters, digits and . _ - + = , (no path separator, no leading dot).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_+=,-][A-Za-z0-9._+=,-]*")
MAX_NAME_LENGTH = 100
#: What trainer.early_stopping.monitor may watch.
MONITORS = ("val_acc", "val_loss", "train_acc", "train_loss")


def check_run(cfg: DictConfig) -> None:
    """The cheap checks of a composed configuration: name, seed, resume and trainer keys."""
    name = str(cfg.name)
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"name={name!r} must be one folder name: letters, digits and . _ - + = , "
                          "(no '/', no leading '.'), so outputs stay inside outputs/")
    if len(name.encode()) > MAX_NAME_LENGTH:
        raise ConfigError(f"name is {len(name.encode())} bytes long; at most {MAX_NAME_LENGTH}")
    check_int("seed", cfg.seed, 0)
    check_choice("resume", cfg.resume, (True, False, "best"))
    check_stack(cfg.get("stack", "auto"))
    check_trainer(cfg.trainer)


def check_stack(value) -> None:
    """``stack`` (how a sweep's runs train together, :mod:`regbench.sweep.stacks`): ``auto`` or a whole number ≥ 1."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    raise ConfigError(f"stack={value!r}: must be auto or a whole number ≥ 1 (1 trains every run alone)")


def check_trainer(t: DictConfig) -> None:
    with config_key("trainer"):
        check_int("max_epochs", t.max_epochs, 1)
        check_int("batch_size", t.batch_size, 1)
        check_int("eval_batch_size", t.eval_batch_size, 1)
        if t.train_eval_size is not None:
            check_int("train_eval_size", t.train_eval_size, 1)
        check_int("train_eval_every", t.train_eval_every, 1)
        check_range("checkpoint_every_s", t.checkpoint_every_s, 0)
        es = t.early_stopping
        if not isinstance(es, DictConfig):  # `trainer.early_stopping=false` replaces the node with a value
            raise ConfigError(f"early_stopping={es} is not a group of settings (monitor, patience, min_delta): "
                              "trainer.early_stopping.patience=null turns early stopping off")
        check_choice("early_stopping.monitor", es.monitor, MONITORS)
        if es.patience is not None:
            check_int("early_stopping.patience", es.patience, 0)
        check_range("early_stopping.min_delta", es.min_delta, 0)
        if t.num_threads is not None:
            check_int("num_threads", t.num_threads, 1)
        check_choice("progress", t.progress, ("auto", True, False))
        check_choice("precision", t.precision, (32, "bf16", 16))
        check_choice("compile", t.compile, (True, False))
        check_choice("channels_last", t.channels_last, (True, False))
    if not (t.device == "auto" or str(t.device).split(":")[0] in ("cpu", "cuda", "mps")):
        raise ConfigError(f"trainer.device={t.device!r} is not one of: auto, cpu, cuda, cuda:N, mps")


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception as e:
        raise config_error(e) from None
    return parsed.is_sweep_override()


def config_error(e: Exception) -> ConfigError:
    """Hydra's composition errors, in one line that names the key and the allowed values."""
    from regbench.errors import one_line

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

