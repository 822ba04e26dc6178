"""`regbench results`: one row per run, the varied factors as columns, mean ± std over seeds per configuration."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from regbench.cli import main
from regbench.sweep.results import first_fit, load_runs, per_config


def test_results_writes_the_three_tables(finished_sweep, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep_dir)
    for name in ("results.csv", "results.parquet", "configs.csv"):
        (sweep_dir / name).unlink(missing_ok=True)
    assert main(["results", str(sweep_dir)]) == 0
    runs = pd.read_csv(sweep_dir / "results.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"} and runs["run_id"].nunique() == 4
    assert {"run_dir", "run_id", "status", "regularizer", "seed", "test_acc", "train_acc", "wall_time_s",
            "steps_to_fit"} <= set(runs.columns)
    parquet = pd.read_parquet(sweep_dir / "results.parquet")
    assert list(parquet["run_id"]) == list(runs["run_id"])
    configs = pd.read_csv(sweep_dir / "configs.csv")
    assert sorted(configs["regularizer"]) == ["dropout", "none"] and list(configs["n"]) == [2, 2]
    assert "seed" not in configs.columns and {"test_acc_mean", "test_acc_std"} <= set(configs.columns)
    out = capsys.readouterr().out
    assert "4 runs: 4 completed" in out and "dropout" in out and "±" in out


def test_per_config_never_averages_across_configurations(finished_sweep):
    runs = load_runs(finished_sweep)
    configs = per_config(runs)
    for _, row in configs.iterrows():
        same = runs[runs["regularizer"] == row["regularizer"]]
        assert row["n"] == len(same) and abs(row["test_acc_mean"] - same["test_acc"].mean()) < 1e-12


def test_jobs_not_started_are_pending_rows(finished_sweep, tmp_path):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep_dir)
    gone = sorted(p for p in sweep_dir.iterdir() if p.is_dir())[0]
    shutil.rmtree(gone)
    runs = load_runs(sweep_dir)
    assert len(runs) == 4
    (row,) = runs[runs["run_dir"] == gone.name].to_dict("records")
    assert row["status"] == "pending" and pd.isna(row["test_acc"]) and row["seed"] in ("0", "1")
    assert per_config(runs)["n"].sum() == 3  # the completed ones only


def test_steps_to_fit_is_the_first_epoch_at_99_percent(tmp_path):
    rows = [{"epoch": 1, "step": 10, "train_acc": 0.5}, {"epoch": 2, "step": 20, "train_acc": 0.991},
            {"epoch": 3, "step": 30, "train_acc": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 4, "st')
    assert first_fit(tmp_path)["step"] == 20
    assert first_fit(tmp_path, threshold=1.0)["epoch"] == 3
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert first_fit(tmp_path) is None


def test_list_valued_factors_are_printed_not_read_as_markup():
    from rich.console import Console

    from regbench.sweep.results import configs_table

    runs = pd.DataFrame({"run_dir": ["a", "b"], "status": ["completed"] * 2, "regularizer": ["[dropout,l2]", "none"],
                         "seed": ["0", "0"], "test_acc": [0.5, 0.6]})
    console = Console(width=120, record=True)
    console.print(configs_table(runs, per_config(runs, metrics=("test_acc",))))
    assert "[dropout,l2]" in console.export_text()
