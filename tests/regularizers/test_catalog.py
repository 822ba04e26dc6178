"""What every regularizer of the catalog shares: a cited source, checked arguments, a no-op at its zero point,
and nothing of it in the baseline."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest
import torch
from helpers import compose, tiny
from omegaconf import OmegaConf
from torchvision.ops import StochasticDepth

from regbench import build, checkpoint
from regbench.config import CONFIG_DIR
from regbench.errors import ConfigError
from regbench.models.layers import TrainingNoise
from regbench.train import train

# The augmentations (image_augment, signal_augment, mixing) have their own catalog tests.
TARGETS = sorted({node["_target_"] for p in (CONFIG_DIR / "regularizer").glob("*.yaml")
                  for node in (OmegaConf.load(p) or {}).values()
                  if not node["_target_"].startswith(("regbench.regularizers.image_augment", "regbench.regularizers.signal_augment",
                                                      "regbench.regularizers.mixing"))})
RESNET = ("dataset=digits", "model=resnet18", "model.width=4")

# Each regularizer's zero point, and the setting it runs on.
ZERO = {
    "max_norm": ("c=inf", ()),
    "grad_clip": ("max_norm=inf", ()),
    "ema": ("decay=0", ()),
    "label_smoothing": ("eps=0", ()),
    "noise": ("std=0", ()),
    "weight_noise": ("std=0", ()),
    "drop_path": ("p=0", RESNET),
    "dropout": ("p=0", ()),
    "l1": ("strength=0", ()),
    "l2": ("strength=0", ()),
    "weight_decay": ("strength=0", ()),
}
BAD = [("max_norm", "c", -1), ("grad_clip", "max_norm", 0), ("ema", "decay", 1.5), ("label_smoothing", "eps", 2),
       ("noise", "std", -0.1), ("weight_noise", "std", -0.1), ("drop_path", "p", 1.0)]


@pytest.mark.parametrize("target", TARGETS)
def test_every_regularizer_class_is_documented_with_its_source(target):
    module_name, cls_name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    cls = getattr(module, cls_name)
    assert inspect.getdoc(cls), f"{target} has no docstring"
    text = f"{inspect.getdoc(cls)} {module.__doc__}"
    assert re.search(r"\b(19|20)\d\d\b", text), f"{target}: cite the paper (author year) in the class or module docstring"


@pytest.mark.parametrize("name,key,value", BAD)
def test_out_of_range_arguments_name_the_full_key(name, key, value):
    cfg = compose(f"regularizer=[{name}]", f"regularizer.{name}.{key}={value}")
    with pytest.raises(ConfigError, match=rf"^regularizer\.{name}\.{key}={value} is out of range"):
        build.build_regularizers(cfg.regularizer)


def run(tmp_path, label, *overrides):
    result = train(tiny("trainer.max_epochs=1", "trainer.early_stopping.patience=null", *overrides), tmp_path / label)
    weights = checkpoint.load(tmp_path / label / "checkpoints" / "last.pt")["model"]
    return result, weights


def test_zero_point_changes_nothing(tmp_path):
    """At its zero point a regularizer trains exactly the baseline: same weights, same losses."""
    baselines = {}
    for name, (zero, setting) in ZERO.items():
        if setting not in baselines:
            baselines[setting] = run(tmp_path, f"baseline{len(baselines)}", *setting)
        (base, base_weights) = baselines[setting]
        result, weights = run(tmp_path, name, *setting, f"regularizer=[{name}]", f"regularizer.{name}.{zero}")
        assert result["regularizers"] == [name]
        assert weights.keys() == base_weights.keys(), name
        assert all(torch.equal(weights[k], base_weights[k]) for k in weights), name
        for key in ("train_loss", "val_loss", "test_loss"):
            assert result[key] == base[key], (name, key)


def test_baseline_has_no_regularization_anywhere():
    cfg = compose()
    regs = build.build_regularizers(cfg.regularizer)
    assert regs == [] and build.model_options(regs) == {}
    model = build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs)
    kinds = (torch.nn.Dropout, torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm,
             TrainingNoise, StochasticDepth)
    assert not [m for m in model.modules() if isinstance(m, kinds)]
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules())  # weight norm, weight noise
    assert cfg.trainer.early_stopping.patience is not None, "early stopping is a trainer option, on by default"
