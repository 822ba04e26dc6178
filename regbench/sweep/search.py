"""Search: regbench drives Optuna itself, with pruning from the epoch loop, a study that resumes, and trials
trained as stacks.

A study whose config has ``search.space`` runs, from one `regbench run -m` command:

1. **The study** lives in the sweep dir, ``<sweep dir>/search.journal`` (Optuna's ``JournalStorage`` on a
   file: no server, shared by processes and by the nodes of a cluster's file system). ``search.n_trials`` is
   the study's total: re-running the command continues it. Finished trials are kept; a trial killed mid-run
   resumes from its checkpoint (the same run dir, ``<sweep dir>/trials/NNNN``, and run id) and is told once.
2. **Workers** (``search.n_jobs``, launched by Hydra with the command's launcher: joblib processes, SLURM
   array tasks) each take trials from the study under a file lock, ``K`` at a time (``search.batch``), and
   train those that share a network shape as one stack (:mod:`regbench.stack`). Each epoch's validation
   metric is reported to its trial; a trial the pruner stops ends like an early-stopped run with status
   ``pruned`` (its files complete), kept in the tables and left out of the best.
3. **Replication** (``search.replicate_seeds``): the best trial, and with ``search.replicate_default`` the
   recipe the search started from, rerun over fresh seeds into ``<sweep dir>/replicate``, so that the final
   number is not the one it was selected on. ``regbench report <sweep dir>`` shows the search.

A search space maps a config key to a range ``{low, high, log}`` (log-uniform unless ``log: false``) or a list of
values to choose from (any sampler). Seeds are not searched: the search runs on the command's seed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from regbench.errors import ConfigError, UserError

log = logging.getLogger("regbench")

SAMPLERS = ("random", "tpe", "cmaes", "qmc")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
METRICS = {"val_acc": "maximize", "val_loss": "minimize"}  # chosen on the validation split, as early stopping is
#: Top-level keys a search space cannot name (they are not settings of the network's training).
UNSEARCHABLE = ("seed", "search", "tune", "hydra", "name", "resume", "stack")
STUDY_FILE, PROTOCOL_FILE, LOCK_FILE, SUMMARY_FILE = "search.journal", ".regbench-search.json", ".search.lock", "search.json"
TRIALS_DIR, REPLICATE_DIR, WORKERS_DIR = "trials", "replicate", "workers"
STUDY_NAME = "regbench"


@dataclass(frozen=True)
class Search:
    space: dict  # key → {low, high, log} or a list of values
    n_trials: int  # the study's total
    sampler: str
    seed: int
    pruner: str
    metric: str
    min_epochs: int  # no trial is pruned before it has run this many epochs
    batch: int  # trials asked at once (and trained as one stack where they can)
    n_jobs: int  # workers sharing the study
    replicate_seeds: tuple[int, ...]
    replicate_default: bool

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def protocol(self) -> dict:
        """What makes two searches the same study (a re-run continues it; anything else is refused)."""
        return {"space": self.space, "n_trials": self.n_trials, "sampler": self.sampler, "seed": self.seed,
                "pruner": self.pruner, "metric": self.metric, "min_epochs": self.min_epochs}


def search_of(cfg: DictConfig) -> Search | None:
    """The study's search settings, checked (one-line ConfigError), or None without ``search.space``."""
    node = cfg.get("search")
    if not node or not node.get("space"):
        return None
    s = OmegaConf.to_container(node, resolve=True)
    space = s["space"]
    check_space("search.space", space, cfg, UNSEARCHABLE)
    for key in ("n_trials", "min_epochs", "batch", "n_jobs"):
        if not _whole(s.get(key)) or s[key] < 1:
            raise ConfigError(f"search.{key}={s.get(key)!r}: a whole number ≥ 1")
    if s.get("sampler") not in SAMPLERS:
        raise ConfigError(f"search.sampler={s.get('sampler')!r}: choose one of {', '.join(SAMPLERS)}")
    if s.get("pruner") not in PRUNERS:
        raise ConfigError(f"search.pruner={s.get('pruner')!r}: choose one of {', '.join(PRUNERS)}")
    if s.get("metric") not in METRICS:
        raise ConfigError(f"search.metric={s.get('metric')!r}: choose one of {', '.join(METRICS)} (the validation "
                          "split's, logged every epoch)")
    if not _whole(s.get("seed")) or s["seed"] < 0:
        raise ConfigError(f"search.seed={s.get('seed')!r}: the sampler's seed, a whole number ≥ 0")
    seeds = s.get("replicate_seeds") or []
    if not isinstance(seeds, list) or not all(_whole(x) and x >= 0 for x in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"search.replicate_seeds={seeds!r}: a list of distinct seeds ≥ 0 (empty: no replication)")
    if cfg.seed in seeds:
        raise ConfigError(f"search.replicate_seeds={seeds}: seed {cfg.seed} is the one the search selected on; "
                          "replicate over fresh seeds")
    if s["sampler"] == "cmaes" and any(isinstance(v, list) for v in space.values()):
        raise ConfigError("search.sampler=cmaes searches ranges only: give each key {low, high} (or choose tpe)")
    return Search(space, s["n_trials"], s["sampler"], s["seed"], s["pruner"], s["metric"], s["min_epochs"],
                  s["batch"], s["n_jobs"], tuple(seeds), bool(s.get("replicate_default", False)))


