"""logger=mlflow: a local store with no server that MlflowClient reads back; a store or server it cannot use is
refused in one line before anything is written; MLFLOW_TRACKING_URI is honoured."""

from __future__ import annotations

import json
import socket

import pytest
import yaml
from helpers import compose, read_metrics, read_result, run_cli
from tracker_readers import mlflow_artifact, mlflow_history, mlflow_runs

from regbench import build
from regbench.errors import ConfigError

pytest.importorskip("mlflow")


def test_a_run_leaves_an_mlflow_store_that_mlflowclient_reads_back(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    out = run_cli("run", "model=mlp", "trainer.max_epochs=3", "dataset.n_train=200", "trainer.num_threads=1",
                  "regularizer=[dropout]", "logger=mlflow", "logger.tags=[mine,'lr=3']", "name=study1", f"hydra.run.dir={run_dir}",
                  cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None})
    assert out.returncode == 0, out.stderr[-2000:]
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"  # the default store: beside the run dirs
    (run,) = mlflow_runs(uri, "study1")  # the study is the experiment
    result, rows = read_result(run_dir), read_metrics(run_dir)
    assert json.loads(result["logger_id"]) == {"mlflow": run.info.run_id}
    assert run.info.status == "FINISHED" and run.info.run_name == "a"
    assert run.data.params["regularizer.dropout.p"] == "0.5" and run.data.params["model._target_"].endswith("MLP")
    assert run.data.tags["study"] == "study1" and run.data.tags["regbench.tags"] == "dropout,mine,lr=3"
    assert run.data.tags["dropout"] == "true" and run.data.tags["lr"] == "3" and run.data.tags["status"] == "completed"
    for key in ("val_loss", "val_acc", "lr", "step", "seconds"):
        assert mlflow_history(uri, run.info.run_id, key) == [(r["epoch"], pytest.approx(r[key])) for r in rows], key
    assert run.data.metrics["result/test_acc"] == pytest.approx(result["test_acc"])
    assert yaml.safe_load(mlflow_artifact(uri, run.info.run_id, "run_config.yaml", tmp_path))["regularizer"]["dropout"]["p"] == 0.5
    assert json.loads(mlflow_artifact(uri, run.info.run_id, "run_result.json", tmp_path))["test_acc"] == result["test_acc"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["unwritable store", "unreachable server"])
def test_a_store_it_cannot_use_is_one_line_before_anything_is_written(case, tmp_path):
    (tmp_path / "a_file").write_text("")
    uri = f"sqlite:///{tmp_path}/a_file/mlflow.db" if case == "unwritable store" else f"http://127.0.0.1:{_free_port()}"
    out = run_cli("run", "debug=tiny", "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}",
                  f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"regbench: error: logger=mlflow: logger.mlflow.tracking_uri={uri}")
    assert ("a_file is not a writable folder" if case == "unwritable store" else "cannot be reached") in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_missing_packages_and_file_stores_are_refused_by_the_check(monkeypatch, tmp_path):
    import importlib.util

    cfg = compose("debug=tiny", "logger=[mlflow]")
    find_spec = importlib.util.find_spec
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    build.check(cfg)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"^logger=mlflow: the mlflow package is not installed: pip install 'regbench\[trackers\]'"):
        build.check(cfg)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "alembic" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"^logger=mlflow: MLflow's SQLite store needs alembic"):
        build.check(cfg)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    with pytest.raises(ConfigError, match=r"^logger=mlflow: MLFLOW_TRACKING_URI=.*mlruns is a file store, which MLflow 3 refuses"):
        build.check(cfg)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    build.check(cfg)


def test_mlflow_tracking_uri_in_the_environment_is_the_store(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    logger = build.build_logger(compose("logger=mlflow", "logger.mlflow.experiment=exp").logger)
    logger.start(run_dir=tmp_path / "run", config={"seed": 0, "model": {"width": 8}}, group="study", name="run",
                 tags=["baseline"], resume_id=None)
    logger.log({"epoch": 1, "val_acc": 0.5, "train_acc": None})
    logger.finish({"status": "failed", "error": "boom"})
    (run,) = mlflow_runs(uri, "exp")
    assert run.info.status == "FAILED" and run.data.params == {"seed": "0", "model.width": "8"}
    assert mlflow_history(uri, run.info.run_id, "val_acc") == [(1, 0.5)] and "train_acc" not in run.data.metrics
    assert not (tmp_path / "mlflow.db").exists()


def test_a_server_that_answers_but_refuses_is_a_warning_and_the_run_completes(tmp_path):
    """Past the check (the server answers /health) MLflow fails at the start: the run trains to the end, with the
    other tracker and the local files complete, and says why in one warning."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refusing(BaseHTTPRequestHandler):
        def _answer(self):
            ok = self.path.startswith("/health")
            body = b"OK" if ok else b'{"error_code": "INVALID_STATE", "message": "read-only server"}'
            self.send_response(200 if ok else 400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_dir = tmp_path / "run"
        out = run_cli("run", "model=mlp", "trainer.max_epochs=3", "dataset.n_train=200", "trainer.num_threads=1",
                      "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri=http://127.0.0.1:{server.server_port}",
                      f"hydra.run.dir={run_dir}", cwd=tmp_path, env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr[-2000:]
    log = (run_dir / "regbench.log").read_text()
    assert "logger mlflow could not start" in log and "metrics.jsonl and result.json stay complete" in log
    result = read_result(run_dir)
    assert result["status"] == "completed" and len(read_metrics(run_dir)) == 3
    assert json.loads(result["logger_id"]) == {"tensorboard": "tensorboard"}
