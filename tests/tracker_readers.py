"""Read trackers' files back with the trackers' own readers: TensorBoard's EventAccumulator, MLflow's MlflowClient."""

from __future__ import annotations

import json
from pathlib import Path


def tensorboard(log_dir: Path):
    """(scalars {tag: [(step, value), ...]}, texts {tag: [str, ...]}, the EventAccumulator) of a TensorBoard run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = {}
    for tag in acc.Tags()["tensors"]:
        if tag.endswith("/text_summary"):
            texts[tag.split("/")[0]] = [tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors(tag)]
    return scalars, texts, acc


def hparams(acc) -> dict:
    """The hyperparameters of the HParams plugin's session start (what TensorBoard's HParams tab lists)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            info = data.session_start_info.hparams
            return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.items()}
    return {}


def mlflow_runs(tracking_uri: str, experiment: str) -> list:
    """Every MLflow run of ``experiment`` in the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {tracking_uri}"
    return client.search_runs([exp.experiment_id])


def mlflow_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    points = MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key)
    return [(m.step, m.value) for m in sorted(points, key=lambda m: (m.timestamp, m.step))]  # in the order logged


def mlflow_artifact(tracking_uri: str, run_id: str, path: str, dst: Path) -> str:
    from mlflow.tracking import MlflowClient

    return Path(MlflowClient(tracking_uri=tracking_uri).download_artifacts(run_id, path, str(dst))).read_text()


def logger_ids(result: dict) -> dict:
    return json.loads(result["logger_id"])


def last_per_step(points: list[tuple[int, float]]) -> dict[int, float]:
    """A metric's value at each step, the last one logged (a resumed run may log an epoch again, with the same value)."""
    return {step: value for step, value in points}
