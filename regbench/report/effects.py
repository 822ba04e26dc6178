"""Effects of the factors on one metric, each with a 95% confidence interval over seeds, a p value
adjusted for the other comparisons of its table, and the smallest effect the seeds could have detected.

Every effect here is a contrast Σ cᵢ·ȳᵢ of configuration means.

- Against the baseline: ȳ(configuration) − ȳ(baseline).
- 2^k factorial designs (every yes/no combination of k two-level factors present, k ≥ 2):
  the main effect of A is the mean over all configurations with A at its high level minus the mean
  with A low (the baseline's level is low); the interaction of A and B is the difference of
  differences [ȳ(A+B+) − ȳ(A−B+)] − [ȳ(A+B−) − ȳ(A−B−)], averaged over the other factors. It is 0
  when the two effects add up; negative when the pair does less than the sum of its parts.
  (Montgomery's textbook interaction is half of this difference.)

Which test (the ``test`` of each effect):

- **paired t**: the same seed gives the same initial weights and data order in every configuration, so
  when the seeds line up — every seed of a configuration also ran in the baseline; for factorial effects,
  every cell ran the same seeds — the contrast is taken seed by seed, dₛ = Σ cᵢ·yᵢ(s), and the interval
  is mean(d) ± t₀.₉₇₅,ₙ₋₁·sd(d)/√n with p from the one-sample t test of mean(d) = 0. Baseline seeds
  without a partner are left out (the note says which).
- **Welch** otherwise: the variance Σ cᵢ²sᵢ²/nᵢ with the Welch–Satterthwaite degrees of freedom, which
  for two configurations (c = +1, −1) is exactly Welch's two-sample interval and t test.

Multiple comparisons: the p values of one table are a family — the configurations against the baseline
one, the main effects and interactions of a factorial design another — and each gets its Holm–Bonferroni
adjusted p (:func:`holm`); an effect is significant when its adjusted p < 0.05.

Too few seeds: the minimum detectable effect (MDE) is the smallest true effect the same test would find
at the two-sided 5% level with 80% power, given n and the observed spread:
(t₀.₉₇₅,df + t₀.₈₀,df)·SE, with the paired or Welch standard error and degrees of freedom. It needs
two seeds and some spread; an effect resting on fewer than :data:`FEW_SEEDS` seeds is flagged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from regbench.report.study import NOT_APPLICABLE, Condition, Study

LEVEL = 0.95
ALPHA = 0.05  # two-sided significance level, applied to the Holm-adjusted p
POWER = 0.80  # of the minimum detectable effect
FEW_SEEDS = 3  # fewer seeds than this behind an effect: flagged in the tables
PAIRED, WELCH = "paired t", "Welch"
#: Spreads and estimates below this fraction of the values' size are rounding error, i.e. 0 (a regularizer that
#: changes nothing gives the same numbers seed by seed, but a contrast of them need not add up to exactly 0).
ROUNDING = 1e-12
#: The families of the Holm adjustment: one per table.
VS_BASELINE, FACTORIAL = "vs baseline", "factorial"


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
    test: str = ""             # PAIRED | WELCH
    p: float | None = None     # two-sided, of the hypothesis that the effect is 0
    p_holm: float | None = None  # p adjusted by Holm–Bonferroni over the effects of the same family
    family: str = ""           # VS_BASELINE | FACTORIAL: the comparisons p_holm is adjusted over
    mde: float | None = None   # minimum detectable effect (α = 0.05 two-sided, 80% power), metric's units
    n_min: int = 0             # the fewest seeds behind it: pairs (paired), else the smallest configuration

    @property
    def significant(self) -> bool:
        """The Holm-adjusted p is below 0.05 (the raw p or the interval alone do not decide)."""
        return self.p_holm is not None and self.p_holm < ALPHA

    @property
    def few_seeds(self) -> bool:
        """An estimate resting on fewer than :data:`FEW_SEEDS` seeds in some configuration."""
        return self.estimate is not None and self.n_min < FEW_SEEDS


def contrast(groups: list[tuple[np.ndarray, float]], names: list[str] | None = None) -> dict:
    """Estimate of Σ c·mean(x) over (x, c) pairs, with Welch's 95% interval, p and MDE."""
    names = names or [str(i) for i in range(len(groups))]
    empty = [name for (x, _), name in zip(groups, names) if len(x) == 0]
    if empty:
        return {"estimate": None, "test": WELCH, "n_min": 0, "note": "no completed run of " + "; ".join(empty)}
    estimate = float(sum(c * x.mean() for x, c in groups))
    n_min = min(len(x) for x, _ in groups)
    single = [name for (x, _), name in zip(groups, names) if len(x) < 2]
    if single:
        return {"estimate": estimate, "test": WELCH, "n_min": n_min, "note": _one_seed("; ".join(single))}
    parts = [c * c * x.var(ddof=1) / len(x) for x, c in groups]
    variance = sum(parts)
    noise = ROUNDING * sum(abs(c) * np.abs(x).max() for x, c in groups)
    df = variance ** 2 / sum(p * p / (len(x) - 1) for p, (x, _) in zip(parts, groups) if p > 0) if variance > noise ** 2 else math.inf
    return {**t_inference(estimate, math.sqrt(variance), df, noise), "test": WELCH, "n_min": n_min}


