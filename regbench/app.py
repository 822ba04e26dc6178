"""The Hydra task: one job of `regbench run`, single or inside a multirun sweep."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from regbench.config import CONFIG_DIR, run_id

log = logging.getLogger("regbench")

#: Statuses of the jobs this process ran, for the sweep summary and the exit code.
JOB_STATUSES: list[tuple[str, str]] = []


def run_job(cfg: DictConfig) -> dict:
    """Train one configuration in Hydra's output dir. In a sweep, a failing job is recorded, not raised,
    so the other jobs go on; a single run re-raises so the command fails."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from regbench.train import RESULT_FILE, train, write_json_atomic

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        result = train(cfg, run_dir)
    except Exception as e:
        if hc.mode != RunMode.MULTIRUN:
            raise
        log.error("job failed:\n%s", traceback.format_exc())
        result = {"status": "failed", "run_id": run_id(cfg), "seed": cfg.seed, "name": cfg.name,
                  "error": f"{type(e).__name__}: {e}", "overrides": list(hc.overrides.task)}
        write_json_atomic(run_dir / RESULT_FILE, result)
    JOB_STATUSES.append((str(run_dir), result["status"]))
    if hc.mode != RunMode.MULTIRUN:
        from regbench.summary import print_result

        print_result(result, run_dir)
    return result


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> dict:
    return run_job(cfg)
