"""regbench's sweeper (``hydra_plugins/regbench_sweeper``, ``hydra/sweeper=regbench``): Hydra's basic sweeper whose
launcher composes each job once per choice of config groups, through Hydra's public extension points, and composes
exactly what Hydra composes: job by job against Hydra's own config loader, and a whole sweep against the same
sweep under Hydra's basic sweeper."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import read_result, run_cli
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from regbench.config import CONFIG_DIR
from regbench.sweep.jobs import PRECHECKED, is_basic_sweeper, prechecked

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
    ["+extra={a:1,b:[2,3]}", "seed=7"],
]


def ComposingLoader(loader):  # noqa: N802 - the class as Hydra's plugin scan left it (it executes the module again)
    from hydra_plugins.regbench_sweeper import regbench_sweeper

    return regbench_sweeper.ComposingLoader(loader)


@pytest.fixture(scope="module")
def loader_and_master(tmp_path_factory):
    """Hydra's config loader for regbench's config, through the compose API, and a sweep's master config as Hydra's
    ``multirun`` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        loader = GlobalHydra.instance().config_loader()
    sweep_dir = tmp_path_factory.mktemp("sweep")
    master = loader.load_configuration("config", [f"hydra.sweep.dir={sweep_dir}", "logger=none", "hydra.mode=MULTIRUN"],
                                       RunMode.MULTIRUN)
    return loader, master


def test_every_job_is_composed_as_hydra_composes_it(loader_and_master):
    loader, master = loader_and_master
    ours = ComposingLoader(loader)
    for job in JOBS:
        fast, hydras = ours.load_sweep_config(master, list(job)), loader.load_sweep_config(master, list(job))
        assert OmegaConf.to_container(fast) == OmegaConf.to_container(hydras), job  # Hydra's node included
        assert fast.hydra.job.override_dirname == hydras.hydra.job.override_dirname != ""
        assert OmegaConf.is_struct(fast) and not OmegaConf.is_readonly(fast.hydra)
    # one composition per distinct choice of groups, not per job: none, model=mlp, experiment=..., regularizer=...,
    # optimizer=sgd
    (composer,) = ours.composers.values()
    assert len(composer.cache) == 5


def test_a_copy_is_not_shared_between_jobs(loader_and_master):
    loader, master = loader_and_master
    ours = ComposingLoader(loader)
    first, second = ours.load_sweep_config(master, ["seed=1"]), ours.load_sweep_config(master, ["seed=2"])
    assert (first.seed, second.seed) == (1, 2) and list(first.hydra.overrides.task) == ["seed=1"]


def test_the_sweeper_validates_unless_the_pre_check_did(loader_and_master, monkeypatch):
    """Hydra's batch validation (by keyword, through the sweeper's loader) refuses a job that does not compose; with
    regbench's pre-check done (``prechecked``: the environment says so, for that block only) the pass is skipped."""
    from hydra.errors import ConfigCompositionException

    from hydra.core.plugins import Plugins

    loader, master = loader_and_master
    monkeypatch.delenv(PRECHECKED, raising=False)
    # as Hydra's multirun makes it: from the config's hydra.sweeper, then set up with Hydra's context
    sweeper = Plugins.instance().instantiate_sweeper(hydra_context=HydraContext(config_loader=loader, callbacks=None),
                                                     task_function=lambda cfg: None, config=master)
    assert type(sweeper).__name__ == "RegbenchSweeper" and type(sweeper.hydra_context.config_loader).__name__ == "ComposingLoader"
    assert sweeper.launcher.hydra_context.config_loader is sweeper.hydra_context.config_loader  # the launcher composes so
    bad = [["seed=0"], ["model.no_such_key=1"]]
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        sweeper.validate_batch_is_legal(bad)
    with prechecked(True):
        sweeper.validate_batch_is_legal(bad)
    with prechecked(False), pytest.raises(ConfigCompositionException):
        sweeper.validate_batch_is_legal(bad)
    with pytest.raises(ConfigCompositionException):  # prechecked(True) was for its block only
        sweeper.validate_batch_is_legal(bad)


def test_a_worker_composes_with_hydras_own(loader_and_master):
    """A joblib or SLURM worker unpickles the launcher's loader: it carries Hydra's loader, none of this process's
    compositions, and composes its job with Hydra's own (as before; a worker gets one job per unpickled loader)."""
    import pickle

    loader, master = loader_and_master
    ours = ComposingLoader(loader)
    ours.load_sweep_config(master, ["seed=1"])
    again = pickle.loads(pickle.dumps(ours))
    assert again.composers is None and ours.composers
    assert OmegaConf.to_container(again.load_sweep_config(master, ["seed=2"])) == OmegaConf.to_container(
        loader.load_sweep_config(master, ["seed=2"]))


def _job_files(sweep_dir: Path) -> dict:
    """Each job's folder → what Hydra saved of it (config, overrides, its node less the sweeper's own) and its run id."""
    out = {}
    for job in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
        node = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        del node["sweeper"], node["runtime"]["choices"]["hydra/sweeper"]
        out[job.name] = {"config": (job / ".hydra" / "config.yaml").read_text(),
                         "overrides": (job / ".hydra" / "overrides.yaml").read_text(),
                         "hydra": node, "run_id": read_result(job)["run_id"]}
    return out


def test_a_sweep_runs_the_jobs_hydras_basic_sweeper_runs(tmp_path, shrink):
    """The same sweep under regbench's sweeper (the default) and under Hydra's basic one, in a fresh interpreter
    outside the repository (the plugin is found through the installed package): the same job folders, each with the
    configuration, overrides, Hydra node and run id Hydra composes; both multirun.yaml expand to the same jobs."""
    from regbench.sweep.jobs import expected_jobs, load_multirun

    sweep = [*shrink, "model=mlp", "regularizer=none,dropout", "seed=0,1", "+note=x", "stack=1"]
    files = {}
    for sweeper in ("regbench", "basic"):
        sweep_dir = tmp_path / f"sweep_{sweeper}"  # not a folder named like a package: the interpreter starts in tmp_path
        extra = [] if sweeper == "regbench" else ["hydra/sweeper=basic"]
        out = run_cli("run", "-m", *sweep, *extra, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        files[sweeper] = _job_files(sweep_dir)
        cfg = load_multirun(sweep_dir)
        assert is_basic_sweeper(cfg)
        assert sorted(j.dirname for j in expected_jobs(cfg)) == sorted(files[sweeper])
    target = yaml.safe_load((tmp_path / "sweep_regbench" / "multirun.yaml").read_text())["hydra"]["sweeper"]["_target_"]
    assert target == "hydra_plugins.regbench_sweeper.regbench_sweeper.RegbenchSweeper"
    assert len(files["regbench"]) == 4 and sorted(files["regbench"]) == sorted(files["basic"])
    for name, ours in files["regbench"].items():
        hydras = files["basic"][name]
        for node in ("output_dir", "cwd"):
            ours["hydra"]["runtime"].pop(node), hydras["hydra"]["runtime"].pop(node)
        ours["hydra"]["sweep"].pop("dir"), hydras["hydra"]["sweep"].pop("dir")
        ours["hydra"]["overrides"]["hydra"] = [o for o in ours["hydra"]["overrides"]["hydra"] if "sweep.dir" not in o]
        hydras["hydra"]["overrides"]["hydra"] = [o for o in hydras["hydra"]["overrides"]["hydra"]
                                                 if "sweep.dir" not in o and o != "hydra/sweeper=basic"]
        assert ours == hydras, name
