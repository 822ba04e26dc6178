"""``dataset.corrupt_test`` from the config to the tensors: its default, what it does, and its check."""

from __future__ import annotations

import pytest
import torch
from helpers import run_cli, tiny

from regbench import build
from regbench.errors import ConfigError

RAW = ("dataset.normalize=false",)  # compare inputs as generated, not standardized by (corrupted) training statistics


def data(*overrides: str):
    cfg = tiny(*RAW, *overrides)
    build.check_data(cfg.dataset)
    return build.build_data(cfg.dataset, cfg.seed)


def test_the_paper_protocol_is_the_default_and_corrupt_test_false_keeps_test_clean():
    assert tiny().dataset.corrupt_test is True
    assert "corrupt_test" not in build.loader_kwargs(tiny().dataset)  # prepare's key, never the loader's
    clean = data()
    paper = data("dataset.input_corruption=shuffled_pixels")
    kept = data("dataset.input_corruption=shuffled_pixels", "dataset.corrupt_test=false")
    assert not torch.equal(paper.x_test, clean.x_test) and torch.equal(kept.x_test, clean.x_test)
    assert torch.equal(kept.x_train, paper.x_train) and torch.equal(kept.x_val, paper.x_val)


@pytest.mark.parametrize("value", ["1", "yes", "null"])
def test_a_corrupt_test_that_is_not_a_bool_is_refused_by_the_check(value):
    with pytest.raises(ConfigError, match=r"^dataset\.corrupt_test=.* is not one of: True, False$"):
        build.check_data(tiny(f"dataset.corrupt_test={value}").dataset)


def test_the_cli_refuses_it_in_one_line(tmp_path):
    out = run_cli("run", "dataset.corrupt_test=yes", "logger=none", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "regbench: error: dataset.corrupt_test='yes' is not one of: True, False"
