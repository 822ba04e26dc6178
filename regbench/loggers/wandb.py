"""Weights & Biases, offline unless asked otherwise, so a run never waits on the network.

Offline runs land in ``<run dir>/wandb/offline-run-*``; ``wandb sync <that folder>`` uploads them
later. The W&B run id is kept in the checkpoint so a resumed run continues the same W&B run. With
``mode=online``, a W&B server that cannot be reached is refused before anything is written (``check``).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from regbench.errors import ConfigError, check_choice
from regbench.records import FINISHED


MODES = ("offline", "online", "disabled")
MAX_TAG_LENGTH = 64  # W&B refuses longer tags
PROBE_TIMEOUT_S = 5.0


class WandbLogger:
    def __init__(self, project: str = "regbench", mode: str = "offline", entity: str | None = None, tags=()):
        check_choice("mode", mode, MODES)
        if not isinstance(project, str) or not project or any(c in project for c in "/\\#?%:"):
            raise ConfigError(f"project={project!r} must be a W&B project name: no / \\ # ? % : characters")
        for tag in tags:
            if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH:
                raise ConfigError(f"tags: {tag!r} must be a W&B tag of 1 to {MAX_TAG_LENGTH} characters")
        self.project, self.entity, self.extra_tags = project, entity, list(tags)
        # The environment wins (WANDB_MODE=online on a machine with network); otherwise the config's mode.
        self.mode = os.environ.get("WANDB_MODE") or mode
        self.run = None
        self.run_id: str | None = None

    def check(self) -> None:
        """Online: the W&B server must answer a connection (WANDB_BASE_URL, else api.wandb.ai), or it is one line now."""
        if self.mode != "online":
            return
        url = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
        parsed = urlparse(url)
        try:
            socket.create_connection((parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)),
                                     timeout=PROBE_TIMEOUT_S).close()
        except (OSError, ValueError) as e:
            raise ConfigError(f"mode=online, but {url} cannot be reached ({e}); use logger.wandb.mode=offline "
                              "(`wandb sync` uploads later)") from None

    def start(self, *, run_dir, config: dict, group: str, name: str, tags: list[str], resume_id: str | None) -> None:
        import wandb

        _list_packages_once(wandb)
        os.environ.setdefault("WANDB_SILENT", "true")
        if os.environ.get("WANDB_MODE") == "":
            del os.environ["WANDB_MODE"]  # an empty value makes wandb refuse to start
        self.run = wandb.init(
            project=self.project, entity=self.entity, mode=self.mode, dir=str(run_dir),
            group=group, name=name, tags=list(dict.fromkeys([*tags, *self.extra_tags])), config=config,
            id=resume_id, resume="allow" if resume_id else None, reinit="finish_previous",
        )
        self.run_id = self.run.id
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")

    def log(self, row: dict) -> None:
        if self.run is not None:  # a metric not measured this epoch (train metrics between evaluations) is left out
            self.run.log({k: v for k, v in row.items() if v is not None})

    def finish(self, result: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None})
        finally:
            self.run.finish(exit_code=0 if result.get("status") in FINISHED else 1)
            self.run = None


def _list_packages_once(wandb) -> None:
    """Every W&B run records the installed packages (its ``requirements.txt``), which W&B lists by parsing
    each package's metadata: 50-75 ms a run here, 0.8-1.2 s of a 16-run sweep in one process. The list cannot
    change while a process trains, so it is read once: ``wandb.util.working_set`` (which W&B looks up at each
    run's start) is replaced by a function that replays the first listing. A W&B without that function is left
    as it is."""
    util = getattr(wandb, "util", None)
    listing = getattr(util, "working_set", None)
    if listing is None or getattr(listing, "replays", False):
        return
    packages: list = []

    def working_set():
        if not packages:
            packages.append(list(listing()))
        return iter(packages[0])

    working_set.replays = True
    util.working_set = working_set
