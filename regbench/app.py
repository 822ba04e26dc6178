"""The Hydra task: one job of `regbench run`, single or inside a multirun sweep.

Whatever launcher runs it (sequential, joblib processes, submitit on one machine or on SLURM), a
job trains in its own directory and:

- in a sweep, records a failure in its ``result.json`` instead of raising, so the other jobs go on;
- marks its directory as running (``.running``: host and pid) while it trains, so
  ``regbench status`` tells a running job from an interrupted one;
- when jobs share the machine (joblib, submitit_local), limits torch to its share of the CPU
  cores, and with several GPUs takes one of its own (:mod:`regbench.sweep.machine`);
- tags its W&B run with its values of the factors the sweep varies (the group is the study name);
- in a sweep whose jobs train stacked (:mod:`regbench.sweep.stacks`), trains its whole stack if it leads
  one, and nothing if it is another member of a stack (its leader trains it);
- in a search (:mod:`regbench.sweep.search`), is one of its workers: it trains the study's trials.

Preemption and time limits (submitit): hydra-submitit-launcher submits the launcher object itself,
and its ``checkpoint()`` resubmits the same call, that is the same overrides, so the requeued job
lands in the same directory with the same run id and resumes from ``checkpoints/last.pt``
(at most the epoch in progress is redone). Nothing needs wrapping here. Preempted jobs are
always requeued; jobs that reach their time limit only up to ``max_num_timeout`` times, which is 0
in the plugin's ``submitit_slurm`` and 20 in regbench's preset ``hydra/launcher=slurm``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from regbench.config import CONFIG_DIR, run_id
from regbench.errors import UserError
from regbench.records import Result, Status
from regbench.rundir import RunDirBusy, RunDirConflict, hold
from regbench.sweep.machine import job_resources
from regbench.sweep.stacks import units

log = logging.getLogger("regbench")

#: Statuses of the jobs this process ran, for the sweep summary and the exit code.
JOB_STATUSES: list[tuple[str, str]] = []

MAX_TAG_LENGTH = 64  # W&B refuses longer tags


def run_job(cfg: DictConfig) -> Mapping:
    """Train one configuration in Hydra's output dir. In a sweep, a failing job is recorded, not raised,
    so the other jobs go on; a single run fails the command with one line (a UserError) or its traceback.
    A job never writes into a directory that holds another configuration or another writer."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    _log_file_errors_once()
    if cfg.get("search", {}).get("worker") is not None:  # a search's worker: it trains the study's trials
        from regbench.sweep.search import work

        return work(cfg, hc)
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    part = None
    if multirun:
        from regbench.sweep.stacks import role

        _tag_varied_factors(cfg, list(hc.overrides.task), hc.sweep.dir)
        part = role(Path(hc.sweep.dir), run_dir, run_id(cfg))
    try:
        if part is None:
            result = _train_held(cfg, run_dir, hc, multirun)
        elif part.leader:
            result = _train_stack(cfg, hc, part.members)
        else:
            result = _stack_member(run_dir, part.members)
    except UserError as e:
        if multirun:  # refused: another configuration or writer owns the folder; nothing written into it
            log.error("job refused: %s", e)
            result = Result(Status.REFUSED, error=str(e))
        else:
            print(f"regbench: error: {e}", file=sys.stderr)
            sys.exit(2)
    JOB_STATUSES.append((str(run_dir), result["status"]))
    if not multirun:
        from regbench.console import print_result

        print_result(result, run_dir)
    return result


