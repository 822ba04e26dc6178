"""The report's tables, each twice: numbers for CSV (fractions, full precision) and text for reading.

The ablation table follows Zhang et al. 2017, Table 1: a row per configuration, a column per factor
(yes/no for each regularizer), then train accuracy, test accuracy and the generalization gap, each
mean ± std over the completed seeds, with their number n.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from regbench.records import Status
from regbench.report.effects import FACTORIAL, FEW_SEEDS, Effect, unit
from regbench.report.study import FAILED, UNFINISHED, Study, format_number

TABLE_METRICS = ("train_acc", "test_acc", "gap")
TITLES = {"train_acc": "train acc (%)", "test_acc": "test acc (%)", "gap": "gap (pp)", "val_acc": "val acc (%)",
          "train_loss": "train loss", "val_loss": "val loss", "test_loss": "test loss"}


def ablation(study: Study, metric: str = "test_acc") -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics = [*TABLE_METRICS, *([metric] if metric not in TABLE_METRICS else [])]
    params = _params(study)
    numbers, text = [], []
    for c in study.conditions:
        num = study.columns_of(c.settings, exact=True)
        txt = dict(c.columns)
        if params:
            num["params"] = params.get(c.key)
            txt["params"] = f"{num['params']:,}" if num["params"] else "—"
        num["n"] = txt["n"] = c.n
        for m in metrics:
            mean, std = _stat(c, m)
            num[f"{m}_mean"], num[f"{m}_std"] = mean, std
            txt[TITLES.get(m, m)] = mean_std(mean, std, c.n, unit(m)[0])
        num["note"] = txt["note"] = note(study, c)
        numbers.append(num)
        text.append(txt)
    return pd.DataFrame(numbers), pd.DataFrame(text)


def _stat(c, metric: str) -> tuple[float, float]:
    if c.n == 0 or f"{metric}_mean" not in c.stats:
        return math.nan, math.nan
    mean = float(c.stats[f"{metric}_mean"])
    return mean, float(c.stats[f"{metric}_std"]) if c.n > 1 else math.nan  # no spread from one seed


def _params(study: Study) -> dict:
    """Parameter counts per configuration, only when they differ (a width or model sweep)."""
    counts = {}
    for c in study.conditions:
        found = {getattr(study.results.get(d), "num_params", None) for d in c.runs["run_dir"]} - {None}
        counts[c.key] = min(found) if found else None
    return counts if len(set(counts.values()) - {None}) > 1 else {}


def note(study: Study, c) -> str:
    parts = ["baseline"] if c is study.baseline else []
    counts = c.runs["status"].value_counts()
    for status in (*FAILED, *UNFINISHED, Status.STOPPED):
        if counts.get(status):
            parts.append(f"{counts[status]} {status}")
    return ", ".join(parts)


def mean_std(mean: float, std: float, n: int, scale: float = 1.0, digits: int = 2) -> str:
    if n == 0 or mean is None or not math.isfinite(mean):
        return "—"
    if n < 2 or std is None or not math.isfinite(std):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def effects_table(effects: list[Effect], metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Effects as numbers (CSV: fractions, full precision) and as text: Δ with its 95% CI, p, Holm-adjusted p
    (* when < 0.05), MDE, the test used and n (marked n<3 when too few seeds); the Holm family too when the
    effects come from more than one."""
    scale, u = unit(metric)
    numbers = pd.DataFrame([{"kind": e.kind, "family": e.family, "effect": e.name, "test": e.test, "n": e.n,
                             "n_min": e.n_min, "estimate": e.estimate, "ci_low": e.low, "ci_high": e.high, "df": e.df,
                             "p": e.p, "p_holm": e.p_holm, "mde": e.mde, "mean": e.mean, "note": e.note}
                            for e in effects])
    units = f" ({u})" if u else ""
    mixed = len({e.family for e in effects}) > 1  # one table of several families (the LaTeX file): say which
    text = []
    for e in effects:
        row = {"family": e.family, "effect": e.name} if mixed else {"effect": e.name}
        if e.kind == "vs baseline":
            row[f"{TITLES.get(metric, metric)}"] = "—" if e.mean is None else f"{e.mean * scale:.2f}"
        row[f"Δ {metric}{units}"] = "—" if e.estimate is None else f"{e.estimate * scale:+.2f}"
        row["95% CI"] = "n/a" if e.low is None else f"[{e.low * scale:+.2f}, {e.high * scale:+.2f}]"
        row["p"] = p_value(e.p)
        row["p (Holm)"] = p_value(e.p_holm) + (" *" if e.significant else "")
        row[f"MDE{units}"] = "n/a" if e.mde is None else f"{e.mde * scale:.2f}"
        row["test"] = e.test if e.estimate is not None else "—"
        row["n"] = e.n + (f" n<{FEW_SEEDS}" if e.few_seeds else "")
        row["note"] = e.note
        text.append(row)
    return numbers, pd.DataFrame(text)


