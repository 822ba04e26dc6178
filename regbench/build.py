"""The one place that turns config nodes into objects: data, model, regularizers, optimizer, schedule, logger.

Each builder checks its own keys and raises :class:`ConfigError` naming the full key, so
:func:`check` can validate a whole configuration before anything is written or trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_method
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from regbench.data.base import DataSplits, prepare
from regbench.data.corruption import INPUT_CORRUPTIONS, check_corrupt_test
from regbench.errors import ConfigError, UserError, check_choice, check_int, check_range, config_key, one_line
from regbench.regularizers.base import Regularizer
from regbench.schedules import Schedule

# Keys every dataset config has, consumed by regbench.data.base.prepare; the rest go to its loader.
DATA_KEYS = ("name", "input_shape", "num_classes", "val_fraction", "n_train", "label_noise",
             "input_corruption", "corrupt_test", "normalize", "split_seed", "corruption_seed")


def instantiate(node: DictConfig, **kwargs):
    """``hydra.utils.instantiate(node, _convert_="all", **kwargs)``, five times faster for the flat nodes regbench's
    groups hold (a ``_target_`` and plain values): Hydra copies and merges the node first, 2 ms for a model, which
    every run of a sweep paid four times. Nodes with other ``_`` keys (``_partial_``, ``_args_``) or nested
    ``_target_`` go to Hydra itself."""
    data = OmegaConf.to_container(node, resolve=True)
    target = data.pop("_target_", None)
    if not isinstance(target, str) or any(k.startswith("_") for k in data) or _has_target(data):
        return hydra_instantiate(node, _convert_="all", **kwargs)
    try:
        make = get_method(target)
    except Exception:
        return hydra_instantiate(node, _convert_="all", **kwargs)  # Hydra's own message for a target not found
    try:
        return make(**{**data, **kwargs})
    except Exception as e:  # as Hydra wraps it, so that config_key words it the same
        raise InstantiationException(f"Error in call to target '{target}':\n{e!r}") from e


def _has_target(value) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    return isinstance(value, list) and any(_has_target(v) for v in value)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is available; use trainer.device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"trainer.device={name} but MPS is not available; use trainer.device=auto or cpu")
    return device


# ----------------------------------------------------------------------------------------- data

def loader_kwargs(cfg_data: DictConfig) -> dict:
    kwargs = OmegaConf.to_container(cfg_data, resolve=True)
    for key in (*DATA_KEYS, "_target_"):
        kwargs.pop(key, None)
    return kwargs


def check_data(cfg_data: DictConfig) -> None:
    d = cfg_data
    with config_key("dataset"):
        check_range("val_fraction", d.val_fraction, 0, 1, low_inclusive=False, high_inclusive=False)
        check_range("label_noise", d.label_noise, 0, 1)
        check_choice("input_corruption", d.input_corruption, INPUT_CORRUPTIONS)
        check_corrupt_test(d.corrupt_test)
        if d.n_train is not None:
            check_int("n_train", d.n_train, 1)
    try:
        loader = get_method(d._target_)
    except Exception:
        raise ConfigError(f"dataset._target_={d._target_} cannot be imported") from None
    check_files = getattr(loader, "check", None)
    if check_files is not None:
        check_files(**loader_kwargs(d))  # raises DataNotFound with the folder and files expected
    check_split_sizes(load_raw(d), d)


def check_split_sizes(raw, d: DictConfig) -> None:
    """The validation split has examples and the training split has at least ``n_train`` (and 2) left."""
    counts = np.bincount(raw.y_train.astype(np.int64), minlength=raw.num_classes)
    n_val = int(sum(round(d.val_fraction * c) for c in counts if c))
    n_left = len(raw.y_train) - n_val
    if n_val < 1:
        raise ConfigError(f"dataset.val_fraction={d.val_fraction} leaves no validation example "
                          f"({len(raw.y_train)} training examples); use a larger fraction")
    if n_left < 2:
        raise ConfigError(f"dataset.val_fraction={d.val_fraction} leaves {n_left} training example(s) of {len(raw.y_train)}")
    if d.n_train is not None and d.n_train > n_left:
        raise ConfigError(f"dataset.n_train={d.n_train} exceeds the {n_left} training examples of {d.name} left after "
                          f"the validation split (val_fraction={d.val_fraction})")


_RAW: dict[str, object] = {}


def load_raw(cfg_data: DictConfig):
    """The dataset as its loader returns it (numpy arrays); loaded once per process and setting."""
    key = repr(sorted(loader_kwargs(cfg_data).items())) + cfg_data._target_
    if key not in _RAW:
        _RAW.clear()  # keep one dataset in memory, not every one a sweep names
        try:
            _RAW[key] = get_method(cfg_data._target_)(**loader_kwargs(cfg_data))
        except UserError:
            raise
        except Exception as e:  # a file that is there but does not parse, in a loader that does not say which
            root = loader_kwargs(cfg_data).get("root")
            where = f" under {Path(str(root)).absolute()}" if root is not None else ""
            raise UserError(f"dataset {cfg_data.name}: its files{where} cannot be read: {one_line(e)}") from None
    return _RAW[key]


def build_data(cfg_data: DictConfig, seed: int) -> DataSplits:
    raw = load_raw(cfg_data)
    if raw.num_classes != cfg_data.num_classes or tuple(raw.x_train.shape[1:]) != tuple(cfg_data.input_shape):
        raise ConfigError(f"dataset {cfg_data.name}: loaded inputs {tuple(raw.x_train.shape[1:])} with {raw.num_classes} "
                          f"classes, but its config declares input_shape={list(cfg_data.input_shape)}, num_classes={cfg_data.num_classes}")
    corruption_seed = seed if cfg_data.corruption_seed is None else cfg_data.corruption_seed
    return prepare(raw, val_fraction=cfg_data.val_fraction, n_train=cfg_data.n_train,
                   label_noise=cfg_data.label_noise, input_corruption=cfg_data.input_corruption,
                   corrupt_test=cfg_data.corrupt_test,
                   normalize=cfg_data.normalize, split_seed=cfg_data.split_seed, corruption_seed=corruption_seed)


# ---------------------------------------------------------------------------------- regularizers

def build_regularizers(cfg_reg: DictConfig | None) -> list[Regularizer]:
    """Instantiate the selected regularizers in the order the user listed them."""
    regs = []
    for name, node in (cfg_reg or {}).items():
        if node is None:
            continue
        with config_key(f"regularizer.{name}"):
            reg = instantiate(node)
        if not isinstance(reg, Regularizer):
            raise ConfigError(f"regularizer.{name}._target_ must build a regbench Regularizer, got {type(reg).__name__}")
        reg.name = name
        regs.append(reg)
    return regs


def model_options(regs: list[Regularizer]) -> dict:
    options: dict = {}
    for reg in regs:
        for key, value in reg.model_options().items():
            if key in options and options[key] != value:
                raise ConfigError(f"regularizers disagree on model.{key}: {options[key]!r} vs {value!r} (from {reg.name})")
            options[key] = value
    return options


# ----------------------------------------------------------------------------------------- model

def build_model(cfg_model: DictConfig, input_shape, num_classes: int, regs: list[Regularizer]) -> torch.nn.Module:
    """The model, with the options regularizers ask for (``regularizer=[dropout]`` sets ``dropout=p``)."""
    options = model_options(regs)
    for key, value in options.items():
        mine = cfg_model.get(key)
        if mine not in (None, 0, 0.0, "none") and mine != value:
            owner = next(r.name for r in regs if key in r.model_options())
            raise ConfigError(f"model.{key}={mine} conflicts with regularizer {owner} ({key}={value}); set only one of them")
    with config_key("model"):
        return instantiate(cfg_model, in_shape=tuple(input_shape), num_classes=num_classes, **options)


# ----------------------------------------------------------------------------- optimizer, schedule

def build_optimizer(cfg_opt: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    return _optimizer(cfg_opt, model.parameters())


def check_optimizer(cfg_opt: DictConfig) -> None:
    """The options :func:`build_optimizer` passes, checked by the optimizer's own constructor up to where it reads
    its parameters. Given real ones, torch's ``add_param_group`` imports ``torch._dynamo`` (1-4 s on 2 cores), which
    a sweep's pre-check, on a login node for `regbench submit`, need not pay."""
    try:
        _optimizer(cfg_opt, _ParamsNotRead())
    except _OptionsChecked:
        pass


