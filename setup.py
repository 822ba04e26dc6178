"""Packaging: conf/ (the studies in conf/experiment/ included) ships inside wheels as regbench/conf, and
regbench's Hydra sweeper and SLURM launcher as hydra_plugins/regbench_sweeper and hydra_plugins/regbench_launcher.

pyproject.toml holds the metadata; only the package list lives here, because the config folders
are discovered by walking conf/, which pyproject cannot express.

``hydra_plugins`` is a namespace package that every Hydra plugin adds to (it has no ``__init__.py``); it is listed
itself so that an editable install (`make install`) puts this folder on its search path, where Hydra's plugin
scan finds the sweeper, and not only an import hook that the scan cannot list.
"""

import os

from setuptools import find_packages, setup

conf_packages = [
    ".".join(["regbench", *os.path.normpath(root).split(os.sep)])  # conf/model → regbench.conf.model
    for root, _, _ in os.walk("conf")
]

setup(
    packages=find_packages(include=["regbench", "regbench.*"]) + conf_packages + ["hydra_plugins", "hydra_plugins.regbench_sweeper", "hydra_plugins.regbench_launcher"],
    package_dir={"regbench.conf": "conf"},
    package_data={pkg: ["*.yaml", "*.md"] for pkg in conf_packages},
)
