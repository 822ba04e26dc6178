"""Every model config in conf/model/ builds, trains a step and honours the shared options.

Tests run over the glob of model yamls, so a new config is covered the moment it is added.
Widths are shrunk (``SHRINK``) to keep the file fast on a laptop CPU; the paper-sized models are
only constructed, for their parameter counts.
"""

from __future__ import annotations

import functools
import inspect
import math
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torch import nn
from torchvision.ops import StochasticDepth

from regbench.config import compose, options
from regbench.errors import ConfigError
from regbench.models.layers import TrainingNoise

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
YAMLS = [CONF / f"{option}.yaml" for option in options("model")]
SIGNAL, DIGITS, CIFAR, MNIST = (1, 40), (1, 8, 8), (3, 32, 32), (1, 28, 28)
SHAPES = (SIGNAL, DIGITS, CIFAR)
NUM_CLASSES = 7  # not 10, so a hard-coded class count shows up

# Which shapes each model module must accept; every other shape must raise ConfigError.
FITS = {
    "logistic": {SIGNAL, DIGITS, CIFAR},
    "mlp": {SIGNAL, DIGITS, CIFAR},
    "cnn1d": {SIGNAL},
    "cnn": {DIGITS, CIFAR},
    "alexnet_small": {DIGITS, CIFAR},
    "inception_small": {DIGITS, CIFAR},
    "resnet18": {DIGITS, CIFAR},
    "wide_resnet": {DIGITS, CIFAR},
}
RESIDUAL = {"resnet18", "wide_resnet"}
NO_HIDDEN = {"logistic"}
SHRINK = {"width": 8, "channels": 4, "widen_factor": 1}
REGULARIZING = (nn.Dropout, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
                nn.modules.instancenorm._InstanceNorm, TrainingNoise, StochasticDepth)


def ids(paths):
    return [p.stem for p in paths]


@functools.cache
def composed(option: str):
    """``model=<option>`` as Hydra composes it: the model's file over the keys every model shares (_base)."""
    return compose([f"model={option}"]).model


def module_name(path: Path) -> str:
    return OmegaConf.load(path)._target_.split(".")[2]


def fitting_shapes(path: Path) -> list[tuple[int, ...]]:
    return [s for s in SHAPES if s in FITS.get(module_name(path), SHAPES)]


def build(path: Path, shape=SIGNAL, shrink: bool = True, num_classes: int = NUM_CLASSES, **options) -> nn.Module:
    """Instantiate a model yaml the way the builder does, with tiny widths unless ``shrink`` is False."""
    cfg = OmegaConf.merge(composed(path.stem))  # a copy: shrinking must not touch the cached config
    if shrink:
        for key, value in SHRINK.items():
            if key in cfg:
                cfg[key] = value
    try:
        return instantiate(cfg, in_shape=shape, num_classes=num_classes, **options)
    except InstantiationException as e:
        # Hydra wraps whatever the constructor raised; the builder shows the user the cause.
        raise e.__cause__ from None


def smallest(path: Path) -> tuple[int, ...]:
    return min(fitting_shapes(path), key=math.prod)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def has(model: nn.Module, *types) -> bool:
    return any(isinstance(m, types) for m in model.modules())


# --------------------------------------------------------------------------- every config


def test_there_are_model_configs():
    assert {p.stem for p in YAMLS} >= {"logistic", "mlp", "mlp_1x512", "mlp_3x512", "cnn1d", "cnn", "alexnet_small",
                                       "inception_small", "resnet18", "wide_resnet"}


@pytest.mark.parametrize("path", YAMLS, ids=ids(YAMLS))
def test_yaml_lists_every_option_with_its_default_and_a_comment(path):
    cfg = OmegaConf.merge(composed(path.stem))  # a copy: shrinking must not touch the cached config
    params = inspect.signature(get_class(cfg._target_)).parameters
    options = {k: p.default for k, p in params.items() if k not in ("in_shape", "num_classes")}
    assert set(cfg) - {"_target_"} == set(options)
    if path.stem == module_name(path):  # variants (mlp_1x512) may change model-specific sizes
        assert {k: cfg[k] for k in options} == options
    for key in ("norm", "dropout", "input_dropout", "noise_std", "drop_path", "init"):  # baselines are pure
        assert cfg[key] == options[key] == {"norm": "none", "init": "default"}.get(key, 0.0)
    for file in (path, CONF / "_base.yaml"):
        for line in file.read_text().splitlines():
            if line and not line.startswith("#") and not line.startswith("_target_"):
                assert "#" in line, f"{file.name}: option without a comment: {line}"


