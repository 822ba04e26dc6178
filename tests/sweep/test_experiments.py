"""Every study in conf/experiment/ runs from the CLI: each one, shrunk, through the real multirun path."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
import yaml
from helpers import REPO, run_cli

from regbench.config import compose
from regbench.sweep.jobs import expected_count, load_multirun

STUDIES = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
HEADER_FIELDS = ("Question", "Literature", "Command", "Seeds", "Expected", "Paper scale")


def header(study: str) -> str:
    text = (REPO / "conf" / "experiment" / f"{study}.yaml").read_text()
    return "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))


def test_the_issue_studies_exist():
    assert {"zhang2017_randomization", "zhang2017_table1", "label_corruption", "bn_dropout_augment", "adam_l2_vs_adamw",
            "double_descent", "init_scale", "lr_batch_size", "random_search", "mnist1d_baselines"} <= set(STUDIES)


def test_the_experiment_group_is_a_real_folder():
    # no symlink: zip downloads and Windows checkouts keep the studies
    folder = REPO / "conf" / "experiment"
    assert folder.is_dir() and not folder.is_symlink()
    assert not list((REPO / "experiments").glob("*.yaml"))  # experiments/ is the gallery of their results


@pytest.mark.parametrize("study", STUDIES)
def test_header_says_how_to_run_it(study):
    path = REPO / "conf" / "experiment" / f"{study}.yaml"
    assert path.read_text().startswith("# @package _global_\n")
    text = header(study)
    for field in HEADER_FIELDS:
        assert f"# {field}" in text, f"{study}: no '{field}' in its header"
    assert f"regbench run -m experiment={study}" in text
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == study
    sweep = cfg.get("hydra", {}).get("sweeper", {}).get("params", {})
    replicated = cfg.get("search", {}).get("replicate_seeds")  # a search selects on one seed, then replicates
    assert "seed" in sweep or replicated, f"{study}: seeds are a sweep axis"


@pytest.mark.parametrize("study", ["label_corruption"])
def test_a_study_names_its_output_dir_and_wandb_group(study):
    assert compose([f"experiment={study}"]).name == study


# The tuned studies run the whole protocol (tuning, then final): slow; tests/sweep/test_tune.py covers it in make test.
TUNED = {s for s in STUDIES if s.endswith("_tuned")}


@pytest.mark.parametrize("study", [pytest.param(s, marks=pytest.mark.slow) if s in TUNED else s for s in STUDIES])
def test_study_runs_through_the_cli(study, run_sweep, shrink):
    """The whole grid, one seed (or two trials of a search, replicated over one seed), one epoch on 100 examples."""
    cfg = compose([f"experiment={study}"], return_hydra_config=True)
    searched = bool(cfg.search.space)
    extra = ["search.n_trials=2", "search.batch=2", "search.replicate_seeds=[1]"] if searched else ["seed=0"]
    tuned = bool(cfg.tune.space)  # the tuned protocol: one tuning seed, two draws; its table is final/
    if tuned:
        extra += ["tune.seeds=[100]"] + ([] if cfg.tune.budget is None else ["tune.budget=2"])
    out, sweep_dir = run_sweep(f"experiment={study}", *shrink, *extra)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    if tuned:
        arms = json.loads((sweep_dir / "tuned.json").read_text())["arms"]
        sweep_dir, expected = sweep_dir / "final", len(arms)
    elif searched:  # the replication's table: the best trial's values and, beside them, the default recipe
        assert json.loads((sweep_dir / "search.json").read_text())["completed"] == 2
        sweep_dir, expected = sweep_dir / "replicate", 1 + bool(cfg.search.replicate_default)
    else:
        expected = expected_count(load_multirun(sweep_dir))
    runs = pd.read_csv(sweep_dir / "results.csv")
    assert len(runs) == expected and (runs["status"] == "completed").all(), runs[["run_dir", "status", "error"]]
    assert runs["run_id"].is_unique
    configs = pd.read_csv(sweep_dir / "configs.csv")
    assert len(configs) == expected and (configs["n"] == 1).all()  # one seed: a row per configuration
    run_cfg = yaml.safe_load((sweep_dir / runs["run_dir"][0] / "config.yaml").read_text())
    assert run_cfg["name"] == study  # the study names its outputs/<study>/ folder and its W&B group


def test_cfg_job_shows_a_study():
    out = run_cli("run", "experiment=label_corruption", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["dataset"]["n_train"] == 1000 and cfg["trainer"]["early_stopping"]["patience"] is None


def test_the_wheel_carries_the_studies_and_launcher_presets(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("regbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"regbench/conf/experiment/{s}.yaml" for s in STUDIES} <= names
    assert "regbench/conf/hydra/launcher/slurm.yaml" in names
