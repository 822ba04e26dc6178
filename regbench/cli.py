"""`regbench` command line. Only the standard library is imported up front, so `--help` is instant."""

from __future__ import annotations

import argparse
import itertools
import sys

USAGE = """\
usage: regbench <command> [options]

Ablation studies of deep-learning regularization, reproducible and resumable.

commands:
  run [OVERRIDES]        train one configuration composed by Hydra, e.g.
                           regbench run model=mlp optimizer=adamw regularizer=[dropout,weight_decay]
                           regbench run -m seed=0,1,2 regularizer=none,dropout     (a sweep)
                           regbench run experiment=label_corruption -m             (a named study)
                         `regbench run --help` lists the config groups and their options.
  status SWEEP_DIR       how many runs of a sweep are completed, running, failed, pending
  results SWEEP_DIR      collect a sweep into results.csv/.parquet and summary.csv (mean ± std over seeds)
  report SWEEP_DIR       write report.md / report.html with ablation tables and figures

options:
  -h, --help             show this message
  --version              print the version

Outputs go to outputs/<name>/runs/<overrides>/ (single runs) and outputs/<name>/multirun/<overrides>/
(sweeps). Each holds config.yaml, metrics.jsonl, result.json, checkpoints/ and the log.
"""

# Hydra flags after which validation is skipped (they print information, they train nothing).
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--resolve")
VALUE_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--cfg", "-c", "--package", "-p",
               "--experimental-rerun")
MAX_CHECKED_COMBINATIONS = 2000


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] == "--version":
        from regbench import __version__

        print(f"regbench {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return _run(rest)
    if command in ("status", "results", "report"):
        return _tool(command, rest)
    _error(f"unknown command {command!r}; choose one of: run, status, results, report (see regbench --help)")


def _error(message: str, code: int = 2):
    print(f"regbench: error: {message}", file=sys.stderr)
    sys.exit(code)


def _run(args: list[str]) -> int:
    if not any(a in INFO_FLAGS or a.split("=")[0] in INFO_FLAGS for a in args):
        from regbench.errors import UserError

        try:
            check_overrides(args)
        except UserError as e:
            _error(str(e))
    from regbench import app

    sys.argv = ["regbench run", *args]
    app.hydra_main()
    failed = [d for d, status in app.JOB_STATUSES if status == "failed"]
    multirun = "-m" in args or "--multirun" in args
    if multirun:
        from regbench.sweep_summary import end_of_sweep

        return end_of_sweep(args, app.JOB_STATUSES)
    return 1 if failed else 0


def check_overrides(args: list[str]) -> None:
    """Compose and check every configuration a command would run, before anything is written.

    Raises UserError with one line naming the key and what is allowed. Sweeps are expanded the way
    Hydra's basic sweeper does (command line and an experiment's ``hydra.sweeper.params``);
    the costly checks (data files, model and regularizer construction) run once per distinct setting.
    """
    from regbench.errors import ConfigError

    overrides, config_name = [], "config"
    it = iter(args)
    for a in it:
        if a in ("-m", "--multirun"):
            continue
        if a in ("--config-name", "-cn"):
            config_name = next(it, "config")
        elif a in VALUE_FLAGS:
            next(it, None)
        elif a.startswith("--config-name="):
            config_name = a.split("=", 1)[1]
        elif not a.startswith("-"):
            overrides.append(a)
        else:
            raise ConfigError(f"unknown flag {a!r} (Hydra flags: -m, --cfg, --info, -cn; see regbench run --help)")
    for combination in itertools.islice(expand_sweep(overrides, config_name), MAX_CHECKED_COMBINATIONS):
        check_combination(combination, config_name)


def expand_sweep(overrides: list[str], config_name: str = "config"):
    """Yield the override lists of every job in the sweep (a single run is a sweep of one)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from regbench.config import compose

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except Exception as e:
        raise _config_error(e) from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    # The experiment's own sweep (hydra.sweeper.params), with command-line sweeps taking precedence.
    try:
        hydra_cfg = compose(fixed, config_name, return_hydra_config=True).hydra
    except Exception as e:
        raise _config_error(e) from None
    params = dict(hydra_cfg.sweeper.get("params") or {})
    for o in parsed:
        if o.is_sweep_override():
            params[o.get_key_element()] = o.input_line.split("=", 1)[1]
    axes = []
    for key, value in params.items():
        (o,) = parser.parse_overrides([f"{key}={value}"])
        if o.is_discrete_sweep():
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        elif not o.is_sweep_override():
            axes.append([o.input_line])
        # interval(...) sweeps (Optuna) are sampled later; their keys keep the config's value here.
    for combo in itertools.product(*axes):
        yield [*[f for f in fixed if f.split("=")[0] not in params], *combo]


_checked: set = set()


def check_combination(overrides: list[str], config_name: str = "config") -> None:
    from omegaconf import OmegaConf

    from regbench import build
    from regbench.config import compose

    try:
        cfg = compose(overrides, config_name)
    except Exception as e:
        raise _config_error(e) from None
    build._check_int("seed", cfg.seed, 0)
    build.check_trainer(cfg.trainer)
    key = OmegaConf.to_yaml({k: cfg.get(k) for k in ("dataset", "model", "regularizer", "optimizer", "scheduler", "logger")})
    if key not in _checked:
        build.check(cfg)
        _checked.add(key)


def _config_error(e: Exception):
    """Hydra's composition errors, in one line that names the key and the allowed values."""
    from regbench.config import one_line
    from regbench.errors import ConfigError

    text = one_line(e)
    if "Could not find '" in text and "Available options" in text:
        # "In 'config': Could not find 'model/foo' Available options in 'model': cnn mlp ..." → one line
        missing = text.split("Could not find '")[1].split("'")[0]
        group, _, option = missing.rpartition("/")
        options = text.split("Available options in")[1].split(":", 1)[1].strip()
        return ConfigError(f"unknown {group}={option}; available: {', '.join(options.split())}")
    if "not in struct" in text or "Could not override" in text:
        key = text.split("Could not override '")[1].split("'")[0] if "Could not override '" in text else text
        return ConfigError(f"unknown option {key!r} (no such key in the config; to add a new key use +{key}=...). {text.split('. ')[0]}")
    return ConfigError(text)


def _tool(command: str, args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"regbench {command}")
    parser.add_argument("sweep_dir")
    if command == "report":
        parser.add_argument("--baseline", default=None, help="the configuration others are compared to (overrides, e.g. 'regularizer=none')")
        parser.add_argument("--metric", default="test_acc", help="metric the effects are computed on")
        parser.add_argument("--format", default="md,html", help="comma-separated: md, html")
    ns = parser.parse_args(args)
    import importlib

    module = importlib.import_module(f"regbench.sweep.{command}" if command != "report" else "regbench.report")
    return module.main(ns)


if __name__ == "__main__":
    sys.exit(main())
