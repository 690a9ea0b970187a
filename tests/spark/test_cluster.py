"""Cluster mode: a standalone master and worker started by Spark's own launcher on loopback,
and `recengine train --engine spark --master spark://...` training through them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recengine.models.base import Recommender


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in (log.read_text() if log.exists() else ""):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {text!r} within {seconds} s:\n{log.read_text()}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(spark_ready, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A standalone master and one worker (one core, 1 GiB) on loopback, for this module: its
    URL and the master's log."""
    import pyspark

    tmp_path = tmp_path_factory.mktemp("cluster")
    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = os.environ | {"SPARK_HOME": str(spark_class.parents[1]), "SPARK_LOCAL_IP": "127.0.0.1"}
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    started = []
    try:
        for name, argv in (
            ("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                        "--port", str(port), "--webui-port", str(_free_port())]),
            ("worker", ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                        "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()),
                        "--work-dir", str(tmp_path / "work")]),
        ):
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen([str(spark_class), *argv], env=env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            started.append(process)
            _wait_for(log, "Successfully started service 'sparkMaster'" if name == "master"
                      else "Successfully registered with master", process, 120)
        yield url, tmp_path / "master.log"
    finally:
        for process in reversed(started):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def test_train_through_a_standalone_cluster(cluster, tmp_path):
    url, master_log = cluster
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event_type\n" + "".join(
        f"u{u},i{(u * 5 + j) % 17},view\n" for u in range(40) for j in range(5)))
    config = tmp_path / "spark-als.json"
    config.write_text(json.dumps({"model": "spark-als",
                                  "config": {"factors": 4, "iterations": 3, "blocks": 2}}))
    folder = tmp_path / "model"
    env = os.environ | {"SPARK_LOCAL_IP": "127.0.0.1",
                        "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "recengine", "train", "--events", str(events), "--engine",
         "spark", "--master", url, "--config", str(config), "--output", str(folder),
         "--spark-conf", f"spark.checkpoint.dir={tmp_path / 'checkpoints'}",
         "--spark-conf", "spark.executor.memory=512m",
         "--spark-conf", "spark.sql.shuffle.partitions=2"],
        env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "spark-als trained on 200 pairs (40 users, 17 items)" in done.stdout
    log = master_log.read_text()
    assert "Registered app recengine" in log and "Launching executor" in log
    model = Recommender.load(folder)
    assert model.config.master == url  # type: ignore[attr-defined]
    assert len(model.recommend_history(["i1", "i6"], 3)[0]) == 3


@pytest.mark.parametrize("command", [["train", "--output", "model"],
                                     ["retrain", "--models", "wals", "--registry", "registry"]])
def test_a_cluster_without_a_checkpoint_folder_is_told_before_any_work(cluster, tmp_path,
                                                                       command):
    url, _ = cluster
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event_type\nu1,i1,view\nu2,i1,view\nu2,i2,view\n")
    done = subprocess.run(
        [sys.executable, "-m", "recengine", *command, "--events", str(events), "--engine",
         "spark", "--master", url, "--spark-conf", "spark.executor.memory=512m"],
        cwd=tmp_path, capture_output=True, text=True, timeout=400,
        env=os.environ | {"SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ALS on a cluster needs a checkpoint folder")
    assert "rows read" not in done.stdout + done.stderr  # told before the events were read
    assert not (tmp_path / "model").exists() and not (tmp_path / "registry").exists()


def test_a_retrain_called_from_python_is_told_before_any_job_runs_there(cluster, tmp_path):
    """``pipeline.retrain.retrain(engine="spark")``, as the scheduler calls it, on a cluster
    without a checkpoint folder: refused before the events are aggregated or split there (no
    Spark job has run), nothing published."""
    url, _ = cluster
    script = f"""
from recengine.data.synthetic import generate
from recengine.errors import EngineError
from recengine.pipeline.retrain import retrain
from recengine.spark.session import spark_session
from recengine.store.registry import ModelRegistry
session = spark_session({url!r}, conf={{"spark.executor.memory": "512m"}})
try:
    retrain(generate(n_users=30, n_items=20, seed=1), ModelRegistry("registry"),
            models={{"wals": {{}}}}, engine="spark", master={url!r})
except EngineError as error:
    print("refused:", error)
print("jobs:", len(session.sparkContext.statusTracker().getJobIdsForGroup()))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=400,
        env=os.environ | {"SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert "refused: ALS on a cluster needs a checkpoint folder" in done.stdout
    assert "jobs: 0" in done.stdout
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").iterdir())
