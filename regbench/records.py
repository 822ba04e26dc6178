"""What a run records: its status words and its ``result.json``, typed, with one reader and one writer.

:class:`Status` is a ``str`` enum: its members equal the words on disk (``Status.COMPLETED == "completed"``),
so results written by any version compare with it, and pandas columns of status words filter with it.
:class:`Result` is result.json as a dataclass. It is also a read-only mapping of exactly the keys the file
holds, so ``result["test_acc"]``, ``result.get("error")`` and ``{**result}`` read it as the JSON object it is.
:func:`write_result` writes it in the format regbench has always written (same keys, order and values), and
:func:`read_result` reads any version's file back (keys it does not know are kept, in order, in ``extra``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"


class Status(str, Enum):
    """Where a run is or how it ended. ``str()`` and ``format()`` give the word itself."""

    RUNNING = "running"  # training (in a checkpoint: the run has not ended)
    STOPPED = "stopped"  # early stopping ended it; its result says completed
    COMPLETED = "completed"
    PRUNED = "pruned"  # a search's pruner ended it
    DIVERGED = "diverged"  # its training loss was not finite
    FAILED = "failed"  # an error; result.json holds it
    REFUSED = "refused"  # its folder holds another configuration or writer: nothing of it was touched
    STACKED = "stacked"  # a stack member's own job: its leader trains it
    # Only in the tables of a sweep (regbench status, results, report): a run without a result
    INTERRUPTED = "interrupted"  # a checkpoint but no live job
    DAMAGED = "damaged"  # its result.json cannot be read
    PENDING = "pending"  # its folder exists, nothing saved yet; or a job of the sweep with no folder
    NOT_STARTED = "not started"  # a job of the sweep with no folder at all (the report's word)

    __str__ = str.__str__
    __format__ = str.__format__


#: A run that ended with one of these is not trained again while ``resume`` is on.
FINISHED = (Status.COMPLETED, Status.PRUNED, Status.DIVERGED)


@dataclass(eq=False)
class Result(Mapping):
    """A run's result.json. A finished run (:data:`FINISHED`) records every field up to ``finished_at``; a run
    that failed or was refused records its status and what is known (None fields are left out)."""

    status: Status | str
    train_loss: float | None = None  # the selected checkpoint evaluated once on every split (None: diverged)
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    best_epoch: int | None = None
    selected: str | None = None  # "best" (early stopping's epoch) or "last"
    epochs_run: int | None = None
    steps: int | None = None
    wall_time_s: float | None = None
    train_time_s: float | None = None
    compile_time_s: float | None = None
    precision: str | None = None
    steps_per_s: float | None = None
    seed: int | None = None
    run_id: str | None = None
    name: str | None = None
    regularizers: list[str] | None = None
    num_params: int | None = None
    train_eval_examples: int | None = None  # what metrics.jsonl's train_loss/train_acc are computed on,
    train_eval_every: int | None = None  # and how often (epochs; and the run's first and last)
    data: dict | None = None
    device: str | None = None
    regbench_version: str | None = None
    git_commit: str | None = None
    logger_id: str | None = None
    finished_at: str | None = None
    stacked: int | None = None  # K, for a member of a stack of K
    error: str | None = None  # a failed or refused run's error
    overrides: list[str] | None = None  # a failed job's overrides
    skipped: bool = False  # returned for a run already finished, not retrained; never written
    extra: dict = field(default_factory=dict)  # keys of another version of regbench, in their order

    def __post_init__(self):
        try:
            self.status = Status(self.status)
        except ValueError:  # a word of another version: kept as it is
            pass

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict:
        """The JSON object, in result.json's order: a finished run's fields up to ``finished_at`` always, the rest
        (and every field of an unfinished one, in the order its writers used) only where set."""
        keys = _EVALUATED + _OPTIONAL if self.finished else _UNFINISHED
        always = _EVALUATED if self.finished else ("status",)
        out = {k: getattr(self, k) for k in keys if k in always or getattr(self, k) is not None}
        out["status"] = str(self.status)
        out.update(self.extra)
        if self.skipped:
            out["skipped"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    def as_skipped(self) -> Result:
        """This result, returned for a run that is not retrained."""
        return replace(self, skipped=True)

    # The mapping of the JSON object's keys (what callers of regbench 0.2 read as a dict)
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_FIELDS = [f.name for f in fields(Result)]
_EVALUATED = tuple(_FIELDS[:_FIELDS.index("finished_at") + 1])  # what a finished run always records
_OPTIONAL = ("stacked", "error", "overrides")
_FAILURE = ("status", "run_id", "seed", "name", "error", "overrides")  # the order a failed job's record has
_UNFINISHED = (*_FAILURE, *(k for k in _EVALUATED + _OPTIONAL if k not in _FAILURE))


def read_result(run_dir: Path) -> Result | None:
    """The run's result.json, None if there is none; DamagedFile (one line) if it cannot be read."""
    from regbench.files import read_json

    data = read_json(Path(run_dir) / RESULT_FILE)
    return None if data is None else Result.from_dict(data)


def write_result(run_dir: Path, result: Result) -> None:
    """Write result.json atomically (a kill leaves the old file or the new one)."""
    from regbench.files import write_json

    write_json(Path(run_dir) / RESULT_FILE, result.to_dict())
