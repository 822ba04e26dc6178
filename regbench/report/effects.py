"""Effects of the factors on one metric, each with a 95% confidence interval over seeds.

Every effect here is a contrast Σ cᵢ·ȳᵢ of configuration means. Its interval uses Welch's t: the
variance Σ cᵢ²sᵢ²/nᵢ with the Welch–Satterthwaite degrees of freedom, which for two configurations
(c = +1, −1) is exactly Welch's two-sample interval. Seeds are not paired across configurations.

- Against the baseline: ȳ(configuration) − ȳ(baseline).
- 2^k factorial designs (every yes/no combination of k two-level factors present, k ≥ 2):
  the main effect of A is the mean over all configurations with A at its high level minus the mean
  with A low (the baseline's level is low); the interaction of A and B is the difference of
  differences [ȳ(A+B+) − ȳ(A−B+)] − [ȳ(A+B−) − ȳ(A−B−)], averaged over the other factors. It is 0
  when the two effects add up; negative when the pair does less than the sum of its parts.
  (Montgomery's textbook interaction is half of this difference.)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from regbench.report.study import NOT_APPLICABLE, Condition, Study

LEVEL = 0.95


@dataclass
class Effect:
    kind: str                  # "vs baseline" | "main effect" | "interaction"
    name: str                  # what changes: "+dropout", "label_noise=0.5", "dropout × weight_decay"
    estimate: float | None     # in the metric's units (fractions for accuracies)
    low: float | None = None
    high: float | None = None
    df: float | None = None
    n: str = ""                # seeds behind the estimate: "3 vs 3", or per configuration "2, 2, 3, 2"
    mean: float | None = None  # vs baseline: the configuration's own mean
    note: str = ""             # why a number is missing, in words

    @property
    def significant(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def contrast(groups: list[tuple[np.ndarray, float]], names: list[str] | None = None) -> dict:
    """Estimate and Welch 95% interval of Σ c·mean(x) over (x, c) pairs."""
    names = names or [str(i) for i in range(len(groups))]
    empty = [name for (x, _), name in zip(groups, names) if len(x) == 0]
    if empty:
        return {"estimate": None, "note": "no completed run of " + "; ".join(empty)}
    estimate = float(sum(c * x.mean() for x, c in groups))
    single = [name for (x, _), name in zip(groups, names) if len(x) < 2]
    if single:
        return {"estimate": estimate, "note": "CI not available: n=1 for " + "; ".join(single)}
    parts = [c * c * x.var(ddof=1) / len(x) for x, c in groups]
    variance = sum(parts)
    if variance == 0:
        return {"estimate": estimate, "low": estimate, "high": estimate, "df": math.inf,
                "note": "no variation over seeds"}
    df = variance ** 2 / sum(p * p / (len(x) - 1) for p, (x, _) in zip(parts, groups) if p > 0)
    from scipy import stats

    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * math.sqrt(variance)
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "df": float(df), "note": ""}


def versus_baseline(study: Study, metric: str) -> list[Effect]:
    """Each configuration against the baseline: difference of means with Welch's 95% CI."""
    base = study.baseline
    if base is None:
        return []
    b = base.values(metric)
    out = []
    for c in study.conditions:
        if c is base:
            continue
        x = c.values(metric)
        r = contrast([(x, 1.0), (b, -1.0)], [c.label, f"the baseline ({base.label})"])
        out.append(Effect("vs baseline", change(study, base, c), r["estimate"], r.get("low"), r.get("high"), r.get("df"),
                          n=f"{len(x)} vs {len(b)}", mean=float(x.mean()) if len(x) else None, note=r["note"]))
    return out


def change(study: Study, base: Condition, c: Condition) -> str:
    """How a configuration differs from the baseline: '+dropout', 'label_noise=0.5'."""
    parts = []
    for col, v in c.columns.items():
        was = base.columns[col]
        if v == was or v == NOT_APPLICABLE:
            continue
        if {v, was} == {"yes", "no"}:
            parts.append(("+" if v == "yes" else "−") + col)
        else:
            parts.append(f"{col}={v}")
    return ", ".join(parts) or c.label


def factorial_design(study: Study) -> dict[str, tuple[str, str]] | None:
    """{column: (low, high)} when the configurations form a full 2^k design with k ≥ 2, else None."""
    conds = study.conditions
    cols = study.columns
    if len(cols) < 2 or len(conds) != 2 ** len(cols):
        return None
    levels = {col: list(dict.fromkeys(c.columns[col] for c in conds)) for col in cols}
    if any(len(v) != 2 for v in levels.values()):
        return None
    if len({tuple(c.columns[col] for col in cols) for c in conds}) != len(conds):
        return None
    design = {}
    for col, (a, b) in levels.items():
        low = study.baseline.columns[col] if study.baseline else ("no" if "no" in (a, b) else a)
        design[col] = (low, b if low == a else a)
    return design


def factorial(study: Study, metric: str) -> list[Effect]:
    """Main effects and two-way interactions of a 2^k design (empty if the sweep is not one)."""
    design = factorial_design(study)
    if design is None:
        return []
    cols = list(design)
    k = len(cols)
    cells = [(c, {col: 1 if c.columns[col] == design[col][1] else -1 for col in cols}, c.values(metric))
             for c in study.conditions]
    names = [c.label for c, _, _ in cells]
    out = []
    for col in cols:
        r = contrast([(x, s[col] / 2 ** (k - 1)) for _, s, x in cells], names)
        low, high = design[col]
        name = col if {low, high} == {"yes", "no"} else f"{col}: {low} → {high}"
        out.append(_effect("main effect", name, r, cells))
    for a, b in itertools.combinations(cols, 2):
        r = contrast([(x, s[a] * s[b] / 2 ** (k - 2)) for _, s, x in cells], names)
        out.append(_effect("interaction", f"{a} × {b}", r, cells))
    return out


def _effect(kind: str, name: str, r: dict, cells) -> Effect:
    ns = [len(x) for _, _, x in cells]
    n = f"{ns[0]} each of {len(ns)}" if len(set(ns)) == 1 else ", ".join(map(str, ns))
    return Effect(kind, name, r["estimate"], r.get("low"), r.get("high"), r.get("df"), n=n, note=r["note"])


def unit(metric: str) -> tuple[float, str]:
    """Accuracies are shown in percent and their differences in percentage points."""
    return (100.0, "pp") if metric.endswith("_acc") or metric in ("gap", "acc", "accuracy") else (1.0, "")