class _OptionsChecked(BaseException):
    """An optimizer read its parameters: its option checks are behind it. A BaseException, so that no wrapper on
    the way (:func:`instantiate`'s, which reports a constructor's Exception) takes it for an error."""


class _ParamsNotRead:
    def __iter__(self):
        raise _OptionsChecked


def _optimizer(cfg_opt: DictConfig, params) -> torch.optim.Optimizer:
    with config_key("optimizer"):
        check_range("lr", cfg_opt.lr, 0, low_inclusive=False)
        if "weight_decay" in cfg_opt:
            raise ConfigError("weight_decay is not an optimizer option in regbench: use regularizer=[weight_decay] "
                              "(decoupled, AdamW-style) or regularizer=[l2] (through the loss)")
        # weight_decay=0 explicitly: torch's AdamW would otherwise decay by 0.01 behind the user's back.
        return instantiate(cfg_opt, params=params, weight_decay=0.0)


def build_scheduler(cfg_sched: DictConfig, optimizer, steps_per_epoch: int, max_epochs: int):
    """The per-step LambdaLR of ``scheduler=<name>`` (None for a constant rate: no per-step call)."""
    return build_schedule(cfg_sched).lr_scheduler(optimizer, steps_per_epoch, max_epochs)


def build_schedule(cfg_sched: DictConfig) -> Schedule:
    with config_key("scheduler"):
        schedule = instantiate(cfg_sched)
    if not isinstance(schedule, Schedule):
        raise ConfigError(f"scheduler._target_ must build a regbench.schedules.Schedule, got {type(schedule).__name__}")
    return schedule