def check_space(name: str, space, cfg: DictConfig, forbidden: tuple[str, ...], verb: str = "searched") -> None:
    """A search space, shared by search.space and the tuned protocol's tune.space: a mapping of config keys to
    a list of values or a range {low, high, log}; a bad one is a one-line ConfigError."""
    if not isinstance(space, dict):
        raise ConfigError(f"{name}={space!r}: a mapping of config keys to a grid or a range, e.g. "
                          f"{name}={{optimizer.lr:{{low:1e-4,high:1e-1}}}}")
    for key, spec in space.items():
        if key.split(".")[0] in forbidden:
            raise ConfigError(f"{name}: {key!r} cannot be {verb} ({', '.join(forbidden)} are not settings of a "
                              "run's training; seeds are repeated, not searched)")
        current = OmegaConf.select(cfg, key, default="__missing__")
        if current == "__missing__":
            raise ConfigError(f"{name}: {key!r} is no key of the config")
        if OmegaConf.is_config(current):
            raise ConfigError(f"{name}: {key!r} is a config group or section, not a value (search its values, e.g. "
                              f"{key}.<setting>)")
        if isinstance(spec, list):
            if not spec or not all(_is_number(v) for v in spec):
                raise ConfigError(f"{name}.{key}: a grid is a non-empty list of numbers, not {spec!r}")
        elif isinstance(spec, dict):
            low, high = spec.get("low"), spec.get("high")
            if not (_is_number(low) and _is_number(high) and low < high) or set(spec) - {"low", "high", "log"}:
                raise ConfigError(f"{name}.{key}: a range is {{low: a, high: b, log: true|false}} with a < b, not {spec!r}")
            if spec.get("log", True) and low <= 0:
                raise ConfigError(f"{name}.{key}: a log-uniform range needs low > 0, not {low}")
        else:
            raise ConfigError(f"{name}.{key}: a list of values or {{low, high, log}} (a range), not {spec!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------------------ Optuna

def distributions(space: dict) -> dict:
    import optuna

    out = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            out[key] = optuna.distributions.CategoricalDistribution(spec)
        else:
            out[key] = optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]),
                                                              log=bool(spec.get("log", True)))
    return out


def sampler(kind: str, seed: int):
    """Optuna's sampler ``kind``, seeded. Re-created for each batch with the seed and the trial count, so that a
    resumed or parallel study does not propose again what it proposed before."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {"random": lambda: optuna.samplers.RandomSampler(seed=seed),
                "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
                "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
                "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False),
                }[kind]()


def pruner(s: Search, max_epochs: int):
    import optuna

    return {"none": lambda: optuna.pruners.NopPruner(),
            "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=max(1, s.batch), n_warmup_steps=s.min_epochs),
            "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=s.min_epochs, reduction_factor=3),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=s.min_epochs, max_resource=max(max_epochs, s.min_epochs + 1),
                                                                 reduction_factor=3),
            }[s.pruner]()


def storage(base: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # regbench says what each trial did
    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(base) / STUDY_FILE)))


def open_study(base: Path, s: Search, max_epochs: int, seed: int | None = None, store=None):
    import optuna

    return optuna.create_study(storage=store or storage(base), study_name=STUDY_NAME, direction=s.direction,
                               sampler=sampler(s.sampler, s.seed if seed is None else seed), pruner=pruner(s, max_epochs),
                               load_if_exists=True)


def draws(space: dict, n: int, seed: int) -> list[dict]:
    """``n`` points of ``space`` from Optuna's random sampler (the tuned protocol's random candidates), in memory."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler("random", seed))
    dists = distributions(space)
    points = []
    for _ in range(n):
        trial = study.ask(dists)
        points.append(trial.params)
        study.tell(trial, 0.0)
    return points


