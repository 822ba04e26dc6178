"""Bad input the 0.1 pre-check let through (issue #9, rows 13 and 14): one line, exit 2, nothing written."""

from __future__ import annotations

import pytest
from helpers import run_cli

CASES = [
    (("optimizer.lr=inf",), "optimizer.lr=inf must be a finite number"),
    (("logger=wandb", "logger.tags=['']"), "logger.tags: '' must be a W&B tag"),
    (("logger=wandb", f"logger.tags=[{'a' * 70}]"), "must be a W&B tag of 1 to 64 characters"),
    (("logger=wandb", "logger.wandb.project=a/b"), "logger.wandb.project='a/b' must be a W&B project name"),
    (("logger=[tensorboard,wandb]", "logger.wandb.project='a#b'"), "logger.wandb.project='a#b' must be a W&B project name"),
    (("regularizer=[dropout,foo]",), "unknown regularizer=foo; available: "),
    (("model=foo",), "unknown model=foo; available: alexnet_small, cnn, cnn1d"),
    (("-m", "seed=0", "dataset.n_train=300,100000"), "dataset.n_train=100000 exceeds"),
    (("trainer.early_stopping=false",), "trainer.early_stopping=False is not a group of settings"),  # was a traceback
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_before_anything_is_written(args, message, tmp_path):
    out = run_cli("run", "debug=tiny", *args, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep",
                  cwd=tmp_path)
    assert out.returncode == 2, (out.stdout[-1000:], out.stderr[-1000:])
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("regbench: error: ") and message in out.stderr, out.stderr
    assert "Config search path" not in out.stderr and list(tmp_path.iterdir()) == []
