"""Which composed configurations train together (:func:`stack_key`), and why one must train alone."""

from __future__ import annotations

import functools
import hashlib
import json

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from regbench import build
from regbench.config import CONFIG_DIR, to_container
from regbench.models.layers import TrainingNoise
from regbench.stack.forms import catalog_forms, form_of, regularizer_reason

MAX_STACK_CPU = 64  # beyond this the batched kernels gain nothing on a CPU and memory grows for nothing
MAX_STACK_CUDA = 1024  # at most this many members per stack on a CUDA device, however much memory is free
SUPPORTED_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")


_RANDOM_LAYERS = (nn.Dropout, TrainingNoise)  # drawn per member as masks (see MaskLayer)
_DATA_VALUE_KEYS = ("corrupt_test", "label_noise", "input_corruption", "corruption_seed")  # change values, not shapes


def is_random_slot(module: nn.Module) -> bool:
    return isinstance(module, (*_RANDOM_LAYERS, nn.Identity))


def _model_signature(model: nn.Module) -> list:
    """What must be equal for models to share one template: every module's type and settings, every tensor's
    shape. Dropout and noise layers (and the Identity a model builds when their rate is 0) only say 'slot'."""
    sig = []
    for name, module in model.named_modules():
        if is_random_slot(module):
            sig.append((name, "random-or-identity"))
        else:
            sig.append((name, type(module).__name__, module.extra_repr()))
    sig += [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    return sig


def _unsupported_random_module(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        random = isinstance(module, nn.modules.dropout._DropoutNd) or type(module).__name__ == "StochasticDepth"
        if random and type(module) is not nn.Dropout:
            return f"model layer {name} ({type(module).__name__}) draws inside the forward pass; no stacked form"
        if type(module) is nn.Dropout and module.inplace:
            return f"model layer {name}: in-place dropout has no stacked form"
    return None


def _optimizer_reason(cfg_opt: DictConfig) -> str | None:
    target = cfg_opt.get("_target_")
    if target not in SUPPORTED_OPTIMIZERS:
        return f"optimizer {target} has no stacked form (stacked: {', '.join(SUPPORTED_OPTIMIZERS)})"
    for flag in ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused"):
        if cfg_opt.get(flag):
            return f"optimizer.{flag}={cfg_opt.get(flag)} has no stacked form"
    return None


def _build_shapes(cfg: DictConfig):
    """The regularizers and a meta-device model of ``cfg``: shapes and settings, no weights, no random draws."""
    regs = build.build_regularizers(cfg.get("regularizer"))
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs)
    return regs, model


def why_not_stackable(cfg: DictConfig) -> str | None:
    """Why ``cfg`` must train alone (one line for the log), or None if it can train in a stack."""
    return _reason(cfg, *_build_shapes(cfg))


def _reason(cfg: DictConfig, regs, model) -> str | None:
    if cfg.resume == "best":
        return "resume=best restarts from best.pt without optimizer state: solo only"
    t = cfg.trainer
    if str(t.get("precision", 32)) not in ("32", "bf16"):
        return (f"trainer.precision={t.get('precision')}: a stack trains in float32 or under bf16 autocast (float16 "
                "needs a loss scaler of its own for each member)")
    if t.get("compile"):
        return "trainer.compile=true: a stack's step is not compiled"
    reason = _optimizer_reason(cfg.optimizer)
    if reason:
        return reason
    for reg in regs:
        reason = regularizer_reason(reg)
        if reason:
            return reason
    return _unsupported_random_module(model)


def stack_key(cfg: DictConfig) -> str | None:
    """The key under which composed configs train together; None if ``cfg`` cannot stack (see :func:`why_not_stackable`).

    Equal keys mean: the same network shape and layer settings, data of the same shapes (same dataset,
    split and subsample; label noise and input corruption may differ), the same batch size, epoch budget,
    evaluation batch, early-stopping monitor, device and thread settings, the same optimizer apart from
    its lr, and the same non-number settings of penalties, decay, clipping and max-norm (see
    :func:`_form_settings`). Seeds, learning rates, schedules, regularizer strengths and rates, which
    regularizers a member has (as long as the network keeps its shape), patience, study name and logger
    may differ.
    """
    regs, model = _build_shapes(cfg)
    if _reason(cfg, regs, model):
        return None
    t = cfg.trainer
    data = {k: v for k, v in to_container(cfg.dataset).items() if k not in _DATA_VALUE_KEYS}
    optimizer = {k: v for k, v in to_container(cfg.optimizer).items() if k != "lr"}
    key = {
        "model": _model_signature(model), "data": data, "optimizer": optimizer, "regularizers": _form_settings(cfg, regs),
        "trainer": {"batch_size": t.batch_size, "max_epochs": t.max_epochs, "eval_batch_size": t.eval_batch_size,
                    "monitor": t.early_stopping.monitor, "device": t.device, "deterministic": t.deterministic,
                    "num_threads": t.num_threads, "train_eval_size": t.get("train_eval_size"),
                    "train_eval_every": t.get("train_eval_every"),
                    # only when set, so that the keys of float32 configurations stay what they were
                    **({"precision": str(t.precision)} if str(t.get("precision", 32)) != "32" else {}),
                    **({"channels_last": True} if t.get("channels_last") else {})},
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _settings(node) -> dict:
    """A regularizer config's settings that are not numbers (which members may differ in)."""
    return {k: v for k, v in (node or {}).items() if isinstance(v, bool) or not isinstance(v, (int, float))}


@functools.cache
def _default_settings(config: str) -> dict:
    return _settings(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "regularizer" / f"{config}.yaml")[config]))


