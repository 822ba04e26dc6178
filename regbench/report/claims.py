"""`regbench check SWEEP_DIR`: a study's expected outcomes, stated as data, tested against its results.

A study lists its claims under ``claims:`` in its file (``conf/experiment/<study>.yaml``): each a ``name``, a
``kind``, a ``says`` (the sentence it tests, with its source) and the kind's fields. A list, so that a study built
on another (``defaults: [bn_dropout_augment]``) states its own claims instead of adding to the other's. ``where`` (and ``a``, ``b``)
select configurations by the values of their factors, ``{dataset.label_noise: 1.0}``, a list meaning any of its
values; a regularizer selection is written as the sweep writes it (``"[batchnorm,dropout]"``). Every number is a
configuration's mean over its completed seeds, as in the report's tables; the metric ``diverged`` is the share of
its finished runs whose training loss became non-finite. The kinds:

    at_least / at_most  every selected configuration's mean ``metric`` is ≥ / ≤ ``value``
    monotone            along ``factor``, the means ``increasing`` / ``decreasing`` (``direction``): no step goes the
                        other way by more than ``tolerance``; with ``for_each``, every line of that factor separately
    greater             ``a``'s number exceeds ``b``'s by more than ``margin`` (negative: at least as good, within it);
                        a side's number is the ``pick`` (mean, max or min) of its configurations' means (``pick``
                        inside a side is that side's own)
    close               ``a``'s and ``b``'s numbers differ by at most ``tolerance``
    wider               more of ``a``'s configurations than of ``b``'s lie within ``within`` of their own side's best
    most_important      in a search, ``factor`` carries the largest share of the objective's variance (fANOVA)

Claims are not part of what a run trains: the ``claims`` key is left out of run ids and run dir names
(:data:`regbench.config.NON_IDENTITY_KEYS`, ``override_dirname.exclude_keys``), so adding or editing a claim never
retrains anything, and a study's earlier runs are checked against its current claims. The claims are composed from
the study's file with the command's overrides (``regbench check DIR claims.0.value=0.9``).

A tuned protocol's study is checked on its ``final`` sweep (given its sweep dir or ``final``); a search on its
replication (``replicate/``: the configurations ``arm=best`` and ``arm=default``) and its study (``most_important``).
Exit status: 0 when every claim holds, 1 when one does not, 2 (one line) for bad input.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regbench.errors import UserError

KINDS = {  # kind → (required fields, optional fields)
    "at_least": ({"metric", "value"}, {"where"}),
    "at_most": ({"metric", "value"}, {"where"}),
    "monotone": ({"metric", "factor", "direction"}, {"where", "tolerance", "for_each"}),
    "greater": ({"metric", "a", "b"}, {"where", "margin", "pick"}),
    "close": ({"metric", "a", "b", "tolerance"}, {"where", "pick"}),
    "wider": ({"metric", "a", "b", "within"}, {"where"}),
    "most_important": ({"factor"}, set()),
}
COMMON = {"name", "kind", "says"}
PICKS = {"mean": np.mean, "max": np.max, "min": np.min}
DIVERGED = "diverged"  # a metric of its own: the share of a configuration's finished runs that diverged
ARM = "arm"  # a search's replication: best (the best trial's values) or default (the recipe it started from)


@dataclass
class Cell:
    """One configuration: its factors' values (canonical strings), a label, and its runs' metrics."""

    settings: dict[str, str]
    label: str
    condition: object  # regbench.report.study.Condition
    configured: dict = field(default_factory=dict)  # its first run's config (for keys that are not factors)

    def values(self, metric: str) -> np.ndarray:
        if metric == DIVERGED:
            status = self.condition.runs["status"]
            return (status[status.isin(("completed", DIVERGED))] == DIVERGED).to_numpy(dtype=float)
        return self.condition.values(metric)

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return float(np.mean(values)) if len(values) else None

    def n(self, metric: str) -> int:
        return len(self.values(metric))


@dataclass
class Verdict:
    name: str
    says: str
    held: bool
    numbers: list[str]  # the lines that show why; the last one sums them up

    @property
    def summary(self) -> str:
        return self.numbers[-1] if self.numbers else ""


@dataclass
class Checked:
    """What ``check`` found: the study, the dir its numbers came from, and each claim's verdict."""

    study: str
    data_dir: Path
    completed: int
    verdicts: list[Verdict]
    unfinished: int = 0  # runs still running, interrupted or pending: claims are checked on what finished

    @property
    def held(self) -> bool:
        return all(v.held for v in self.verdicts)


