"""Send the report to Weights & Biases, only for studies whose runs were online.

A run was online when its loggers included ``wandb`` with mode ``online`` (``WANDB_MODE`` in the
environment wins, as in :mod:`regbench.loggers.wandb`). Then one report run joins the study's
group (``job_type="report"``) with the tables as ``wandb.Table`` and the figures as images.
Otherwise nothing leaves the machine and wandb is not even imported.
"""

from __future__ import annotations

import math
import os


def online_target(configs: dict) -> dict | None:
    """project / entity / group of the first online W&B run of the sweep, else None."""
    env = os.environ.get("WANDB_MODE")
    for cfg in configs.values():
        node = _wandb_node((cfg or {}).get("logger") or {})
        if node is None:
            continue
        if (env or node.get("mode") or "offline") == "online":
            return {"project": node.get("project") or "regbench", "entity": node.get("entity"),
                    "group": (cfg or {}).get("name") or "default"}
    return None


def _wandb_node(logger: dict) -> dict | None:
    """The W&B settings of a run's ``logger``: ``logger.wandb`` (logger is multi-select), or the whole node in the
    single-logger shape of earlier versions (``_target_: …WandbLogger``, or ``name: wandb`` in regbench 0.1)."""
    if isinstance(logger.get("wandb"), dict):
        return logger["wandb"]
    if str(logger.get("_target_", "")).endswith("WandbLogger") or logger.get("name") == "wandb":
        return logger
    return None


def upload(target: dict, tables: dict, figures: list, config: dict, run_dir) -> str:
    """One ``job_type="report"`` run in the study's group; returns its URL."""
    import wandb

    run = wandb.init(project=target["project"], entity=target["entity"], group=target["group"], job_type="report",
                     name=f"{target['group']}-report", config=config, dir=str(run_dir), reinit="finish_previous")
    try:
        for name, frame in tables.items():
            clean = frame.astype(object).where(frame.notna(), None)
            clean = clean.map(lambda v: None if isinstance(v, float) and not math.isfinite(v) else v)
            run.log({f"tables/{name}": wandb.Table(dataframe=clean)})
        for fig in figures:
            run.log({f"figures/{fig.name}": wandb.Image(str(fig.png), caption=fig.title)})
        return run.url or ""
    finally:
        run.finish()
