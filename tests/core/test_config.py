"""Every config file composes through Hydra, and passes the checks a run makes before training."""

from __future__ import annotations


import subprocess
import sys
from fractions import Fraction

import hydra.utils
import pytest
import torch
from helpers import REPO, compose
from omegaconf import OmegaConf

from regbench import build
from regbench.config import CONFIG_DIR, options, run_id, to_container, to_yaml
from regbench.errors import ConfigError
from regbench.validate import check_trainer

GROUPS = ("model", "dataset", "optimizer", "scheduler", "trainer", "logger")
OPTIONS = [(g, option) for g in GROUPS for option in options(g)]
REGULARIZERS = options("regularizer")
IMAGE_ONLY_MODELS = ("cnn", "alexnet_small", "inception_small", "resnet18", "wide_resnet")


def test_config_is_found_from_any_directory():
    assert CONFIG_DIR == REPO / "conf" and (CONFIG_DIR / "config.yaml").exists()


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}"]
    if group == "model" and option in IMAGE_ONLY_MODELS:
        overrides.append("dataset=digits")
    if group == "dataset" and option != "mnist1d":
        overrides.append("model=cnn")  # the default cnn1d takes 1-D signals only
    cfg = compose(*overrides)
    assert cfg[group] is not None
    check_trainer(cfg.trainer)
    if group == "dataset" and cfg.dataset._target_.startswith(("regbench.data.mnist1d", "regbench.data.digits")):
        build.check(cfg)  # torchvision datasets have no files here; their check is tested with the data


@pytest.mark.parametrize("name", REGULARIZERS)
def test_every_regularizer_composes_and_builds(name):
    cfg = compose(f"regularizer=[{name}]")
    regs = build.build_regularizers(cfg.regularizer)
    assert [r.name for r in regs] == list(cfg.regularizer.keys())


def test_multi_select_keeps_list_order():
    cfg = compose("regularizer=[weight_decay,dropout,l2]")
    assert list(cfg.regularizer.keys()) == ["weight_decay", "dropout", "l2"]
    assert [r.name for r in build.build_regularizers(cfg.regularizer)] == ["weight_decay", "dropout", "l2"]


def test_default_is_the_pure_baseline():
    """No weight decay, dropout, smoothing, norm or augmentation hides in any default."""
    cfg = compose()
    assert not cfg.regularizer
    assert "weight_decay" not in cfg.optimizer
    model = build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, [])
    import torch

    kinds = (torch.nn.Dropout, torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    assert not [m for m in model.modules() if isinstance(m, kinds)]
    assert cfg.dataset.label_noise == 0 and cfg.dataset.input_corruption == "none"


def test_adamw_has_no_hidden_decay():
    cfg = compose("optimizer=adamw")
    model = build.build_model(cfg.model, (1, 40), 10, [])
    opt = build.build_optimizer(cfg.optimizer, model)
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)


@pytest.mark.parametrize("overrides, words", [
    (["optimizer.betas=[0.9,1.5]"], "Invalid beta parameter at index 1: 1.5"),
    (["+optimizer.foo=1"], "unexpected keyword argument 'foo'"),
    (["optimizer=sgd", "optimizer.nesterov=true"], "Nesterov momentum requires a momentum"),
])
def test_the_optimizers_own_checks_refuse_bad_options_before_training(overrides, words):
    with pytest.raises(ConfigError, match="optimizer") as refused:
        build.check(compose(*overrides))
    assert words in str(refused.value)


def test_checking_a_configuration_builds_no_optimizer_and_so_never_imports_dynamo():
    """A sweep's pre-check (and `regbench submit` on a login node) checks the optimizer's options without giving it
    parameters: torch's add_param_group imports torch._dynamo, 1-2 s."""
    code = ("import sys; sys.path.insert(0, 'tests'); from helpers import compose; from regbench import build; "
            "build.check(compose('optimizer=adamw')); build.check(compose('optimizer=sgd', 'model=mlp')); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"


def test_run_id_depends_on_what_is_trained_only():
    base = run_id(compose())
    assert run_id(compose("logger=none", "trainer.device=cpu", "name=other")) == base
    assert run_id(compose("seed=1")) != base
    assert run_id(compose("regularizer=[dropout]")) != base


def test_corrupt_test_names_a_run_only_where_it_changes_the_data():
    """Runs without an input corruption keep the ids they had before dataset.corrupt_test existed."""
    assert run_id(compose("model=mlp")) == run_id(compose("model=mlp", "dataset.corrupt_test=false"))
    corrupted = ("model=mlp", "dataset.input_corruption=shuffled_pixels")
    assert run_id(compose(*corrupted)) != run_id(compose(*corrupted, "dataset.corrupt_test=false"))


def test_a_model_option_and_a_regularizer_setting_it_differently_conflict():
    from regbench.errors import ConfigError

    cfg = compose("model=mlp", "model.norm=layer", "regularizer=[batchnorm]")
    with pytest.raises(ConfigError, match="model.norm=layer conflicts with regularizer batchnorm"):
        build.check(cfg)
    build.check(compose("model=mlp", "model.norm=batch", "regularizer=[batchnorm]"))  # agreeing is fine


def test_config_yaml_is_the_text_omegaconf_writes():
    """config.yaml goes through libyaml (OmegaConf's pure-Python emitter was a sixth of a small run's fixed
    cost); the text is OmegaConf's own, with strings that would read back as numbers or booleans quoted."""
    tricky = {"float_like": "1e-3", "inf": "inf", "bool_like": "on", "int_like": "5", "null_like": "null", "text": "a: b",
              "long": "word " * 40, "lines": "one\ntwo", "items": [1, "2", None, True, 2.5], "unicode": "σ² = c/n"}
    for data in (to_container(compose("model=mlp", "regularizer=[dropout,weight_decay]")), tricky):
        assert to_yaml(data) == OmegaConf.to_yaml(data)
    assert OmegaConf.to_container(OmegaConf.create(to_yaml(tricky))) == tricky


def test_flat_nodes_build_as_hydra_builds_them():
    cfg = compose("model=mlp", "model.width=17")
    torch.manual_seed(0)
    ours = build.instantiate(cfg.model, in_shape=(1, 40), num_classes=10)
    torch.manual_seed(0)
    hydras = hydra.utils.instantiate(cfg.model, in_shape=(1, 40), num_classes=10, _convert_="all")
    assert type(ours) is type(hydras)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), hydras.state_dict().values(), strict=True))
    # A nested _target_ is Hydra's: it builds the inner object first.
    node = OmegaConf.create({"_target_": "builtins.dict", "inner": {"_target_": "fractions.Fraction", "numerator": 1, "denominator": 3}})
    assert build.instantiate(node) == {"inner": Fraction(1, 3)}
    # A constructor refusing an argument, and a target that does not exist: one line naming the key.
    with pytest.raises(ConfigError, match=r"^model: .*unexpected keyword argument 'bogus'"), build.config_key("model"):
        build.instantiate(OmegaConf.create({"_target_": "regbench.models.mlp.MLP", "bogus": 1}), in_shape=(1, 40), num_classes=10)
    with pytest.raises(ConfigError, match=r"^model: .*regbench\.models\.nothing"), build.config_key("model"):
        build.instantiate(OmegaConf.create({"_target_": "regbench.models.nothing.Net"}))
