"""What Hydra would compose again is taken from compositions already made, and is exactly what Hydra composes:
a sweep's jobs, composed once per choice of config groups, and the run mode Hydra composes a command to read."""

from __future__ import annotations

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from regbench.config import CONFIG_DIR
from regbench.sweep.jobs import _ComposedOnce, composed_once, mode_known, prevalidated
from regbench.validate import check_command

_HYDRAS_GET_MODE = Hydra.get_mode

JOBS = [
    ["seed=3"],
    ["seed=4"],
    ["model=mlp", "seed=1"],
    ["model=mlp", "model.width=8", "seed=2", "optimizer.lr=0.1"],
    ["experiment=label_corruption", "dataset.label_noise=0.5", "seed=0"],
    ["regularizer=[dropout,weight_decay]", "regularizer.dropout.p=0.3", "seed=0"],
    ["+note=a/b", "seed=5"],
    ["~dataset.split_seed", "seed=6"],
    ["optimizer=sgd", "optimizer.momentum=0.5"],
]


@pytest.fixture(scope="module")
def loader_and_master(tmp_path_factory):
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONFIG_DIR)))
    sweep_dir = tmp_path_factory.mktemp("sweep")
    master = loader.load_configuration("config", [f"hydra.sweep.dir={sweep_dir}", "logger=none"], RunMode.MULTIRUN)
    return loader, master


def test_every_job_is_composed_as_hydra_composes_it(loader_and_master):
    loader, master = loader_and_master
    fast = _ComposedOnce(ConfigLoaderImpl.load_sweep_config)
    for job in JOBS:
        ours = fast(loader, master, job)
        hydras = ConfigLoaderImpl.load_sweep_config(loader, master, job)
        assert OmegaConf.to_container(ours) == OmegaConf.to_container(hydras), job
        assert ours.hydra.job.override_dirname == hydras.hydra.job.override_dirname != ""
        assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours.hydra)
    # one composition per distinct choice of groups, not per job: none, model=mlp, experiment=..., regularizer=...,
    # optimizer=sgd
    assert len(fast.cache) == 5


def test_a_copy_is_not_shared_between_jobs(loader_and_master):
    loader, master = loader_and_master
    fast = _ComposedOnce(ConfigLoaderImpl.load_sweep_config)
    first = fast(loader, master, ["seed=1"])
    second = fast(loader, master, ["seed=2"])
    assert (first.seed, second.seed) == (1, 2) and list(first.hydra.overrides.task) == ["seed=1"]


@pytest.mark.parametrize("overrides,multirun", [
    (["logger=none"], False),
    (["logger=none", "hydra.mode=MULTIRUN"], False),
    (["logger=none", "seed=0,1"], True),
    (["experiment=zhang2017_table1", "logger=none"], True),
])
def test_the_pre_checks_config_holds_the_mode_hydra_composes_to_read(overrides, multirun, tmp_path):
    """``regbench run`` answers Hydra's ``get_mode`` from the pre-check's configuration (:func:`mode_known`)
    instead of a whole composition more: the same answer as Hydra's."""
    overrides = [*overrides, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    plan = check_command(overrides, multirun=multirun)
    hydra = Hydra.create_main_hydra2(task_name="regbench", config_search_path=create_config_search_path(str(CONFIG_DIR)))
    try:
        composed = hydra.get_mode(config_name="config", overrides=list(overrides))
        with mode_known(plan.config):
            assert hydra.get_mode(config_name="config", overrides=list(overrides)) == composed
        assert Hydra.get_mode is _HYDRAS_GET_MODE  # Hydra's own again after the command
    finally:
        GlobalHydra.instance().clear()
    assert (composed is None) == ("hydra.mode=MULTIRUN" not in overrides)


def test_hydra_is_itself_again_after_a_command():
    """The three shortcuts replace Hydra's methods for one command only: afterwards each is Hydra's own again
    (the sweeper's validation inherited again, as before)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    def hydras():
        return BasicSweeper.__dict__.get("validate_batch_is_legal"), ConfigLoaderImpl.load_sweep_config, Hydra.get_mode

    before = hydras()
    with prevalidated(True), composed_once(), mode_known(OmegaConf.create({"hydra": {"mode": "RUN"}})):
        assert BasicSweeper.validate_batch_is_legal(None, [["seed=0"]]) is None
        assert Hydra.get_mode(None, "config", []) == "RUN"
        assert hydras() != before
    assert hydras() == before


def test_hydras_own_batch_validation_composes_through_the_shortcut(loader_and_master):
    """Hydra's sweepers validate a batch by calling ``load_sweep_config`` with keyword arguments, its launchers by
    position: both reach the composed-once shortcut (a sweep Hydra validates itself once crashed with a TypeError)."""
    from types import SimpleNamespace

    from hydra.plugins.sweeper import Sweeper

    loader, master = loader_and_master
    sweeper = SimpleNamespace(hydra_context=SimpleNamespace(config_loader=loader), config=master)
    with composed_once():
        Sweeper.validate_batch_is_legal(sweeper, [job for job in JOBS])
        by_name = loader.load_sweep_config(master_config=master, sweep_overrides=["seed=7"])
        by_position = loader.load_sweep_config(master, ["seed=7"])
    hydras = ConfigLoaderImpl.load_sweep_config(loader, master, ["seed=7"])
    assert OmegaConf.to_container(by_name) == OmegaConf.to_container(by_position) == OmegaConf.to_container(hydras)