@pytest.mark.parametrize("path", YAMLS, ids=ids(YAMLS))
def test_forward_backward_on_every_fitting_shape(path):
    torch.manual_seed(0)
    fits = FITS.get(module_name(path))
    built = []
    for shape in SHAPES:
        try:
            model = build(path, shape)
        except ConfigError as e:
            assert fits is None or shape not in fits, f"{path.stem} should accept {shape}: {e}"
            assert "\n" not in str(e) and str(e).startswith("in_shape="), str(e)
            continue
        assert fits is None or shape in fits, f"{path.stem} should refuse {shape}"
        built.append(shape)
        x = torch.randn(4, *shape)
        logits = model(x)
        assert logits.shape == (4, NUM_CLASSES)
        logits.logsumexp(1).mean().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{path.stem} {shape}: bad grad for {name}"
    assert built, f"{path.stem} accepts none of {SHAPES}"


@pytest.mark.parametrize("path", YAMLS, ids=ids(YAMLS))
def test_defaults_have_no_regularization_and_train_equals_eval(path):
    torch.manual_seed(0)
    shape = smallest(path)
    model = build(path, shape)
    assert not has(model, *REGULARIZING), [type(m).__name__ for m in model.modules() if isinstance(m, REGULARIZING)]
    x = torch.randn(5, *shape)
    with torch.no_grad():
        out_train = model.train()(x)
        out_eval = model.eval()(x)
    assert torch.equal(out_train, out_eval)  # nothing random, nothing batch-dependent


@pytest.mark.parametrize("path", YAMLS, ids=ids(YAMLS))
def test_batch_norm_is_added_and_differs_between_train_and_eval(path):
    shape = smallest(path)
    if module_name(path) in NO_HIDDEN:
        with pytest.raises(ConfigError, match="^norm=batch"):
            build(path, shape, norm="batch")
        return
    torch.manual_seed(0)
    model = build(path, shape, norm="batch")
    assert has(model, nn.modules.batchnorm._BatchNorm)
    x = torch.randn(8, *shape) * 3 + 1
    with torch.no_grad():
        out_train = model.train()(x)
        out_eval = model.eval()(x)
    assert not torch.allclose(out_train, out_eval)


@pytest.mark.parametrize("norm", ["layer", "group", "instance", "weight"])
@pytest.mark.parametrize("path", YAMLS, ids=ids(YAMLS))
def test_other_norms_build_and_run(path, norm):
    # 16×16 images leave ResNets 2×2 maps in the last stage: instance norm needs more than one pixel.
    shape = (1, 16, 16) if len(smallest(path)) == 3 else smallest(path)
    name = module_name(path)
    if (norm != "weight" and name in NO_HIDDEN) or (norm == "instance" and len(shape) == 2 and name != "cnn1d"):
        with pytest.raises(ConfigError, match=f"^norm={norm}"):
            build(path, shape, norm=norm)
        return
    model = build(path, shape, norm=norm)
    if norm == "weight":
        assert any(nn.utils.parametrize.is_parametrized(m) for m in model.modules())
    else:
        assert has(model, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    model(torch.randn(4, *shape)).sum().backward()


@pytest.mark.parametrize("path", YAMLS, ids=ids(YAMLS))
def test_dropout_and_noise_add_their_modules_and_randomness(path):
    shape = smallest(path)
    if module_name(path) in NO_HIDDEN:
        with pytest.raises(ConfigError, match="^dropout="):
            build(path, shape, dropout=0.5)
        with pytest.raises(ConfigError, match="^noise_std="):
            build(path, shape, noise_std=0.1)
        options = dict(input_dropout=0.5)
    else:
        options = dict(dropout=0.3, noise_std=0.1)
    model = build(path, shape, **options)
    assert has(model, nn.Dropout)
    assert has(model, TrainingNoise) == ("noise_std" in options)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        assert torch.equal(model.eval()(x), model(x))


@pytest.mark.parametrize("path", YAMLS, ids=ids(YAMLS))
def test_drop_path_only_where_there_are_residual_branches(path):
    shape = smallest(path)
    if module_name(path) not in RESIDUAL:
        with pytest.raises(ConfigError, match="no residual branches; drop_path needs resnet18 or wide_resnet"):
            build(path, shape, drop_path=0.2)
        return
    model = build(path, shape, drop_path=0.2)
    rates = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    # Huang et al.'s linear decay: the last block drops at the full rate, earlier ones less.
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2) and rates[0] < 0.2
    model(torch.randn(4, *shape)).sum().backward()


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("key, value", [
    ("dropout", 1.0), ("dropout", -0.1), ("input_dropout", 1.5), ("noise_std", -1.0), ("drop_path", 1.0),
    ("init_gain", 0.0), ("norm", "bogus"), ("activation", "swish"), ("init", "bogus"),
    ("width", 0), ("width", 2.5), ("preact", "yes"),
])
def test_bad_values_raise_config_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f"^{key}=") as e:
        build(CONF / "resnet18.yaml", DIGITS, **{key: value})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("yaml, shape, options, message", [
    ("mlp", SIGNAL, dict(depth=0), "^depth=0"),
    ("mlp", SIGNAL, dict(norm="instance"), "^norm=instance: mlp has no spatial"),
    ("mlp", SIGNAL, dict(drop_path=0.1), "^drop_path=0.1: mlp has no residual branches"),
    ("wide_resnet", DIGITS, dict(depth=18), "^depth=18 must be 6n\\+4"),
    ("wide_resnet", DIGITS, dict(widen_factor=0), "^widen_factor=0"),
    ("resnet18", SIGNAL, {}, "^in_shape=\\[1, 40\\]: resnet18 needs images .*digits.*mnist1d"),
    ("cnn1d", CIFAR, {}, "^in_shape=\\[3, 32, 32\\]: cnn1d needs 1-D signals"),
    ("cnn", (1, 3, 3), {}, "at least 4×4"),
    ("alexnet_small", DIGITS, dict(lrn="no"), "^lrn="),
])
def test_misfits_raise_config_error(yaml, shape, options, message):
    with pytest.raises(ConfigError, match=message):
        build(CONF / f"{yaml}.yaml", shape, **options)


