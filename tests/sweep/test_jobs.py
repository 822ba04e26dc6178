"""A sweep dir's expected jobs are exactly the ones Hydra runs, expanded from its multirun.yaml."""

from __future__ import annotations

from omegaconf import OmegaConf

from regbench.sweep.jobs import expected_count, expected_jobs, load_multirun, varied_keys


def test_expected_jobs_are_the_dirs_hydra_made(finished_sweep):
    cfg = load_multirun(finished_sweep)
    jobs = expected_jobs(cfg)
    made = {p.parent.parent.name for p in finished_sweep.glob("*/.hydra/overrides.yaml")}
    assert {j.dirname for j in jobs} == made and len(jobs) == 4
    assert expected_count(cfg) == 4
    for job in jobs:  # the overrides each job received, as Hydra saved them
        saved = OmegaConf.load(finished_sweep / job.dirname / ".hydra" / "overrides.yaml")
        assert sorted(saved) == sorted(job.overrides)


def test_varied_keys_are_the_swept_ones(finished_sweep):
    assert set(varied_keys(load_multirun(finished_sweep))) == {"regularizer", "seed"}


def test_a_command_line_value_replaces_the_config_sweep():
    cfg = OmegaConf.create({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": {"dataset.label_noise": "0.0,0.5,1.0", "seed": "0,1,2"}},
        "overrides": {"task": ["seed=0", "model=mlp,cnn1d"]},
        "job": {"name": "regbench", "config": {"override_dirname": {"kv_sep": "=", "item_sep": ",", "exclude_keys": []}}},
        "sweep": {"subdir": "${hydra.job.override_dirname}"}}})
    assert set(varied_keys(cfg)) == {"dataset.label_noise", "model"}
    jobs = expected_jobs(cfg)
    assert len(jobs) == 6 and all("seed=0" in j.overrides for j in jobs)
    assert jobs[0].dirname == "dataset.label_noise=0.0,model=mlp,seed=0"


def test_a_subdir_template_sees_the_config_and_each_jobs_number():
    cfg = OmegaConf.create({"name": "study", "hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": {}},
        "overrides": {"task": ["seed=0,1,2"]},
        "job": {"name": "regbench", "config": {"override_dirname": {"kv_sep": "=", "item_sep": ",", "exclude_keys": []}}},
        "sweep": {"subdir": "${name}-${hydra.job.num}-${regbench.dirname:${hydra.job.override_dirname}}"}}})
    assert [j.dirname for j in expected_jobs(cfg)] == [f"study-{i}-seed={i}" for i in range(3)]


def test_a_sampling_sweeper_has_a_count_but_no_job_list():
    cfg = OmegaConf.create({"hydra": {"sweeper": {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
                                                  "n_trials": 7, "params": {"optimizer.lr": "interval(1e-4, 1e-1)"}},
                                      "overrides": {"task": []}}})
    assert expected_jobs(cfg) is None and expected_count(cfg) == 7
    assert varied_keys(cfg) == ["optimizer.lr"]
