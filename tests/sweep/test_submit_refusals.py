"""`regbench submit` and `status` refuse in one line, exit 2, what they cannot use; no SLURM needed."""

from __future__ import annotations

import os
import sys

from helpers import run_cli

SWEEP = ("debug=tiny", "seed=0,1")


def test_submit_without_sbatch_on_path_is_one_line(tmp_path):
    bin_dir = os.path.dirname(sys.executable)  # python, and nothing of SLURM's
    out = run_cli("submit", *SWEEP, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, env={"PATH": bin_dir})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("regbench: error: sbatch is not on PATH")
    assert not (tmp_path / "sweep").exists()  # nothing written


def test_submit_with_another_launcher_is_one_line(tmp_path):
    out = run_cli("submit", *SWEEP, "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "hydra/launcher=joblib is not one of slurm, submitit_slurm" in out.stderr


def test_a_damaged_submission_manifest_is_one_line_in_status(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    for junk in ("{not json", '["a list"]'):
        (sweep_dir / ".regbench-submitted.json").write_text(junk)
        out = run_cli("status", str(sweep_dir))
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stdout + out.stderr
        assert ".regbench-submitted.json is" in out.stderr and "remove it to submit the sweep again" in out.stderr


def test_a_manifest_from_another_sweep_is_one_line_and_kept(tmp_path):
    """A manifest names the sweep dir it was written for: copied into another, its tasks are not that sweep's."""
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    text = '{"array_job_id": "7", "sweep_dir": "/elsewhere/sweep", "tasks": [{"job_id": "7_0", "run_dir": "seed=0"}]}'
    (sweep_dir / ".regbench-submitted.json").write_text(text)
    out = run_cli("status", str(sweep_dir))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stdout + out.stderr
    assert "is the submission of another sweep (/elsewhere/sweep): remove it" in out.stderr
    assert (sweep_dir / ".regbench-submitted.json").read_text() == text  # nothing lost
