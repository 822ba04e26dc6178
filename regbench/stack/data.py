"""A stack's data: one copy of each distinct tensor its members train and evaluate on, and which one each reads.

Members of one study mostly share their data (the same dataset and split seed), or differ in part of it (label
noise changes ``y_train`` only). :func:`share_data` makes equal tensors one object as the members are built, so
that a stack holds one copy in memory; :func:`tables` then groups them by identity.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def share_data(members: list) -> None:
    """The newest member (:class:`regbench.stack.engine.Member`) uses an earlier member's data tensors, and its
    train metrics' subset (``Run.train_eval``), where they are equal: one copy in memory, one row of a table."""
    new = members[-1].run
    for split in SPLITS:
        shared = _earlier_equal(getattr(new.data, split), [getattr(m.run.data, split) for m in members[:-1]])
        setattr(new.data, split, shared)
    new.train_eval = _earlier_equal(new.train_eval, [m.run.train_eval for m in members[:-1]])


def _earlier_equal(mine: torch.Tensor, earlier: list[torch.Tensor]) -> torch.Tensor:
    for theirs in earlier:
        if theirs.shape == mine.shape and torch.equal(theirs, mine):
            return theirs
    return mine


class Table(NamedTuple):
    """One split of a stack's members: its distinct tensors ``[U, n, ...]``, which of them each member reads ``[K]``,
    and whether one serves them all (then a batch is one gather of its rows: :func:`gather_rows`)."""

    rows: torch.Tensor
    index: torch.Tensor
    shared: bool


def tables(members: list) -> dict[str, Table]:
    """The stack's splits: train, val, and the train metrics' subset (``train_eval``), each a :class:`Table` of the
    members' tensors by identity (equal ones are one object since :func:`share_data`)."""
    runs = [m.run for m in members]
    device = runs[0].data.x_train.device
    found = {split: _table([(id(getattr(r.data, split)), lambda r=r, s=split: getattr(r.data, s)) for r in runs], device)
             for split in ("x_train", "y_train", "x_val", "y_val")}
    # the train metrics' subset, Run.train_subset's rows: one gather per distinct data and subset
    found["x_train_eval"] = _table([((id(r.data.x_train), id(r.train_eval)), lambda r=r: r.train_subset()[0])
                                    for r in runs], device)
    found["y_train_eval"] = _table([((id(r.data.y_train), id(r.train_eval)), lambda r=r: r.train_subset()[1])
                                    for r in runs], device)
    return found


def _table(keyed: list[tuple], device: torch.device) -> Table:
    """``keyed``: per member, the identity of what it reads and how to make that tensor (once per identity)."""
    unique: dict = {}
    index = []
    for key, make in keyed:
        if key not in unique:
            unique[key] = make()
        index.append(list(unique).index(key))
    rows = list(unique.values())
    return Table(torch.stack(rows) if len(rows) > 1 else rows[0][None], torch.tensor(index, device=device),
                 len(rows) == 1)


def gather_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for a [K, B] index: ``index_select`` on the flat index, about half the time of advanced
    indexing on a CPU (the same rows)."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, *table.shape[1:])