def paired_contrast(groups: list[tuple[dict[str, float], float]], seeds: list[str]) -> dict:
    """Σ c·y(seed) for each seed of ``seeds`` (in every group's {seed: value}), then a one-sample t test
    of its mean: the 95% interval mean ± t·sd/√n, p and MDE on n − 1 degrees of freedom."""
    d = np.array([sum(c * y[s] for y, c in groups) for s in seeds])
    estimate = float(d.mean())
    if len(d) < 2:
        return {"estimate": estimate, "test": PAIRED, "n_min": len(d), "note": _one_seed("the one seed they share (paired)")}
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    noise = ROUNDING * sum(abs(c) * max(abs(y[s]) for s in seeds) for y, c in groups)
    return {**t_inference(estimate, se, len(d) - 1, noise), "test": PAIRED, "n_min": len(d)}


def _one_seed(where: str) -> str:
    return f"CI not available: n=1 for {where}; no p or MDE either"


def t_inference(estimate: float, se: float, df: float, noise: float = 0.0) -> dict:
    """The 95% interval, the two-sided p (H₀: the effect is 0) and the minimum detectable effect
    (t₀.₉₇₅,df + t₀.₈₀,df)·se of an estimate with standard error ``se`` on ``df`` degrees of freedom.
    An estimate or a standard error no larger than ``noise`` (rounding error) is 0."""
    estimate = 0.0 if abs(estimate) <= noise else estimate
    if se <= noise:
        return {"estimate": estimate, "low": estimate, "high": estimate, "df": float(df),
                "note": "no variation over seeds: zero-width interval, no p or MDE"}
    from scipy import stats

    q = float(stats.t.ppf(0.5 + LEVEL / 2, df))
    return {"estimate": estimate, "low": estimate - q * se, "high": estimate + q * se, "df": float(df),
            "p": float(2 * stats.t.sf(abs(estimate) / se, df)), "mde": (q + float(stats.t.ppf(POWER, df))) * se,
            "note": ""}


