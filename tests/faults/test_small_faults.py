"""The smaller rows of issue #34 (row 11): a doubled option, a corrupt data file among two roots, raw HTML from a
tag in report.md, a repeated warning, and joblib workers orphaned by a killed command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, run_cli
from helpers import one_line_error as one_line


@pytest.mark.parametrize("args", [["regularizer=[dropout,dropout]"], ["-m", "regularizer=none,[l2,dropout,l2]"]])
def test_an_option_listed_twice_is_one_line(args, tmp_path):
    out = run_cli("run", *TINY, *args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                  cwd=tmp_path)
    one_line(out, "more than once")
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def _cifar(root: Path, damaged: bool) -> None:
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 20))}
        (folder / name).write_bytes(pickle.dumps(batch))
    if damaged:
        (folder / "data_batch_2").write_bytes(os.urandom(300))


def test_a_corrupt_data_file_among_two_roots_is_named_with_its_root(run_sweep, tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    _cifar(good, False)
    _cifar(bad, True)
    out, sweep_dir = run_sweep("dataset=cifar10", "model=logistic", f"dataset.root={good},{bad}", *TINY,
                               "dataset.n_train=50")
    one_line(out, str(bad / "cifar-10-batches-py" / "data_batch_2"))
    assert not sweep_dir.exists()


def test_a_data_file_whose_unpickling_error_spans_two_lines_is_still_one_line(run_sweep, tmp_path):
    """pickle's complaint about a persistent id (what some random bytes above start with) is two lines long; the
    error quoting it is one."""
    _cifar(tmp_path / "data", False)
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"P0\n.")
    out, sweep_dir = run_sweep("dataset=cifar10", "model=logistic", f"dataset.root={tmp_path / 'data'}", *TINY,
                               "dataset.n_train=50")
    line = one_line(out, str(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2"), "persistent id")
    assert "encountered, but no persistent_load" in line
    assert not sweep_dir.exists()


def test_report_md_keeps_a_tag_s_html_as_text_and_warns_once_per_bad_line(run_sweep, tmp_path):
    out, sweep_dir = run_sweep(*TINY, "model=mlp", "seed=0,1", "+note='<script>alert(1)</script>',plain")
    assert out.returncode == 0, out.stderr[-2000:]
    (metrics, *_) = sorted(sweep_dir.glob("*/metrics.jsonl"))
    with open(metrics, "a") as f:
        f.write("[1, 2]\n")
    out = run_cli("report", str(sweep_dir), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    md = (sweep_dir / "report.md").read_text()
    prose = "".join(part for i, part in enumerate(md.split("```")) if i % 2 == 0)  # code blocks show text as it is
    assert "<script>" not in prose and "&lt;script&gt;" in prose
    assert (out.stdout + out.stderr).count("is not a metrics row") == 1


def test_joblib_workers_end_when_their_command_is_killed(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["model=mlp", "seed=0,1", "stack=1", "trainer.max_epochs=500", "dataset.n_train=400", "logger=none",
            "trainer.progress=false", "trainer.num_threads=1", "trainer.early_stopping.patience=null",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *args, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(list(sweep_dir.glob("*/checkpoints/last.pt"))) < 2:
            assert proc.poll() is None and time.time() < deadline, "the sweep ended first"
            time.sleep(0.05)
        workers = [json.loads(p.read_text())["pid"] for p in sweep_dir.glob("*/.running")]
        assert len(workers) == 2 and proc.pid not in workers
        proc.send_signal(signal.SIGKILL)  # the command only: its workers are left to themselves
        proc.wait()
        deadline = time.time() + 15
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "workers trained on after their command was killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    out = run_cli("status", str(sweep_dir), cwd=tmp_path)
    assert "2 interrupted" in out.stdout, out.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_full_disk_at_a_stack_s_first_checkpoint_gives_every_member_its_try(small_disk, tmp_path):
    """Row 8: the stack fails, each member trains alone and fails on its own; none is left unreported."""
    sweep_dir = small_disk / "sweep"
    out = run_cli("run", "-m", *TINY, "model=mlp", "seed=0,1,2", "trainer.max_epochs=50",
                  "trainer.early_stopping.patience=null", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Logging error" not in out.stderr and "Traceback" not in out.stderr
    logs = {p.parent.name: p.read_text() for p in sweep_dir.glob("*/regbench.log")}
    assert len(logs) == 3
    for name, text in logs.items():  # each member's own job says what happened to it, not "trained"
        assert "no space left on device" in text.lower() or "no result yet" in text, name
    assert "0 completed" in out.stdout and "job refused" not in out.stdout