def p_value(p: float | None) -> str:
    """0.0123 → 0.012; below 0.001 in scientific notation (3.2e-05); n/a when there is no test."""
    return "n/a" if p is None else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def effects_legend(effects: list[Effect], metric: str) -> str:
    """The sentence under an effects table: which test, the Holm family, what the MDE is."""
    _, u = unit(metric)
    factorial = bool(effects) and effects[0].family == FACTORIAL
    when = "every cell ran the same seeds" if factorial else "every seed of the configuration also ran in the baseline"
    values = "per-seed contrasts" if factorial else "per-seed differences"
    family = "main effects and interactions" if factorial else "comparisons against the baseline"
    return (f"_test_: **paired t** when {when} (same seed = same initialization and data order): "
            f"mean ± t₀.₉₇₅,ₙ₋₁·sd/√n of the {values}, p from their one-sample t test; **Welch** otherwise. "
            f"_p (Holm)_: Holm–Bonferroni over one family, this table's {len(effects)} {family}; "
            "* marks p (Holm) < 0.05. "
            f"_MDE_{f' ({u})' if u else ''}: minimum detectable effect at the two-sided 5% level with 80% power, "
            "(t₀.₉₇₅,df + t₀.₈₀,df)·SE from n and the observed spread (the test's SE and df); "
            "n/a with one seed or no spread.")


def few_seeds_warning(effects: list[Effect]) -> str | None:
    """A warning sentence when some effect rests on fewer than FEW_SEEDS seeds, else None."""
    few = [e.name for e in effects if e.few_seeds]
    if not few:
        return None
    return (f"**Warning: too few seeds.** Effects marked n<{FEW_SEEDS} ({len(few)} of {len(effects)}) rest on fewer "
            f"than {FEW_SEEDS} seeds in some configuration: their intervals are wide, their MDE large or n/a, and a "
            "missing * says little. Run more seeds (e.g. `seed=0,1,2,3,4`) before drawing conclusions.")