def _log_file_errors_once() -> None:
    """A log file that cannot be written (a full disk) is said once on stderr, in one line, instead of a
    "--- Logging error ---" traceback for every record; the run's own files report what failed."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and not getattr(handler, "_regbench_quiet", False):
            def handle_error(record, handler=handler):
                if not handler._regbench_warned:
                    handler._regbench_warned = True
                    exc = sys.exc_info()[1]
                    print(f"regbench: warning: cannot write {handler.baseFilename} ({exc}); its further lines are dropped",
                          file=sys.stderr)
            handler.handleError, handler._regbench_quiet, handler._regbench_warned = handle_error, True, False


def _train_held(cfg: DictConfig, run_dir: Path, hc, multirun: bool) -> Result:
    from regbench.train import Lifecycle, train

    previous = Lifecycle.already_finished(cfg, run_dir)
    if previous:
        return previous.as_skipped()  # not retrained, nothing written (a read-only folder is fine)
    with hold(run_dir, run_id(cfg)), job_resources(cfg, hc, units(Path(hc.sweep.dir)) if multirun else None):
        if not multirun:
            return train(cfg, run_dir)
        return _train_recorded(cfg, run_dir, list(hc.overrides.task))


def _train_recorded(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Result:
    """Train a job of a sweep (its dir held): a failure is recorded in its result.json and returned, not raised."""
    from regbench.records import RESULT_FILE, write_result
    from regbench.train import train

    try:
        return train(cfg, run_dir)
    except (RunDirConflict, RunDirBusy):
        raise
    except Exception as e:
        log.error("job %s failed:\n%s", run_dir.name, traceback.format_exc())
        result = Result(Status.FAILED, run_id=run_id(cfg), seed=cfg.seed, name=cfg.name,
                        error=f"{type(e).__name__}: {e}", overrides=list(overrides))
        try:
            write_result(run_dir, result)
        except (OSError, UserError) as write_error:  # a full disk: the log and the sweep's summary still say it
            log.error("could not record the failure in %s: %s", run_dir / RESULT_FILE, write_error)
        return result


def _train_stack(cfg: DictConfig, hc, members: list[dict]) -> Result:
    """The leader of a stack (:mod:`regbench.sweep.stacks`): train every member, each in its own run dir under
    its own lock; return the leader's result. A member another process holds is left to that process."""
    from contextlib import ExitStack

    from omegaconf import OmegaConf

    from regbench.stack import train_stacked

    sweep_dir = Path(hc.sweep.dir)
    cfgs, dirs, held_members = [], [], []
    with ExitStack() as held:
        for k, m in enumerate(members):
            member_cfg = cfg if k == 0 else OmegaConf.create(m["config"])
            if k:
                _tag_varied_factors(member_cfg, m["overrides"], sweep_dir)
            try:
                held.enter_context(hold(sweep_dir / m["dirname"], m["run_id"]))
            except RunDirBusy as e:
                if k == 0:
                    raise
                log.warning("left out of the stack: %s", e)
                continue
            cfgs.append(member_cfg)
            dirs.append(sweep_dir / m["dirname"])
            held_members.append(m)
        held.enter_context(job_resources(cfg, hc, units(sweep_dir)))
        try:
            return train_stacked(cfgs, dirs)[0]
        except (RunDirConflict, RunDirBusy):
            raise
        except Exception:
            # One member's failure must not fail its siblings: each unfinished member trains alone, from its
            # checkpoint, and fails (recorded in its result.json) or completes on its own.
            log.error("stack failed; its %d members train alone:\n%s", len(cfgs), traceback.format_exc())
            results = []
            for c, d, m in zip(cfgs, dirs, held_members):  # every member gets its try, whatever the one before did
                try:
                    results.append(_train_recorded(c, d, m["overrides"]))
                except UserError as e:
                    log.error("%s refused: %s", d.name, e)
                    results.append(Result(Status.REFUSED, error=str(e)))
            return results[0]


def _stack_member(run_dir: Path, members: list[dict]) -> Result:
    """A member of a stack trains nothing: its leader trains it. Its result if the leader has written it,
    else ``stacked`` (the leader is at it in another process, or will be; the sweep's end reads the files)."""
    from regbench.errors import DamagedFile
    from regbench.rundir import FINISHED
    from regbench.train import read_result

    leader = members[0]["dirname"]
    try:
        result = read_result(run_dir)
    except DamagedFile:
        result = None
    if result and result.status in (*FINISHED, Status.FAILED):
        if result.status == Status.FAILED:
            log.error("failed in the stack of %d led by %s (its regbench.log holds the traceback): %s",
                      len(members), leader, result.get("error"))
        else:
            log.info("trained in the stack of %d led by %s: %s", len(members), leader, result["status"])
        return result
    log.info("in the stack of %d led by %s, which trains it: no result yet (the leader is at it in another process, "
             "or was stopped before this member ended)", len(members), leader)
    return Result(Status.STACKED, extra={"leader": leader})


# ------------------------------------------------------------------------------------ W&B tags

def _tag_varied_factors(cfg: DictConfig, overrides: list[str], sweep_dir) -> None:
    """Add ``key=value`` tags for the factors this sweep varies (seed excepted: it is in the config)."""
    if "tags" not in cfg.get("logger", {}):
        return
    from regbench.sweep.jobs import once_per_sweep

    varied = once_per_sweep(sweep_dir, _varied_but_seed)  # None if unknown: every override is then a candidate
    tags = []
    for line in overrides:
        key = line.split("=", 1)[0].lstrip("+~")
        if varied is None or key in varied:
            tags.append(line.lstrip("+~")[:MAX_TAG_LENGTH])
    with open_dict(cfg):
        cfg.logger.tags = list(dict.fromkeys([*cfg.logger.tags, *tags]))


def _varied_but_seed(cfg) -> set[str]:
    """The factors a sweep's multirun.yaml varies, seed excepted."""
    from regbench.sweep.jobs import varied_keys

    return set(varied_keys(cfg)) - {"seed"}


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> Mapping:
    return run_job(cfg)
