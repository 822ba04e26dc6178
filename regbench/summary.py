"""What a run prints when it ends: a small rich table of the selected checkpoint's metrics."""

from __future__ import annotations

from pathlib import Path


def print_result(result: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"regbench result — {result.get('status')}" + (" (already finished, not retrained)" if result.get("skipped") else ""))
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column("accuracy", justify="right")
    for split in ("train", "val", "test"):
        loss, acc = result.get(f"{split}_loss"), result.get(f"{split}_acc")
        table.add_row(split, "—" if loss is None else f"{loss:.4f}", "—" if acc is None else f"{acc:.2%}")
    console = Console()
    console.print(table)
    console.print(
        f"selected epoch {result.get('best_epoch')} ({result.get('selected')}) of {result.get('epochs_run')} run, "
        f"{result.get('steps')} steps, {result.get('steps_per_s')} steps/s, {result.get('wall_time_s')} s — "
        f"regularizers: {', '.join(result.get('regularizers') or []) or 'none'}"
    )
    console.print(f"run dir: {run_dir}  (result.json, metrics.jsonl, config.yaml, checkpoints/)")
