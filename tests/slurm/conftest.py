"""Tests on a real SLURM cluster: the single-node one `tests/slurm/cluster.sh up` starts on localhost.

Every test here is marked ``slurm`` and skips, with the reason, where ``sbatch`` is absent or the cluster is not up;
``make test-slurm`` (which CI runs after bringing the cluster up) sets ``REGBENCH_SLURM_REQUIRED=1``, and then a
missing cluster fails the tests instead. ``make test`` leaves them out (``-m "not slow and not slurm"``).

A job's submitit folder is ``<sweep dir>/.submitit/%j`` (the launcher's default), and every test has its own sweep
dir: a cluster brought up afresh numbers its jobs from 1 again, so no folder may outlive its cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

UP = "`tests/slurm/cluster.sh up` starts one"


def cluster_problem() -> str | None:
    """Why the tests cannot use a SLURM cluster here, or None when one takes jobs."""
    if shutil.which("sbatch") is None:
        return "SLURM is absent (no sbatch on PATH); `tests/slurm/cluster.sh up` installs and starts a local cluster"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the SLURM cluster does not answer ({e}); {UP}"
    if ping.returncode or "is UP" not in ping.stdout:
        return f"the SLURM cluster is not up (scontrol ping: {(ping.stdout + ping.stderr).strip()[:200]}); {UP}"
    if not any(state.strip().rstrip("*") in ("idle", "mixed", "allocated") for state in nodes.stdout.splitlines()):
        return f"the SLURM cluster has no node taking jobs (sinfo: {(nodes.stdout + nodes.stderr).strip()[:200]})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    problem = cluster_problem()
    if problem:
        if os.environ.get("REGBENCH_SLURM_REQUIRED") == "1":
            pytest.fail(f"REGBENCH_SLURM_REQUIRED=1 but {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(autouse=True)
def _needs_the_cluster(slurm_cluster):
    """Every test in tests/slurm/ needs the cluster (and is marked ``slurm`` by its module)."""


