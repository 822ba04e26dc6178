"""regbench's sweeper: Hydra's basic sweeper, whose launcher composes a sweep's jobs once per choice of config groups.

Hydra's launchers compose every job from scratch (about 0.12 s a job on a 2-core CPU) although the jobs of a sweep
mostly differ in values (seeds, rates, strengths); its sweeper has composed each of them once already, to validate
the batch. This sweeper expands and launches a sweep exactly as Hydra's basic sweeper does (same jobs, order,
``multirun.yaml``) and, through Hydra's own extension points only:

- gives its launcher (and its own validation) a config loader that composes each job with
  :class:`regbench.validate.Composer`: once per distinct choice of config groups, the job's values then set on a
  copy, equal to Hydra's composition (``tests/sweep/test_sweeper.py``). It travels to the launcher in the
  ``HydraContext`` Hydra hands the sweeper (a joblib or SLURM worker that unpickles it composes with Hydra's own);
- skips Hydra's validation pass (every job composed once more before launching) when the environment variable
  :data:`regbench.sweep.jobs.PRECHECKED` says that regbench's pre-check (:func:`regbench.validate.check_command`)
  has composed and checked every job already (``regbench run`` sets it for its sweep: ``jobs.prechecked``).

Hydra imports this module whenever it starts (it scans ``hydra_plugins``, executing each module it finds even if
imported already): it imports nothing beyond Hydra's own modules, loaded by then; regbench is imported when a sweep
starts. Hydra instantiates the sweeper from the classes of its scan.
"""

from __future__ import annotations

import os
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from hydra.core.object_type import ObjectType
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf


class RegbenchSweeper(BasicSweeper):
    """``hydra/sweeper=regbench`` (``conf/hydra/sweeper/regbench.yaml``): Hydra's basic sweeper, with ``params`` and
    ``max_batch_size`` as there, composing each job once per choice of groups (:class:`ComposingLoader`)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        loader = ComposingLoader(hydra_context.config_loader)
        super().setup(hydra_context=HydraContext(config_loader=loader, callbacks=hydra_context.callbacks),
                      task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch) -> None:
        """Hydra's check that every job of the batch composes, unless regbench's pre-check has done it already."""
        from regbench.sweep.jobs import PRECHECKED

        if os.environ.get(PRECHECKED) != "1":
            super().validate_batch_is_legal(batch)


class ComposingLoader(ConfigLoader):
    """Hydra's config loader (``loader``), whose ``load_sweep_config`` composes once per choice of config groups.

    Everything else is the loader's own. A job is composed as Hydra's ``ConfigLoaderImpl.load_sweep_config`` composes
    it (the sweep's ``hydra.overrides.hydra``, then the job's overrides; the sweep's resolver cache copied), by one
    :class:`regbench.validate.Composer` per sweep. That is in the process that launches the sweep; a worker that
    unpickles the loader (joblib, SLURM) composes each of its jobs with Hydra's own, as before: it gets one job per
    unpickled loader, and nothing to share it with.
    """

    def __init__(self, loader: ConfigLoader):
        self.loader = loader
        self.composers: dict[tuple, Any] | None = {}  # None: in a worker, Hydra's composition

    def __getstate__(self) -> dict:
        return {"loader": self.loader, "composers": None}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if self.composers is None:  # unpickled in a worker
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        from regbench.validate import Composer

        hydra_lines = list(OmegaConf.to_container(master_config.hydra.overrides.hydra))
        config_name = master_config.hydra.job.config_name
        key = (config_name, *hydra_lines)  # the sweep: its config and its hydra.* overrides
        if key not in self.composers:
            self.composers[key] = Composer(config_name, hydra_lines, loader=self.loader)
        cfg = self.composers[key].compose(list(sweep_overrides))
        # as Hydra does: the same resolved values as the sweep's (timestamps, oc.env)
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def load_configuration(self, config_name: str | None, overrides: list[str], run_mode: RunMode, from_shell: bool = True,
                           validate_sweep_overrides: bool = True) -> DictConfig:
        return self.loader.load_configuration(config_name=config_name, overrides=overrides, run_mode=run_mode,
                                              from_shell=from_shell, validate_sweep_overrides=validate_sweep_overrides)

    def get_search_path(self):
        return self.loader.get_search_path()

    def get_sources(self):
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, group_name: str, results_filter: ObjectType | None = ObjectType.CONFIG,
                          config_name: str | None = None, overrides: list[str] | None = None) -> list[str]:
        return self.loader.get_group_options(group_name, results_filter, config_name, overrides)

    def compute_defaults_list(self, config_name: str | None, overrides: list[str], run_mode: RunMode) -> Any:
        return self.loader.compute_defaults_list(config_name, overrides, run_mode)
