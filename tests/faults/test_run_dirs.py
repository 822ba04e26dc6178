"""Fault injection on run directories, through the real CLI in fresh processes: no run ever takes over,
overwrites or loses another's results (issue #9, rows 1-5, 7, 10, 11, 13)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, read_metrics, read_result, run_cli
from helpers import one_line_error as one_line_exit_2

TINY = ("debug=tiny", "model=mlp")


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_a_different_configuration_never_resumes_another_runs_checkpoint(tmp_path):
    # Row 1: killed after a few epochs, then the same name plus an experiment: a different configuration.
    args = ("run", *TINY, "name=coll", "trainer.max_epochs=200", "trainer.early_stopping.patience=null")
    proc = subprocess.Popen([sys.executable, "-m", "regbench", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "outputs" / "coll" / "runs"
    deadline = time.time() + 120
    while not list(run_dir.glob("*/checkpoints/last.pt")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (first,) = run_dir.iterdir()
    other = run_cli(*args, "experiment=label_corruption", cwd=tmp_path)
    assert other.returncode == 0, other.stderr[-2000:]
    dirs = sorted(p.name for p in run_dir.iterdir())
    assert len(dirs) == 2 and any("experiment=label_corruption" in d for d in dirs)  # its own folder
    (second,) = [run_dir / d for d in dirs if "experiment=label_corruption" in d]
    assert [r["epoch"] for r in read_metrics(second)] == list(range(1, 201))  # trained from scratch, all its own
    assert "experiment=label_corruption" in (second / ".hydra" / "overrides.yaml").read_text()
    assert not (first / "result.json").exists(), "the first run finished before it could be killed"
    assert "experiment" not in (first / ".hydra" / "overrides.yaml").read_text()  # left as it was, to resume later


@pytest.fixture(scope="module")
def seed1_run(tmp_path_factory) -> Path:
    """A completed run of seed=1 (made once; tests work on copies)."""
    run_dir = tmp_path_factory.mktemp("seed1") / "run"
    out = run_cli("run", *TINY, "seed=1", f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return run_dir


def test_a_run_dir_holding_another_configuration_is_refused_before_anything_is_touched(seed1_run, tmp_path):
    # Rows 1 and 4: hydra.run.dir shared by two seeds; .hydra/ included, nothing changes.
    run_dir = Path(shutil.copytree(seed1_run, tmp_path / "shared"))
    before = snapshot(run_dir)
    out = run_cli("run", *TINY, "seed=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    one_line_exit_2(out, str(run_dir), "holds another configuration")
    assert snapshot(run_dir) == before


def test_a_checkpoint_of_another_configuration_is_refused(seed1_run, tmp_path):
    # The identity check reads the checkpoint too (here: the id file was lost, the checkpoint copied in).
    a, b = seed1_run, tmp_path / "b"
    b.mkdir()
    (b / "checkpoints").mkdir()
    (b / "checkpoints" / "last.pt").write_bytes((a / "checkpoints" / "last.pt").read_bytes())
    before = snapshot(b)
    out = run_cli("run", *TINY, "seed=2", f"hydra.run.dir={b}", cwd=tmp_path)
    one_line_exit_2(out, "holds another configuration")
    assert snapshot(b) == before


def test_a_sweep_over_completed_runs_of_another_configuration_leaves_them_as_they_were(run_sweep):
    # Row 2: the same sweep plus an experiment goes to other folders; completed results stay completed.
    out, sweep_dir = run_sweep(*TINY, "seed=0,1")
    assert out.returncode == 0, out.stderr[-2000:]
    results = {p: p.read_bytes() for p in sweep_dir.glob("*/result.json")}
    out, _ = run_sweep(*TINY, "seed=0,1", "experiment=label_corruption", "dataset.label_noise=0.0")
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(p.read_bytes() == b for p, b in results.items())
    assert len(list(sweep_dir.glob("*/result.json"))) == 4


def test_values_that_differ_only_by_a_slash_get_their_own_dirs(run_sweep):
    # Row 2: '+note=a/b,a_b' used to map both jobs to one folder.
    out, sweep_dir = run_sweep(*TINY, "+note=a/b,a_b")
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(p.parent.name for p in sweep_dir.glob("*/result.json")) == ["+note=a%2Fb,debug=tiny,model=mlp",
                                                                            "+note=a_b,debug=tiny,model=mlp"]


def test_a_folder_regbench_did_not_make_is_never_written_into(tmp_path):
    # Row 3: the user's own files in hydra.run.dir.
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my notes\n")
    (folder / "metrics.jsonl").write_text("{}\n")
    out = run_cli("run", *TINY, f"hydra.run.dir={folder}", cwd=tmp_path)
    one_line_exit_2(out, "holds files regbench did not write")
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "metrics.jsonl"]
    assert (folder / "config.yaml").read_text() == "my notes\n"


def test_a_second_writer_is_refused_naming_the_holder_and_the_epochs_stay_in_order(tmp_path):
    # Row 5: the same command twice at once.
    args = ("run", *TINY, "trainer.max_epochs=3000", "trainer.early_stopping.patience=null", f"hydra.run.dir={tmp_path}/run")
    first = subprocess.Popen([sys.executable, "-m", "regbench", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        second = run_cli(*args, cwd=tmp_path)
        one_line_exit_2(second, "is being trained by another process", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    epochs = [r["epoch"] for r in read_metrics(tmp_path / "run")]
    assert epochs == list(range(1, len(epochs) + 1))  # one writer: no duplicated or interleaved epochs


def test_a_stale_lock_of_a_dead_process_does_not_block_a_rerun(tmp_path):
    run_dir = tmp_path / "run"
    args = ("run", *TINY, "trainer.max_epochs=400", "trainer.early_stopping.patience=null", f"hydra.run.dir={run_dir}")
    proc = subprocess.Popen([sys.executable, "-m", "regbench", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run_dir / ".running").exists() and (run_dir / ".lock").exists()  # left behind by the kill
    assert not (run_dir / "result.json").exists(), "the run finished before it could be killed"
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_result(run_dir)["epochs_run"] == 400 and not (run_dir / ".running").exists()


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".hidden", "x" * 300])
def test_output_paths_stay_inside_the_output_root(name, tmp_path):
    # Row 7: a name is one folder name, refused otherwise (not sanitized: the user sees what was wrong).
    out = run_cli("run", *TINY, f"name={name}", cwd=tmp_path)
    one_line_exit_2(out, "name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,fragment", [
    (("dataset.n_train=10000000",), "dataset.n_train=10000000 exceeds the 3601 training examples"),
    (("-m", "dataset.n_train=300,100000"), "dataset.n_train=100000 exceeds"),
    (("dataset.val_fraction=0.0001",), "leaves no validation example"),
    (("dataset.val_fraction=0.99", "dataset.n_train=300"), "dataset.n_train=300 exceeds the 40 training examples"),
])
def test_data_sizes_are_checked_before_anything_is_written(args, fragment, tmp_path):
    # Row 13: for every job of a sweep, before the first one trains.
    out = run_cli("run", *TINY, *args, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    one_line_exit_2(out, fragment)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_override_without_m_is_one_line(tmp_path):
    # Row 14.
    one_line_exit_2(run_cli("run", *TINY, "seed=0,1", cwd=tmp_path), "seed=0,1 is a sweep; add -m")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays_loadable(small_disk, tmp_path):
    # Row 10.
    run_dir = small_disk / "run"
    out = run_cli("run", *TINY, "trainer.max_epochs=50", "trainer.early_stopping.patience=null",
                  f"hydra.run.dir={run_dir}", cwd=tmp_path)
    one_line_exit_2(out, "cannot write", "no space left on device")
    assert not list(run_dir.rglob(".*.tmp"))  # the temporary file of the failed write is gone
    import torch

    for kept in run_dir.glob("checkpoints/*.pt"):
        torch.load(kept, weights_only=False)  # whatever checkpoint is there is whole


def test_a_completed_read_only_run_dir_is_reported_not_written(tmp_path):
    # Row 11: a completed run dir made read-only (a read-only bind mount: root ignores file modes).
    run_dir = tmp_path / "run"
    assert run_cli("run", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", "-o", "ro", str(run_dir), str(run_dir)]).returncode:
        pytest.skip("a read-only bind mount needs root")
    try:
        before = snapshot(run_dir)
        out = run_cli("run", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert out.returncode == 0 and "not retrained" in out.stdout, out.stderr[-2000:]
        assert out.stderr == "" and snapshot(run_dir) == before
        out = run_cli("run", *TINY, "seed=5", f"hydra.run.dir={tmp_path}/run/sub", cwd=tmp_path)
        one_line_exit_2(out)
    finally:
        subprocess.run(["umount", "-l", str(run_dir)])


def test_status_tells_a_running_job_by_its_lock(tmp_path):
    run_dir = tmp_path / "sweep" / "job"
    args = ("run", *TINY, "trainer.max_epochs=3000", "trainer.early_stopping.patience=null", f"hydra.run.dir={run_dir}")
    proc = subprocess.Popen([sys.executable, "-m", "regbench", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        out = run_cli("status", str(tmp_path / "sweep"), cwd=REPO)
        assert "1 running" in out.stdout, out.stdout
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    info = json.loads((run_dir / ".running").read_text())  # a kill leaves the note; the lock is gone with the process
    assert info["pid"] == proc.pid
    out = run_cli("status", str(tmp_path / "sweep"), cwd=REPO)
    assert "1 interrupted" in out.stdout, out.stdout
