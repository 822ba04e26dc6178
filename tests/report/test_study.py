"""Configurations and the baseline, on small hand-written sweep directories (no training)."""

from __future__ import annotations

from argparse import Namespace

import pytest

from regbench.errors import UserError
from regbench.report import main
from regbench.report.study import Study, parse_selection, short_names, split_spec


def test_none_empty_list_and_absent_regularizer_are_one_configuration(fake_run, tmp_path):
    fake_run(tmp_path, ["regularizer=none"], 0.5, seed=0)
    fake_run(tmp_path, ["regularizer=[]"], 0.6, seed=1)
    fake_run(tmp_path, ["model.width=100"], 0.7, seed=2)  # no regularizer override: config.yaml says {}
    fake_run(tmp_path, ["regularizer=[dropout]"], 0.4, seed=0, regularizer={"dropout": {"p": 0.5}})
    fake_run(tmp_path, ["regularizer=dropout"], 0.3, seed=1, regularizer={"dropout": {"p": 0.5}})
    study = Study(tmp_path)
    assert study.factors == ["regularizer"]
    (base, dropout) = study.conditions
    assert base.n == 3 and base.columns == {"dropout": "no"} and study.baseline is base
    assert dropout.n == 2 and dropout.label == "dropout"
    assert base.values("test_acc").tolist() == [0.5, 0.6, 0.7]


def test_numbers_spelled_differently_are_one_value(fake_run, tmp_path):
    for seed, noise in enumerate(["0", "0.0", "0.5"]):
        fake_run(tmp_path, [f"dataset.label_noise={noise}"], 0.5, seed=seed)
    study = Study(tmp_path)
    assert [c.settings["dataset.label_noise"] for c in study.conditions] == ["0", "0.5"]
    assert study.conditions[0].n == 2


def test_baseline_option_selects_by_overrides(fake_run, tmp_path):
    fake_run(tmp_path, ["regularizer=[]"], 0.5)
    fake_run(tmp_path, ["regularizer=[dropout,weight_decay]"], 0.6, regularizer={"dropout": {}, "weight_decay": {}})
    fake_run(tmp_path, ["regularizer=[weight_decay]"], 0.6, regularizer={"weight_decay": {}})
    assert Study(tmp_path).baseline.label == "no regularizer"
    chosen = Study(tmp_path, baseline="regularizer=[dropout,weight_decay]")
    assert chosen.baseline.label == "dropout + weight_decay" and "--baseline" in chosen.baseline_note
    with pytest.raises(UserError, match="matches no configuration"):
        Study(tmp_path, baseline="regularizer=[mixup]")
    with pytest.raises(UserError, match="does not vary in this sweep"):
        Study(tmp_path, baseline="model.width=3")


def test_cli_errors_are_one_line_with_exit_code_2(fake_run, tmp_path, capsys):
    fake_run(tmp_path, ["regularizer=[]"], 0.5)
    fake_run(tmp_path, ["regularizer=[dropout]"], 0.6, regularizer={"dropout": {}})
    ns = Namespace(sweep_dir=str(tmp_path), baseline="optimizer=sgd", metric="test_acc", format="md,html")
    assert main(ns) == 2 and "regbench: error: --baseline" in capsys.readouterr().err
    assert main(Namespace(**{**vars(ns), "baseline": None, "metric": "f1"})) == 2
    assert "not a result metric" in capsys.readouterr().err
    assert main(Namespace(**{**vars(ns), "baseline": None, "format": "pdf"})) == 2
    assert main(Namespace(**{**vars(ns), "sweep_dir": str(tmp_path / "nothing")})) == 2
    assert not (tmp_path / "report.md").exists()
    assert main(Namespace(**{**vars(ns), "baseline": "regularizer=[dropout]", "format": "md"})) == 0
    text = (tmp_path / "report.md").read_text()
    assert "Baseline: **dropout** (selected by --baseline" in text and not (tmp_path / "report.html").exists()
    assert "No `multirun.yaml`" in text


def test_a_sweep_without_any_completed_run_still_gets_a_report(fake_run, tmp_path):
    fake_run(tmp_path, ["regularizer=[]"], 0.5, status="failed")
    d = fake_run(tmp_path, ["regularizer=[dropout]"], 0.6, regularizer={"dropout": {}})
    (d / "result.json").unlink()  # its job made the folder and was stopped before saving anything
    from regbench.report import write_report

    written = write_report(tmp_path)
    text = written["markdown"].read_text()
    assert "0 of 2 runs completed" in text and "**pending** (its folder exists" in text and "**failed**" in text
    assert "No run has completed yet." in text and (tmp_path / "figures" / "learning_curves.png").exists()


def test_helpers():
    assert parse_selection("[dropout, weight_decay]") == ["dropout", "weight_decay"]
    assert parse_selection("none") == parse_selection("[]") == parse_selection("null") == []
    assert split_spec("regularizer=[a,b],dataset.label_noise=0 seed=1") == ["regularizer=[a,b]", "dataset.label_noise=0",
                                                                             "seed=1"]
    assert short_names(["dataset.label_noise", "regularizer.l2.strength", "regularizer.weight_decay.strength"]) == {
        "dataset.label_noise": "label_noise", "regularizer.l2.strength": "l2.strength",
        "regularizer.weight_decay.strength": "weight_decay.strength"}


def test_a_rerun_removes_the_figures_it_no_longer_draws(fake_run, tmp_path):
    from regbench.report import write_report

    fake_run(tmp_path, ["model.width=1"], 0.5)
    fake_run(tmp_path, ["model.width=2"], 0.6)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "mine.png").write_bytes(b"a user's file")
    write_report(tmp_path)
    assert (tmp_path / "figures" / "learning_curves.png").exists()
    for width in range(3, 9):  # eight configurations: a panel each instead of overlaid lines
        fake_run(tmp_path, [f"model.width={width}"], 0.6)
    write_report(tmp_path)
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert "learning_curves.png" not in names and "learning_curves.svg" not in names
    assert {"learning_curves_loss.png", "learning_curves_acc.svg", "mine.png"} <= names