# ------------------------------------------------------------------------------------------------ the protocol

def claim_protocol(base: Path, s: Search) -> None:
    """Record the search in its sweep dir, or refuse in one line if the dir holds another search's study."""
    from regbench.files import write_json

    path = Path(base) / PROTOCOL_FILE
    mine = json.loads(json.dumps(s.protocol(), sort_keys=True))
    held = None
    if path.exists():
        try:
            held = json.loads(path.read_text())
        except (OSError, ValueError):
            raise UserError(f"{path} is damaged; move it away, or choose another hydra.sweep.dir") from None
    if held is not None and held != mine:
        differs = [k for k in mine if held.get(k) != mine[k]]
        raise UserError(f"{base} holds another search ({'; '.join(f'search.{k}: {held.get(k)!r} there, {mine[k]!r} now' for k in differs)}"
                        "); choose another hydra.sweep.dir, or move that one away")
    if held is None:
        Path(base).mkdir(parents=True, exist_ok=True)
        write_json(path, mine)


def run(args, plan, launch, hydra_main) -> int:
    """`regbench run -m` of a study with ``search.space``: the workers, then the replication (module doc).
    ``launch(RunArgs, table=...) -> exit code`` is the CLI's sweep, for the replication; ``hydra_main`` the Hydra
    application (:func:`regbench.app.hydra_main`), which runs the workers."""
    import time
    from dataclasses import replace

    from regbench.console import console

    started = time.time()
    s = search_of(plan.config)
    if len(plan.jobs) != 1:
        raise UserError(f"a search runs on one configuration; this command sweeps {len(plan.jobs)} (remove the sweep "
                        "of other keys, or run one search per configuration into its own hydra.sweep.dir)")
    base = Path(plan.sweep_dir)
    claim_protocol(base, s)
    out = console()
    study = open_study(base, s, plan.config.trainer.max_epochs)
    done = len(study.trials)
    out.print(f"search: {s.n_trials} trials of {', '.join(s.space)} ({s.sampler} sampler, {s.pruner} pruner, "
              f"{s.metric}), {s.batch} at a time on {s.n_jobs} worker(s); {done} in {base / STUDY_FILE} already",
              markup=False, soft_wrap=True)
    command = [o for o in args.overrides if not o.lstrip("+~").startswith(("hydra.sweep.dir", "search.worker"))]
    _launch_workers(args, plan, command, s, base, hydra_main)
    study = open_study(base, s, plan.config.trainer.max_epochs)
    summary = summarize(study)
    code = 0
    if summary["unfinished"]:
        out.print(f"search: {summary['unfinished']} trial(s) unfinished; re-run the same command to finish them",
                  markup=False)
        code = 1
    elif summary["best"] and s.replicate_seeds:
        seeds = f"seed={','.join(map(str, s.replicate_seeds))}"
        rest = [*command, seeds, f"hydra.sweep.dir={base / REPLICATE_DIR}"]
        params = [f"{k}={override_value(v)}" for k, v in summary["best"]["params"].items()]
        code = launch(replace(args, overrides=[*rest, *params]), table=False)
        if s.replicate_default and code != 2:
            code = max(code, launch(replace(args, overrides=rest), table=False))
        if code != 2:
            from regbench.sweep.end import end_of_sweep

            code = max(code, end_of_sweep(base / REPLICATE_DIR, [], every_run=True, started=started))
        summary["replicate"] = replicated(base / REPLICATE_DIR, summary["best"]["params"])
    from regbench.files import write_json

    summary["metric"], summary["wall_time_s"] = s.metric, round(time.time() - started, 1)
    write_json(base / SUMMARY_FILE, summary)
    print_summary(out, summary, s, base)
    return code


def override_value(v) -> str:
    """A value as a command-line override writes it (a float exactly: its repr)."""
    return repr(v) if isinstance(v, float) else str(v)


