"""A job that fails (a corrupt data file) or diverges does not stop the others; the sweep says so and exits 1."""

from __future__ import annotations

import json

import pandas as pd

from regbench.cli import main

GRID = ("model=mlp", "dataset.shuffle_seq=false,true", "optimizer=sgd", "optimizer.lr=0.01,1e9")
TINY = ("debug=tiny", "dataset.n_train=300")


def corrupt_shuffled_mnist1d(cache):
    """Generate the shuffled-sequence MNIST-1D file in the private cache, then overwrite it with junk."""
    from regbench.data.mnist1d import load

    load(shuffle_seq=True)
    (path,) = cache.glob("mnist1d-*.npz")
    path.write_bytes(b"not an npz file")
    return path


def test_failures_are_isolated_recorded_and_rerun(run_sweep, cache, tmp_path, capsys):
    bad = corrupt_shuffled_mnist1d(cache)
    out, sweep_dir = run_sweep(*GRID, *TINY)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]

    runs = pd.read_csv(sweep_dir / "results.csv")
    by_status = runs.groupby("status")["run_dir"].apply(sorted).to_dict()
    assert len(runs) == 4 and set(by_status) == {"completed", "diverged", "failed"}
    assert all("shuffle_seq=True" in d for d in by_status["failed"]) and len(by_status["failed"]) == 2
    assert by_status["diverged"] == [d for d in by_status["completed"] + by_status["diverged"] if "lr=1000000000.0" in d]

    for d in by_status["failed"]:
        result = json.loads((sweep_dir / d / "result.json").read_text())
        assert result["status"] == "failed" and result["run_id"] and "pickled" in result["error"]
        assert "Traceback" in (sweep_dir / d / "regbench.log").read_text()  # its own log holds the traceback
    assert "2 failed" in out.stdout and out.stdout.count("failed ") >= 2 and "diverged" in out.stdout

    assert main(["status", str(sweep_dir)]) == 0
    assert "1 completed, 1 diverged" in capsys.readouterr().out

    # The data is fixed: re-running the same command trains the failed jobs only.
    bad.unlink()
    kept = {d: (sweep_dir / d / "result.json").read_bytes() for d in by_status["completed"] + by_status["diverged"]}
    out, _ = run_sweep(*GRID, *TINY)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    runs = pd.read_csv(sweep_dir / "results.csv")
    assert sorted(runs["status"]) == ["completed", "completed", "diverged", "diverged"]
    assert all((sweep_dir / d / "result.json").read_bytes() == b for d, b in kept.items())
    assert "2 finished by an earlier run of the sweep, not retrained" in out.stdout
