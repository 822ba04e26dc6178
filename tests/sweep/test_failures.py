"""A job that fails while training or diverges does not stop the others; the sweep says so and exits 1.
A data file that is there but does not parse is refused before anything trains."""

from __future__ import annotations

import json

import pandas as pd

from regbench.cli import main

GRID = ("model=mlp", "regularizer=none,[flaky]", "optimizer=sgd", "optimizer.lr=0.01,1e9")
TINY = ("debug=tiny", "dataset.n_train=300")

# A user's regularizer (CONTRIBUTING's recipe, outside the repository) that fails on its first batch
# until its bug is fixed: a failure no check before training can see.
FLAKY = """
from regbench.regularizers.base import Regularizer


class Flaky(Regularizer):
    def transform_batch(self, x, y):
        raise RuntimeError("a bug in the user's regularizer")
"""
FIXED = FLAKY.replace('raise RuntimeError("a bug in the user\'s regularizer")', "return x, y")


def flaky_plugin(tmp_path) -> tuple[str, dict]:
    (tmp_path / "plugin" / "conf" / "regularizer").mkdir(parents=True)
    (tmp_path / "plugin" / "flaky_regularizer.py").write_text(FLAKY)
    (tmp_path / "plugin" / "conf" / "regularizer" / "flaky.yaml").write_text("flaky:\n  _target_: flaky_regularizer.Flaky\n")
    return f"hydra.searchpath=[file://{tmp_path}/plugin/conf]", {"PYTHONPATH": str(tmp_path / "plugin")}


def corrupt_shuffled_mnist1d(cache):
    """Generate the shuffled-sequence MNIST-1D file in the private cache, then overwrite it with junk."""
    from regbench.data.mnist1d import load

    load(shuffle_seq=True)
    (path,) = cache.glob("mnist1d-*.npz")
    path.write_bytes(b"not an npz file")
    return path


def test_a_data_file_that_does_not_parse_is_refused_before_anything_is_written(run_sweep, cache, tmp_path):
    bad = corrupt_shuffled_mnist1d(cache)
    out, sweep_dir = run_sweep("model=mlp", "dataset.shuffle_seq=false,true", *TINY)
    assert out.returncode == 2 and not sweep_dir.exists()
    assert out.stderr.count("\n") == 1 and str(bad) in out.stderr, out.stderr


def test_failures_are_isolated_recorded_and_rerun(run_sweep, tmp_path, capsys):
    searchpath, env = flaky_plugin(tmp_path)
    out, sweep_dir = run_sweep(*GRID, *TINY, searchpath, env=env)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]

    runs = pd.read_csv(sweep_dir / "results.csv")
    by_status = runs.groupby("status")["run_dir"].apply(sorted).to_dict()
    assert len(runs) == 4 and set(by_status) == {"completed", "diverged", "failed"}
    assert all("regularizer=[flaky]" in d for d in by_status["failed"]) and len(by_status["failed"]) == 2
    assert by_status["diverged"] == [d for d in by_status["completed"] + by_status["diverged"] if "lr=1000000000.0" in d]

    for d in by_status["failed"]:
        result = json.loads((sweep_dir / d / "result.json").read_text())
        assert result["status"] == "failed" and result["run_id"] and "a bug in the user's regularizer" in result["error"]
        own_log = (sweep_dir / d / "regbench.log").read_text()
        if "in the stack of" in own_log:  # trained by its stack's leader: the leader's log holds the traceback
            assert "a bug in the user's regularizer" in own_log
            leader = own_log.split("led by ")[1].split(" (")[0]
            own_log = (sweep_dir / leader / "regbench.log").read_text()
        assert "Traceback" in own_log
    assert "2 failed" in out.stdout and out.stdout.count("failed ") >= 2 and "diverged" in out.stdout

    assert main(["status", str(sweep_dir)]) == 0
    assert "1 completed, 1 diverged" in capsys.readouterr().out

    # The bug is fixed: re-running the same command trains the failed jobs only.
    (tmp_path / "plugin" / "flaky_regularizer.py").write_text(FIXED)
    kept = {d: (sweep_dir / d / "result.json").read_bytes() for d in by_status["completed"] + by_status["diverged"]}
    out, _ = run_sweep(*GRID, *TINY, searchpath, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    runs = pd.read_csv(sweep_dir / "results.csv")
    assert sorted(runs["status"]) == ["completed", "completed", "diverged", "diverged"]
    assert all((sweep_dir / d / "result.json").read_bytes() == b for d, b in kept.items())
    assert "2 finished by an earlier run of the sweep, not retrained" in out.stdout
