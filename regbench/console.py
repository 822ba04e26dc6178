"""What regbench prints: a rich console, and the table a single run prints when it ends."""

from __future__ import annotations

from pathlib import Path


def console():
    """A rich console; as wide as the terminal, or wide enough for a table when writing to a file or pipe."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def print_result(result: dict, run_dir: Path) -> None:
    """The selected checkpoint's loss and accuracy per split, and how the run went."""
    from rich.table import Table

    table = Table(title=f"regbench result — {result.get('status')}")
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column("accuracy", justify="right")
    for split in ("train", "val", "test"):
        loss, acc = result.get(f"{split}_loss"), result.get(f"{split}_acc")
        table.add_row(split, "—" if loss is None else f"{loss:.4f}", "—" if acc is None else f"{acc:.2%}")
    out = console()
    out.print(table)
    out.print(
        f"selected epoch {result.get('best_epoch')} ({result.get('selected')}) of {result.get('epochs_run')} run, "
        f"{result.get('steps')} steps, {result.get('steps_per_s')} steps/s, {result.get('wall_time_s')} s — "
        f"regularizers: {', '.join(result.get('regularizers') or []) or 'none'}"
    )
    out.print(f"run dir: {run_dir}  (result.json, metrics.jsonl, config.yaml, checkpoints/)")
    if result.get("skipped"):
        out.print(f"already {result.get('status')} earlier: not retrained (resume=false trains it again)")
