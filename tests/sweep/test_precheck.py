"""The pre-check's configurations are Hydra's: each job's configuration as :class:`regbench.validate.Composer` makes it
(composed once per choice of config groups, its values set on a copy, with or without Hydra's node) equals Hydra's own
composition of that job (``hydra.compose``, Hydra's node included), for seeds, group choices, lists, +key, ~key and every
study. The same composer composes the jobs regbench's sweeper launches (``tests/sweep/test_sweeper.py``)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from regbench.config import CONFIG_DIR, compose, to_container
from regbench.sweep.jobs import command_jobs, is_basic_sweeper
from regbench.validate import Composer, check_command

COMMANDS = {
    "seeds and group choices": ["seed=0,1", "regularizer=none,dropout", "model=mlp,cnn1d"],
    "lists": ["regularizer=[dropout],[dropout,weight_decay]", "regularizer.dropout.p=0.1,0.3"],
    "+key and ~key": ["+note=a,b/c", "~dataset.split_seed", "seed=0,1"],
    "values": ["optimizer.lr=0.1,0.01", "dataset.label_noise=0.0,0.5", "trainer.max_epochs=1"],
    "a value that refers to Hydra's node": ["+where=${hydra.job.name}", "seed=0,1"],
    **{f"experiment={p.stem}": [f"experiment={p.stem}"] for p in sorted((CONFIG_DIR / "experiment").glob("*.yaml"))},
}


def task(cfg) -> dict:
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_jobs_configuration_is_hydras(name, tmp_path):
    command = [*COMMANDS[name], "logger=none", f"hydra.sweep.dir={tmp_path}"]
    hydra_cfg, jobs = command_jobs(command)
    composer = Composer("config", command, hydra_cfg)
    sample = sorted({0, len(jobs) // 2, len(jobs) - 1})  # Hydra's composition costs 0.1-0.3 s a job: three of each
    for i in sample:
        overrides = list(jobs[i].overrides)  # a sampling sweeper's (random_search) hold its draws only: add the command's
        fixed = [] if is_basic_sweeper(hydra_cfg) else [line for line in composer.fixed_lines if not line.startswith("hydra.")]
        hydras = compose([f"hydra.sweep.dir={tmp_path}", *fixed, *overrides], return_hydra_config=True)
        full, light = composer.compose(overrides), composer.compose_task(overrides)
        assert task(full) == task(light) == task(hydras), overrides
        assert OmegaConf.is_struct(light) and to_container(light)  # resolves on its own
        assert OmegaConf.to_container(full.hydra) == OmegaConf.to_container(hydras.hydra), overrides  # Hydra's node too
    if name.startswith("a value"):
        assert composer.compose_task(list(jobs[0].overrides)).where == "regbench"  # composed with Hydra's node


def test_the_plan_holds_every_jobs_configuration(tmp_path):
    """The plan's configurations, made again when asked for, are the checked jobs' (a finished job's is None)."""
    command = ["debug=tiny", "regularizer=none,dropout", "seed=0,1,2", f"hydra.sweep.dir={tmp_path}"]
    plan = check_command(command, multirun=True)
    assert len(plan.configs) == len(plan.jobs) == plan.todo == 6
    for job, cfg in zip(plan.jobs, plan.configs):
        assert task(cfg) == task(compose(list(job.overrides))), job.overrides
    assert plan.config.hydra.sweep.dir == str(tmp_path) and plan.configs[-1:][0].seed == 2


def test_a_bad_job_beyond_the_first_2000_is_refused(tmp_path):
    """Every job is checked: here the 2,002 mlp jobs come first and the cnn1d ones, which have no ``model.width``, after."""
    from regbench.errors import UserError

    with pytest.raises(UserError, match=r"unknown option 'model\.width'"):
        check_command(["debug=tiny", "model=mlp,cnn1d", "seed=range(1001)", "model.width=8,16", f"hydra.sweep.dir={tmp_path}"],
                      multirun=True)