# ------------------------------------------------------------------------------------------------ the claims

def study_claims(name: str, overrides: list[str] = ()) -> list[dict]:
    """The claims of the study ``name``, composed from its file with ``overrides``; checked for shape."""
    from omegaconf import OmegaConf

    from regbench.config import CONFIG_DIR, compose
    from regbench.errors import one_line

    if not (CONFIG_DIR / "experiment" / f"{name}.yaml").exists():
        raise UserError(f"the runs are of {name!r}, which is not a named study (conf/experiment/{name}.yaml); "
                        "regbench check reads a study's claims")
    try:
        cfg = compose([f"experiment={name}", *overrides])
    except Exception as e:  # noqa: BLE001 - Hydra's own message, on one line
        raise UserError(f"cannot compose experiment={name} with {' '.join(overrides) or 'no overrides'}: {one_line(e)}") from None
    claims = OmegaConf.to_container(cfg.claims, resolve=True) if "claims" in cfg and cfg.claims is not None else []
    if not claims:
        raise UserError(f"the study {name!r} states no claims (a claims: list in conf/experiment/{name}.yaml)")
    if not isinstance(claims, list):
        raise UserError(f"the claims of {name!r} are a list of claims, each with a name and a kind")
    for i, claim in enumerate(claims):
        check_claim(str(claim.get("name", f"#{i}")) if isinstance(claim, dict) else f"#{i}", claim)
    names = [c["name"] for c in claims]
    if len(set(names)) < len(names):
        raise UserError(f"the claims of {name!r} repeat a name: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return claims


def check_claim(name: str, claim) -> None:
    """A claim's shape: a known kind with its fields, nothing else. UserError naming the claim otherwise."""
    if isinstance(claim, dict) and not isinstance(claim.get("name"), str):
        raise UserError(f"claim {name}: needs a name")
    if not isinstance(claim, dict) or claim.get("kind") not in KINDS:
        kind = claim.get("kind") if isinstance(claim, dict) else claim
        raise UserError(f"claim {name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    required, optional = KINDS[claim["kind"]]
    missing, unknown = required - set(claim), set(claim) - required - optional - COMMON
    if missing or unknown:
        raise UserError(f"claim {name} ({claim['kind']}): " + "; ".join(
            [f"needs {', '.join(sorted(missing))}"] * bool(missing) + [f"has no field {', '.join(sorted(unknown))}"] * bool(unknown)))
    if claim["kind"] == "monotone" and claim["direction"] not in ("increasing", "decreasing"):
        raise UserError(f"claim {name}: direction {claim['direction']!r} is not increasing or decreasing")
    for side in ("where", "a", "b"):
        if side in claim and not isinstance(claim[side], dict):
            raise UserError(f"claim {name}: {side} is a mapping of factor: value, not {claim[side]!r}")
    for pick in [claim.get("pick", "mean")] + [claim[s].get("pick", "mean") for s in ("a", "b") if s in claim]:
        if pick not in PICKS:
            raise UserError(f"claim {name}: pick {pick!r} is not one of {', '.join(PICKS)}")


# ------------------------------------------------------------------------------------------------ the data

def resolve(sweep_dir: Path) -> tuple[Path, bool]:
    """The dir whose runs are checked, and whether it is a search: a tuned protocol's ``final``, a search's
    ``replicate``, else the sweep dir itself."""
    from regbench.report.search import is_search

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a directory (give a study's sweep dir, e.g. outputs/<study>/multirun)")
    if is_search(sweep_dir):
        return sweep_dir / "replicate", True
    if (sweep_dir / "tuned.json").exists() and (sweep_dir / "final").is_dir():
        return sweep_dir / "final", False
    return sweep_dir, False


def cells_of(data_dir: Path, search: bool):
    """(the study's name, the number of completed runs, of unfinished ones, one :class:`Cell` per configuration)."""
    from regbench.report.study import Study
    from regbench.sweep.results import read_overrides

    if not data_dir.is_dir():
        raise UserError(f"{data_dir.parent} is a search with no replication yet ({data_dir.name}/): no results to check")
    study = Study(data_dir)
    completed = int((study.runs["status"] == "completed").sum())
    unfinished = int(study.runs["status"].isin(("running", "interrupted", "pending", "not started")).sum())
    if not completed:
        raise UserError(f"{data_dir} has no completed run yet (regbench status {data_dir}): no results to check")
    cells = []
    for c in study.conditions:
        first = c.runs["run_dir"].iloc[0]
        settings, label, configured = dict(c.settings), c.label, study.configs.get(first) or {}
        if search:  # the best trial's runs carry its values as overrides; the default recipe's runs carry none
            space = set((configured.get("search") or {}).get("space") or {})
            arm = "best" if space & set(read_overrides(data_dir / first)) else "default"
            settings[ARM], label = arm, f"{arm} ({c.label})"
        cells.append(Cell(settings, label, c, configured))
    return study.name, completed, unfinished, cells


def _value(cell: Cell, key: str) -> str | None:
    """A configuration's value of ``key``: its factor's, else its config's (a key the sweep does not vary)."""
    if key in cell.settings:
        return cell.settings[key]
    node = cell.configured
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if key == "regularizer" and isinstance(node, dict):
        from regbench.report.study import format_selection

        return format_selection(list(node))
    return None if node is None else str(node)


def _same(have: str | None, want) -> bool:
    from regbench.report.study import as_number, format_selection, parse_selection

    if have is None:
        return False
    a, b = as_number(have), as_number(want)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9)
    if str(have).startswith("[") or str(want).startswith("[") or str(want) == "none":
        return format_selection(parse_selection(have)) == format_selection(parse_selection(want))
    return str(have) == str(want).strip()


def select(cells: list[Cell], where: dict | None) -> list[Cell]:
    """The configurations whose every ``where`` key has the value given (a list: any of them)."""
    where = where or {}
    return [c for c in cells
            if all(any(_same(_value(c, k), w) for w in (v if isinstance(v, list) else [v])) for k, v in where.items())]


# ------------------------------------------------------------------------------------------------ the kinds

def _percent(metric: str) -> bool:
    return metric.endswith("_acc") or metric in ("gap", DIVERGED)


def _fmt(x: float | None, metric: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if _percent(metric):
        return f"{100 * x:.1f}%"
    return f"{x:.4g}"


def _diff(x: float, metric: str) -> str:
    return f"{100 * x:+.1f} pp" if _percent(metric) else f"{x:+.4g}"


def _nothing(matched: list[Cell], where: dict, metric: str) -> str:
    if not matched:
        return f"no configuration matches {where}"
    return f"no {metric} in {', '.join(c.label for c in matched)} (no completed run has one)"


def _listing(cells: list[Cell], metric: str) -> str:
    return "; ".join(f"{c.label} {_fmt(c.mean(metric), metric)} (n {c.n(metric)})" for c in cells)


def _bound(claim: dict, cells: list[Cell]) -> tuple[bool, list[str]]:
    metric, bound = claim["metric"], float(claim["value"])
    at_least = claim["kind"] == "at_least"
    sign = "≥" if at_least else "≤"
    means = [c.mean(metric) for c in cells]
    if not cells or any(m is None for m in means):
        return False, [_nothing([c for c in cells if c.mean(metric) is None], claim.get("where") or {}, metric)]
    worst = min(means) if at_least else max(means)
    held = worst >= bound if at_least else worst <= bound
    return held, [f"{metric}: {_listing(cells, metric)}",
                  f"{'lowest' if at_least else 'highest'} {_fmt(worst, metric)}, needs each {sign} {_fmt(bound, metric)}"]


def _monotone(claim: dict, cells: list[Cell]) -> tuple[bool, list[str]]:
    from regbench.report.study import as_number

    metric, factor, tol = claim["metric"], claim["factor"], float(claim.get("tolerance", 0))
    rising = claim["direction"] == "increasing"
    lines: dict[str, list[Cell]] = {}
    for c in cells:
        lines.setdefault(_value(c, claim["for_each"]) if claim.get("for_each") else "", []).append(c)
    held, out = bool(cells), []
    for line, members in lines.items():
        points = sorted(((as_number(_value(c, factor)), c) for c in members), key=lambda p: (p[0] is None, p[0] or 0))
        xs = [x for x, _ in points]
        ys = [c.mean(metric) for _, c in points]
        where = f"{claim['for_each']}={line}: " if line else ""
        if None in xs or len(set(xs)) < len(xs) or None in ys or len(xs) < 2:
            held = False
            out.append(f"{where}cannot order {metric} along {factor}: " + (
                "fewer than two configurations" if len(xs) < 2 else "a configuration without completed runs" if None in ys
                else "several configurations share a value (narrow them with where or for_each)"))
            continue
        steps = np.diff(ys)
        against = float(np.max(-steps if rising else steps))
        ok = against <= tol
        held &= ok
        out.append(f"{where}{metric} along {factor} " + ", ".join(f"{x:g}: {_fmt(y, metric)}" for x, y in zip(xs, ys))
                   + f"; largest step against: {_diff(max(against, 0.0), metric).lstrip('+')} (tolerance {_diff(tol, metric).lstrip('+')})")
    if not cells:
        out.append("no configuration matches the selection")
    return held, out


def _side(claim: dict, cells: list[Cell], side: str) -> tuple[float | None, str]:
    where = dict(claim[side])
    metric, pick = claim["metric"], where.pop("pick", claim.get("pick", "mean"))
    matched = select(cells, where)
    chosen = [c for c in matched if c.mean(metric) is not None]
    if not chosen:
        return None, f"{side}: {_nothing(matched, where, metric)}"
    means = np.array([c.mean(metric) for c in chosen])
    value = float(PICKS[pick](means))
    if pick == "mean":
        text = _listing(chosen, metric) if len(chosen) > 1 else f"{chosen[0].label} (n {chosen[0].n(metric)})"
        return value, f"{side}: {_fmt(value, metric)}, " + (f"mean of {text}" if len(chosen) > 1 else text)
    at = chosen[int(np.argmax(means) if pick == "max" else np.argmin(means))]
    return value, f"{side}: {_fmt(value, metric)}, the {pick} of {len(chosen)} configurations, at {at.label} (n {at.n(metric)})"


def _greater(claim: dict, cells: list[Cell]) -> tuple[bool, list[str]]:
    metric, margin = claim["metric"], float(claim.get("margin", 0))
    (a, text_a), (b, text_b) = _side(claim, cells, "a"), _side(claim, cells, "b")
    if a is None or b is None:
        return False, [text_a, text_b]
    return a - b > margin, [text_a, text_b, f"a {_fmt(a, metric)} − b {_fmt(b, metric)} = {_diff(a - b, metric)}, "
                                            f"needs > {_diff(margin, metric).lstrip('+')}"]


def _close(claim: dict, cells: list[Cell]) -> tuple[bool, list[str]]:
    metric, tol = claim["metric"], float(claim["tolerance"])
    (a, text_a), (b, text_b) = _side(claim, cells, "a"), _side(claim, cells, "b")
    if a is None or b is None:
        return False, [text_a, text_b]
    return abs(a - b) <= tol, [text_a, text_b, f"|a {_fmt(a, metric)} − b {_fmt(b, metric)}| = {_diff(abs(a - b), metric).lstrip('+')}, "
                                               f"needs ≤ {_diff(tol, metric).lstrip('+')}"]


def _wider(claim: dict, cells: list[Cell]) -> tuple[bool, list[str]]:
    metric, within = claim["metric"], float(claim["within"])
    counts, out = {}, []
    for side in ("a", "b"):
        matched = select(cells, claim[side])
        chosen = [c for c in matched if c.mean(metric) is not None]
        if not chosen:
            return False, [f"{side}: {_nothing(matched, claim[side], metric)}"]
        best = max(c.mean(metric) for c in chosen)
        near = [c for c in chosen if c.mean(metric) >= best - within]
        counts[side] = len(near)
        out.append(f"{side}: {len(near)} of {len(chosen)} configurations within {_diff(within, metric).lstrip('+')} "
                   f"of its best {_fmt(best, metric)}: " + "; ".join(f"{c.label} {_fmt(c.mean(metric), metric)}" for c in near))
    return counts["a"] > counts["b"], [*out, f"a {counts['a']} against b {counts['b']} configurations, needs a > b"]


def _most_important(claim: dict, sweep_dir: Path) -> tuple[bool, list[str]]:
    from regbench.report.search import importances, is_search, load

    if not is_search(sweep_dir):
        return False, ["not a search: no study to compute importances from"]
    shares = importances(load(sweep_dir))
    if not shares:
        return False, ["fewer than two completed trials (or one parameter): no importances"]
    top = max(shares, key=shares.get)
    return top == claim["factor"], ["fANOVA importance: " + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()),
                                    f"largest: {top} ({shares[top]:.2f}), needs {claim['factor']}"]


def evaluate(name: str, claim: dict, cells: list[Cell], sweep_dir: Path) -> Verdict:
    kind = claim["kind"]
    if kind == "most_important":
        held, numbers = _most_important(claim, sweep_dir)
    else:
        chosen = select(cells, claim.get("where"))
        held, numbers = {"at_least": _bound, "at_most": _bound, "monotone": _monotone, "greater": _greater,
                         "close": _close, "wider": _wider}[kind](claim, chosen)
    return Verdict(name, str(claim.get("says", "")), bool(held), numbers)


def check(sweep_dir: Path, overrides: list[str] = ()) -> Checked:
    """Every claim of the study whose sweep ``sweep_dir`` is, against its completed runs."""
    data_dir, search = resolve(Path(sweep_dir))
    study, completed, unfinished, cells = cells_of(data_dir, search)
    claims = study_claims(study, list(overrides))
    return Checked(study, data_dir, completed,
                   [evaluate(claim["name"], claim, cells, Path(sweep_dir)) for claim in claims], unfinished)


def render(checked: Checked) -> str:
    """check's output: each claim with held / not held and its numbers, then the count."""
    n = len(checked.verdicts)
    claims = f"claim{'s' if n != 1 else ''}"
    lines = [f"{checked.study}: {n} {claims} against {checked.data_dir} ({checked.completed} completed runs"
             + (f"; {checked.unfinished} not finished yet, left out" if checked.unfinished else "") + ")"]
    for v in checked.verdicts:
        lines.append(f"{'held    ' if v.held else 'NOT HELD'}  {v.name}: {v.says}")
        lines += [f"          {line}" for line in v.numbers]
    held = sum(v.held for v in checked.verdicts)
    lines.append(f"{held} of {n} {claims} held"
                 + ("" if checked.held else f"; not held: {', '.join(v.name for v in checked.verdicts if not v.held)}"))
    return "\n".join(lines)


def main(sweep_dir: str, overrides: list[str]) -> int:
    """`regbench check SWEEP_DIR [OVERRIDES]`: 0 when every claim holds, 1 when one does not."""
    checked = check(Path(sweep_dir), overrides)
    print(render(checked))
    sys.stdout.flush()
    return 0 if checked.held else 1