def _form_settings(cfg: DictConfig, regs) -> dict:
    """Per stacked form, the settings that are not numbers of each of ``cfg``'s regularizers of that kind, or
    its default config's when it has none (trained with the number that does nothing). Members may differ
    in which regularizers they have: augmentations and mixup run per member, dropout and noise are masks
    drawn per member, and what changes the network (normalization layers) is in the model's signature."""
    reg_cfg = to_container(cfg.regularizer) if cfg.get("regularizer") else {}
    kinds = {**catalog_forms(), **{type(r): None for r in regs if form_of(r) is not None and type(r) not in catalog_forms()}}
    out = {}
    for cls, default in kinds.items():
        present = [_settings(reg_cfg.get(r.name)) for r in regs if type(r) is cls]
        if not present:
            present = [_default_settings(default)]
        elif default is None:  # a user's regularizer (not in regbench's catalog): its default is unknown here, so
            present = [{k: v for k, v in p.items() if k != "_target_"} for p in present]  # only settings beyond its
            if not any(present):  # class key it; without any, members with and without it share a stack
                continue
        out[f"{cls.__module__}.{cls.__qualname__}"] = present
    return out


def key_text(cfg: DictConfig, data: dict | None = None) -> str:
    """Everything :func:`stack_key` reads except seed and numbers that do not change shapes: configurations
    equal here have equal keys, so a caller computes the key (which builds a meta model) once per text.
    ``data``: the configuration's :func:`regbench.config.to_container`, when the caller has it (left unchanged)."""
    data = dict(to_container(cfg) if data is None else data)
    for key in ("seed", "name", "logger", "stack", "resume"):
        data.pop(key, None)
    for part, key in (("optimizer", "lr"), ("dataset", "label_noise")):
        if isinstance(data.get(part), dict):
            data[part] = {k: v for k, v in data[part].items() if k != key}
    return json.dumps(data, sort_keys=True, default=str) + f"resume={cfg.get('resume')}"  # 6x faster than YAML


def stack_keys(cfgs: list[DictConfig]) -> list[tuple[str | None, str | None]]:
    """(:func:`stack_key`, why not stackable when it is None) of each configuration, computed once per
    :func:`key_text` (each key builds a meta model)."""
    texts, by_text = [key_text(cfg) for cfg in cfgs], {}
    for cfg, text in zip(cfgs, texts):
        if text not in by_text:
            key = stack_key(cfg)
            by_text[text] = (key, why_not_stackable(cfg) if key is None else None)
    return [by_text[text] for text in texts]


def max_stack_size(num_params: int, activations_per_member: int, device: torch.device) -> int:
    """Members per stack: :data:`MAX_STACK_CPU` on CPU; on a GPU what fits in half its free memory.

    Per member: parameters, gradients and two optimizer buffers (16 bytes per parameter), plus its
    activations kept for backward (estimated as 4 floats per activation value: forward, gradient, masks).
    """
    if device.type != "cuda":
        return MAX_STACK_CPU
    free, _ = torch.cuda.mem_get_info(device)
    per_member = 16 * num_params + 16 * activations_per_member
    return max(1, min(MAX_STACK_CUDA, int(0.5 * free // max(per_member, 1))))
