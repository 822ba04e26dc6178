"""A sweep read for a report: its runs, their configurations (conditions), the baseline, the curves.

The run table comes from :mod:`regbench.sweep.results`; this module only puts each factor's values
in one canonical spelling first (``regularizer=none``, ``[]`` and an absent key are the same
configuration; ``0`` and ``0.0`` are the same label noise), so that :func:`regbench.sweep.results.per_config` groups
exactly the runs that trained the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from regbench.errors import UserError
from regbench.errors import DamagedFile
from regbench.files import read_jsonl
from regbench.records import Result, Status, read_result
from regbench.sweep.results import METRICS, SEED, factors, load_runs, per_config, short_names

#: Config groups selected as lists (``regularizer=[dropout,weight_decay]``): one yes/no column per member.
MULTI_SELECT = ("regularizer",)
NOTHING = ("", "none", "null", "[]", "nan")
#: Settings of a clean baseline: no regularizer, true labels, real inputs.
CLEAN = {"dataset.label_noise": 0.0, "dataset.input_corruption": "none"}
#: Statuses of runs that did not finish (no result yet) and of runs that finished badly.
UNFINISHED = (Status.RUNNING, Status.INTERRUPTED, Status.DAMAGED, Status.PENDING, Status.NOT_STARTED)
FAILED = (Status.FAILED, Status.DIVERGED)
STATUS_ORDER = (Status.COMPLETED, Status.PRUNED, Status.STOPPED, Status.DIVERGED, Status.FAILED, Status.DAMAGED,
                Status.RUNNING, Status.INTERRUPTED, Status.PENDING, Status.NOT_STARTED)
#: The value of a key a configuration does not have (the λ of a regularizer that is not active).
NOT_APPLICABLE = "—"


def parse_selection(value) -> list[str]:
    """``none`` / ``[]`` / ``dropout`` / ``[dropout,weight_decay]`` → list of names, in order."""
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    names = [t.strip().strip("'\"") for t in text.split(",")]
    return [n for n in names if n.lower() not in NOTHING]


def format_selection(names: list[str]) -> str:
    return "none" if not names else names[0] if len(names) == 1 else "[" + ",".join(names) + "]"


def format_number(x: float) -> str:
    """Short and exact: 10000.0 → 10000, 1e8 → 1e+08, 0.5 → 0.5."""
    text = f"{x:g}"
    return text if float(text) == x else repr(x)


def short_value(value: str) -> str:
    """A sampled 0.00018255254802399022 reads as 0.0001826 in tables and legends (the CSV keeps every digit)."""
    x = as_number(value)
    return f"{x:.4g}" if x is not None and len(str(value)) > 8 else str(value)


def as_number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def split_spec(spec: str) -> list[str]:
    """``regularizer=[a,b],dataset.label_noise=0`` → the two ``key=value`` items (commas inside [] kept)."""
    items, depth, current = [], 0, ""
    for ch in spec:
        depth += ch == "["
        depth -= ch == "]"
        if depth == 0 and ch in ", ":
            if current:
                items.append(current)
            current = ""
        else:
            current += ch
    return [*items, current] if current else items


@dataclass
class Condition:
    """One configuration: every factor but the seed. ``runs`` holds all its runs, finished or not."""

    key: tuple
    settings: dict[str, str]
    columns: dict[str, str]
    label: str
    runs: pd.DataFrame
    stats: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.stats.get("n", 0))

    def values(self, metric: str) -> np.ndarray:
        """The metric of every completed run (finite values only), in seed order."""
        return self.seeded(metric)[1]

    def seeded(self, metric: str) -> tuple[list[str | None], np.ndarray]:
        """:meth:`values` with the seed of each value beside it (parallel list; None where a run's seed is unknown).

        The same seed gives the same initial weights and data order in every configuration, so effects can pair
        runs by seed (:mod:`regbench.report.effects`)."""
        done = self.runs[self.runs["status"] == Status.COMPLETED]
        if metric not in done:
            return [], np.array([])
        x = pd.to_numeric(done[metric], errors="coerce").to_numpy(dtype=float)
        seeds = [_seed_key(s) for s in done[SEED]] if SEED in done else [None] * len(done)
        keep = np.isfinite(x)
        return [s for s, k in zip(seeds, keep) if k], x[keep]

    def number(self, factor: str) -> float | None:
        return as_number(self.settings.get(factor))


class Study:
    """Everything a report says about one sweep directory."""

    def __init__(self, sweep_dir: Path, baseline: str | None = None):
        self.sweep_dir = Path(sweep_dir)
        if not self.sweep_dir.is_dir():
            raise UserError(f"{self.sweep_dir} is not a directory")
        raw = load_runs(self.sweep_dir)
        self.raw = raw
        if raw.empty:
            raise UserError(f"{self.sweep_dir} holds no runs (no .hydra/overrides.yaml or result.json below it)")
        self.results = {d: _read_result(self.sweep_dir / d) for d in raw["run_dir"]}
        # config.yaml is written when training starts; Hydra's copy exists as soon as the job does
        self.configs = {d: _read_yaml(self.sweep_dir / d / "config.yaml") or _read_yaml(self.sweep_dir / d / ".hydra" / "config.yaml")
                        for d in raw["run_dir"]}
        self.runs = self._canonical(raw)
        self.factors = factors(self.runs)
        self.multi = {f: self._members(f) for f in self.factors if f in MULTI_SELECT or self._is_list(f)}
        self.short = short_names(self.factors)
        self.config_stats = per_config(self.runs)
        self.conditions = self._conditions()
        self.baseline, self.baseline_note = self._baseline(baseline)
        self._histories: dict[str, pd.DataFrame] = {}

    # ---- the run table, one spelling per value
    def _canonical(self, raw: pd.DataFrame) -> pd.DataFrame:
        runs = raw.copy()
        # a job of the sweep that has no folder at all was never started (not merely waiting in a folder)
        absent = np.array([not (self.sweep_dir / d).exists() for d in runs["run_dir"]], dtype=bool)
        runs.loc[absent & (runs["status"] == Status.PENDING), "status"] = str(Status.NOT_STARTED)
        keys = factors(raw)
        for key in keys:
            seen: dict[float, str] = {}
            values = []
            for d, v in zip(runs["run_dir"], runs[key]):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    v = self._configured(d, key)  # the key was not overridden: the config's value
                if key in MULTI_SELECT or str(v).startswith("["):
                    v = format_selection(parse_selection(v))
                elif (x := as_number(v)) is not None:
                    v = seen.setdefault(x, format_number(x))  # 0 and 0.0 are the same value
                values.append(str(v))
            runs[key] = values
        return runs

    def _configured(self, run_dir: str, key: str) -> str:
        node = self.configs.get(run_dir)
        if node is None:
            return "default"  # no config.yaml (a run that never started): the config's default, unknown here
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if key in MULTI_SELECT:
            return format_selection(list(node or {}))
        if isinstance(node, dict):
            return str(node.get("name", "default"))
        return NOT_APPLICABLE if node is None else str(node)

    def _is_list(self, key: str) -> bool:
        return any(str(v).startswith("[") for v in self.runs[key])

    def _members(self, key: str) -> list[str]:
        """Every regularizer selected anywhere, in the order the sweep's lists name them
        (``[signal_shift,weight_decay]``, ``[weight_decay,batchnorm]`` → signal_shift, weight_decay, batchnorm)."""
        lists = [parse_selection(v) for v in dict.fromkeys(self.runs[key])]
        first_seen = list(dict.fromkeys(m for names in lists for m in names))
        before = {m: set() for m in first_seen}  # m → members listed before m somewhere
        for names in lists:
            for i, m in enumerate(names):
                before[m].update(names[:i])
        ordered: list[str] = []
        while len(ordered) < len(first_seen):
            ready = [m for m in first_seen if m not in ordered and before[m] <= set(ordered)]
            ordered.append(ready[0] if ready else next(m for m in first_seen if m not in ordered))  # a cycle: first seen
        return ordered

    # ---- configurations
    def _conditions(self) -> list[Condition]:
        stats = {tuple(str(row[f]) for f in self.factors): row.to_dict() for _, row in self.config_stats.iterrows()}
        groups = self.runs.groupby(self.factors, sort=False) if self.factors else [((), self.runs)]
        out = []
        for key, runs in groups:
            key = key if isinstance(key, tuple) else (key,)
            settings = dict(zip(self.factors, key))
            out.append(Condition(key=key, settings=settings, columns=self.columns_of(settings), label=self.label_of(settings),
                                 runs=runs.sort_values(SEED, key=_seed_order) if SEED in runs else runs,
                                 stats=stats.get(key, {"n": 0})))
        first_seen = {f: list(dict.fromkeys(self.runs[f])) for f in self.factors}
        return sorted(out, key=lambda c: tuple(self._order(f, c.settings[f], first_seen[f]) for f in self.factors))

    def _order(self, factor: str, value: str, first_seen: list[str]):
        if factor in self.multi:
            names = parse_selection(value)
            return (len(names), tuple(self.multi[factor].index(n) for n in names))
        if value.lower() in NOTHING or value in ("default", NOT_APPLICABLE):
            return (-1, 0.0, 0)
        x = as_number(value)
        return (0, x, 0) if x is not None else (1, 0.0, first_seen.index(value))

    def columns_of(self, settings: dict[str, str], exact: bool = False) -> dict[str, str]:
        """Zhang et al.'s Table 1: a yes/no column per regularizer that appears anywhere, else the factor's value
        (numbers shortened to 4 significant digits unless ``exact``)."""
        cols = {}
        for f in self.factors:
            if f in self.multi:
                active = parse_selection(settings[f])
                cols.update({m: "yes" if m in active else "no" for m in self.multi[f]})
            else:
                cols[self.short[f]] = settings[f] if exact else short_value(settings[f])
        return cols

    def label_of(self, settings: dict[str, str]) -> str:
        parts = []
        for f in [f for f in self.factors if f in settings and settings[f] != NOT_APPLICABLE]:
            v = settings[f]
            names = parse_selection(v)
            parts.append((" + ".join(names) or f"no {f}") if f in self.multi else f"{self.short[f]}={short_value(v)}")
        return ", ".join(parts) or "all runs"

    @property
    def columns(self) -> list[str]:
        return list(self.conditions[0].columns) if self.conditions else []

    # ---- the baseline
    def is_clean(self, c: Condition) -> bool:
        for f, v in c.settings.items():
            if f in self.multi and parse_selection(v):
                return False
            if f in CLEAN:
                clean = CLEAN[f]
                if (c.number(f) != clean) if isinstance(clean, float) else (v != clean):
                    return False
        return True

    def _baseline(self, spec: str | None) -> tuple[Condition | None, str]:
        if not self.conditions:
            return None, "no configuration"
        if spec:
            wanted = {}
            for item in split_spec(spec):
                key, sep, value = item.partition("=")
                key = key.lstrip("+~")
                if not sep:
                    raise UserError(f"--baseline {spec!r}: write key=value pairs, e.g. --baseline 'regularizer=none'")
                if key not in self.factors:
                    raise UserError(f"--baseline: {key!r} does not vary in this sweep; its factors are: "
                                    f"{', '.join(self.factors) or '(none: one configuration)'}")
                wanted[key] = value
            matches = [c for c in self.conditions if all(self._same(k, c.settings[k], v) for k, v in wanted.items())]
            if not matches:
                raise UserError(f"--baseline {spec!r} matches no configuration; they are: "
                                + "; ".join(c.label for c in self.conditions))
            note = f"selected by --baseline {spec!r}"
            if len(matches) > 1:
                note += f" (the first of {len(matches)} matching configurations)"
            return matches[0], note
        varied = any(f in self.multi or f in CLEAN for f in self.factors)  # else "clean" says nothing
        clean = [c for c in self.conditions if self.is_clean(c)] if varied else []
        for pool, note in ((clean, "no regularizer, clean data"), (self.conditions, "the first configuration")):
            finished = [c for c in pool if c.n > 0]
            if finished or pool:
                return (finished or pool)[0], f"default: {note}" + ("" if finished else " (no completed run)")
        return None, "no configuration"

    def _same(self, key: str, have: str, want: str) -> bool:
        if key in self.multi:
            return parse_selection(have) == parse_selection(want)
        a, b = as_number(have), as_number(want)
        return a == b if a is not None and b is not None else have == want.strip()

    # ---- per-run details
    def history(self, run_dir: str) -> pd.DataFrame:
        """The run's metrics.jsonl as a table (epoch, step, train_loss, train_acc, val_loss, val_acc, ...)."""
        if run_dir not in self._histories:
            frame = pd.DataFrame(read_jsonl(self.sweep_dir / run_dir / "metrics.jsonl"))  # bad lines skipped
            for col in ("train_loss", "train_acc", "val_loss", "val_acc"):
                if col in frame:
                    frame[col] = pd.to_numeric(frame[col], errors="coerce")
            self._histories[run_dir] = frame
        return self._histories[run_dir]

    @property
    def name(self) -> str:
        names = [r.name for r in self.results.values() if r and r.name]
        names += [c.get("name") for c in self.configs.values() if c and c.get("name")]
        return names[0] if names else self.sweep_dir.name

    def counts(self) -> dict[str, int]:
        """Runs per status, in the order of :data:`STATUS_ORDER`."""
        counts = self.runs["status"].value_counts().to_dict()
        return {s: int(counts[s]) for s in sorted(counts, key=lambda s: (STATUS_ORDER + (s,)).index(s))}

    def numeric_factor(self, factor: str) -> bool:
        return factor in self.factors and all(as_number(c.settings[factor]) is not None for c in self.conditions)


def _seed_order(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def _seed_key(seed) -> str | None:
    """One spelling per seed (``1``, ``1.0`` and ``"1"`` are the same seed); None when unknown."""
    if seed is None or (isinstance(seed, float) and math.isnan(seed)):
        return None
    x = as_number(seed)
    return format_number(x) if x is not None else str(seed)


def _read_result(run_dir: Path) -> Result | None:
    try:
        return read_result(run_dir)
    except DamagedFile:  # the run is "damaged" in the run table, and out of the statistics
        return None


def _read_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text()) if path.exists() else None
    except (OSError, yaml.YAMLError):
        return None


__all__ = ["Condition", "Study", "METRICS", "parse_selection", "short_names", "split_spec", "UNFINISHED", "FAILED"]
