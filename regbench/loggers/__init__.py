"""Experiment trackers. Local files (metrics.jsonl, result.json, the log) are always written by the
trainer; a logger here mirrors them to a tracking service. Add one by writing a class with
``start``, ``log`` and ``finish`` (see :class:`NullLogger`) and a ``conf/logger/<name>.yaml`` whose
``_target_`` names it."""

from __future__ import annotations


class NullLogger:
    """logger=none: local files only."""

    run_id: str | None = None

    def start(self, *, run_dir, config: dict, group: str, name: str, tags: list[str], resume_id: str | None) -> None:
        pass

    def log(self, row: dict) -> None:
        pass

    def finish(self, result: dict) -> None:
        pass
