"""benchmarks/device.sh, the one command a session lent a GPU runs (#33), dry-run on this CPU: what it needs, what it
writes, and that its budgets stop the measured scripts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

SCRIPT = REPO / "benchmarks" / "device.sh"


def run_script(tmp_path: Path, python: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": python, "OUT": str(tmp_path / "out"), **env})


def test_without_hydra_or_wheels_it_says_what_to_do_and_exits_2(tmp_path):
    base = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter the venv was made from: no regbench deps
    if not base.is_file() or subprocess.run([str(base), "-c", "import hydra"], capture_output=True).returncode == 0:
        pytest.skip(f"{base} is missing or has hydra-core")
    (tmp_path / "wheels").mkdir()
    out = run_script(tmp_path, str(base), WHEELS=str(tmp_path / "wheels"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f"device.sh: {base} has no hydra-core and {tmp_path / 'wheels'}/ holds no wheels: run `make device-wheels` "
        "and carry .whl"]
    assert not (tmp_path / "out" / "device.txt").exists(), "nothing ran before the check"


@pytest.mark.slow  # about 60 s on the 2-core VM: the smoke run, then the two scripts with --quick and small budgets
def test_quick_dry_run_writes_each_file_and_keeps_to_its_budgets(tmp_path):
    out = run_script(tmp_path, sys.executable, QUICK="1", STACKED_S="1", LOOP_S="1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    files = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert set(files) == {"device.txt", "smoke.txt", "gpu_stacked.txt", "gpu.txt"}
    assert re.search(r"^python 3\.\d+\.\d+ \| torch \S+ \| cuda \S+ \| (no CUDA device|.+)$", files["device.txt"], re.M)
    assert files["smoke.txt"].strip().splitlines()[-1].startswith("gpu stacked speedup cnn: ")
    stacked = [line for line in files["gpu_stacked.txt"].splitlines() if not line.startswith("[")]
    assert re.match(r"cnn\s+fp32\s+1\s+\d+", stacked[2]), stacked  # the first row is measured
    assert re.search(r"^cnn\s+fp32\s+K=2 and up left out: the row would pass this model and precision's \d+ s of "
                     r"--budget-s$", "\n".join(stacked), re.M), stacked
    # the first model and precision takes its 1 s and more: the others start after the budget, so they are left out
    assert [line for line in stacked if " left out: 1 s" in line] == [
        "cnn       bf16      left out: 1 s of --budget-s have passed",
        "resnet18  fp32      left out: 1 s of --budget-s have passed",
        "resnet18  bf16      left out: 1 s of --budget-s have passed"], stacked
    assert stacked[-2].startswith("gpu stacked speedup cnn: "), stacked
    assert stacked[-1] == "gpu stacked speedup resnet18: - (left out: --budget-s had passed)", stacked
    loop = [line for line in files["gpu.txt"].strip().splitlines() if not line.startswith("[")]
    assert re.match(r"resnet18\s+fp32\s+\d+\s+\d+\s+\d+\.\d\d$", loop[2]), loop  # the first mode ran,
    assert len(loop) == 10 and all(re.match(r"\S+\s+\S+\s+left out: 1 s of --budget-s have passed$", line)
                                   for line in loop[3:]), loop  # past its 1 s: the seven others are left out
    assert loop[-1].split()[:2] == ["cnn", "bf16+compile"], loop