def holm(p: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p values, in the order given: the i-th smallest of m is multiplied by
    m − i + 1 (i from 1), never below the adjusted p of a smaller one, capped at 1."""
    adjusted, running = [1.0] * len(p), 0.0
    for rank, i in enumerate(sorted(range(len(p)), key=lambda i: p[i])):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def adjust(effects: list[Effect], family: str) -> list[Effect]:
    """Name the effects one family and give each that has a p its Holm-adjusted p over the family."""
    tested = [e for e in effects if e.p is not None]
    for e, q in zip(tested, holm([e.p for e in tested])):
        e.p_holm = q
    for e in effects:
        e.family = family
    return effects


def partners(seeds: list[str | None], base_seeds: list[str | None]) -> list[str] | None:
    """The configuration's seeds when every one has a partner with the same seed in the baseline, else None
    (also None when a seed is unknown or appears twice in a configuration: nothing to pair by)."""
    if not seeds or not _distinct(seeds) or not _distinct(base_seeds) or not set(seeds) <= set(base_seeds):
        return None
    return list(seeds)


def common_seeds(seed_lists: list[list[str | None]]) -> list[str] | None:
    """The seeds when every configuration ran exactly the same ones (each once), else None."""
    first = seed_lists[0] if seed_lists else []
    if not first or not all(_distinct(s) and set(s) == set(first) for s in seed_lists):
        return None
    return list(first)


def _distinct(seeds: list[str | None]) -> bool:
    return None not in seeds and len(set(seeds)) == len(seeds)


def compare(groups: list[tuple[list, np.ndarray, float]], names: list[str], pairs: list[str] | None) -> dict:
    """Σ c·x over (seeds, x, c) groups: paired over the seeds ``pairs`` when given, else Welch."""
    if pairs:
        return paired_contrast([(dict(zip(seeds, x)), c) for seeds, x, c in groups], pairs)
    return contrast([(x, c) for _, x, c in groups], names)


def versus_baseline(study: Study, metric: str) -> list[Effect]:
    """Each configuration against the baseline: difference of means with a paired or Welch 95% CI,
    p values Holm-adjusted over these comparisons."""
    base = study.baseline
    if base is None:
        return []
    b_seeds, b = base.seeded(metric)
    out = []
    for c in study.conditions:
        if c is base:
            continue
        seeds, x = c.seeded(metric)
        pairs = partners(seeds, b_seeds)
        r = compare([(seeds, x, 1.0), (b_seeds, b, -1.0)], [c.label, f"the baseline ({base.label})"], pairs)
        if pairs and len(pairs) < len(b):
            r["note"] = "; ".join(filter(None, [r["note"], _unpaired(b_seeds, pairs)]))
        out.append(Effect("vs baseline", change(study, base, c), n=f"{len(x)} vs {len(b)}",
                          mean=float(x.mean()) if len(x) else None, **r))
    return adjust(out, VS_BASELINE)


def _unpaired(base_seeds: list[str], pairs: list[str]) -> str:
    left = [s for s in base_seeds if s not in set(pairs)]
    plural = lambda k: "s" if k > 1 else ""  # noqa: E731
    return f"paired on {len(pairs)} seed{plural(len(pairs))}; baseline seed{plural(len(left))} {', '.join(left)} left out"


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
    """Main effects and two-way interactions of a 2^k design (empty if the sweep is not one), paired when
    every cell ran the same seeds, p values Holm-adjusted over these effects."""
    design = factorial_design(study)
    if design is None:
        return []
    cols = list(design)
    k = len(cols)
    cells = [({col: 1 if c.columns[col] == design[col][1] else -1 for col in cols}, *c.seeded(metric))
             for c in study.conditions]
    names = [c.label for c in study.conditions]
    pairs = common_seeds([seeds for _, seeds, _ in cells])
    ns = [len(x) for _, _, x in cells]
    n = f"{ns[0]} each of {len(ns)}" if len(set(ns)) == 1 else ", ".join(map(str, ns))

    def effect(kind: str, name: str, weight) -> Effect:
        r = compare([(seeds, x, weight(signs)) for signs, seeds, x in cells], names, pairs)
        return Effect(kind, name, n=n, **r)

    out = []
    for col in cols:
        low, high = design[col]
        name = col if {low, high} == {"yes", "no"} else f"{col}: {low} → {high}"
        out.append(effect("main effect", name, lambda s, col=col: s[col] / 2 ** (k - 1)))
    for a, b in itertools.combinations(cols, 2):
        out.append(effect("interaction", f"{a} × {b}", lambda s, a=a, b=b: s[a] * s[b] / 2 ** (k - 2)))
    return adjust(out, FACTORIAL)


def unit(metric: str) -> tuple[float, str]:
    """Accuracies are shown in percent and their differences in percentage points."""
    return (100.0, "pp") if metric.endswith("_acc") or metric in ("gap", "acc", "accuracy") else (1.0, "")
