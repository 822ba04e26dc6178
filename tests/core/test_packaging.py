"""The config, and regbench's Hydra sweeper and SLURM launcher, are found however regbench is installed: from the source tree (the
editable install `make install` makes), or from a wheel in another directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from helpers import REPO


def test_wheel_carries_the_configs_and_runs_from_anywhere(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("regbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"regbench/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")}
    assert expected and expected <= names, sorted(expected - names)[:5]
    # the sweeper, in Hydra's namespace package, which every plugin shares: the wheel must not claim its __init__.py
    assert {"hydra_plugins/regbench_sweeper/__init__.py", "hydra_plugins/regbench_sweeper/regbench_sweeper.py",
            "hydra_plugins/regbench_launcher/__init__.py", "hydra_plugins/regbench_launcher/regbench_launcher.py"} <= names
    assert "hydra_plugins/__init__.py" not in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import regbench, regbench.config as c; from regbench.config import compose; "
            "print(regbench.__file__); print(c.CONFIG_DIR); print(compose(['model=mlp']).model._target_); "
            "from hydra.core.plugins import Plugins; import sys; "
            "print(sys.modules[Plugins.instance().class_name_to_class["
            "'hydra_plugins.regbench_sweeper.regbench_sweeper.RegbenchSweeper'].__module__].__file__); "
            "print(sys.modules[Plugins.instance().class_name_to_class["
            "'hydra_plugins.regbench_launcher.regbench_launcher.RegbenchSlurmLauncher'].__module__].__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    module_file, config_dir, target, sweeper_file, launcher_file = out.stdout.split()
    assert module_file.startswith(str(site)) and config_dir == str(site / "regbench" / "conf")
    assert target == "regbench.models.mlp.MLP"
    assert sweeper_file == str(site / "hydra_plugins" / "regbench_sweeper" / "regbench_sweeper.py")  # the wheel's
    assert launcher_file == str(site / "hydra_plugins" / "regbench_launcher" / "regbench_launcher.py")

    out = subprocess.run([sys.executable, "-m", "regbench", "run", "model=mlp", "debug=tiny"], cwd=elsewhere, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert list((elsewhere / "outputs" / "default" / "runs").glob("*/result.json"))

    # a sweep, through the wheel's sweeper (Hydra's plugin scan finds it in the wheel's hydra_plugins)
    out = subprocess.run([sys.executable, "-m", "regbench", "run", "-m", "model=mlp", "debug=tiny", "seed=0,1", "stack=1"],
                         cwd=elsewhere, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    sweep_dir = elsewhere / "outputs" / "default" / "multirun"
    assert len(list(sweep_dir.glob("*/result.json"))) == 2
    assert "hydra_plugins.regbench_sweeper.regbench_sweeper.RegbenchSweeper" in (sweep_dir / "multirun.yaml").read_text()


def test_hydra_finds_the_sweeper_outside_the_repository(tmp_path):
    """Hydra's plugin scan lists ``hydra_plugins`` on its search path (an import hook alone is not listed): an editable
    install must put the repository's folder there, a wheel its own."""
    code = ("from hydra.core.plugins import Plugins; import hydra_plugins.regbench_sweeper as m; "
            "print(sorted(Plugins.instance().class_name_to_class)); print(m.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    classes, module_file = out.stdout.splitlines()
    assert "hydra_plugins.regbench_sweeper.regbench_sweeper.RegbenchSweeper" in classes
    assert "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher" in classes  # beside the other plugins
    assert module_file.endswith("hydra_plugins/regbench_sweeper/__init__.py")


def test_the_search_needs_no_sqlalchemy_1():
    """regbench drives Optuna ≥ 4 itself: no sweeper plugin pinning optuna<3, SQLAlchemy<2 or alembic<1.14 in any
    extra, and the environment `make install` built (every extra) is consistent beside SQLAlchemy 2."""
    import re
    from importlib.metadata import requires, version

    wanted = requires("regbench") or []
    assert any(r.startswith("optuna") for r in wanted), wanted
    assert not [r for r in wanted if "optuna-sweeper" in r or re.match(r"(?i)sqlalchemy[^;]*<\s*2\b|alembic[^;]*<\s*1\.14\b", r)]
    assert int(version("sqlalchemy").split(".")[0]) >= 2 and int(version("optuna").split(".")[0]) >= 4
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
