"""Experiment trackers. Local files (metrics.jsonl, result.json, the log) are always written by the
trainer; a tracker here mirrors them to a tracking service or its files.

``logger`` is multi-select, like ``regularizer``: ``logger=[wandb,tensorboard,mlflow]``. Each file of
``conf/logger/`` is keyed by its own name (``logger.wandb``, ``logger.tensorboard``, ``logger.mlflow``);
``logger.tags`` is shared by them all. :func:`regbench.build.build_logger` wraps the selected trackers in one
:class:`Trackers`, which the trainer drives like a single one. Add a tracker by writing a class with ``start``,
``log`` and ``finish`` (see :class:`NullLogger`) and a ``conf/logger/<name>.yaml`` holding ``<name>: {_target_: …}``.
Optional: ``check()`` (raise :class:`~regbench.errors.ConfigError` when it cannot start: run before anything is
written), and ``catch_up(rows)`` (called after a resumed start with the rows of metrics.jsonl, so the tracker
logs the epochs it has not seen; without it a tracker new to a resumed run is given every row by ``log``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from regbench.errors import ConfigError

log = logging.getLogger("regbench")

MAX_TAG_LENGTH = 64  # W&B refuses longer tags: the strictest of the trackers

#: A single tracker whose run id is written as it is (not as a JSON object): W&B's, as regbench 0.1 wrote it.
PLAIN_ID_TRACKERS = ("wandb",)


class NullLogger:
    """Nothing: local files only (what ``logger=none`` amounts to)."""

    run_id: str | None = None

    def start(self, *, run_dir, config: dict, group: str, name: str, tags: list[str], resume_id: str | None) -> None:
        pass

    def log(self, row: dict) -> None:
        pass

    def finish(self, result: dict) -> None:
        pass


def check_tags(tags) -> list[str]:
    tags = list(tags or ())
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH:
            raise ConfigError(f"tags: {tag!r} must be a W&B tag of 1 to {MAX_TAG_LENGTH} characters")
    return tags


def encode_ids(ids: dict[str, str]) -> str | None:
    """One string for the checkpoint and result.json's ``logger_id``: W&B's id alone as it is, otherwise a
    compact JSON object ``{"mlflow":"…","tensorboard":"…"}``; None when no tracker has an id."""
    ids = {k: v for k, v in ids.items() if v is not None}
    if not ids:
        return None
    if len(ids) == 1 and next(iter(ids)) in PLAIN_ID_TRACKERS:
        return str(next(iter(ids.values())))
    return json.dumps(ids, sort_keys=True, separators=(",", ":"))


def decode_ids(run_id: str | None) -> dict[str, str]:
    """The inverse of :func:`encode_ids`; a plain string is a W&B id (regbench 0.1 and a W&B-only run)."""
    if not run_id:
        return {}
    if run_id.startswith("{"):
        try:
            ids = json.loads(run_id)
        except ValueError:
            ids = None
        if isinstance(ids, dict):
            return {str(k): str(v) for k, v in ids.items() if v is not None}
    return {name: run_id for name in PLAIN_ID_TRACKERS}


class Trackers:
    """The selected trackers behind one logger interface (what ``build.build_logger`` returns).

    A tracker that fails to start, or fails to log or finish later (an online service that went away), is
    dropped with one warning and the run goes on: metrics.jsonl and result.json are the record and stay complete.
    Whatever can be found out before training (a missing package, an unwritable store, a server that cannot be
    reached) is refused by ``check`` instead, one line before anything is written."""

    def __init__(self, trackers: dict | None = None, tags=()):
        self.trackers = dict(trackers or {})
        self.extra_tags = check_tags(tags)
        self.active: dict = {}
        self.ids: dict[str, str] = {}
        self.run_id: str | None = None

    def check(self) -> None:
        """Raise ConfigError ``logger=<name>: …`` for the first tracker that cannot start here."""
        for name, tracker in self.trackers.items():
            check = getattr(tracker, "check", None)
            if callable(check):
                try:
                    check()
                except ConfigError as e:
                    raise ConfigError(f"logger={name}: {e}") from None

    def start(self, *, run_dir, config: dict, group: str, name: str, tags: list[str], resume_id: str | None) -> None:
        previous = decode_ids(resume_id)
        tags = list(dict.fromkeys([*tags, *self.extra_tags]))
        self.active, self.ids = {}, dict(previous)  # a tracker that fails now keeps its id for the next resume
        for key, tracker in self.trackers.items():
            try:
                tracker.start(run_dir=run_dir, config=config, group=group, name=name, tags=tags, resume_id=previous.get(key))
            except Exception as e:
                self._drop(key, e, "could not start")
                continue
            self.active[key] = tracker
            if getattr(tracker, "run_id", None) is not None:
                self.ids[key] = tracker.run_id
        self.run_id = encode_ids({k: self.ids.get(k) for k in self.trackers})
        if resume_id is not None:  # the trainer gives no history to a resumed logger: each tracker takes what it lacks
            rows = _history(run_dir)
            for key, tracker in list(self.active.items()):
                try:
                    if callable(getattr(tracker, "catch_up", None)):
                        tracker.catch_up(rows)
                    elif key not in previous:
                        for row in rows:
                            tracker.log(row)
                except Exception as e:
                    self._drop(key, e, "could not log the resumed epochs")

    def log(self, row: dict) -> None:
        for key, tracker in list(self.active.items()):
            try:
                tracker.log(row)
            except Exception as e:
                self._drop(key, e, f"stopped logging at epoch {row.get('epoch')}")

    def finish(self, result: dict) -> None:
        active, self.active = self.active, {}
        for key, tracker in active.items():
            try:
                tracker.finish(result)
            except Exception as e:
                self._drop(key, e, "could not record the result")

    def _drop(self, key: str, error: Exception, what: str) -> None:
        self.active.pop(key, None)
        message = f"{type(error).__name__}: {error}".replace("\n", " ")
        log.warning("logger %s %s (%s); the run goes on, metrics.jsonl and result.json stay complete", key, what, message[:300])


def _history(run_dir) -> list[dict]:
    from regbench.files import read_jsonl

    return read_jsonl(Path(run_dir) / "metrics.jsonl")  # rewritten from the checkpoint before the logger starts


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "c": [1, 2]}`` → ``{"a.b": 1, "c": "[1, 2]"}``: plain values for hyperparameter tables."""
    flat: dict = {}
    for key, value in (config or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, (list, tuple)):
            flat[path] = json.dumps(value)
        else:
            flat[path] = value
    return flat


def numbers(result: dict) -> dict[str, float]:
    """The finite numbers of a result (booleans excluded): what trackers record as the run's final metrics."""
    out = {}
    for key, value in result.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf"):
            out[key] = float(value)
    return out
