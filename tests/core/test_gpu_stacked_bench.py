"""benchmarks/gpu_stacked.py --quick on a CPU (#33): every column of every row runs, and the speedup line comes last."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import REPO

NUMBER = r"\d+(?:\.\d+)?"
CELL = rf"\s+({NUMBER})\s+({NUMBER})"  # images/s, runs/hour


@pytest.mark.slow  # about 25 s on the 2-core VM: 6 `regbench run` processes besides the runs in the script
def test_quick_run_prints_every_column_and_the_speedup(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_stacked.py"), "--quick", "--models", "cnn"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert re.match(r"torch \S+ on \S+ \((CPU|.+)\), dataset=(cifar10|synthetic) \(256 training examples\), batch 64, "
                    r"1 epoch per run, K up to 2$", lines[0]), lines[0]
    assert "sequential" in lines[1] and "stacked" in lines[1] and "side by side" in lines[1]
    rows = {}
    for line in lines[2:-1]:
        model, precision, k, rest = line.split(maxsplit=3)
        rows[precision, int(k)] = rest
    assert set(rows) == {("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)}, lines
    for k in (1, 2):
        numbers = re.match(rf"{CELL}{CELL}{CELL}", " " + rows["fp32", k])
        assert numbers and all(float(n) > 0 for n in numbers.groups()), rows["fp32", k]
        bf16 = " " + rows["bf16", k]  # stacked: numbers, or the reason it trains alone; the other two columns numbers
        assert re.match(rf"{CELL}{CELL}{CELL}", bf16) or re.match(rf"{CELL}\s+trains alone: .+{CELL}$", bf16), bf16
    speedup = re.fullmatch(rf"gpu stacked speedup cnn: ({NUMBER})x \(K=2; ({NUMBER})x side by side\)", lines[-1])
    assert speedup and float(speedup.group(1)) > 0 and float(speedup.group(2)) > 0, lines[-1]
