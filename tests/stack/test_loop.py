"""The stacked loop drives each member's lifecycle as solo training drives its one: a member resumed in a stack
continues the tracker run its checkpoint names."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, compose, read_result

import regbench.stack as S
from regbench.train import train


class Killed(Exception):
    """Stands for a kill in the middle of epoch 2 (after epoch 1's checkpoint)."""


def kill_at_epoch_2(epoch: int, row: dict) -> bool:
    if epoch == 2:
        raise Killed
    return False


def test_a_member_resumed_in_a_stack_continues_its_wandb_run(tmp_path):
    configs = [compose(*TINY, "trainer.max_epochs=3", "model=mlp", "logger=wandb", f"seed={s}") for s in range(2)]
    with pytest.raises(Killed):
        train(configs[0], tmp_path / "m0", prune=kill_at_epoch_2)  # solo: its W&B run starts with the run
    started = json.loads((tmp_path / "m0" / "metrics.jsonl").read_text().splitlines()[0])
    assert started["epoch"] == 1
    (first,) = (tmp_path / "m0" / "wandb").glob("offline-run-*")
    wandb_id = first.name.rsplit("-", 1)[1]

    results = S.train_stacked(configs, [tmp_path / "m0", tmp_path / "m1"])
    assert [r.status for r in results] == ["completed", "completed"] and results[0].epochs_run == 3
    assert results[0].logger_id == wandb_id == read_result(tmp_path / "m0")["logger_id"]  # the same W&B run, continued
    assert results[1].logger_id not in (None, wandb_id)
