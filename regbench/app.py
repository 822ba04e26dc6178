"""The Hydra task: one job of `regbench run`, single or inside a multirun sweep.

Whatever launcher runs it (sequential, joblib processes, submitit on one machine or on SLURM), a
job trains in its own directory and:

- in a sweep, records a failure in its ``result.json`` instead of raising, so the other jobs go on;
- marks its directory as running (``.running``: host and pid) while it trains, so
  ``regbench status`` tells a running job from an interrupted one;
- when jobs share the machine (joblib, submitit_local), limits torch to its share of the CPU
  cores, and with several GPUs takes one of its own (:mod:`regbench.sweep.machine`);
- tags its W&B run with its values of the factors the sweep varies (the group is the study name);
- returns the objective as a number to a sampling sweeper (Optuna): ``val_acc`` when the sweeper
  maximizes, ``val_loss`` when it minimizes.

Preemption and time limits (submitit): hydra-submitit-launcher submits the launcher object itself,
and its ``checkpoint()`` resubmits the same call, that is the same overrides, so the requeued job
lands in the same directory with the same run id and resumes from ``checkpoints/last.pt``
(at most the epoch in progress is redone). Nothing needs wrapping here. Preempted jobs are
always requeued; jobs that reach their time limit only up to ``max_num_timeout`` times, which is 0
in the plugin's ``submitit_slurm`` and 20 in regbench's preset ``hydra/launcher=slurm``.
"""

from __future__ import annotations

import logging
import math
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from regbench.config import CONFIG_DIR, run_id
from regbench.errors import UserError
from regbench.rundir import RunDirBusy, RunDirConflict, hold
from regbench.sweep.machine import job_resources

log = logging.getLogger("regbench")

#: Statuses of the jobs this process ran, for the sweep summary and the exit code.
JOB_STATUSES: list[tuple[str, str]] = []

MAX_TAG_LENGTH = 64  # W&B refuses longer tags


def run_job(cfg: DictConfig) -> dict | float:
    """Train one configuration in Hydra's output dir. In a sweep, a failing job is recorded, not raised,
    so the other jobs go on; a single run fails the command with one line (a UserError) or its traceback.
    A job never writes into a directory that holds another configuration or another writer."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun:
        _tag_varied_factors(cfg, hc)
    try:
        result = _train_held(cfg, run_dir, hc, multirun)
    except UserError as e:
        if multirun:  # refused: another configuration or writer owns the folder; nothing written into it
            log.error("job refused: %s", e)
            result = {"status": "refused", "error": str(e)}
        else:
            print(f"regbench: error: {e}", file=sys.stderr)
            sys.exit(2)
    JOB_STATUSES.append((str(run_dir), result["status"]))
    if not multirun:
        from regbench.console import print_result

        print_result(result, run_dir)
    if "optuna" in str(hc.sweeper.get("_target_", "")).lower():
        return objective(result, hc.sweeper.get("direction", "minimize"))
    return result


def _train_held(cfg: DictConfig, run_dir: Path, hc, multirun: bool) -> dict:
    from regbench.files import write_json
    from regbench.train import FINISHED, RESULT_FILE, read_result, train

    rid = run_id(cfg)
    previous = read_result(run_dir) if cfg.resume is True else None  # resume=false: a damaged result is replaced
    if cfg.resume is True and previous and previous.get("run_id") == rid and previous.get("status") in FINISHED:
        return train(cfg, run_dir)  # reports it as not retrained, writes nothing (a read-only folder is fine)
    with hold(run_dir, rid), job_resources(cfg, hc):
        try:
            return train(cfg, run_dir)
        except (RunDirConflict, RunDirBusy):
            raise
        except Exception as e:
            if not multirun:
                raise
            log.error("job failed:\n%s", traceback.format_exc())
            result = {"status": "failed", "run_id": rid, "seed": cfg.seed, "name": cfg.name,
                      "error": f"{type(e).__name__}: {e}", "overrides": list(hc.overrides.task)}
            try:
                write_json(run_dir / RESULT_FILE, result)
            except OSError as write_error:
                log.error("could not record the failure in %s: %s", run_dir / RESULT_FILE, write_error)
            return result


def objective(result: dict, direction) -> float:
    """What a sampling sweeper optimizes: validation accuracy (maximize) or loss (minimize); NaN for a failed job."""
    if not isinstance(direction, str) and hasattr(direction, "__iter__"):  # multi-objective: the first
        direction = list(direction)[0]
    value = result.get("val_acc" if str(direction).lower().endswith("maximize") else "val_loss")
    return float(value) if value is not None else math.nan


# ------------------------------------------------------------------------------------ W&B tags

def _tag_varied_factors(cfg: DictConfig, hc) -> None:
    """Add ``key=value`` tags for the factors this sweep varies (seed excepted: it is in the config)."""
    if "tags" not in cfg.get("logger", {}):
        return
    from regbench.sweep.jobs import load_multirun, varied_keys

    try:
        varied = set(varied_keys(load_multirun(hc.sweep.dir))) - {"seed"}
    except Exception:  # no multirun.yaml (a custom sweeper): every override is a candidate
        varied = None
    tags = []
    for line in hc.overrides.task:
        key = line.split("=", 1)[0].lstrip("+~")
        if varied is None or key in varied:
            tags.append(line.lstrip("+~")[:MAX_TAG_LENGTH])
    with open_dict(cfg):
        cfg.logger.tags = list(dict.fromkeys([*cfg.logger.tags, *tags]))


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> dict | float:
    return run_job(cfg)
