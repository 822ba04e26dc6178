"""Real sweeps for the report tests, trained once per session through the real CLI (in parallel).

Each sweep stands for one kind of embedded study, shrunk to seconds:
  factorial         2×2 regularizer factorial (Zhang et al. Table 1), 3 seeds
  corruption        label noise × input corruption (Zhang et al. Fig. 1), 2 seeds
  width_init        model width × init scale, with diverging runs, 2 seeds
  adam_l2_vs_adamw  two sub-sweeps over λ × lr, one seed (no confidence intervals)
  unfinished        a copy of `factorial` with a run failed, one still running, one never started
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

TINY = ["model=mlp", "debug=tiny", "trainer.max_epochs=2"]
SWEEPS = {
    "factorial": {".": ["seed=0,1,2", "regularizer=[],[dropout],[weight_decay],[dropout,weight_decay]"]},
    "corruption": {".": ["seed=0,1", "dataset.label_noise=0,1.0", "dataset.input_corruption=none,gaussian"]},
    "width_init": {".": ["seed=0,1", "model.width=8,64", "model.init=normal", "model.init_gain=1,1e30", "optimizer=sgd",
                         "optimizer.lr=1"]},
    "adam_l2_vs_adamw": {
        "adam_l2": ["seed=0", "optimizer=adam", "regularizer=l2", "regularizer.l2.strength=1e-4,1e-2", "optimizer.lr=1e-3,1e-2"],
        "adamw": ["seed=0", "optimizer=adamw", "regularizer=weight_decay", "regularizer.weight_decay.strength=1e-4,1e-2",
                  "optimizer.lr=1e-3,1e-2"],
    },
}


@pytest.fixture(scope="session")
def sweeps(tmp_path_factory, _isolated_env) -> dict[str, Path]:
    """Every sweep above, trained by `regbench run -m` (all started at once, then awaited)."""
    root = tmp_path_factory.mktemp("sweeps")
    procs = []
    for name, parts in SWEEPS.items():
        for sub, args in parts.items():
            out = root / name / sub
            procs.append((name, subprocess.Popen(
                [sys.executable, "-m", "regbench", "run", "-m", *args, *TINY, f"hydra.sweep.dir={out.resolve()}"],
                cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())))
    for name, p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, f"sweep {name} failed:\n{output[-3000:]}"
    dirs = {name: (root / name).resolve() for name in SWEEPS}
    dirs["unfinished"] = make_unfinished(dirs["factorial"], root / "unfinished")
    return dirs


def make_unfinished(source: Path, dest: Path) -> Path:
    """A copy of a finished sweep in which one run failed, one is still running and one never started."""
    shutil.copytree(source, dest)
    runs = sorted(d for d in dest.iterdir() if (d / "result.json").exists())
    by_name = {d.name: d for d in runs}
    failed = next(d for n, d in by_name.items() if "regularizer=[]" in n and "seed=1" in n)
    running = next(d for n, d in by_name.items() if "regularizer=[dropout]" in n and "seed=0" in n)
    never = next(d for n, d in by_name.items() if "regularizer=[dropout,weight_decay]" in n and "seed=2" in n)
    result = json.loads((failed / "result.json").read_text())
    (failed / "result.json").write_text(json.dumps({"status": "failed", "run_id": result["run_id"], "seed": 1,
                                                    "name": result["name"], "error": "RuntimeError: out of memory"}))
    (running / "result.json").unlink()  # killed mid-run: a checkpoint, no result yet
    shutil.rmtree(never)  # Hydra had not reached this job: no directory at all
    return dest


@pytest.fixture(scope="session")
def reports(sweeps) -> dict[str, Path]:
    """The report of every sweep: `factorial` through the real CLI in a fresh interpreter, the others in-process."""
    from regbench.report import write_report

    code = ("import sys; from regbench.cli import main; rc = main(['report', sys.argv[1]]); "
            "print('WANDB_IMPORTED' if 'wandb' in sys.modules else 'WANDB_NOT_IMPORTED'); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(sweeps["factorial"])], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "WANDB_NOT_IMPORTED" in out.stdout, "an offline report must not import wandb"
    assert "report.html" in out.stdout
    for name, d in sweeps.items():
        if name != "factorial":
            write_report(d)
    return sweeps


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture
def browser(tmp_path):
    """Run headless Chromium with the given arguments; skips where it is not installed (CI installs it)."""
    found = chromium()
    if found is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return lambda *args: run_chromium(found, tmp_path, *args)


def run_chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-extensions", "--mute-audio", f"--user-data-dir={tmp / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=120)


def read_sweep(sweep_dir: Path) -> list[dict]:
    """Every run's result.json with its config.yaml, read directly from the files (not through regbench)."""

    runs = []
    for path in sorted(Path(sweep_dir).glob("**/result.json")):
        config = path.parent / "config.yaml"
        runs.append({"dir": path.parent, "result": json.loads(path.read_text()),
                     "config": yaml.safe_load(config.read_text()) if config.exists() else {}})
    return runs


def write_fake_run(sweep: Path, overrides: list[str], test_acc: float, status: str = "completed", seed: int = 0,
             regularizer: dict | None = None) -> Path:
    """A run directory as `regbench run -m` leaves it, with made-up numbers."""
    d = sweep / ",".join(overrides + [f"seed={seed}"]).replace("/", "_")
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"seed={seed}"]))
    (d / "config.yaml").write_text(yaml.safe_dump({"name": "toy", "seed": seed, "regularizer": regularizer or {},
                                                   "dataset": {"label_noise": 0.0, "num_classes": 10},
                                                   "model": {"width": 100},
                                                   "logger": {"name": "none"}}))
    (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "step": 10 * e, "train_loss": 2 / e, "train_acc": 0.3 * e,
                                                         "val_loss": 2.2 / e, "val_acc": 0.25 * e}) + "\n" for e in (1, 2, 3)))
    (d / "result.json").write_text(json.dumps({"status": status, "train_acc": 0.9, "test_acc": test_acc, "seed": seed,
                                               "name": "toy", "device": "cpu", "finished_at": "2026-01-02T03:04:05+0000"}))
    return d


@pytest.fixture(scope="session")
def fake_run():
    """:func:`write_fake_run`: one run directory with made-up numbers, no training."""
    return write_fake_run


@pytest.fixture(scope="session")
def sweep_runs():
    return read_sweep
