"""Stacks never lose or mix a member's results (issue #34, rows 3 and 4): a kill at a member's end leaves no
result without its tracker run, and one member's foreign checkpoint neither blocks nor touches its siblings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import TINY, compose, read_result, run_cli

from regbench import stack as S

WANDB_STACK = ["model=mlp", "seed=0,1,2", "trainer.max_epochs=3", "dataset.n_train=200", "debug=tiny", "logger=wandb",
               "trainer.progress=false"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _offline_run(run_dir: Path, logger_id: str) -> list[Path]:
    return list((run_dir / "wandb").glob(f"offline-run-*-{logger_id}"))


def test_a_kill_as_stack_members_finish_leaves_no_result_without_its_wandb_run(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *WANDB_STACK, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    try:
        while not list(sweep_dir.glob("*/result.json")):  # the first member's result: kill at once
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before a member finished"
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for path in sweep_dir.glob("*/result.json"):
        result = json.loads(path.read_text())
        assert result["logger_id"] and result["stacked"] == 3, result
        assert _offline_run(path.parent, result["logger_id"]), "a result whose W&B run was never written"

    out = run_cli("run", "-m", *WANDB_STACK, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    results = [read_result(p.parent) for p in sweep_dir.glob("*/result.json")]
    assert len(results) == 3
    for path in sweep_dir.glob("*/result.json"):
        result = json.loads(path.read_text())
        assert result["status"] == "completed" and _offline_run(path.parent, result["logger_id"])


def test_another_configuration_s_checkpoint_in_one_member_is_one_line_and_touches_nothing(run_sweep, tmp_path):
    args = (*TINY, "model=mlp", "seed=0,1,2", "trainer.early_stopping.patience=null")
    out, sweep_dir = run_sweep(*args)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b, _ = sorted(p.parent for p in sweep_dir.glob("*/result.json"))
    for p in sweep_dir.glob("*/result.json"):
        p.unlink()  # as if killed after every member's last checkpoint
    shutil.copy(a / "checkpoints" / "last.pt", b / "checkpoints" / "last.pt")  # seed 0's checkpoint in seed 1's folder
    before = snapshot(sweep_dir)
    out, _ = run_sweep(*args)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert str(b / "checkpoints" / "last.pt") in line and "another configuration" in line, line
    assert snapshot(sweep_dir) == before  # .hydra/ included: nothing was rewritten


def test_a_single_run_with_another_configuration_s_checkpoint_is_refused_before_hydra_writes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, run_dir in ((0, a), (1, b)):
        assert run_cli("run", *TINY, "model=mlp", f"seed={seed}", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    (b / "result.json").unlink()
    shutil.copy(a / "checkpoints" / "last.pt", b / "checkpoints" / "last.pt")
    before = snapshot(b)
    out = run_cli("run", *TINY, "model=mlp", "seed=1", f"hydra.run.dir={b}", cwd=tmp_path)
    assert out.returncode == 2 and "another configuration" in out.stderr, out.stderr[-2000:]
    assert snapshot(b) == before


def test_a_member_refused_at_train_time_leaves_the_stack_and_its_siblings_train(tmp_path):
    """The pre-check refuses a foreign checkpoint; one copied in after it is refused by the stack, which trains on."""
    tiny = [*TINY, "model=mlp", "trainer.checkpoint_every_s=0"]
    foreign = tmp_path / "foreign"
    S.train_stacked([compose(*tiny, "seed=9"), compose(*tiny, "seed=8")], [foreign, tmp_path / "other"])
    dirs = [tmp_path / f"m{s}" for s in range(3)]
    (dirs[1] / "checkpoints").mkdir(parents=True)
    shutil.copy(foreign / "checkpoints" / "last.pt", dirs[1] / "checkpoints" / "last.pt")
    before = snapshot(dirs[1])
    results = S.train_stacked([compose(*tiny, f"seed={s}") for s in range(3)], dirs)
    assert [r["status"] for r in results] == ["completed", "refused", "completed"]
    assert "another configuration" in results[1]["error"]
    assert results[0]["stacked"] == 2 and results[2]["stacked"] == 2
    assert snapshot(dirs[1]) == before