def _launch_workers(args, plan, command: list[str], s: Search, base: Path, hydra_main) -> None:
    """Hydra launches ``search.n_jobs`` worker jobs with the command's launcher; each runs :func:`work`."""
    import sys

    workers = ",".join(str(i) for i in range(s.n_jobs))
    sys.argv = ["regbench run", *args.flags, *command, f"search.worker={workers}",
                f"hydra.sweep.dir={base / WORKERS_DIR}", "hydra.output_subdir=null"]
    hydra_main()


# ------------------------------------------------------------------------------------------------ a worker

def work(cfg: DictConfig, hc) -> dict:
    """One worker of a search (a Hydra job): take trials from the study and train them until it has its total."""
    from regbench.sweep.machine import job_resources

    s = search_of(cfg)
    base = Path(hc.sweep.dir).parent
    store = storage(base)
    trained = 0
    with job_resources(cfg, hc, s.n_jobs):
        while True:
            with contextlib.ExitStack() as held:
                batch = _claim(cfg, s, base, store, held)
                if not batch:
                    break
                _train_batch(cfg, s, base, store, batch)
                trained += len(batch)
    return {"status": "completed", "trials": trained}


@dataclass
class Trial:
    number: int
    trial: object  # optuna.trial.Trial
    cfg: DictConfig
    run_dir: Path


def _claim(cfg: DictConfig, s: Search, base: Path, store, held: contextlib.ExitStack) -> list[Trial]:
    """Under the study's lock: the trials this worker trains next, their run dirs held. First those a killed
    worker left running (they resume from their checkpoints), then new ones, up to the study's total."""
    import optuna

    from regbench.rundir import exclusive, holder

    with exclusive(base, LOCK_FILE):
        study = open_study(base, s, cfg.trainer.max_epochs, store=store)
        trials = study.get_trials(deepcopy=False)
        stale = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and holder(trial_dir(base, t.number)) is None]
        batch = [_trial(cfg, base, study, store, t.number, t.params, held) for t in stale[:s.batch]]
        new = min(s.batch - len(batch), s.n_trials - len(trials))
        dists = distributions(s.space)
        for i in range(max(new, 0)):  # the sampler seeded by the trial's number: a resumed, batched or parallel study
            study = open_study(base, s, cfg.trainer.max_epochs, seed=s.seed * 1_000_003 + len(trials) + i, store=store)
            t = study.ask(dists)  # proposes trial n as an uninterrupted one-at-a-time study does (random, qmc)
            batch.append(_trial(cfg, base, study, store, t.number, t.params, held))
        return batch


def trial_dir(base: Path, number: int) -> Path:
    return Path(base) / TRIALS_DIR / f"{number:04d}"


def _trial(cfg: DictConfig, base: Path, study, store, number: int, params: dict, held: contextlib.ExitStack) -> Trial:
    import optuna
    import yaml

    from regbench.config import run_id
    from regbench.rundir import hold

    trial_cfg = trial_config(cfg, params)
    run_dir = trial_dir(base, number)
    held.enter_context(hold(run_dir, run_id(trial_cfg)))
    hydra_dir = run_dir / ".hydra"  # the trial's settings, where `regbench results` reads every run's
    hydra_dir.mkdir(exist_ok=True)
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={override_value(v)}" for k, v in params.items()]))
    return Trial(number, optuna.trial.Trial(study, _trial_id(number, store)), trial_cfg, run_dir)


def _trial_id(number: int, store) -> int:
    """Optuna's id of trial ``number`` (what a Trial object is made from, in the worker that trains it)."""
    return store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(STUDY_NAME), number)


def trial_config(cfg: DictConfig, params: dict) -> DictConfig:
    """The worker's config with the trial's values (a trial trains as an ordinary run of that config)."""
    trial_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key, value in params.items():
        OmegaConf.update(trial_cfg, key, value, force_add=False)
    trial_cfg.search.worker = None
    return trial_cfg


