"""The report's figures, drawn with matplotlib (Agg) and saved as PNG and SVG in ``<sweep>/figures/``.

Always: learning curves (mean over seeds with a ±std band) and the effects with their intervals.
When the sweep has the factors for them, the figures of the studies regbench embeds:
  - ``dataset.input_corruption`` or random labels: training loss against steps per condition
    (Zhang et al. 2017, Fig. 1a);
  - ``dataset.label_noise``: test error and time to fit against label corruption (Fig. 1b, 1c);
  - ``model.width`` / ``model.widen_factor``: train and test error against width (double descent);
  - a ``strength`` / ``*.strength`` factor (λ) with the optimizer, the regularizer or ``optimizer.lr``: a heatmap
    per method over λ (and lr), e.g. Adam + L2 against AdamW (Loshchilov & Hutter 2019, Fig. 2);
  - ``model.init_gain``: final loss against the init scale, diverged runs marked;
  - a random (Optuna) search: the metric against each sampled hyperparameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from regbench.records import Status
from regbench.report.effects import Effect, unit
from regbench.report.study import Condition, Study, as_number
from regbench.sweep.results import FIT_ACC

MAX_OVERLAID = 6   # more configurations than this get one panel each
MAX_LINES = 8      # study figures draw at most this many lines; the rest of the sweep is held at the baseline
MAX_CURVE_PANELS = 12
CORRUPTION_NAMES = {"none": "", "shuffled_pixels": "shuffled pixels", "random_pixels": "random pixels",
                    "gaussian": "Gaussian", "shuffled": "shuffled pixels", "random": "random pixels"}
WIDTH_KEYS = ("model.width", "model.widen_factor")
LR_KEY = "optimizer.lr"


@dataclass
class Figure:
    name: str      # file stem in figures/
    title: str
    caption: str
    png: Path
    svg: Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 9, "legend.fontsize": 8,
                         "svg.hashsalt": "regbench", "svg.fonttype": "none"})
    return plt


def _save(fig, out: Path, name: str, title: str, caption: str) -> Figure:
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    return Figure(name, title, caption, png, svg)


def _colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)


# ---- aggregation over seeds
def curve(study: Study, c: Condition, x: str, y: str) -> pd.DataFrame:
    """Mean, std and count of ``y`` per value of ``x`` over the completed runs of a configuration."""
    frames = []
    for d in c.runs.loc[c.runs["status"] == Status.COMPLETED, "run_dir"]:
        h = study.history(d)
        if not h.empty and x in h and y in h:
            frames.append(h[[x, y]])
    if not frames:
        return pd.DataFrame(columns=[x, "mean", "std", "count"])
    g = pd.concat(frames).dropna().groupby(x)[y]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "count": g.count()}).reset_index()


def _band(ax, frame: pd.DataFrame, x: str, color, label: str | None, style: str = "-") -> None:
    if frame.empty:
        return
    ax.plot(frame[x], frame["mean"], style, color=color, label=label, lw=1.5)
    ok = frame["count"] >= 2
    if ok.any():
        f = frame[ok]
        ax.fill_between(f[x], f["mean"] - f["std"], f["mean"] + f["std"], color=color, alpha=0.18, lw=0)


# ---- always
def learning_curves(study: Study, out: Path) -> list[Figure]:
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    conds = [c for c in study.conditions if c.n > 0]
    panels = [("train_loss", "train loss"), ("val_loss", "validation loss"), ("train_acc", "train accuracy"),
              ("val_acc", "validation accuracy")]
    if not conds:
        fig, ax = plt.subplots(figsize=(5, 2))
        _empty(ax, "no completed run yet")
        ax.set_axis_off()
        return [_save(fig, out, "learning_curves", "Learning curves", "No run has completed yet.")]
    colors = _colors(len(conds))
    band = "mean over seeds, band ±1 std where n ≥ 2"
    if len(conds) <= MAX_OVERLAID:
        fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
        for ax, (metric, title) in zip(axes.flat, panels):
            for c, color in zip(conds, colors):
                _band(ax, curve(study, c, "epoch", metric), "epoch", color, f"{c.label} (n={c.n})")
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.flat[0].legend(loc="best")
        fig.tight_layout()
        return [_save(fig, out, "learning_curves", "Learning curves",
                      f"Train and validation loss and accuracy per epoch (train: at the runs' train_eval_every cadence), "
                      f"one line per configuration ({band}).")]
    line_factor = _line_factor(study, conds)
    others = [f for f in study.factors if f != line_factor]
    panels: dict[tuple, list[Condition]] = {}
    for c in conds:
        panels.setdefault(tuple(c.settings[f] for f in others), []).append(c)
    note = ""
    if len(panels) > MAX_CURVE_PANELS:
        note = f" The first {MAX_CURVE_PANELS} of {len(panels)} panels are shown."
        panels = dict(list(panels.items())[:MAX_CURVE_PANELS])
    levels = list(dict.fromkeys(c.settings[line_factor] for c in conds)) if line_factor else []
    color_of = dict(zip(levels, _colors(len(levels))))
    figs = []
    for kind, word in (("loss", "loss"), ("acc", "accuracy")):
        ncols = min(4, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows + 0.6), sharex=True, sharey=True,
                                 squeeze=False)
        for ax, (key, cs) in zip(axes.flat, panels.items()):
            for c in cs:
                color = color_of[c.settings[line_factor]] if line_factor else "C0"
                _band(ax, curve(study, c, "epoch", f"train_{kind}"), "epoch", color, None)
                _band(ax, curve(study, c, "epoch", f"val_{kind}"), "epoch", color if line_factor else "C1", None, "--")
            title = study.label_of(dict(zip(others, key))) if line_factor else f"{cs[0].label} (n={cs[0].n})"
            ax.set_title(title, fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in list(axes.flat)[len(panels):]:
            ax.set_axis_off()
        handles = [Line2D([], [], color="0.3" if line_factor else "C0", ls="-", label="train"),
                   Line2D([], [], color="0.3" if line_factor else "C1", ls="--", label="validation")]
        handles += [Line2D([], [], color=color_of[v], label=study.label_of({line_factor: v})) for v in levels]
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), frameon=False, fontsize=8)
        fig.supxlabel("epoch")
        fig.supylabel(word)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
        by = f"one colour per {study.short[line_factor]}, " if line_factor else ""
        figs.append(_save(fig, out, f"learning_curves_{kind}", f"Learning curves: {word}",
                          f"Train (solid) and validation (dashed) {word} per epoch, {by}one panel per "
                          f"{'setting of the other factors' if line_factor else 'configuration'} ({band}).{note}"))
    return figs


def _line_factor(study: Study, conds: list[Condition]) -> str | None:
    """The factor drawn as coloured lines within a panel: the one with the most levels that still fit."""
    best, best_levels = None, 1
    for f in study.factors:
        levels = len({c.settings[f] for c in conds})
        if best_levels < levels <= MAX_OVERLAID or (levels == best_levels and best is not None and levels > 1):
            best, best_levels = f, levels
    return best


def effects_plot(effects: list[Effect], metric: str, out: Path) -> list[Figure]:
    shown = [e for e in effects if e.estimate is not None]
    if not shown:
        return []
    plt = _plt()
    scale, u = unit(metric)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shown) + 1.2))
    y = np.arange(len(shown))[::-1]
    for yi, e in zip(y, shown):
        color = {"vs baseline": "C0", "main effect": "C2", "interaction": "C3"}.get(e.kind, "C0")
        if e.low is not None:
            ax.errorbar(e.estimate * scale, yi, xerr=[[(e.estimate - e.low) * scale], [(e.high - e.estimate) * scale]],
                        fmt="o", color=color, capsize=3)
        else:
            ax.plot(e.estimate * scale, yi, "o", mfc="white", color=color)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(y, [f"{e.name} ({e.kind})" if e.kind != "vs baseline" else e.name for e in shown])
    ax.set_xlabel(f"Δ {metric}" + (f" ({u})" if u else ""))
    ax.set_title(f"Effects on {metric}, 95% CI over seeds (paired by seed, else Welch)")
    fig.tight_layout()
    return [_save(fig, out, "effects", f"Effects on {metric}",
                  "Change against the baseline (and main effects / interactions of a factorial design) with 95% "
                  "confidence intervals; hollow markers: one seed, no interval.")]


# ---- study figures
def lines_over(study: Study, x_factor: str) -> tuple[dict[str, list[tuple[float, Condition]]], str]:
    """Configurations grouped into lines along ``x_factor``: one line per setting of the other factors."""
    others = [f for f in study.factors if f != x_factor]
    groups: dict[tuple, list] = {}
    for c in study.conditions:
        x = c.number(x_factor)
        if x is not None:
            groups.setdefault(tuple(c.settings[f] for f in others), []).append((x, c))
    note = ""
    if len(groups) > MAX_LINES and study.baseline is not None:
        held = tuple(study.baseline.settings[f] for f in others)
        groups = {k: v for k, v in groups.items() if k == held}
        note = f" Other factors held at the baseline's values ({study.label_of(study.baseline.settings)})."
    lines = {}
    for key, points in groups.items():
        label = study.label_of(dict(zip(others, key))) if others else ""
        lines[label] = sorted(points, key=lambda p: p[0])
    return lines, note


def _mean_std(c: Condition, metric: str, transform=lambda v: v) -> tuple[float, float, int]:
    x = transform(c.values(metric))
    return (float(x.mean()) if len(x) else math.nan, float(x.std(ddof=1)) if len(x) > 1 else 0.0, len(x))


def corruption_label(study: Study, c: Condition, with_others: bool = True) -> str:
    parts = []
    noise = c.number("dataset.label_noise") if "dataset.label_noise" in c.settings else None
    corruption = c.settings.get("dataset.input_corruption")
    if corruption:
        parts.append(CORRUPTION_NAMES.get(corruption, corruption))
    if noise is not None:
        parts.append("true labels" if noise == 0 else "random labels" if noise == 1 else f"{noise:.0%} corrupted labels")
    others = {f: v for f, v in c.settings.items() if f not in CORRUPTION_KEYS}
    text = ", ".join(p for p in parts if p) or "true labels"
    return f"{text} ({study.label_of(others)})" if others and with_others else text


CORRUPTION_KEYS = ("dataset.label_noise", "dataset.input_corruption")
MAX_PANELS = 4


def fitting_curves(study: Study, out: Path) -> list[Figure]:
    """Zhang et al. 2017, Fig. 1a: training loss against steps for true/random labels and corrupted inputs,
    one panel per setting of the other factors (e.g. per model)."""
    has_inputs = "dataset.input_corruption" in study.factors
    has_random = any(c.number("dataset.label_noise") == 1 for c in study.conditions) if "dataset.label_noise" in study.factors else False
    if not (has_inputs or has_random):
        return []
    plt = _plt()
    others = [f for f in study.factors if f not in CORRUPTION_KEYS]
    panels: dict[tuple, list[Condition]] = {}
    for c in study.conditions:
        if c.n > 0:
            panels.setdefault(tuple(c.settings[f] for f in others), []).append(c)
    note = ""
    if len(panels) > MAX_PANELS and study.baseline is not None:
        held = tuple(study.baseline.settings[f] for f in others)
        panels = {k: v for k, v in panels.items() if k == held}
        note = " Other factors held at the baseline's values."
    ncols = max(1, min(len(panels), 2))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4 * nrows), squeeze=False, sharey=True)
    conditions = list(dict.fromkeys(corruption_label(study, c, with_others=False) for cs in panels.values() for c in cs))
    color_of = dict(zip(conditions, _colors(len(conditions))))
    for ax, (key, conds) in zip(axes.flat, panels.items()):
        for c in conds:
            label = corruption_label(study, c, with_others=False)
            _band(ax, curve(study, c, "step", "train_loss"), "step", color_of[label], f"{label} (n={c.n})")
        ax.set_title(study.label_of(dict(zip(others, key))) if others else "", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    if not panels:
        _empty(axes.flat[0], "no completed run yet")
    fig.suptitle("Fitting true and corrupted data (cf. Zhang et al. 2017, Fig. 1a)")
    fig.tight_layout()
    return [_save(fig, out, "train_loss_vs_steps", "Training loss against steps",
                  "Training loss (evaluated on the training subset at the run's train_eval_every cadence) against optimizer "
                  "steps per condition; mean over seeds, "
                  "band ±1 std" + (", one panel per setting of the other factors." if others else ".") + note)]


def label_noise_figures(study: Study, out: Path) -> list[Figure]:
    """Zhang et al. 2017, Fig. 1b (test error) and 1c (time to fit) against the label corruption level."""
    key = "dataset.label_noise"
    if not study.numeric_factor(key):
        return []
    plt = _plt()
    lines, note = lines_over(study, key)
    colors = _colors(len(lines))
    chance = _chance(study)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, points), color in zip(lines.items(), colors):
        xs = [x for x, c in points if c.n > 0]
        stats = [_mean_std(c, "test_acc", lambda v: 1 - v) for x, c in points if c.n > 0]
        if xs:
            ax.errorbar(xs, [s[0] for s in stats], yerr=[s[1] for s in stats], fmt="o-", color=color, capsize=3,
                        label=label or None)
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    ax.set_xlabel("label corruption (fraction of training labels replaced at random)")
    ax.set_ylabel("test error")
    ax.set_title("Test error against label corruption (cf. Zhang et al. 2017, Fig. 1b)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    fig.tight_layout()
    figs = [_save(fig, out, "test_error_vs_label_noise", "Test error against label corruption",
                  "Test error (1 − test accuracy), mean ± std over seeds, per label corruption level." + note)]

    fig, ax = plt.subplots(figsize=(6, 4))
    any_fit, unfitted = False, []
    for (label, points), color in zip(lines.items(), colors):
        xs, ys, es = [], [], []
        for x, c in points:
            done = c.runs[c.runs["status"] == Status.COMPLETED]
            steps = pd.to_numeric(done["steps_to_fit"], errors="coerce").dropna().to_numpy() if "steps_to_fit" in done else []
            if len(steps):
                xs.append(x), ys.append(np.mean(steps)), es.append(np.std(steps, ddof=1) if len(steps) > 1 else 0)
                if len(steps) < len(done):
                    ax.annotate(f"{len(steps)}/{len(done)} fit", (x, np.mean(steps)), textcoords="offset points",
                                xytext=(4, 4), fontsize=7)
            elif len(done):
                unfitted.append((x, color))
        if xs:
            any_fit = True
            ax.errorbar(xs, ys, yerr=es, fmt="o-", color=color, capsize=3, label=label or None)
    if unfitted:
        top = ax.get_ylim()[1] if any_fit else 1.0
        for x, color in unfitted:
            ax.plot([x], [top], marker="x", ms=9, mew=2, color=color, ls="none", clip_on=False)
        ax.plot([], [], "x", color="0.3", label="not fitted (never reached the threshold)")
    if not any_fit:
        _empty(ax, f"no run reached train accuracy ≥ {FIT_ACC:.0%}")
        ax.set_yticks([])
    ax.set_xlabel("label corruption")
    ax.set_ylabel(f"steps until train accuracy ≥ {FIT_ACC:.0%}")
    ax.set_title("Time to fit against label corruption (cf. Zhang et al. 2017, Fig. 1c)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    fig.tight_layout()
    figs.append(_save(fig, out, "time_to_fit_vs_label_noise", "Time to fit against label corruption",
                      f"Optimizer steps until the training accuracy first reached {FIT_ACC:.0%} (mean ± std over the seeds "
                      "that did); × marks configurations where no seed fitted." + note))
    return figs


def width_figure(study: Study, out: Path) -> list[Figure]:
    """Train and test error against model width (double descent, Nakkiran et al. 2020)."""
    key = next((k for k in WIDTH_KEYS if study.numeric_factor(k)), None)
    if key is None:
        return []
    plt = _plt()
    lines, note = lines_over(study, key)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    widths = []
    for (label, points), color in zip(lines.items(), _colors(len(lines))):
        pts = [(x, c) for x, c in points if c.n > 0]
        widths += [x for x, _ in pts]
        for metric, style, name in (("test_acc", "o-", "test"), ("train_acc", "s--", "train")):
            stats = [_mean_std(c, metric, lambda v: 1 - v) for _, c in pts]
            if pts:
                ax.errorbar([x for x, _ in pts], [s[0] for s in stats], yerr=[s[1] for s in stats], fmt=style,
                            color=color, capsize=3, alpha=1 if name == "test" else 0.6,
                            label=f"{name} error" + (f" ({label})" if label else ""))
    if widths and max(widths) / max(min(widths), 1e-12) >= 8:
        ax.set_xscale("log", base=2)
    if not widths:
        _empty(ax, "no completed run yet")
    ax.set_xlabel(key.split(".")[-1])
    ax.set_ylabel("error")
    ax.set_title("Error against width (double descent)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    fig.tight_layout()
    return [_save(fig, out, "error_vs_width", "Error against width",
                  "Test (solid) and train (dashed) error against model width, mean ± std over seeds; a peak of the "
                  "test error near the width that first fits the training set is the double descent." + note)]


def heatmap(study: Study, metric: str, out: Path) -> list[Figure]:
    """A panel per method (optimizer × regularizer ...) over λ (columns) and lr (rows): Adam + L2 against AdamW."""
    strengths = [f for f in study.factors if (f == "strength" or f.endswith(".strength")) and _numeric_or_default(study, f)]
    if sampled(study):
        return []  # a random search fills a grid too sparsely for a heatmap: see search_figure
    has_lr = study.numeric_factor(LR_KEY)
    methods_keys = [f for f in study.factors if f not in strengths and f != LR_KEY]
    if not strengths or not (has_lr or methods_keys):
        return []
    plt = _plt()

    def lam(c: Condition) -> float:
        values = [as_number(c.settings[f]) for f in strengths]
        return next((v for v in values if v is not None), 0.0)  # the active regularizer's λ; 0 when none is set

    methods: dict[str, list[Condition]] = {}
    for c in study.conditions:
        methods.setdefault(study.label_of({f: c.settings[f] for f in methods_keys}) if methods_keys else "", []).append(c)
    methods = dict(list(methods.items())[:6])
    lams = sorted({lam(c) for cs in methods.values() for c in cs})
    lrs = sorted({c.number(LR_KEY) for cs in methods.values() for c in cs}) if has_lr else [None]
    scale, _ = unit(metric)
    grids = {}
    for name, cs in methods.items():
        grid = np.full((len(lrs), len(lams)), np.nan)
        for c in cs:
            x = c.values(metric)
            if len(x):
                grid[lrs.index(c.number(LR_KEY) if has_lr else None), lams.index(lam(c))] = x.mean() * scale
        grids[name] = grid
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0, 1)
    higher_better = not metric.endswith("loss")
    fig, axes = plt.subplots(1, len(grids), figsize=(max(0.75 * len(lams), 2.2) * len(grids) + 1.8, 0.5 * len(lrs) + 2.0),
                             squeeze=False, sharey=True, layout="constrained")
    image = None
    for panel, (ax, (name, grid)) in enumerate(zip(axes[0], grids.items())):
        image = ax.imshow(grid, cmap="viridis" if higher_better else "viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "—" if np.isnan(v) else f"{v:.1f}" if scale != 1 else f"{v:.3g}", ha="center", va="center",
                    fontsize=7, color="white" if np.isfinite(v) and (v - vmin) < 0.5 * (vmax - vmin) else "black")
        ax.set_xticks(range(len(lams)), [f"{v:g}" for v in lams], rotation=45)
        ax.set_yticks(range(len(lrs)), [f"{v:g}" for v in lrs] if has_lr else [""])
        ax.set_xlabel("λ")
        if has_lr and panel == 0:
            ax.set_ylabel("learning rate")
        ax.set_title(name or "all runs", fontsize=8)
        ax.grid(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label=f"{metric}" + (" (%)" if scale != 1 else ""), shrink=0.85)
    return [_save(fig, out, f"heatmap_{metric}", f"{metric} over λ" + (" and learning rate" if has_lr else ""),
                  f"Mean {metric} over seeds for each λ (columns)" + (" and learning rate (rows)" if has_lr else "")
                  + ", one panel per method (cf. Loshchilov & Hutter 2019, Fig. 2: Adam + L2 against AdamW); λ is "
                  + " or ".join(f"`{s}`" for s in strengths) + "; "
                  "— marks a cell without a completed run.")]


def sampled(study: Study) -> bool:
    """A random or Optuna search: every configuration has its own value of every numeric factor (no grid)."""
    numeric = [f for f in study.factors if study.numeric_factor(f)]
    n = len(study.conditions)
    return n > 4 and len(study.factors) >= 2 and bool(numeric) and all(
        len({c.settings[f] for c in study.conditions}) == n for f in numeric)


def search_figure(study: Study, metric: str, out: Path) -> list[Figure]:
    """For a random search: the metric of every run against each sampled hyperparameter."""
    if not sampled(study):
        return []
    plt = _plt()
    numeric = [f for f in study.factors if study.numeric_factor(f)]
    scale, _ = unit(metric)
    fig, axes = plt.subplots(1, len(numeric), figsize=(3.6 * len(numeric), 3.4), squeeze=False, sharey=True)
    best = max((c for c in study.conditions if c.n), key=lambda c: c.values(metric).mean() * (1 if not metric.endswith("loss") else -1),
               default=None)
    for ax, f in zip(axes[0], numeric):
        xs = [c.number(f) for c in study.conditions if c.n]
        ys = [c.values(metric).mean() * scale for c in study.conditions if c.n]
        ax.scatter(xs, ys, s=18, color="C0", alpha=0.8)
        if best is not None:
            ax.scatter([best.number(f)], [best.values(metric).mean() * scale], s=60, facecolors="none", edgecolors="C3",
                       label="best")
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(study.short[f])
    axes[0][0].set_ylabel(metric + (" (%)" if scale != 1 else ""))
    if best is not None:
        axes[0][0].legend(loc="best")
    fig.suptitle(f"{metric} of each sampled configuration against each hyperparameter")
    fig.tight_layout()
    return [_save(fig, out, f"search_{metric}", f"{metric} against the sampled hyperparameters",
                  f"Random search: each dot is one configuration (mean over its seeds); the circled one has the best {metric}.")]


def _numeric_or_default(study: Study, factor: str) -> bool:
    return any(as_number(c.settings[factor]) is not None for c in study.conditions)


def init_figure(study: Study, out: Path) -> list[Figure]:
    """Final loss against the initialization scale, each seed a dot; diverged runs marked (Kolter & Chen: σ² = c/n)."""
    key = "model.init_gain"
    if key not in study.factors or not _numeric_or_default(study, key):
        return []
    plt = _plt()
    from matplotlib.transforms import blended_transform_factory

    lines, note = lines_over(study, key)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    diverged = []
    for (label, points), color in zip(lines.items(), _colors(len(lines))):
        for metric, style, name in (("train_loss", "o-", "train"), ("test_loss", "s--", "test")):
            pts = [(x, c.values(metric)) for x, c in points if len(c.values(metric))]
            if not pts:
                continue
            alpha = 1 if name == "train" else 0.6
            ax.plot([x for x, _ in pts], [v.mean() for _, v in pts], style, color=color, alpha=alpha,
                    label=f"{name} loss" + (f" ({label})" if label else ""))
            for x, v in pts:  # every seed: a mean on a log axis hides how far apart they are
                ax.plot([x] * len(v), v, ".", color=color, alpha=0.35 * alpha, ms=4)
        for x, c in points:
            k = int((c.runs["status"] == Status.DIVERGED).sum())
            if k:
                diverged.append((x, f"diverged {k}/{len(c.runs)}" + (f"\n{label}" if len(lines) > 1 else "")))
    ax.set_xscale("log")
    if ax.has_data():
        ax.set_yscale("log")
    if diverged:
        edge = blended_transform_factory(ax.transData, ax.transAxes)
        for x, text in diverged:
            ax.plot([x], [1.0], marker="X", ms=10, color="crimson", ls="none", clip_on=False, transform=edge)
            ax.annotate(text, (x, 1.0), xycoords=edge, textcoords="offset points", xytext=(0, -12), ha="center",
                        va="top", fontsize=7, color="crimson")
        ax.plot([], [], "X", color="crimson", label="diverged (loss not finite)")
    if not ax.has_data() and not diverged:
        _empty(ax, "no completed run yet")
    ax.set_xlabel("init scale c (weights ~ N(0, c / fan_in))")
    ax.set_ylabel("final loss")
    ax.set_title("Loss against initialization scale", pad=14)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return [_save(fig, out, "loss_vs_init_gain", "Loss against init scale",
                  "Final train (solid) and test (dashed) loss against the init scale: mean of the completed seeds, each "
                  "seed a dot; red × on the top edge: configurations with diverged runs (loss not finite)." + note)]


def _chance(study: Study) -> float | None:
    for cfg in study.configs.values():
        k = ((cfg or {}).get("dataset") or {}).get("num_classes")
        if k:
            return 1 - 1 / k
    return None


def study_figures(study: Study, metric: str, out: Path) -> list[Figure]:
    figs = []
    for draw in (fitting_curves, label_noise_figures, width_figure, init_figure):
        figs += draw(study, out)
    figs += heatmap(study, metric, out)
    figs += search_figure(study, metric, out)
    return figs
