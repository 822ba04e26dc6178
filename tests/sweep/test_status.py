"""`regbench status`: how many runs of a sweep are completed, running, interrupted, failed, pending."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from regbench.cli import main
from regbench.rundir import hold
from regbench.sweep.status import count


def test_status_counts_every_state(finished_sweep, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep_dir)
    a, b, c, d = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    (a / "result.json").unlink()  # killed after a checkpoint: resumes on re-run
    (b / "result.json").unlink()  # a live job holds it
    shutil.rmtree(c)  # not started yet: known from multirun.yaml
    (d / "result.json").write_text(json.dumps({"status": "failed", "error": "ValueError: corrupt file", "seed": 1}))
    with hold(b, (b / ".regbench-run").read_text().strip()):
        counts = count(sweep_dir)
        assert {k: v for k, v in counts.items() if v} == {"interrupted": 1, "running": 1, "pending": 1, "failed": 1}
        assert main(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "4 runs:" in out and "1 running" in out and "1 failed" in out and "1 pending" in out
    assert "ValueError: corrupt file" in out and "interrupted" in out


def test_a_marker_left_by_a_dead_process_is_not_running(finished_sweep, tmp_path):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep_dir)
    a = sorted(p for p in sweep_dir.iterdir() if p.is_dir())[0]
    (a / "result.json").unlink()
    (a / ".running").write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 12345}))
    assert count(sweep_dir)["interrupted"] == 1


@pytest.mark.parametrize("command", ["status", "results", "report"])
def test_a_missing_dir_is_one_line_on_stderr_and_exit_2(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main([command, str(tmp_path / "nope")])
    assert exit.value.code == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and "nope is not a directory" in out.err


def test_a_failed_run_being_retrained_is_running(finished_sweep, tmp_path):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep_dir)
    a = sorted(p for p in sweep_dir.iterdir() if p.is_dir())[0]
    (a / "result.json").write_text(json.dumps({"status": "failed", "error": "ValueError: corrupt file"}))
    with hold(a, (a / ".regbench-run").read_text().strip()):  # as the job retraining it holds its run dir
        assert count(sweep_dir)["running"] == 1
    assert count(sweep_dir)["running"] == 0 and count(sweep_dir)["failed"] == 1
