"""One table per sweep: a row per run, the varied factors as columns, then mean ± std over seeds.

A run is any folder under the sweep dir that Hydra made for a job (it holds ``.hydra/overrides.yaml``)
or that holds a ``result.json``. Its factors are the command-line overrides of that job; the
factors of a sweep are the override keys whose values differ between its runs. Seeds are never a
factor: :func:`summarize` groups by every factor except ``seed`` and never averages across
different configurations.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "gap",
           "best_epoch", "epochs_run", "steps", "wall_time_s", "steps_per_s")
SEED = "seed"


def run_dirs(sweep_dir: Path) -> list[Path]:
    sweep_dir = Path(sweep_dir)
    found = {p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")}
    found |= {p.parent for p in sweep_dir.glob("**/result.json")}
    return sorted(d for d in found if d != sweep_dir or (d / "result.json").exists())


def read_overrides(run_dir: Path) -> dict[str, str]:
    """The job's overrides as key → value strings (``regularizer=[dropout,l2]`` → {"regularizer": "[dropout,l2]"})."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    out = {}
    for line in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def load_runs(sweep_dir: Path) -> pd.DataFrame:
    """A row per run: run_dir, status, run_id, every override, every final metric (None where absent)."""
    rows = []
    for d in run_dirs(sweep_dir):
        result_path = d / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        status = result.get("status") or ("running" if (d / "checkpoints" / "last.pt").exists() else "pending")
        row = {"run_dir": str(d.relative_to(sweep_dir)) if d != Path(sweep_dir) else ".", "status": status,
               "run_id": result.get("run_id"), **read_overrides(d)}
        if SEED not in row and "seed" in result:
            row[SEED] = str(result["seed"])
        for m in METRICS:
            row[m] = result.get(m)
        if row.get("train_acc") is not None and row.get("test_acc") is not None:
            row["gap"] = row["train_acc"] - row["test_acc"]  # generalization gap in accuracy
        row["error"] = result.get("error")
        rows.append(row)
    return pd.DataFrame(rows)


def factors(runs: pd.DataFrame) -> list[str]:
    """Override keys whose values differ between runs, seed excluded, in first-seen order."""
    skip = {"run_dir", "status", "run_id", "error", SEED, *METRICS}
    return [c for c in runs.columns if c not in skip and runs[c].astype(str).nunique(dropna=False) > 1]


def summarize(runs: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Mean, std and n of each metric per configuration (every factor but the seed), finished runs only."""
    done = runs[runs["status"] == "completed"].copy()
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