def fit_table(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time to fit the training set per configuration (the run table's epochs_to_fit / steps_to_fit: the
    first epoch whose training accuracy reached FIT_ACC): how many seeds fit, after how many epochs and steps."""
    numbers, text = [], []
    for c in study.conditions:
        done = c.runs[c.runs["status"] == Status.COMPLETED]
        epochs = _finite(done, "epochs_to_fit")
        steps = _finite(done, "steps_to_fit")
        n, fitted = len(done), len(epochs)
        num = {**study.columns_of(c.settings, exact=True), "n": n, "fitted": fitted,
               "epochs_to_fit_mean": epochs.mean() if fitted else math.nan,
               "epochs_to_fit_std": epochs.std(ddof=1) if fitted > 1 else math.nan,
               "steps_to_fit_mean": steps.mean() if len(steps) else math.nan,
               "steps_to_fit_std": steps.std(ddof=1) if len(steps) > 1 else math.nan}
        numbers.append(num)
        text.append({**c.columns, "fitted": "—" if not n else f"{fitted} of {n}" if fitted else f"not fitted (0 of {n})",
                     "epochs to fit": mean_std(num["epochs_to_fit_mean"], num["epochs_to_fit_std"], fitted, 1, 1),
                     "steps to fit": mean_std(num["steps_to_fit_mean"], num["steps_to_fit_std"], len(steps), 1, 0)})
    return pd.DataFrame(numbers), pd.DataFrame(text)


def _finite(runs: pd.DataFrame, column: str) -> np.ndarray:
    if column not in runs:
        return np.array([])
    x = pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float)
    return x[np.isfinite(x)]


def tuning_table(study: Study, tuned: dict, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tuned protocol's choice per arm (``tuned.json`` beside the final dir): the chosen values, their
    validation score over the tuning seeds, the budget, and the final ``metric`` over the study's seeds."""
    from regbench.sweep.results import _overrides_dict, read_overrides

    scale, _ = unit(metric)
    budget = f"{tuned['budget']} × {len(tuned['tuning_seeds'])} seeds"
    numbers, text = [], []
    for arm in tuned["arms"]:
        wanted = _overrides_dict(arm["overrides"])
        mine = [c for c in study.conditions
                if any(wanted.items() <= read_overrides(study.sweep_dir / d).items() for d in c.runs["run_dir"])]
        final = mine[0].values(metric) if mine else np.array([])
        chosen = ", ".join(f"{k}={format_number(v)}" for k, v in arm["chosen"].items())
        score = arm.get(tuned["metric"])
        numbers.append({**arm["arm"], **{f"chosen {k}": v for k, v in arm["chosen"].items()},
                        f"tuning {tuned['metric']}": score, "budget": tuned["budget"],
                        "tuning_seeds": len(tuned["tuning_seeds"]), "n": len(final),
                        f"{metric}_mean": final.mean() if len(final) else math.nan,
                        f"{metric}_std": final.std(ddof=1) if len(final) > 1 else math.nan})
        text.append({"arm": mine[0].label if mine else ", ".join(f"{k}={v}" for k, v in arm["arm"].items()),
                     "chosen": chosen, f"tuning {tuned['metric']}": "—" if score is None else f"{score * scale:.2f}",
                     "budget": budget,
                     metric: mean_std(numbers[-1][f"{metric}_mean"], numbers[-1][f"{metric}_std"], len(final), scale),
                     "n": len(final)})
    return pd.DataFrame(numbers), pd.DataFrame(text)


# ---- writers
def markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(empty)_\n"
    df = df.fillna("")
    cols = [str(c) for c in df.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |",
             "|" + "|".join("---:" if _numeric_column(df[c]) else "---" for c in df.columns) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def latex(df: pd.DataFrame, caption: str = "") -> str:
    """A booktabs ``tabular`` (``\\usepackage{booktabs}``), ready to ``\\input``."""
    df = df.fillna("")
    align = "".join("r" if _numeric_column(df[c]) else "l" for c in df.columns)
    lines = [f"% {caption}" if caption else "% regbench report", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
             " & ".join(_tex(c) for c in df.columns) + " \\\\", "\\midrule"]
    lines += [" & ".join(_tex(v) for v in row) + " \\\\" for row in df.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def _tex(value) -> str:
    text = str(value)
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("$", "\\$"), ("#", "\\#"), ("_", "\\_"),
                 ("{", "\\{"), ("}", "\\}"), ("~", "\\textasciitilde{}"), ("^", "\\^{}")):
        text = text.replace(a, b)
    for a, b in (("±", "$\\pm$"), ("—", "--"), ("Δ", "$\\Delta$"), ("×", "$\\times$"), ("→", "$\\to$"),
                 ("−", "$-$")):
        text = text.replace(a, b)
    return text


def _numeric_column(col: pd.Series) -> bool:
    text = col.astype(str).str.replace(r"[±\s\[\],+−—%.\-–eE]|n/a", "", regex=True)
    return bool(len(col)) and text.str.fullmatch(r"\d*").all() and col.astype(str).str.contains(r"\d").any()
