"""Helpers the tests share: compose the real config, shrink it, run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Shrink every run: conf/debug/tiny.yaml (no tracker unless a test asks for one), two epochs on 200 examples.
TINY = ["debug=tiny", "trainer.max_epochs=2", "dataset.n_train=200"]


def compose(*overrides: str):
    from regbench.config import compose as _compose

    return _compose(list(overrides))


def tiny(*overrides: str):
    """A composed config shrunk to run in about a second on one CPU core."""
    return compose(*TINY, *overrides)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`regbench ...` as a user types it, in a fresh interpreter."""
    full_env = {**os.environ, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None unsets a variable
    return subprocess.run([sys.executable, "-m", "regbench", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def read_result(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "result.json").read_text())


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command was refused as bad input: exit 2 and one line on stderr, ``regbench: error: ...`` holding every
    fragment. Returns that line."""
    assert out.returncode == 2, (out.stdout[-1000:], out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


#: Three members of one stack, trained in a process of their own: ``python -c STACK_SCRIPT <root> <overrides...>``.
STACK_SCRIPT = """
import sys
from regbench.config import compose
from regbench.stack import train_stacked
args, root = sys.argv[2:], sys.argv[1]
train_stacked([compose([*args, f"seed={s}"]) for s in range(3)], [f"{root}/m{s}" for s in range(3)])
"""


def kill_stack_mid_training(killed: Path, args: list[str], epochs: int = 3, until=None) -> None:
    """Train seeds 0-2 of ``args`` as one stack in ``killed/m0..m2`` in another process; SIGKILL it once every member
    has ``epochs`` rows in its metrics.jsonl, before any has finished, or once ``until(killed)`` is true (the caller
    then checks it was not too late)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", STACK_SCRIPT, str(killed), *args], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mid_training = until is None
    if mid_training:
        def until(root):
            return all((root / f"m{s}" / "metrics.jsonl").exists() and len(read_metrics(root / f"m{s}")) >= epochs
                       for s in range(3))
    deadline = time.time() + 120
    while not until(killed):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if mid_training:
        assert not any((killed / f"m{s}" / "result.json").exists() for s in range(3)), "killed too late"
