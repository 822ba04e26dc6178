"""Argument checks and the conv unit shared by every model in the zoo.

Each constructor calls :func:`check_options` first, so a misfit (an image model on MNIST-1D,
``drop_path`` on a net without residual branches, ``dropout=1.5``) fails before any layer is
built, with one line naming the argument. Silently ignoring an option would let an ablation
report an effect for a regularizer that never ran, so every option either acts or raises.
"""

from __future__ import annotations

from torch import nn

from regbench.errors import ConfigError, check_choice, check_int, check_range
from regbench.models import layers

SIGNAL_MODELS = "logistic, mlp or cnn1d"
IMAGE_MODELS = "cnn, alexnet_small, inception_small, resnet18 or wide_resnet (or logistic, mlp)"
IMAGE_DATASETS = "digits, mnist, fashion_mnist, cifar10, cifar100 or svhn"
RESIDUAL_MODELS = "resnet18 or wide_resnet"


def check_options(
    model: str,
    in_shape,
    num_classes: int,
    *,
    activation: str,
    norm: str,
    dropout: float,
    input_dropout: float,
    noise_std: float,
    drop_path: float,
    init: str,
    init_gain: float | None,
    input_rank: int | None = None,
    residual: bool = False,
    hidden: bool = True,
) -> tuple[int, ...]:
    """Validate the options every model shares; return ``in_shape`` as a tuple of ints.

    ``input_rank`` is the number of spatial dimensions the model needs (1: (C, L) signals,
    2: (C, H, W) images, None: anything, flattened). ``residual`` says whether drop_path has
    branches to drop; ``hidden`` is False for a model with no hidden activations (logistic).
    """
    # Hydra hands list arguments over as ListConfig; the models index and compare plain tuples.
    shape = tuple(in_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ConfigError(f"in_shape={list(shape)} must be positive whole numbers, e.g. [1, 40] or [3, 32, 32]")
    check_int("num_classes", num_classes, 1)
    if input_rank == 2 and len(shape) != 3:
        raise ConfigError(f"in_shape={list(shape)}: {model} needs images (C, H, W) such as {IMAGE_DATASETS}; "
                          f"1-D signals (mnist1d) fit {SIGNAL_MODELS}")
    if input_rank == 1 and len(shape) != 2:
        raise ConfigError(f"in_shape={list(shape)}: {model} needs 1-D signals (C, L) such as mnist1d; "
                          f"images fit {IMAGE_MODELS}")

    check_choice("activation", activation, layers.ACTIVATIONS)
    check_choice("norm", norm, layers.NORMS)
    check_choice("init", init, layers.INITS)
    if init_gain is not None:
        check_range("init_gain", init_gain, 0, low_inclusive=False)
    check_range("dropout", dropout, 0, 1, high_inclusive=False)
    check_range("input_dropout", input_dropout, 0, 1, high_inclusive=False)
    check_range("noise_std", noise_std, 0)
    check_range("drop_path", drop_path, 0, 1, high_inclusive=False)

    if drop_path > 0 and not residual:
        raise ConfigError(f"drop_path={drop_path}: {model} has no residual branches; drop_path needs {RESIDUAL_MODELS}")
    if norm == "instance" and input_rank is None:
        raise ConfigError(f"norm=instance: {model} has no spatial dimensions to normalize over; use norm=layer, "
                          f"or a conv model")
    if not hidden:
        if norm not in ("none", "weight"):
            raise ConfigError(f"norm={norm}: {model} has no hidden layers to normalize; use norm=weight or a deeper model")
        if dropout > 0:
            raise ConfigError(f"dropout={dropout}: {model} has no hidden activations; use input_dropout or a deeper model")
        if noise_std > 0:
            raise ConfigError(f"noise_std={noise_std}: {model} has no hidden activations to perturb; use a deeper model")
    return shape


def conv_bias(norm: str) -> bool:
    """Convs carry a bias only when no norm layer follows: the norm's own shift makes it redundant."""
    return norm in ("none", "weight")


def fc_norm(norm: str) -> str:
    """The norm for a conv net's fully connected layers: instance norm has no spatial dims there, so none."""
    return "none" if norm == "instance" else norm


def conv_unit(conv: nn.Conv1d | nn.Conv2d, *, norm: str, act: str, noise_std: float, dropout_p: float) -> nn.Sequential:
    """Conv → norm → activation → noise → dropout: the conv counterpart of ``layers.hidden_block``."""
    dim = 1 if isinstance(conv, nn.Conv1d) else 2
    return nn.Sequential(conv, layers.norm_layer(norm, conv.out_channels, dim),
                         *layers.post_activation(act, noise_std=noise_std, dropout_p=dropout_p))


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a conv or pool along one dimension (PyTorch's floor rule)."""
    return (size + 2 * padding - kernel) // stride + 1