def _train_batch(cfg: DictConfig, s: Search, base: Path, store, batch: list[Trial]) -> None:
    """Train the batch (those sharing a network shape as stacks, the others alone) and tell the study each result."""
    from regbench.stack import train_stacked
    from regbench.stack.grouping import stack_keys
    from regbench.train import train

    groups: dict = {}
    for t, (key, _why) in zip(batch, stack_keys([t.cfg for t in batch])):
        groups.setdefault(key if key is not None and cfg.stack != 1 else id(t), []).append(t)
    study = open_study(base, s, cfg.trainer.max_epochs, store=store)
    for members in groups.values():
        prunes = [_reporter(t.trial, s.metric) for t in members]
        try:
            if len(members) > 1:
                results = train_stacked([t.cfg for t in members], [t.run_dir for t in members], prune=prunes)
            else:
                results = [train(members[0].cfg, members[0].run_dir, prune=prunes[0])]
        except Exception as e:  # one configuration's failure is its trial's, not the study's
            log.error("trial(s) %s failed: %s", ", ".join(str(t.number) for t in members), e)
            results = [{"status": "failed", "error": f"{type(e).__name__}: {e}"} for _ in members]
        for t, result in zip(members, results):
            tell(study, t, result, s.metric)


def _reporter(trial, metric: str):
    """The epoch loop's ``prune``: report the epoch's validation metric to the trial; True if the pruner stops it."""
    def prune(epoch: int, row: dict) -> bool:
        value = row.get(metric)
        if value is None or not math.isfinite(value):
            return False
        with warnings.catch_warnings():  # a resumed trial reports its epochs since the checkpoint again
            warnings.simplefilter("ignore")
            trial.report(float(value), epoch)
        return trial.should_prune()
    return prune


def tell(study, t: Trial, result: dict, metric: str) -> None:
    import optuna

    status = result.get("status")
    value = result.get(metric)
    t.trial.set_user_attr("run_dir", f"{TRIALS_DIR}/{t.run_dir.name}")
    t.trial.set_user_attr("status", status)
    t.trial.set_user_attr("epochs_run", result.get("epochs_run"))
    if status == "completed" and value is not None and math.isfinite(value):
        study.tell(t.number, value)
    elif status == "pruned":
        study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    log.info("trial %d: %s%s", t.number, status,
             f", {metric} {value:.4f}" if status == "completed" and value is not None else "")


# ------------------------------------------------------------------------------------------------ the answer

def summarize(study) -> dict:
    """Counts, epochs trained, and the best completed trial of the study."""
    import optuna

    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    count = {name: sum(t.state == state for t in trials) for name, state in
             (("completed", S.COMPLETE), ("pruned", S.PRUNED), ("failed", S.FAIL))}
    epochs = sum(int(t.user_attrs.get("epochs_run") or 0) for t in trials)
    best = None
    if count["completed"]:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params, "run_dir": f"{TRIALS_DIR}/{b.number:04d}"}
    return {"n_trials": len(trials), **count, "unfinished": sum(t.state in (S.RUNNING, S.WAITING) for t in trials),
            "epochs_trained": epochs, "direction": study.direction.name.lower(), "best": best}


def replicated(replicate_dir: Path, params: dict) -> dict:
    """The replication's test accuracy, the best trial's values against the default recipe (mean ± std over seeds)."""
    from regbench.sweep.results import load_runs

    runs = load_runs(replicate_dir, expected=False)
    runs = runs[runs["status"] == "completed"]
    out = {}
    key = next(iter(params))
    for arm, rows in (("best", runs[runs[key].notna()] if key in runs else runs.iloc[0:0]),
                      ("default", runs[runs[key].isna()] if key in runs else runs)):
        if len(rows):
            out[arm] = {"test_acc_mean": float(rows["test_acc"].mean()), "test_acc_std": float(rows["test_acc"].std(ddof=1))
                        if len(rows) > 1 else None, "seeds": sorted(int(x) for x in rows["seed"])}
    return out


def print_summary(out, summary: dict, s: Search, base: Path) -> None:
    best = summary["best"]
    out.print(f"search: {summary['completed']} completed, {summary['pruned']} pruned, {summary['failed']} failed of "
              f"{summary['n_trials']}; {summary['epochs_trained']} epochs trained", markup=False)
    if best:
        out.print(f"best trial {best['number']} ({best['run_dir']}): {s.metric} {best['value']:.4f} with "
                  f"{', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in best['params'].items())}",
                  markup=False, soft_wrap=True)
    for arm, r in summary.get("replicate", {}).items():
        std = f" ± {r['test_acc_std']:.4f}" if r["test_acc_std"] is not None else ""
        out.print(f"replicated, {arm}: test_acc {r['test_acc_mean']:.4f}{std} over seeds {r['seeds']}", markup=False)
    out.print(f"the study: {base / STUDY_FILE}; the trials: regbench results {base / TRIALS_DIR}; "
              f"the report: regbench report {base}", markup=False, soft_wrap=True)
