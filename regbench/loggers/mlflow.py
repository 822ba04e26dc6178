"""MLflow, with no server: a local SQLite store unless told otherwise.

Where runs go, first that applies: ``logger.mlflow.tracking_uri``, ``MLFLOW_TRACKING_URI``, else
``sqlite:///<the folder holding the run dirs>/mlflow.db`` — ``outputs/<name>/multirun/mlflow.db`` for a sweep,
``outputs/<name>/runs/mlflow.db`` for single runs — with artifacts in ``mlartifacts/`` beside it.
``mlflow ui --backend-store-uri sqlite:///outputs/<name>/multirun/mlflow.db`` browses a sweep. (MLflow 3 keeps
``./mlruns`` file stores in maintenance and refuses them unless ``MLFLOW_ALLOW_FILE_STORE=true``; a
``file:`` URI works with that variable set.)

The study is the MLflow experiment (``logger.mlflow.experiment`` overrides it) and the run dir's name the run
name. Recorded: the resolved config (params, flattened, and ``run_config.yaml`` as an artifact), per-epoch metrics at
step = epoch, the tags (``key=value`` tags as MLflow key/value tags, every one in ``regbench.tags``), and at the
end the result's numbers as ``result/<key>`` metrics, ``run_result.json`` as an artifact, its status as the tag
``status`` and the run's state (FINISHED, or FAILED). A resumed run continues the same MLflow run (its id is in
the checkpoint) and first logs the epochs that MLflow has not seen. Metrics are sent every ``flush_every_s``
(2 s) and at the end, not at each epoch: a write to the SQLite store costs about 20 ms. MLflow's usage telemetry is turned off unless
``MLFLOW_DISABLE_TELEMETRY`` is already set.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

from regbench.errors import ConfigError, check_range
from regbench.loggers import flatten, numbers
from regbench.records import FINISHED

STORE_FILE, ARTIFACTS_DIR = "mlflow.db", "mlartifacts"
#: Not config.yaml / result.json: the artifacts lie under the sweep dir, where those names mark run dirs.
CONFIG_ARTIFACT, RESULT_ARTIFACT = "run_config.yaml", "run_result.json"
_KEY = re.compile(r"[\w./ -]{1,250}")  # what MLflow accepts as a param, metric or tag name
MAX_PARAM_VALUE = 6000
PROBE_TIMEOUT_S = 5.0


class MlflowLogger:
    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, log_params: bool = True,
                 flush_every_s: float = 2.0):
        for key, value in (("tracking_uri", tracking_uri), ("experiment", experiment)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{key}={value!r} must be a non-empty string or null")
        check_range("flush_every_s", flush_every_s, 0)
        self.tracking_uri, self.experiment, self.log_params = tracking_uri, experiment, bool(log_params)
        self.flush_every_s = float(flush_every_s)
        self.client = None
        self.pending: list = []
        self.flushed_at = 0.0
        self.run_id: str | None = None
        self.resumed = False
        self.last_epoch = 0

    # ------------------------------------------------------------------------------ before anything runs

    def configured_uri(self) -> tuple[str | None, str]:
        """The tracking URI the config or the environment names (None: the default store) and where it came from."""
        if self.tracking_uri:
            return self.tracking_uri, "logger.mlflow.tracking_uri"
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI"
        return None, "the default store"

    def check(self) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError("the mlflow package is not installed: pip install 'regbench[trackers]' (or mlflow-skinny)")
        uri, source = self.configured_uri()
        scheme = urlparse(uri).scheme.lower() if uri else "sqlite"
        if scheme == "sqlite":
            missing = [m for m in ("sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
            if missing:
                raise ConfigError(f"MLflow's SQLite store needs {' and '.join(missing)}: pip install 'regbench[trackers]'")
            if uri:
                _check_writable(Path(_sqlite_path(uri)).parent, f"{source}={uri}")
        elif scheme in ("http", "https"):
            _probe(uri, source)
        elif scheme in ("", "file"):
            if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
                raise ConfigError(f"{source}={uri} is a file store, which MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true; "
                                  "set that, or use sqlite:///<dir>/mlflow.db (or neither: the default store beside the run dirs)")
            _check_writable(Path(urlparse(uri).path if scheme == "file" else uri), f"{source}={uri}")

    # ------------------------------------------------------------------------------------------ a run

    def start(self, *, run_dir, config: dict, group: str, name: str, tags: list[str], resume_id: str | None) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        uri, _ = self.configured_uri()
        artifacts = None
        if uri is None:
            store = Path(run_dir).resolve().parent / STORE_FILE
            uri = f"sqlite:///{store}"
        if urlparse(uri).scheme.lower() == "sqlite":
            store = Path(_sqlite_path(uri))
            store.parent.mkdir(parents=True, exist_ok=True)
            artifacts = (store.parent / ARTIFACTS_DIR).as_uri()
        with _store_lock(uri):  # runs of a sweep in parallel processes: one creates the tables and the experiment
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment(client, self.experiment or str(group), artifacts)
        self.client, self.last_epoch, self.resumed, self.pending, self.flushed_at = client, 0, False, [], time.monotonic()
        run = _existing_run(client, resume_id, experiment_id) if resume_id else None
        if run is not None:
            self.run_id, self.resumed = run.info.run_id, True
            client.update_run(self.run_id, status="RUNNING")
        else:
            run = client.create_run(experiment_id, run_name=str(name), tags=_tags(tags, group))
            self.run_id = run.info.run_id
            if self.log_params:
                _log_params(client, self.run_id, config)
        client.log_text(self.run_id, _yaml(config), CONFIG_ARTIFACT)

    def catch_up(self, rows: list[dict]) -> None:
        """After a resumed start: the epochs of metrics.jsonl past the last one this MLflow run has."""
        if self.client is None:
            return
        seen = 0
        if self.resumed:
            history = self.client.get_metric_history(self.run_id, "seconds")
            seen = max((m.step for m in history), default=0)
        for row in rows:
            if int(row.get("epoch") or 0) > seen:
                self.log(row)
        self.flush()

    def log(self, row: dict) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        epoch = int(row.get("epoch") or self.last_epoch + 1)
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, epoch) for key, value in row.items()
                   if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) and _KEY.fullmatch(key)]
        self.pending.extend(metrics)
        self.last_epoch = max(self.last_epoch, epoch)
        if time.monotonic() - self.flushed_at >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Send the metrics logged since the last flush (a write to the store costs about 20 ms: once per
        ``flush_every_s``, not per epoch; a kill loses at most those, which the resumed run logs again)."""
        pending, self.pending, self.flushed_at = self.pending, [], time.monotonic()
        for i in range(0, len(pending), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(self.run_id, metrics=pending[i:i + 1000])

    def finish(self, result: dict) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric, RunTag

        client, self.client = self.client, None
        ok = result.get("status") in FINISHED
        try:
            now = int(time.time() * 1000)
            metrics = [Metric(f"result/{k}", v, now, self.last_epoch) for k, v in numbers(result).items() if _KEY.fullmatch(f"result/{k}")]
            pending, self.pending = self.pending, []
            for i in range(0, len(pending), 1000):
                client.log_batch(self.run_id, metrics=pending[i:i + 1000])
            client.log_batch(self.run_id, metrics=metrics, tags=[RunTag("status", str(result.get("status")))])
            client.log_dict(self.run_id, result, RESULT_ARTIFACT)
        finally:
            client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


# ----------------------------------------------------------------------------------------- helpers

def _sqlite_path(uri: str) -> str:
    """``sqlite:///rel/path.db`` → ``rel/path.db``; ``sqlite:////abs/path.db`` → ``/abs/path.db``."""
    return uri.split(":", 1)[1].removeprefix("///")


def _check_writable(path: Path, what: str) -> None:
    path = Path(path).expanduser().absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: {existing or path} is not a writable folder")


def _probe(uri: str, source: str) -> None:
    """Any HTTP answer (an error status included) is a server that can be reached; no answer is one line now."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigError(f"{source}={uri}: the tracking server cannot be reached ({reason}); start it, fix the URI, "
                          "or unset it to use the local store") from None


@contextlib.contextmanager
def _store_lock(uri: str):
    if urlparse(uri).scheme.lower() != "sqlite":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's own locking only
        yield
        return
    with open(_sqlite_path(uri) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _experiment(client, name: str, artifacts: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifacts)
        except Exception:  # made by another process meanwhile (a server without our lock)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _existing_run(client, run_id: str, experiment_id: str):
    """The run a resumed run continues, or None (another store, deleted, or an id of another tracker)."""
    try:
        run = client.get_run(run_id)
    except Exception:
        return None
    if run.info.experiment_id != experiment_id or run.info.lifecycle_stage == "deleted":
        return None
    return run


def _tags(tags: list[str], group: str) -> dict[str, str]:
    out = {"study": str(group), "regbench.tags": ",".join(tags)}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if _KEY.fullmatch(key) and key not in out:
            out[key] = value if sep else "true"
    return out


def _log_params(client, run_id: str, config: dict) -> None:
    from mlflow.entities import Param

    params = [Param(k, str(v)[:MAX_PARAM_VALUE]) for k, v in flatten(config).items() if _KEY.fullmatch(k)]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
        client.log_batch(run_id, params=params[i:i + 100])


def _yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
