"""One table per sweep: a row per run, the varied factors as columns, then mean ± std over seeds.

A run is any folder under the sweep dir that Hydra made for a job (it holds ``.hydra/overrides.yaml``)
or that holds a ``result.json``, plus, as ``pending`` rows, the jobs of the last sweep launched
into the dir (its ``multirun.yaml``) that have no folder yet. Its factors are the command-line
overrides of that job; the factors of a sweep are the override keys whose values differ between
its runs. Seeds are never a factor: :func:`per_config` groups by every factor except ``seed`` and
never averages across different configurations.

``regbench results SWEEP_DIR`` (and the end of every sweep) writes ``results.csv`` /
``results.parquet`` (the runs) and ``configs.csv`` (mean, std and n per configuration) into the
sweep dir and prints the configurations. It reads only finished files, so it works while jobs run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from regbench.errors import DamagedFile
from regbench.files import read_jsonl, write_atomic
from regbench.records import FINISHED, RESULT_FILE, Result, Status, read_result

TUNED_FILE = "tuned.json"  # the tuned protocol's choices, beside its final/ sweep (regbench.sweep.tune)

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "gap",
           "best_epoch", "epochs_run", "steps", "wall_time_s", "steps_per_s",
           "epochs_to_fit", "steps_to_fit", "num_params")
SEED = "seed"
#: A run has "fitted" its training set once its train accuracy reaches this (Zhang et al. 2017 report 100%;
#: 99% leaves room for a few duplicated inputs with different labels). Same threshold as regbench.report.
FIT_ACC = 0.99
#: Statuses, in the order they are reported.
STATUSES = (Status.COMPLETED, Status.PRUNED, Status.DIVERGED, Status.RUNNING, Status.INTERRUPTED, Status.FAILED,
            Status.DAMAGED, Status.PENDING)
RESULTS_CSV, RESULTS_PARQUET, CONFIGS_CSV = "results.csv", "results.parquet", "configs.csv"
#: Metrics shown on the console (all of them are in the files).
SHOWN = ("test_acc", "train_acc", "gap", "steps_to_fit", "wall_time_s")


def run_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's run folders: Hydra's job folders, folders with a result, and folders a run claimed (its id file:
    a stack member its leader trains before Hydra launches the member's own job)."""
    from regbench.rundir import ID_FILE

    sweep_dir = Path(sweep_dir)
    found = {p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")}
    found |= {p.parent for p in sweep_dir.glob(f"**/{RESULT_FILE}")}
    found |= {p.parent for p in sweep_dir.glob(f"**/{ID_FILE}")}
    return sorted(d for d in found if d != sweep_dir or (d / RESULT_FILE).exists())


def run_status(run_dir: Path, result: Result | None) -> Status | str:
    """completed / diverged from result.json; running if a live job holds the dir (a failed run being
    retrained included); failed from result.json; else interrupted (a checkpoint but no job: the sweep
    command resumes it) or pending (nothing saved yet)."""
    from regbench.rundir import is_running

    if result and result.finished:
        return result.status
    if is_running(run_dir):
        return Status.RUNNING
    if result and result.status:
        return result.status
    return Status.INTERRUPTED if (Path(run_dir) / "checkpoints" / "last.pt").exists() else Status.PENDING


def first_fit(run_dir: Path, threshold: float = FIT_ACC) -> dict | None:
    """The first logged epoch whose training accuracy reached ``threshold`` (its epoch and step), or None."""
    for row in read_jsonl(Path(run_dir) / "metrics.jsonl"):
        if (row.get("train_acc") or 0) >= threshold:
            return row
    return None


def read_overrides(run_dir: Path) -> dict[str, str]:
    """The job's overrides as key → value strings (``regularizer=[dropout,l2]`` → {"regularizer": "[dropout,l2]"})."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    return _overrides_dict(yaml.safe_load(path.read_text()) or [])


def load_runs(sweep_dir: Path, expected: bool = True) -> pd.DataFrame:
    """A row per run: run_dir, status, run_id, every override, every final metric (None where absent).

    With ``expected``, the jobs of the dir's last sweep that have no folder yet are ``pending`` rows. In the
    tuned protocol's final dir, the tuned keys are part of each arm's recipe, not factors: they are left out
    (``tuned.json`` beside the dir lists them with each arm's choice).
    """

    sweep_dir = Path(sweep_dir)
    tuned = tuned_keys(sweep_dir)
    jobs = {job.dirname: job for job in _expected_jobs(sweep_dir)} if expected else {}
    rows = []
    for d in run_dirs(sweep_dir):
        try:
            result, damage = read_result(d), None
        except DamagedFile as e:  # counted as damaged, kept out of every statistic, never deleted
            result, damage = None, str(e)
        status = Status.DAMAGED if damage else run_status(d, result)
        name = str(d.relative_to(sweep_dir)) if d != sweep_dir else "."
        settings = read_overrides(d) or (_overrides_dict(jobs[name].overrides) if name in jobs else {})
        row = {"run_dir": name, "status": str(status), "run_id": result.run_id if result else None, **settings}
        if SEED not in row and result and result.seed is not None:
            row[SEED] = str(result.seed)
        for m in METRICS:
            row[m] = getattr(result, m, None)  # gap and the fit columns are the table's own
        if row.get("train_acc") is not None and row.get("test_acc") is not None:
            row["gap"] = row["train_acc"] - row["test_acc"]  # generalization gap in accuracy
        fit = first_fit(d) if row["status"] in (*FINISHED, Status.RUNNING, Status.INTERRUPTED) else None
        row["epochs_to_fit"], row["steps_to_fit"] = (fit["epoch"], fit.get("step")) if fit else (None, None)
        row["error"] = damage or (result.error if result else None)
        for key in tuned:
            row.pop(key, None)
        rows.append(row)
    if expected:
        seen = {r["run_dir"] for r in rows}
        for job in jobs.values():
            if job.dirname not in seen:
                settings = {k: v for k, v in _overrides_dict(job.overrides).items() if k not in tuned}
                rows.append({"run_dir": job.dirname, "status": str(Status.PENDING), "run_id": None,
                             **settings, **{m: None for m in METRICS}, "error": None})
    runs = pd.DataFrame(rows)
    for m in METRICS:
        if m in runs:
            runs[m] = pd.to_numeric(runs[m], errors="coerce")
    return runs


def _overrides_dict(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _expected_jobs(sweep_dir: Path) -> list:
    from regbench.sweep.jobs import sweep_jobs

    return sweep_jobs(sweep_dir) or []  # none known (or a multirun.yaml this version cannot expand): what is on disk


def factors(runs: pd.DataFrame) -> list[str]:
    """Override keys whose values differ between runs, seed excluded, in first-seen order."""
    skip = {"run_dir", "status", "run_id", "error", SEED, *METRICS}
    return [c for c in runs.columns if c not in skip and runs[c].astype(str).nunique(dropna=False) > 1]


def per_config(runs: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Mean, std and n of each metric per configuration (every factor but the seed), finished runs only."""
    done = runs[runs["status"] == Status.COMPLETED].copy()
    keys = factors(runs)
    present = [m for m in metrics if m in done.columns]
    for m in present:
        done[m] = pd.to_numeric(done[m], errors="coerce")
    if done.empty:
        return pd.DataFrame(columns=[*keys, "n"])
    grouped = done.fillna({k: "" for k in keys}).groupby(keys, sort=False, dropna=False) if keys else [((), done)]
    out = []
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row["n"] = len(group)
        for m in present:
            row[f"{m}_mean"] = group[m].mean()
            row[f"{m}_std"] = group[m].std(ddof=1) if len(group) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------- writing

def write_tables(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write results.csv, results.parquet and configs.csv into the sweep dir; return (runs, configs)."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs(sweep_dir)
    configs = per_config(runs) if not runs.empty else pd.DataFrame(columns=["n"])
    write_atomic(sweep_dir / RESULTS_CSV, lambda p: runs.to_csv(p, index=False))
    write_atomic(sweep_dir / RESULTS_PARQUET, lambda p: runs.astype({c: "string" for c in _text_columns(runs)}).to_parquet(p, index=False))
    write_atomic(sweep_dir / CONFIGS_CSV, lambda p: configs.to_csv(p, index=False))
    return runs, configs


def _text_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c not in METRICS and runs[c].dtype == object]


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    counts = runs["status"].value_counts().to_dict() if not runs.empty else {}
    return {str(s): int(counts.pop(s, 0)) for s in STATUSES} | {s: int(n) for s, n in counts.items()}


def format_counts(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    shown = [f"{n} {s}" for s, n in counts.items() if n or s in (Status.COMPLETED, Status.FAILED)]
    return f"{total} run{'s' if total != 1 else ''}: " + ", ".join(shown)


def configs_table(runs: pd.DataFrame, configs: pd.DataFrame, title: str | None = None):
    """A rich table: one row per configuration, its factors, n, and mean ± std of the shown metrics."""
    from rich.markup import escape
    from rich.table import Table

    keys = [k for k in factors(runs)] if not runs.empty else []
    shown = [m for m in SHOWN if f"{m}_mean" in configs and configs[f"{m}_mean"].notna().any()]
    table = Table(title=title, title_justify="left")
    short = short_names(keys)
    for k in keys:
        table.add_column(escape(short[k]))
    table.add_column("n", justify="right")
    for m in shown:
        table.add_column(m, justify="right")
    if keys and not configs.empty:  # numbers in numeric order (2, 4, 16 rather than 16, 2, 4)
        configs = configs.sort_values(keys, key=lambda col: col.map(_natural), kind="stable")
    for _, row in configs.iterrows():
        cells = [str(row[k]) for k in keys] + [str(int(row["n"]))]
        for m in shown:
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            std = 0.0 if abs(std) <= 1e-9 * abs(mean) else std  # equal values: rounding noise (2e-15), not a spread
            cells.append("—" if pd.isna(mean) else f"{_fmt(mean, m)} ± {_fmt(std, m)}" if row["n"] > 1 else _fmt(mean, m))
        table.add_row(*(escape(c) for c in cells))  # values like [dropout,l2] are not markup
    return table


def _natural(value) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that is unique: dataset.label_noise → label_noise."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts) - 1, -1, -1):
            name = ".".join(parts[i:])
            if sum(k == name or k.endswith("." + name) for k in keys) == 1:
                out[key] = name
                break
        else:
            out[key] = key
    return out


def _fmt(x: float, metric: str) -> str:
    if pd.isna(x):
        return "—"
    if metric.endswith(("_acc", "gap")):
        return f"{x:.3f}"
    return f"{x:.0f}" if metric.startswith(("steps", "epochs")) else f"{x:.3g}"


def print_failures(runs: pd.DataFrame, console) -> None:
    from rich.markup import escape

    for _, row in runs[runs["status"] == Status.FAILED].iterrows():
        error = row.get("error") if isinstance(row.get("error"), str) else "no error recorded"
        console.print(f"  [red]failed[/red] {escape(row['run_dir'])}: {escape(error)} (traceback in its regbench.log)",
                      soft_wrap=True, highlight=False)
    for _, row in runs[runs["status"] == Status.DAMAGED].iterrows():
        console.print(f"  [red]damaged[/red] {escape(row['error'])}: move the file away and re-run the "
                      "sweep command: only that run is finished again (nothing was deleted)", soft_wrap=True, highlight=False)
    for _, row in runs[runs["status"] == Status.DIVERGED].iterrows():
        console.print(f"  [yellow]diverged[/yellow] {escape(row['run_dir'])}: the training loss became non-finite "
                      "(a result, not a failure)", soft_wrap=True, highlight=False)


def main(ns) -> int:
    """`regbench results SWEEP_DIR`."""
    from regbench.console import console

    sweep_dir = Path(ns.sweep_dir)
    runs, configs = write_tables(sweep_dir)
    out = console()
    if runs.empty:
        out.print(f"{sweep_dir}: no runs yet", soft_wrap=True, markup=False)
        return 0
    out.print(f"{sweep_dir}: {format_counts(status_counts(runs))}", soft_wrap=True, markup=False)
    out.print(configs_table(runs, configs))
    print_failures(runs, out)
    out.print(f"wrote {sweep_dir / RESULTS_CSV}, {RESULTS_PARQUET} (one row per run) and {CONFIGS_CSV} "
              f"(mean ± std over seeds per configuration)", markup=False)
    return 0


def read_tuned(final_dir: Path) -> dict | None:
    """The choices of the tuned protocol whose final dir is ``final_dir`` (its ``tuned.json``), else None."""
    import json

    from regbench.errors import DamagedFile

    path = Path(final_dir).parent / TUNED_FILE
    if Path(final_dir).name != "final" or not path.exists():
        return None
    advice = "move it away and re-run the study's command (its choices are made again from the tuning runs)"
    try:
        tuned = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DamagedFile(path, "is cut off or not JSON", advice) from None
    if not _is_tuned(tuned):
        raise DamagedFile(path, "is not the tuned protocol's record (space, budget, tuning_seeds, metric, arms)", advice)
    return tuned


def _is_tuned(t) -> bool:
    """The shape :func:`regbench.sweep.tune.run` writes, which the tables read."""
    if not (isinstance(t, dict) and isinstance(t.get("space"), dict) and isinstance(t.get("budget"), int)
            and isinstance(t.get("tuning_seeds"), list) and isinstance(t.get("metric"), str) and isinstance(t.get("arms"), list)):
        return False
    return all(isinstance(a, dict) and isinstance(a.get("arm"), dict) and isinstance(a.get("chosen"), dict)
               and isinstance(a.get("overrides"), list) for a in t["arms"])


def tuned_keys(sweep_dir: Path) -> list[str]:
    """The tuned keys when ``sweep_dir`` is a tuned protocol's final dir, else none."""
    tuned = read_tuned(sweep_dir)
    return list(tuned["space"]) if tuned else []