def build_logger(cfg_logger: DictConfig | None):
    """The trackers of ``logger=[a,b]`` (``logger.<name>`` nodes; ``logger.tags`` is every tracker's) as one
    :class:`regbench.loggers.Trackers`, which has start, run_id, log and finish. A node with its own ``_target_``
    (the single-logger shape of regbench 0.1, or a user's own file in that shape) is one tracker, ``logger``."""
    from regbench.loggers import Trackers

    node = cfg_logger if cfg_logger is not None else {}
    tags = node.get("tags") or []
    if OmegaConf.is_config(tags):
        tags = OmegaConf.to_container(tags, resolve=True)
    if "_target_" in node:
        selected = {"logger": OmegaConf.create({k: v for k, v in node.items() if k != "tags"})}
    else:
        selected = {name: sub for name, sub in node.items() if name != "tags" and sub is not None}
    trackers = {}
    for name, sub in selected.items():
        key = "logger" if name == "logger" else f"logger.{name}"
        if not OmegaConf.is_config(sub) or "_target_" not in sub:
            raise ConfigError(f"{key} is not a tracker (a node with _target_); the trackers are the files of conf/logger/")
        with config_key(key):
            tracker = instantiate(sub)
        if not all(callable(getattr(tracker, m, None)) for m in ("start", "log", "finish")):
            raise ConfigError(f"{key}._target_ must build a logger with start, log and finish, got {type(tracker).__name__}")
        trackers[name] = tracker
    with config_key("logger"):
        return Trackers(trackers, tags=tags)


def check_logger(cfg_logger: DictConfig | None) -> None:
    """Build the trackers and ask each whether it can start here (package installed, store writable, server
    reachable): ``logger=<name>: …``, one line, before anything is written."""
    build_logger(cfg_logger).check()


# ------------------------------------------------------------------------------------ the whole

def check(cfg: DictConfig) -> None:
    """Validate what a composed configuration builds (device, data, schedule, trackers, regularizers, model,
    optimizer) without training or writing anything; raise UserError. The checks that need no torch come first,
    in :func:`regbench.validate.check_run`."""
    device = resolve_device(cfg.trainer.device)
    if cfg.trainer.precision == 16 and device.type != "cuda":
        raise ConfigError(f"trainer.precision=16 needs CUDA (gradient scaling), not {device.type}; use bf16 or 32")
    if cfg.trainer.channels_last and len(cfg.dataset.input_shape) != 3:
        raise ConfigError(f"trainer.channels_last=true needs (C, H, W) images; {cfg.dataset.name} has "
                          f"input_shape={list(cfg.dataset.input_shape)}")
    check_data(cfg.dataset)
    build_schedule(cfg.scheduler)
    check_logger(cfg.get("logger"))
    regs = build_regularizers(cfg.get("regularizer"))
    shape, k = tuple(cfg.dataset.input_shape), cfg.dataset.num_classes
    for reg in regs:
        with config_key(f"regularizer.{reg.name}"):
            reg.check(shape, k)
    build_model(cfg.model, shape, k, regs)
    try:
        check_optimizer(cfg.optimizer)
    except UserError:
        raise
    except Exception as e:
        raise ConfigError(f"optimizer: {e}") from None

