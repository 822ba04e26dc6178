"""The ablation table against the result files it came from: mean, std and n per configuration."""

from __future__ import annotations

import csv
import math
import re
import shutil
import statistics

import pandas as pd
import pytest

METRICS = ("train_acc", "test_acc", "gap")


def _optimizer(cfg) -> str:
    return cfg["optimizer"]["_target_"].rsplit(".", 1)[1].lower()  # torch.optim.AdamW → adamw


def _strength(cfg) -> float:
    (reg,) = cfg["regularizer"].values()
    return float(reg["strength"])


# How each sweep's configurations are told apart: from a run's own config.yaml, and from a row of the table.
KEYS = {
    "factorial": (lambda cfg: tuple("yes" if r in (cfg["regularizer"] or {}) else "no" for r in ("dropout", "weight_decay")),
                  lambda row: (row["dropout"], row["weight_decay"])),
    "unfinished": (lambda cfg: tuple("yes" if r in (cfg["regularizer"] or {}) else "no" for r in ("dropout", "weight_decay")),
                   lambda row: (row["dropout"], row["weight_decay"])),
    "corruption": (lambda cfg: (float(cfg["dataset"]["label_noise"]), cfg["dataset"]["input_corruption"]),
                   lambda row: (float(row["label_noise"]), row["input_corruption"])),
    "width_init": (lambda cfg: (int(cfg["model"]["width"]), float(cfg["model"]["init_gain"])),
                   lambda row: (int(row["width"]), float(row["init_gain"]))),
    "adam_l2_vs_adamw": (lambda cfg: (_optimizer(cfg), *cfg["regularizer"], _strength(cfg), float(cfg["optimizer"]["lr"])),
                         lambda row: (row["optimizer"], "l2" if row["l2"] == "yes" else "weight_decay",
                                      float(row["l2.strength"] if row["l2"] == "yes" else row["weight_decay.strength"]),
                                      float(row["lr"]))),
}


def expected(runs: list[dict], key) -> dict:
    """mean, std (n − 1) and n of each metric per configuration, from the completed runs' result.json."""
    groups: dict = {}
    for run in runs:
        if run["result"]["status"] == "completed":
            groups.setdefault(key(run["config"]), []).append(run["result"])
    out = {}
    for k, results in groups.items():
        out[k] = {"n": len(results)}
        for m in METRICS:
            xs = [r["train_acc"] - r["test_acc"] if m == "gap" else r[m] for r in results]
            out[k][m] = (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else math.nan)
    return out


@pytest.mark.parametrize("name", list(KEYS))
def test_ablation_numbers_match_the_result_files(reports, sweep_runs, name):
    sweep = reports[name]
    runs = sweep_runs(sweep)
    config_key, row_key = KEYS[name]
    want = expected(runs, config_key)
    table = pd.read_csv(sweep / "tables" / "ablation.csv", keep_default_na=False, na_values=[""])
    seen = set()
    for _, row in table.iterrows():
        key = row_key(row)
        seen.add(key)
        if row["n"] == 0:  # every seed of it diverged or failed: a row saying so, no numbers
            assert key not in want and all(math.isnan(row[f"{m}_mean"]) for m in METRICS)
            assert row["note"], "a configuration without completed runs must say why"
            continue
        w = want[key]
        assert row["n"] == w["n"], key
        for m in METRICS:
            mean, std = w[m]
            assert row[f"{m}_mean"] == pytest.approx(mean, abs=1e-12), (key, m)
            if w["n"] > 1:
                assert row[f"{m}_std"] == pytest.approx(std, abs=1e-12), (key, m)
            else:
                assert math.isnan(row[f"{m}_std"]), "one seed has no std"
    assert seen >= set(want), "every configuration with a completed run has a row"


def test_markdown_table_shows_the_same_numbers_in_percent(reports, sweep_runs):
    sweep = reports["factorial"]
    config_key, _ = KEYS["factorial"]
    want = expected(sweep_runs(sweep), config_key)
    text = (sweep / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| dropout | weight_decay |"))
    assert header.split("|")[3:7] == [" n ", " train acc (%) ", " test acc (%) ", " gap (pp) "]
    for (dropout, wd), w in want.items():
        cells = [f"{100 * w[m][0]:.2f} ± {100 * w[m][1]:.2f}" for m in METRICS]
        assert f"| {dropout} | {wd} | {w['n']} | " + " | ".join(cells) + " |" in text


def test_regularizers_get_one_yes_no_column_each_in_zhang_order(reports):
    table = pd.read_csv(reports["factorial"] / "tables" / "ablation.csv", keep_default_na=False)
    assert list(table.columns[:3]) == ["dropout", "weight_decay", "n"]
    assert list(zip(table["dropout"], table["weight_decay"])) == [("no", "no"), ("yes", "no"), ("no", "yes"), ("yes", "yes")]
    assert table["note"][0] == "baseline"


@pytest.mark.parametrize("name", ["factorial", "corruption", "adam_l2_vs_adamw"])
def test_csv_and_latex_tables_parse(reports, name):
    tables = reports[name] / "tables"
    for stem in ("ablation", "effects"):
        with open(tables / f"{stem}.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert len(rows) > 1 and all(len(r) == len(rows[0]) for r in rows)
        tex = (tables / f"{stem}.tex").read_text()
        body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0].strip().splitlines()
        head = tex.split("\\toprule\n", 1)[1].split("\\midrule", 1)[0].strip()
        align = re.search(r"\\begin\{tabular\}\{([lr]+)\}", tex).group(1)
        assert len(body) == len(rows) - 1
        for line in [head, *body]:
            assert line.endswith("\\\\")
            assert _unescaped_ampersands(line) == len(align) - 1, line
        assert tex.count("{") - tex.count("\\{") == tex.count("}") - tex.count("\\}")
        assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    if name == "corruption":
        assert (tables / "time_to_fit.csv").exists() and (tables / "time_to_fit.tex").exists()


def _unescaped_ampersands(line: str) -> int:
    return len(re.findall(r"(?<!\\)&", line))


def test_metric_option_adds_its_column_and_drives_the_effects(reports, tmp_path):
    from regbench.report import write_report

    sweep = tmp_path / "sweep"
    shutil.copytree(reports["corruption"], sweep)
    write_report(sweep, metric="val_loss", formats=("md",))
    table = pd.read_csv(sweep / "tables" / "ablation.csv")
    assert "val_loss_mean" in table and "val_loss_std" in table
    effects = pd.read_csv(sweep / "tables" / "effects.csv")
    base = table[table["note"].astype(str).str.startswith("baseline")].iloc[0]
    for _, e in effects[effects["kind"] == "vs baseline"].iterrows():
        assert not math.isnan(e["estimate"])
    assert "## Effects on val_loss" in (sweep / "report.md").read_text()
    assert base["label_noise"] == 0 and base["input_corruption"] == "none"
