"""Every augmentation config composes through Hydra, builds a Regularizer and runs on a batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose
from torch import nn

from regbench.build import build_regularizers as build
from regbench.regularizers.base import Regularizer

CONF = Path(__file__).resolve().parents[2] / "conf"
IMAGE, SIGNAL = (3, 16, 16), (1, 40)

# Each config of this family, with the sample shape it is meant for and the keys it selects.
CONFIGS = {
    "random_crop": (IMAGE, ["random_crop"]),
    "hflip": (IMAGE, ["hflip"]),
    "rotation": (IMAGE, ["rotation"]),
    "color_jitter": (IMAGE, ["color_jitter"]),
    "gaussian_noise": (IMAGE, ["gaussian_noise"]),
    "random_erasing": (IMAGE, ["random_erasing"]),
    "randaugment": (IMAGE, ["randaugment"]),
    "signal_shift": (SIGNAL, ["signal_shift"]),
    "signal_scale": (SIGNAL, ["signal_scale"]),
    "signal_noise": (SIGNAL, ["signal_noise"]),
    "mixup": (IMAGE, ["mixup"]),
    "cutmix": (SIGNAL, ["cutmix"]),
    "augment_light": (IMAGE, ["hflip"]),
    "augment_standard": (IMAGE, ["random_crop", "hflip"]),
    "augment_strong": (IMAGE, ["random_crop", "hflip", "randaugment", "random_erasing"]),
    "augment_signal": (SIGNAL, ["signal_shift", "signal_scale", "signal_noise"]),
}


def compose_regularizers(names: list[str]):
    """``cfg.regularizer`` for ``regularizer=[names]``, through Hydra's real composition."""
    return compose(f"regularizer=[{','.join(names)}]").regularizer


def test_every_config_of_this_family_is_listed():
    owned = {p.stem for p in (CONF / "regularizer").glob("*.yaml")
             if "regbench.regularizers.image_augment" in p.read_text()
             or "regbench.regularizers.signal_augment" in p.read_text()
             or "regbench.regularizers.mixing" in p.read_text()}
    assert owned == set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_composes_builds_and_runs(name):
    shape, keys = CONFIGS[name]
    cfg = compose_regularizers([name])
    assert list(cfg.keys()) == keys
    x, y = torch.randn(8, *shape), torch.randint(0, 10, (8,))
    for reg in build(cfg):
        assert isinstance(reg, Regularizer)
        reg.check(shape, 10)
        reg.setup(nn.Identity(), input_shape=shape, num_classes=10)
        x, y = reg.transform_batch(x, y)
        assert x.shape == (8, *shape) and reg.describe().startswith(reg.name)
    # Input transforms keep class indices; mixing turns them into probability rows.
    assert y.dtype == (torch.float32 if name in ("mixup", "cutmix") else torch.int64)


def test_list_order_is_kept():
    cfg = compose_regularizers(["randaugment", "hflip", "random_crop", "mixup"])
    assert [r.name for r in build(cfg)] == ["randaugment", "hflip", "random_crop", "mixup"]


def test_a_preset_combines_with_single_regularizers():
    cfg = compose_regularizers(["augment_standard", "cutmix"])
    assert list(cfg.keys()) == ["random_crop", "hflip", "cutmix"]