# --------------------------------------------------------------------------- initialization


@pytest.mark.parametrize("init, gain, c", [("normal", 1.0, 1.0), ("normal", 2.0, 2.0), ("normal", 3.0, 3.0),
                                           ("normal", None, 1.0), ("kaiming", None, 2.0)])
def test_init_gives_weight_variance_c_over_fan_in(init, gain, c):
    torch.manual_seed(0)
    model = build(CONF / "mlp.yaml", SIGNAL, shrink=False, width=512, init=init, init_gain=gain)
    wide = model.hidden[1][0]  # 512 × 512: enough samples for a 10% tolerance
    assert wide.weight.var().item() == pytest.approx(c / 512, rel=0.1)
    assert torch.count_nonzero(wide.bias) == 0


def test_init_reaches_conv_layers():
    torch.manual_seed(0)
    model = build(CONF / "cnn.yaml", DIGITS, channels=32, init="normal", init_gain=2.0)
    conv = model.features[2][0]  # 64 filters of 32 × 3 × 3
    assert conv.weight.var().item() == pytest.approx(2.0 / (32 * 9), rel=0.1)


# ----------------------------------------------------------------------- architecture sizes


def test_zhang_et_al_parameter_counts():
    """Zhang et al. (2017) Table 1 (their CIFAR crops are 28×28; our models pool 32×32 to the same head)."""
    alexnet = n_params(build(CONF / "alexnet_small.yaml", CIFAR, shrink=False, num_classes=10))
    inception = n_params(build(CONF / "inception_small.yaml", CIFAR, shrink=False, num_classes=10))
    assert alexnet == pytest.approx(1.4e6, rel=0.15) and alexnet == 1_387_786
    assert inception == pytest.approx(1.6e6, rel=0.15) and inception == 1_649_402
    assert n_params(build(CONF / "mlp_1x512.yaml", (3, 28, 28), shrink=False, num_classes=10)) == 1_209_866
    assert n_params(build(CONF / "mlp_3x512.yaml", (3, 28, 28), shrink=False, num_classes=10)) == 1_735_178


def test_mnist1d_paper_models():
    """Greydanus & Steinbach (2024): MLP 40→100→100→10; ConvBase flattens 25 × 5 = 125 features."""
    mlp = build(CONF / "mlp.yaml", SIGNAL, shrink=False, num_classes=10)
    assert n_params(mlp) == (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
    cnn = build(CONF / "cnn1d.yaml", SIGNAL, shrink=False, num_classes=10)
    assert cnn.classifier.in_features == 125
    assert [m.out_channels for m in cnn.modules() if isinstance(m, nn.Conv1d)] == [25, 25, 25]


def test_resnet_sizes_match_the_literature():
    """ResNet-18 with batch norm on CIFAR-10: 11,173,962; WRN-16-4: 2.7M (Zagoruyko & Komodakis, Table 4)."""
    assert n_params(build(CONF / "resnet18.yaml", CIFAR, shrink=False, num_classes=10, norm="batch")) == 11_173_962
    wrn = n_params(build(CONF / "wide_resnet.yaml", CIFAR, shrink=False, num_classes=10, norm="batch"))
    assert wrn == pytest.approx(2.7e6, rel=0.03)
    # Nakkiran et al.'s width sweep: parameters grow about as k².
    small, large = (n_params(build(CONF / "resnet18.yaml", CIFAR, width=k)) for k in (4, 8))
    assert 3.5 < large / small < 4.1


@pytest.mark.parametrize("path", [p for p in YAMLS if FITS.get(module_name(p)) == {DIGITS, CIFAR}],
                         ids=ids([p for p in YAMLS if FITS.get(module_name(p)) == {DIGITS, CIFAR}]))
def test_image_models_take_mnist_sized_images(path):
    model = build(path, MNIST)
    assert model(torch.randn(2, *MNIST)).shape == (2, NUM_CLASSES)


def test_resnet18_preact_variant_runs():
    model = build(CONF / "resnet18.yaml", DIGITS, preact=True, norm="batch", dropout=0.1)
    model(torch.randn(4, *DIGITS)).sum().backward()
