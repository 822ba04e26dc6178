"""Effects and their 95% intervals: paired by seed or Welch's t for two configurations, contrasts for factorial designs."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regbench.report.effects import contrast, holm


def test_two_configurations_give_welchs_interval():
    a, b = np.array([0.61, 0.64, 0.60, 0.66]), np.array([0.55, 0.58, 0.57])
    r = contrast([(a, 1.0), (b, -1.0)])
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert r["estimate"] == pytest.approx(a.mean() - b.mean())
    assert (r["low"], r["high"]) == pytest.approx((ci.low, ci.high))
    assert r["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue) and r["test"] == "Welch"


def test_one_seed_has_no_interval_and_says_so():
    r = contrast([(np.array([0.5]), 1.0), (np.array([0.4, 0.45]), -1.0)], ["dropout", "baseline"])
    assert r["estimate"] == pytest.approx(0.075)
    assert "low" not in r and "n=1" in r["note"] and "dropout" in r["note"]
    empty = contrast([(np.array([]), 1.0), (np.array([0.4, 0.45]), -1.0)], ["dropout", "baseline"])
    assert empty["estimate"] is None and "no completed run" in empty["note"]


def test_identical_seeds_give_a_zero_width_interval():
    r = contrast([(np.array([0.5, 0.5]), 1.0), (np.array([0.4, 0.4]), -1.0)])
    assert r["low"] == r["high"] == pytest.approx(0.1)


def _cells(runs):
    """{seed: test_acc} per (dropout, weight_decay) cell, from the result files."""
    cells = {}
    for run in runs:
        if run["result"]["status"] == "completed":
            regs = run["config"]["regularizer"] or {}
            cells.setdefault(("dropout" in regs, "weight_decay" in regs), {})[run["result"]["seed"]] = run["result"]["test_acc"]
    return cells


ARMS = (("+dropout", (True, False)), ("+weight_decay", (False, True)), ("+dropout, +weight_decay", (True, True)))


def test_effects_against_the_baseline_match_the_result_files(reports, sweep_runs):
    """Every arm ran the baseline's seeds: paired t on the per-seed differences."""
    sweep = reports["factorial"]
    cells = _cells(sweep_runs(sweep))
    effects = pd.read_csv(sweep / "tables" / "effects.csv")
    vs = effects[effects["kind"] == "vs baseline"].set_index("effect")
    base = cells[(False, False)]
    for name, key in ARMS:
        x = cells[key]
        assert set(x) == set(base) == {0, 1, 2}
        d = np.array([x[s] - base[s] for s in sorted(x)])
        ref = stats.ttest_1samp(d, 0.0)
        row = vs.loc[name]
        assert row["test"] == "paired t" and row["family"] == "vs baseline"
        assert row["estimate"] == pytest.approx(d.mean(), abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval(0.95)), abs=1e-9)
        if np.ptp(d) == 0:  # weight decay this short changes nothing: every seed gives the baseline's number
            assert math.isnan(row["p"]) and math.isnan(row["mde"]) and "no variation over seeds" in row["note"]
        else:
            assert row["p"] == pytest.approx(ref.pvalue)
        assert row["n"] == f"{len(x)} vs {len(base)}"
        assert row["mean"] == pytest.approx(statistics.fmean(x.values()))
    tested = vs[vs["p"].notna()]
    assert list(tested["p_holm"]) == pytest.approx(holm(list(tested["p"])))


def test_an_unfinished_sweep_falls_back_to_welch(reports, sweep_runs):
    """The unfinished copy lost seeds unevenly (baseline 0, 2; dropout 1, 2; both 0, 1): nothing pairs."""
    sweep = reports["unfinished"]
    cells = _cells(sweep_runs(sweep))
    effects = pd.read_csv(sweep / "tables" / "effects.csv")
    assert set(effects["test"]) == {"Welch"}
    vs = effects[effects["kind"] == "vs baseline"].set_index("effect")
    base = list(cells[(False, False)].values())
    for name, key in ARMS:
        x = list(cells[key].values())
        ref = stats.ttest_ind(x, base, equal_var=False)
        row = vs.loc[name]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval(0.95)), abs=1e-9)
        assert row["p"] == pytest.approx(ref.pvalue)
    text = (sweep / "report.md").read_text()
    assert "| Welch |" in text and "**Warning: too few seeds.**" in text


def test_factorial_main_effects_and_interaction(reports, sweep_runs):
    sweep = reports["factorial"]
    m = {k: statistics.fmean(v.values()) for k, v in _cells(sweep_runs(sweep)).items()}
    effects = pd.read_csv(sweep / "tables" / "effects.csv").set_index("effect")
    want = {
        "dropout": (m[True, False] + m[True, True]) / 2 - (m[False, False] + m[False, True]) / 2,
        "weight_decay": (m[False, True] + m[True, True]) / 2 - (m[False, False] + m[True, False]) / 2,
        "dropout × weight_decay": m[True, True] - m[True, False] - m[False, True] + m[False, False],
    }
    for name, value in want.items():
        row = effects.loc[name]
        assert row["kind"] == ("interaction" if "×" in name else "main effect")
        assert row["test"] == "paired t" and row["family"] == "factorial"  # every cell ran seeds 0, 1, 2
        assert row["estimate"] == pytest.approx(value, abs=1e-12)
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
        assert row["ci_high"] - row["estimate"] == pytest.approx(row["estimate"] - row["ci_low"])
    text = (sweep / "report.md").read_text()
    assert "2² factorial design: main effects and two-way interactions" in text


def test_corruption_grid_is_a_factorial_design_too(reports):
    effects = pd.read_csv(reports["corruption"] / "tables" / "effects.csv")
    assert set(effects["kind"]) == {"vs baseline", "main effect", "interaction"}
    assert "label_noise: 0 → 1 × input_corruption: none → gaussian" not in set(effects["effect"])
    assert "label_noise × input_corruption" in set(effects["effect"])


def test_single_seed_effects_have_no_interval(reports):
    sweep = reports["adam_l2_vs_adamw"]
    effects = pd.read_csv(sweep / "tables" / "effects.csv")
    assert len(effects) == 7 and effects["ci_low"].isna().all()
    assert effects["note"].str.contains("CI not available: n=1").all()
    assert not effects["estimate"].isna().any()
    assert "n/a" in (sweep / "report.md").read_text()


def test_no_completed_baseline_run_leaves_effects_empty_with_a_reason(reports):
    table = pd.read_csv(reports["width_init"] / "tables" / "ablation.csv")
    effects = pd.read_csv(reports["width_init"] / "tables" / "effects.csv")
    dead = table[table["n"] == 0]
    assert len(dead) == 2, "init_gain=1e30 diverges at both widths"
    assert (dead["note"] == "2 diverged").all()
    vs = effects[effects["kind"] == "vs baseline"]
    empty = vs["note"].fillna("").str.contains("no completed run")
    assert empty.sum() == len(dead) and vs[empty]["estimate"].isna().all()
    # a 2×2 design with two empty cells has no main effects either, and says so
    factorial = effects[effects["kind"] != "vs baseline"]
    assert len(factorial) == 3 and factorial["estimate"].isna().all()
