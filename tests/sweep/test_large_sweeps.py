"""A sweep of any size is pre-checked job by job and launched: more than 2,000 jobs (issue #34, item 5) once
crashed in Hydra's own batch validation after the plan was written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from regbench.validate import check_command


def test_a_sweep_of_more_than_2000_jobs_is_planned_and_launched(tmp_path):
    """2,002 one-epoch jobs on 100 examples: the CLI checks every job, writes the plan and Hydra launches the
    first job, which trains (then the test stops the sweep: launching is what once crashed)."""
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "regbench", "run", "-m", "debug=tiny", "regularizer=none,dropout", "seed=range(1001)",
           f"hydra.sweep.dir={sweep_dir}"]
    first = sweep_dir / "debug=tiny,regularizer=none,seed=0" / "result.json"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and not first.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        crashed = proc.poll()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep's own process group, started above
        stderr = proc.communicate()[1]
    assert crashed is None, stderr[-3000:]
    assert (sweep_dir / "multirun.yaml").exists() and first.exists(), stderr[-3000:]


def test_every_job_of_a_large_sweep_is_checked(tmp_path):
    """No job goes unchecked: the 2,501st job of a sweep is composed and checked like the first."""
    plan = check_command(["debug=tiny", "seed=range(2501)", f"hydra.sweep.dir={tmp_path}"], multirun=True)
    assert len(plan.jobs) == len(plan.configs) == 2501
    assert plan.todo == 2501 and plan.config.hydra.sweep.dir == str(tmp_path)
    assert plan.configs[2500].seed == 2500 and plan.configs[-1].trainer.max_epochs == 1
