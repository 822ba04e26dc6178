"""Paired effects, Holm–Bonferroni and the minimum detectable effect, on hand-written sweeps of result.json files
checked against scipy on the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regbench.report import write_report
from regbench.report.effects import Effect, adjust, factorial, holm, versus_baseline
from regbench.report.study import Study
from regbench.report.tables import effects_table

BASE = [0.50, 0.55, 0.60, 0.52, 0.58]


def sweep(fake_run, root, arms: dict[str, dict[int, float]]) -> Study:
    """One run per (arm, seed) with that test_acc; arm "" is the baseline (no regularizer)."""
    for arm, by_seed in arms.items():
        regs = [r for r in arm.split(",") if r]
        for seed, acc in by_seed.items():
            fake_run(root, [f"regularizer=[{','.join(regs)}]"], acc, seed=seed, regularizer={r: {} for r in regs})
    return Study(root)


def by_name(effects: list[Effect]) -> dict[str, Effect]:
    return {e.name: e for e in effects}


def mde(se: float, df: float) -> float:
    """(t₀.₉₇₅,df + t₀.₈₀,df)·SE, written out."""
    return (stats.t.ppf(0.975, df) + stats.t.ppf(0.80, df)) * se


def test_matching_seeds_give_a_paired_t_interval_and_p(fake_run, tmp_path):
    drop = [0.53, 0.60, 0.61, 0.55, 0.60]
    study = sweep(fake_run, tmp_path, {"": dict(enumerate(BASE)), "dropout": dict(enumerate(drop))})
    (e,) = versus_baseline(study, "test_acc")
    d = np.array(drop) - np.array(BASE)
    ref = stats.ttest_1samp(d, 0.0)
    ci = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert e.test == "paired t" and e.family == "vs baseline" and e.n == "5 vs 5" and e.n_min == 5
    assert e.estimate == pytest.approx(d.mean())
    assert (e.low, e.high) == pytest.approx(ci)
    assert (e.low, e.high) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert e.p == pytest.approx(ref.pvalue) and e.df == len(d) - 1
    assert e.p_holm == pytest.approx(ref.pvalue)  # a family of one
    assert e.mde == pytest.approx(mde(stats.sem(d), len(d) - 1))
    # pairing matters here: the seeds' spread swamps Welch, not the paired test
    assert e.p < 0.05 < stats.ttest_ind(drop, BASE, equal_var=False).pvalue


def test_a_seed_missing_from_the_baseline_falls_back_to_welch(fake_run, tmp_path):
    drop = {0: 0.53, 1: 0.60, 2: 0.61, 7: 0.55}  # seed 7 never ran in the baseline
    study = sweep(fake_run, tmp_path, {"": dict(enumerate(BASE)), "dropout": drop})
    (e,) = versus_baseline(study, "test_acc")
    x = np.array(list(drop.values()))
    ref = stats.ttest_ind(x, BASE, equal_var=False)
    se = math.sqrt(x.var(ddof=1) / len(x) + np.var(BASE, ddof=1) / len(BASE))
    assert e.test == "Welch" and e.n == "4 vs 5" and e.n_min == 4
    assert e.estimate == pytest.approx(x.mean() - np.mean(BASE))
    assert (e.low, e.high) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert e.p == pytest.approx(ref.pvalue) and e.df == pytest.approx(ref.df)
    assert e.mde == pytest.approx(mde(se, ref.df))


def test_baseline_seeds_without_a_partner_are_left_out_of_the_pairs(fake_run, tmp_path):
    drop = {0: 0.53, 1: 0.60, 3: 0.55}
    study = sweep(fake_run, tmp_path, {"": dict(enumerate(BASE)), "dropout": drop})
    (e,) = versus_baseline(study, "test_acc")
    d = np.array([drop[s] - BASE[s] for s in drop])
    assert e.test == "paired t" and e.n == "3 vs 5" and e.n_min == 3
    assert e.estimate == pytest.approx(d.mean()) and e.p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    assert "paired on 3 seeds; baseline seeds 2, 4 left out" in e.note


def factorial_sweep(fake_run, root, missing: int | None = None) -> tuple[Study, dict]:
    """A 2×2 dropout × weight_decay design over seeds 0–3 (one seed of the dropout cell dropped with ``missing``)."""
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 0.05, 4)
    cells = {(dropout, wd): {s: 0.5 + 0.03 * dropout + 0.01 * wd - 0.02 * dropout * wd + seed_effect[s] + rng.normal(0, 0.005)
                             for s in range(4) if not (missing == s and (dropout, wd) == (1, 0))}
             for dropout in (0, 1) for wd in (0, 1)}
    arms = {",".join(n for n, on in (("dropout", dropout), ("weight_decay", wd)) if on): v for (dropout, wd), v in cells.items()}
    return sweep(fake_run, root, arms), cells


def test_factorial_effects_are_paired_when_every_cell_ran_the_same_seeds(fake_run, tmp_path):
    study, cells = factorial_sweep(fake_run, tmp_path)
    effects = by_name(factorial(study, "test_acc"))
    y = {k: np.array([v[s] for s in range(4)]) for k, v in cells.items()}
    per_seed = {"dropout": (y[1, 0] + y[1, 1] - y[0, 0] - y[0, 1]) / 2,
                "weight_decay": (y[0, 1] + y[1, 1] - y[0, 0] - y[1, 0]) / 2,
                "dropout × weight_decay": y[1, 1] - y[1, 0] - y[0, 1] + y[0, 0]}
    ps = []
    for name, d in per_seed.items():
        e, ref = effects[name], stats.ttest_1samp(d, 0.0)
        assert e.test == "paired t" and e.family == "factorial"
        assert e.estimate == pytest.approx(d.mean()) and e.p == pytest.approx(ref.pvalue)
        assert (e.low, e.high) == pytest.approx(tuple(ref.confidence_interval(0.95)))
        assert e.mde == pytest.approx(mde(stats.sem(d), 3))
        ps.append(ref.pvalue)
    assert [effects[n].p_holm for n in per_seed] == pytest.approx(holm(ps))


def test_factorial_effects_fall_back_to_welch_when_a_cell_misses_a_seed(fake_run, tmp_path):
    study, cells = factorial_sweep(fake_run, tmp_path, missing=2)
    effects = factorial(study, "test_acc")
    assert {e.test for e in effects} == {"Welch"}
    assert by_name(effects)["dropout"].n == "4, 3, 4, 4"


def test_holm_against_a_hand_checked_example():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1: 0.4·3 = 1.2 → 1, then 0.6·2 = 1.2 → 1, then 0.9 → 1 (never below the one before)
    assert holm([0.9, 0.4, 0.6]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_holm_leaves_effects_without_a_p_out_of_the_family():
    effects = [Effect("vs baseline", "a", 0.1, p=0.01), Effect("vs baseline", "b", 0.1), Effect("vs baseline", "c", 0.2, p=0.04)]
    adjust(effects, "vs baseline")
    assert [e.p_holm for e in effects] == pytest.approx([0.02, None, 0.04])
    assert {e.family for e in effects} == {"vs baseline"}


def test_the_marker_follows_the_holm_adjusted_p(fake_run, tmp_path):
    # per-seed differences with raw p ≈ 0.034 and ≈ 0.040: each interval excludes 0, neither survives Holm (×2)
    d_drop, d_wd = [0.03, 0.01, 0.025, 0.0, 0.02], [0.01, 0.02, 0.00, 0.015, 0.03]
    study = sweep(fake_run, tmp_path, {"": dict(enumerate(BASE)),
                                       "dropout": {s: b + d for s, (b, d) in enumerate(zip(BASE, d_drop))},
                                       "weight_decay": {s: b + d for s, (b, d) in enumerate(zip(BASE, d_wd))}})
    effects = versus_baseline(study, "test_acc")
    raw = [stats.ttest_1samp(d, 0.0).pvalue for d in (d_drop, d_wd)]
    assert [e.p for e in effects] == pytest.approx(raw) and max(raw) < 0.05
    assert all(e.low > 0 for e in effects)
    assert [e.p_holm for e in effects] == pytest.approx(holm(raw)) and min(holm(raw)) > 0.05
    numbers, text = effects_table(effects, "test_acc")
    assert not any("*" in str(v) for v in text.to_numpy().ravel())
    assert list(numbers["p_holm"]) == pytest.approx(holm(raw))

    # a strong effect beside a weak one (raw p ≈ 0.073): only the one significant after adjustment is marked
    d_weak = [0.02, 0.01, 0.03, -0.005, 0.015]
    strong = sweep(fake_run, tmp_path / "strong", {"": dict(enumerate(BASE)),
                                                   "dropout": {s: b + 0.1 + d for s, (b, d) in enumerate(zip(BASE, d_drop))},
                                                   "weight_decay": {s: b + d for s, (b, d) in enumerate(zip(BASE, d_weak))}})
    _, text = effects_table(versus_baseline(strong, "test_acc"), "test_acc")
    assert text["p (Holm)"].str.endswith(" *").tolist() == [True, False]


def test_too_few_seeds_are_flagged_and_mde_says_when_it_cannot_be_computed(fake_run, tmp_path):
    study = sweep(fake_run, tmp_path, {"": {0: 0.5, 1: 0.75}, "dropout": {0: 0.55, 1: 0.77},
                                       "weight_decay": {0: 0.7}, "dropout,weight_decay": {0: 0.625, 1: 0.875}})
    effects = by_name(versus_baseline(study, "test_acc"))
    two, one, flat = effects["+dropout"], effects["+weight_decay"], effects["+dropout, +weight_decay"]
    assert two.few_seeds and two.mde == pytest.approx(mde(stats.sem([0.05, 0.02]), 1))
    assert one.mde is None and one.p is None and "n=1" in one.note and "no p or MDE" in one.note
    assert flat.mde is None and flat.p is None and "no variation over seeds" in flat.note  # differences 0.125, 0.125

    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "2 vs 2 n&lt;3" in text and "**Warning: too few seeds.**" in text  # < as an entity: markdown renders it
    assert "_MDE_ (pp): minimum detectable effect" in text and "Holm–Bonferroni" in text
    html = (tmp_path / "report.html").read_text()
    assert '<p class="warning"><strong>Warning: too few seeds.</strong>' in html
    table = pd.read_csv(tmp_path / "tables" / "effects.csv")
    assert {"family", "test", "p", "p_holm", "mde", "n_min"} <= set(table.columns)
    vs = table[table["family"] == "vs baseline"]
    assert vs["mde"].isna().tolist() == [False, True, True] and vs["n_min"].tolist() == [2, 1, 2]
    assert set(table[table["family"] == "factorial"]["test"]) == {"Welch"}  # the weight_decay cell ran seed 0 only
    tex = (tmp_path / "tables" / "effects.tex").read_text()  # both families in one table: the family is a column
    assert "\\toprule\nfamily & effect &" in tex and "\nfactorial & dropout &" in tex


def test_enough_seeds_give_no_warning(fake_run, tmp_path):
    sweep(fake_run, tmp_path, {"": dict(enumerate(BASE)), "dropout": {s: b + 0.01 * s for s, b in enumerate(BASE)}})
    write_report(tmp_path, formats=("md",))
    text = (tmp_path / "report.md").read_text()
    assert "too few seeds" not in text and "n&lt;3" not in text
    assert "| paired t |" in text
