"""TensorBoard: event files in ``<run dir>/tensorboard/`` (``tensorboard --logdir outputs/<name>`` shows a study).

The step is the epoch. Per epoch: every metric of metrics.jsonl as a scalar. At the start: the resolved
config (text ``config``, and its plain values as HParams), the study (``study``) and the tags (``tags``). At the
end: the result's numbers as ``result/<key>`` scalars (what the HParams table shows) and the whole result as
text ``result``.

A resumed run writes into the same folder. Each start opens a new event file that begins with a restart marker
(``purge_step``: at epoch 1 for a resumed run, so the first session's config at step 0 stays; at step 0 for a
fresh one), so TensorBoard's readers drop the epochs the earlier files held, and a resumed run then writes its
whole history again from metrics.jsonl: the folder always reads as one run with every epoch once, whatever
moment a kill came at.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from regbench.errors import ConfigError
from regbench.loggers import flatten, numbers
from regbench.records import FINISHED

#: The result numbers the HParams dashboard lists as metrics.
RESULT_METRICS = ("test_acc", "test_loss", "val_acc", "val_loss", "train_acc", "train_loss", "best_epoch", "epochs_run")


class TensorBoardLogger:
    def __init__(self, subdir: str = "tensorboard", flush_every_epoch: bool = True):
        if not isinstance(subdir, str) or not subdir or Path(subdir).is_absolute() or ".." in Path(subdir).parts:
            raise ConfigError(f"subdir={subdir!r} must be a folder name inside the run dir")
        self.subdir, self.flush_every_epoch = subdir, bool(flush_every_epoch)
        self.writer = None
        self.run_id: str | None = None
        self.last_epoch = 0

    def check(self) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("the tensorboard package is not installed: pip install 'regbench[trackers]' (or tensorboard)")

    def start(self, *, run_dir, config: dict, group: str, name: str, tags: list[str], resume_id: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        log_dir = Path(run_dir) / self.subdir
        log_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(log_dir, os.W_OK):
            raise PermissionError(f"{log_dir} is not writable")
        # Each session opens a new event file starting with a restart marker: readers drop the earlier files'
        # events from that step on. Resumed: from epoch 1 (the config written at step 0 by the first session stays,
        # and catch_up writes every epoch again); fresh: from step 0, everything.
        resumed = resume_id is not None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=1 if resumed else 0, max_queue=100, flush_secs=30)
        self.run_id = self.subdir
        self.last_epoch = 0
        if not resumed:
            w = self.writer
            w.add_text("config", "```yaml\n" + _yaml(config) + "\n```", 0)
            w.add_text("study", str(group), 0)
            w.add_text("tags", ", ".join(tags), 0)
            params = {k: v for k, v in flatten(config).items() if isinstance(v, (int, float, str, bool)) and v is not None}
            params.update({"study": str(group), "tags": ",".join(tags), "run": str(name)})
            exp, ssi, _ = hparams(params, {f"result/{k}": 0.0 for k in RESULT_METRICS})
            fw = w._get_file_writer()
            fw.add_summary(exp, 0)
            fw.add_summary(ssi, 0)
        self.writer.flush()

    def catch_up(self, rows: list[dict]) -> None:
        """A resumed start: the earlier files are purged, so every epoch is written again."""
        for row in rows:
            self.log(row, flush=False)
        if self.writer is not None:
            self.writer.flush()

    def log(self, row: dict, flush: bool | None = None) -> None:
        if self.writer is None:
            return
        epoch = int(row.get("epoch") or self.last_epoch + 1)
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, epoch)
        self.last_epoch = max(self.last_epoch, epoch)
        if flush if flush is not None else self.flush_every_epoch:
            self.writer.flush()

    def finish(self, result: dict) -> None:
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        w, self.writer = self.writer, None
        try:
            step = self.last_epoch
            for key, value in numbers(result).items():
                w.add_scalar(f"result/{key}", value, step)
            w.add_text("result", "```json\n" + json.dumps(result, indent=1, default=str) + "\n```", step)
            if result.get("status") in FINISHED:  # the HParams plugin's "success" (a failed run has none)
                _, _, sei = hparams({"status": str(result.get("status"))}, {})
                w._get_file_writer().add_summary(sei, step)
        finally:
            w.close()


def _yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None).rstrip()
