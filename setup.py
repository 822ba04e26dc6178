"""Packaging: conf/ (the studies in conf/experiment/ included) ships inside wheels as regbench/conf.

pyproject.toml holds the metadata; only the package list lives here, because the config folders
are discovered by walking conf/, which pyproject cannot express.
"""

import os

from setuptools import find_packages, setup

conf_packages = [
    ".".join(["regbench", *os.path.normpath(root).split(os.sep)])  # conf/model → regbench.conf.model
    for root, _, _ in os.walk("conf")
]

setup(
    packages=find_packages(include=["regbench", "regbench.*"]) + conf_packages,
    package_dir={"regbench.conf": "conf"},
    package_data={pkg: ["*.yaml", "*.md"] for pkg in conf_packages},
)
