"""The command line: the scripted JSON contract, clean errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from recengine.cli import main
from recengine.store.local_postgres import free_port


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_json_maps_each_model_to_its_metrics(capsys, tmp_path):
    code, out, _ = run(capsys, "evaluate", "--dataset", "synthetic", "--seed", "3", "--k", "10",
                       "--models", "popularity,random", "--json", "--output", str(tmp_path))
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"popularity", "random"}
    for key in ("precision@10", "recall@10", "ndcg@10", "map@10"):
        assert 0 <= result["popularity"][key] <= 1
    assert result["popularity"]["ndcg@10"] > 2 * result["random"]["ndcg@10"]
    assert {p.name for p in tmp_path.iterdir()} >= {"results.json", "metrics_vs_k.png",
                                                    "popularity.png"}


def test_movielens_contract_command(capsys, tmp_path, require_dataset):
    """The foundation's sanity anchor: popularity's precision@10 on ML100K 75/25 is about 0.2."""
    path = require_dataset("ml-100k")
    code, out, _ = run(capsys, "evaluate", "--dataset", "movielens-100k", "--path", str(path),
                       "--split", "stratified", "--test-fraction", "0.25", "--seed", "42",
                       "--k", "10", "--models", "popularity,random", "--json",
                       "--output", str(tmp_path))
    assert code == 0
    result = json.loads(out)
    assert 0.17 <= result["popularity"]["precision@10"] <= 0.23
    assert result["random"]["precision@10"] < 0.05


def test_order_contract_markov_beats_popularity_on_the_last_item(capsys, tmp_path,
                                                                  require_dataset):
    """Core v2's contract: next-item prediction from the order of events."""
    path = require_dataset("ml-100k")
    code, out, _ = run(capsys, "evaluate", "--dataset", "movielens-100k", "--path", str(path),
                       "--split", "last", "--last-n", "1", "--seed", "42", "--k", "10",
                       "--models", "popularity,markov", "--json", "--output", str(tmp_path))
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"popularity", "markov"}
    assert result["markov"]["ndcg@10"] > 1.5 * result["popularity"]["ndcg@10"]


def test_open_registry_contract_an_import_path_is_a_model_name(capsys, tmp_path,
                                                                 require_dataset):
    path = require_dataset("ml-100k")
    figures = {}
    for name in ("popularity", "recengine.models.popularity:Popularity"):
        code, out, _ = run(capsys, "evaluate", "--dataset", "movielens-100k", "--path",
                           str(path), "--split", "stratified", "--test-fraction", "0.25",
                           "--seed", "42", "--k", "10", "--models", name, "--json",
                           "--output", str(tmp_path))
        assert code == 0
        result = json.loads(out)
        assert list(result) == [name]
        figures[name] = result[name]
    assert figures["popularity"] == figures["recengine.models.popularity:Popularity"]


def test_ingest_reports_bad_rows_and_strict_fails_cleanly(capsys, tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("user_id,item_id,event_type,value\nu1,i1,rating,4\nu1,i2,rating,12\n")
    code, out, _ = run(capsys, "ingest", str(f), "--json")
    report = json.loads(out)
    assert code == 0 and report["rows_accepted"] == 1 and report["rows_skipped"] == 1
    assert report["issues"] == [f"{f}, row 3, column 'value': rating value 12 is outside 1..5"]
    code, out, err = run(capsys, "ingest", str(f), "--strict")
    assert code == 2 and "row 3" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["evaluate", "--models", "nope"],
    ["evaluate", "--dataset", "movielens-100k"],
    ["evaluate", "--dataset", "movielens-100k", "--path", "/does/not/exist"],
    ["ingest", "/does/not/exist.csv"],
    ["recommend", "--model-dir", "/does/not/exist", "--user", "u1"],
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error:") and "Traceback" not in err


def test_train_then_recommend_with_reasons(capsys, tmp_path):
    model_dir = tmp_path / "model"
    code, _, _ = run(capsys, "train", "--dataset", "synthetic", "--seed", "5",
                     "--model", "category-popularity", "--output", str(model_dir))
    assert code == 0
    code, out, _ = run(capsys, "recommend", "--model-dir", str(model_dir), "--user", "u0001",
                       "--k", "3", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["user"] == "u0001" and len(answer["items"]) == 3
    assert all(item["reason"] for item in answer["items"])
    code, out, _ = run(capsys, "recommend", "--model-dir", str(model_dir), "--user", "ghost")
    assert code == 2


def test_module_entry_point_runs_as_a_real_process():
    done = subprocess.run([sys.executable, "-m", "recengine", "evaluate", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "--test-fraction" in done.stdout


def test_every_command_has_help(capsys):
    for command in ("demo", "ingest", "evaluate", "tune", "train", "recommend", "retrain",
                    "models", "serve", "batch"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: recengine" in capsys.readouterr().out


def test_readme_commands_are_the_make_targets():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "make demo" in readme and "make test" in readme and "make test" in ci


def test_tune_writes_a_config_that_evaluate_and_train_use(capsys, tmp_path):
    config = tmp_path / "tuned.json"
    code, out, _ = run(capsys, "tune", "--dataset", "synthetic", "--seed", "2", "--model", "wals",
                       "--trials", "2", "--set", "iterations=3", "--output", str(config))
    assert code == 0 and "best validation ndcg@10" in out
    saved = json.loads(config.read_text())
    assert saved["model"] == "wals" and saved["config"]["iterations"] == 3
    assert len(saved["trials"]) == 2 and saved["validation"]["split"] == "stratified"
    code, out, _ = run(capsys, "evaluate", "--dataset", "synthetic", "--seed", "2", "--models",
                       "popularity", "--config", str(config), "--json", "--output",
                       str(tmp_path / "eval"))
    assert code == 0 and set(json.loads(out)) == {"popularity", "wals"}
    code, _, _ = run(capsys, "train", "--dataset", "synthetic", "--seed", "2", "--config",
                     str(config), "--output", str(tmp_path / "model"))
    assert code == 0 and json.loads((tmp_path / "model" / "model.json").read_text())[
        "config"]["factors"] == saved["config"]["factors"]


@pytest.mark.parametrize(("argv", "message"), [
    (["tune", "--set", "nonsense"], "bad setting 'nonsense'"),
    (["tune", "--set", "factors=0"], "invalid wals parameter"),
    (["tune", "--model", "random"], "random declares no search space"),
])
def test_tune_rejects_bad_settings(capsys, argv, message):
    code, _, err = run(capsys, *argv, "--trials", "1")
    assert code == 2 and message in err


def test_every_set_of_tune_counts():
    """`--set a=1 --set b=2` fixes both (a second --set once replaced the first, silently)."""
    from recengine.cli import build_parser

    args = build_parser().parse_args(["tune", "--set", "dropout=0,l2=5", "--set",
                                      "popularity_exponent=0"])
    assert args.set == ["dropout=0", "l2=5", "popularity_exponent=0"]


def test_retrain_gates_and_the_registry_commands(capsys, tmp_path):
    registry = str(tmp_path / "registry")
    base = ["--dataset", "synthetic", "--seed", "1", "--registry", registry]
    code, out, _ = run(capsys, "retrain", *base, "--models", "popularity")
    assert code == 0 and "published and activated v0001" in out
    code, out, _ = run(capsys, "retrain", *base, "--models", "random")
    assert code == 0 and out.startswith("not published") and "kept v0001" in out
    code, out, _ = run(capsys, "retrain", *base, "--models", "category-popularity")
    assert code == 0 and "published and activated v0002" in out
    code, out, _ = run(capsys, "models", "list", "--registry", registry, "--json")
    listed = json.loads(out)
    assert [(m["version"], m["active"]) for m in listed] == [("v0002", True), ("v0001", False)]
    code, out, _ = run(capsys, "models", "rollback", "--registry", registry)
    assert code == 0 and "active: v0001" in out
    code, out, _ = run(capsys, "models", "show", "v0002", "--registry", registry)
    assert json.loads(out)["models"]["category-popularity"]["model"] == "category-popularity"
    code, _, err = run(capsys, "models", "activate", "v0009", "--registry", registry)
    assert code == 2 and "unknown version 'v0009'" in err


def test_ingest_into_the_event_store_is_idempotent_by_event_id(capsys, tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("id,user,item,kind\ne1,u1,i1,view\ne2,u1,i2,click\ne3,,i3,view\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    argv = ["ingest", str(f), "--columns", "event_id=id,user_id=user,item_id=item,"
            "event_type=kind", "--store", url, "--json"]
    code, out, _ = run(capsys, *argv)
    first = json.loads(out)
    assert code == 0 and (first["stored"], first["rows_skipped"]) == (2, 1)
    code, out, _ = run(capsys, *argv)
    again = json.loads(out)
    assert (again["stored"], again["duplicates"]) == (0, 2)


def test_ingest_stores_item_and_user_metadata_with_their_kinds(capsys, tmp_path):
    from recengine.data.schema import FeatureKind
    from recengine.store import EventStore

    items = tmp_path / "items.csv"
    items.write_text("id,region,bedrooms,since\nr1,Coast,3,2024-05-01\nr2,Alps,x,2024-06-01\n")
    users = tmp_path / "users.csv"
    users.write_text("id,country\nu1,CH\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code, out, _ = run(capsys, "ingest", "--items", str(items), "--item-kinds",
                       "region=categorical,bedrooms=numeric,since=date", "--users", str(users),
                       "--user-kinds", "country=categorical", "--store", url, "--json")
    summary = json.loads(out)
    assert code == 0
    assert (summary["items"]["stored"], summary["items"]["rows_skipped"]) == (1, 1)
    assert summary["users"]["stored"] == 1
    with EventStore(url) as store:
        assert store.feature_kinds("item") == {"region": FeatureKind.CATEGORICAL,
                                               "bedrooms": FeatureKind.NUMERIC,
                                               "since": FeatureKind.DATE}
        assert list(store.items().index) == ["r1"]
    with pytest.raises(SystemExit) as bad_kind:  # argparse: usage and the reason, exit 2
        run(capsys, "ingest", "--items", str(items), "--item-kinds", "region=colour")
    assert bad_kind.value.code == 2 and "region=colour" in capsys.readouterr().err
    code, _, err = run(capsys, "ingest", "--items", str(items), "--item-kinds",
                       "region=categorical")
    assert code == 2 and "--store" in err
    code, _, err = run(capsys, "ingest", "--store", url)
    assert code == 2 and "give an event file, --items or --users" in err
    code, _, err = run(capsys, "ingest", "--items", str(items), "--store", url)
    assert code == 2 and "--item-kinds" in err


def test_ingest_streams_metadata_in_chunks_and_finds_repeats_across_them(capsys, tmp_path):
    from recengine.data.readers import CHUNK_ROWS
    from recengine.store import EventStore

    n = CHUNK_ROWS + 10
    items = tmp_path / "items.csv"
    lines = [f"i{k},{k}" for k in range(n)]
    lines.append("i3,999")  # a repeat of the first chunk's id, in the second chunk
    items.write_text("id,price\n" + "\n".join(lines) + "\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ingest = ("ingest", "--items", str(items), "--item-kinds", "price=numeric", "--store", url)
    code, _, err = run(capsys, *ingest, "--strict", "--json")
    assert code == 2 and f"row {n + 2}" in err
    with EventStore(url) as store:
        assert store.items().empty  # strict: checked whole before anything is written
    code, out, _ = run(capsys, *ingest, "--json")
    summary = json.loads(out)["items"]
    assert code == 0 and (summary["stored"], summary["rows_skipped"]) == (n, 1)
    with EventStore(url) as store:
        stored = store.items()
        assert len(stored) == n and stored.loc["i3", "price"] == 3  # the first one counts
        changes = store.changes()
    assert len(changes) == 2  # one committed write per chunk


#: The smallest demo that still trains and evaluates every model (a few seconds).
SMALL_DEMO = ("demo", "--users", "200", "--items", "100", "--seed", "7")


def test_demo_without_serving_stores_the_events_and_activates_a_version(capsys, tmp_path,
                                                                          monkeypatch):
    from recengine.pipeline.demo import BAD_ROWS
    from recengine.store import EventStore
    from recengine.store.registry import ModelRegistry

    monkeypatch.setitem(sys.modules, "pyspark", None)  # the demo needs no Spark
    code, out, _ = run(capsys, *SMALL_DEMO, "--output", str(tmp_path), "--no-serve")
    assert code == 0
    registry = ModelRegistry(tmp_path / "registry")
    active = registry.current()
    assert active is not None
    manifest = registry.show(active)
    assert list(manifest["models"])[-1] == "popularity"  # the best model first, then its fallback
    exported = len((tmp_path / "data" / "events.csv").read_text().splitlines()) - 1
    with EventStore(f"sqlite:///{tmp_path / 'recengine.db'}") as store:
        assert store.count() == exported - len(BAD_ROWS) == manifest["data"]["count"]
        assert len(store.items()) == 100
    assert f"recengine serve --port 8000 --registry {tmp_path / 'registry'}" in out
    assert "/v1/users/" in out and "X-API-Key: demo-" in out and "/docs" in out
    assert "http://127.0.0.1:8000/console" in out


def test_demo_ends_by_serving_what_it_published(tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "recengine", *SMALL_DEMO, "--output", str(tmp_path / "out"),
             "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _ready(base):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the demo did not serve within 180 s"
            time.sleep(0.2)
        printed = re.search(rf"curl '({re.escape(base)}/v1/users/[^']+/recommendations[^']*)'",
                            log.read_text())
        assert printed is not None, log.read_text()
        response = httpx.get(printed.group(1), timeout=30)
        assert response.status_code == 200, log.read_text()[-4000:]
        body = response.json()
        assert body["model_version"] == "v0001" and body["count"] == 5
        console = re.search(rf"({re.escape(base)}/console)\b", log.read_text())
        assert console is not None, log.read_text()  # the console's URL, printed, served
        page = httpx.get(console.group(1), timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    finally:
        process.terminate()  # as Ctrl-C would: uvicorn shuts down
        try:
            process.wait(timeout=30)
        finally:
            process.kill()  # a no-op once it has exited


def test_demo_refuses_a_busy_port_before_any_work(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, *SMALL_DEMO, "--output", str(tmp_path), "--port", str(port))
    assert code == 2 and f"port {port} on 127.0.0.1 is in use" in err and out == ""


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_saved_model_is_evaluated_published_and_served_without_a_refit(capsys, tmp_path):
    """Plumbing for models trained elsewhere: `evaluate --saved` and `models publish`."""
    from recengine.serving.state import ServingState
    from recengine.store.events import EventStore
    from recengine.store.registry import ModelRegistry

    folder = tmp_path / "wals-elsewhere"
    assert run(capsys, "train", "--dataset", "synthetic", "--seed", "5", "--model", "wals",
               "--output", str(folder))[0] == 0
    # Trained on every event, so its figures here are flattered: this checks the plumbing only.
    code, out, _ = run(capsys, "evaluate", "--dataset", "synthetic", "--seed", "5",
                       "--models", "popularity", "--saved", str(folder), "--json",
                       "--output", str(tmp_path / "report"))
    assert code == 0 and set(json.loads(out)) == {"popularity", "wals-elsewhere"}
    registry = tmp_path / "registry"
    code, out, _ = run(capsys, "models", "publish", str(folder), "--registry", str(registry),
                       "--activate", "--json")
    assert code == 0 and json.loads(out) == {"published": "v0001", "active": "v0001"}
    with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        state = ServingState(ModelRegistry(registry), store)
        state.load_current()
        model = state.active.model
        user = str(model.users_.ids[0])
        _, answer = state.recommend(user, 5)
        seen = set(model.items_.ids[model.training_queries(np.array([0])).bag.indices])
    assert [r.source for r in answer] == ["wals"] * 5 and not seen & {r.item for r in answer}


@pytest.mark.parametrize(("argv", "message"), [
    (["evaluate", "--dataset", "synthetic", "--saved", "no-such-folder"], "no saved model at"),
    (["models", "publish", "no-such-folder"], "no saved model at"),
    (["models", "publish"], "models publish needs saved model folders"),
    (["evaluate", "--dataset", "synthetic", "--models", "nowhere.mod:Model"],
     "cannot import model 'nowhere.mod:Model'"),
    (["train", "--dataset", "synthetic", "--model", "json:dumps", "--output", "x"],
     "'json:dumps' is not a Recommender class"),
])
def test_models_from_elsewhere_fail_clearly(capsys, tmp_path, argv, message):
    argv = [a if a != "no-such-folder" else str(tmp_path / a) for a in argv]
    if argv[:2] == ["models", "publish"]:
        argv += ["--registry", str(tmp_path / "registry")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_serve_refuses_an_active_version_that_cannot_load_in_one_line(capsys, tmp_path):
    """CURRENT naming a version whose arrays were cut: exit 2, the version and file named."""
    import pandas as pd

    from recengine.data.training_data import TrainingData
    from recengine.models import Popularity
    from recengine.store.registry import ModelRegistry

    pairs = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"],
                          "rating": float("nan"), "feedback": 1.0})
    registry = ModelRegistry(tmp_path / "registry")
    version = registry.publish({"popularity": Popularity().fit(
        TrainingData.from_interactions(pairs))}, data={}, metrics={})
    registry.activate(version)
    saved = registry.path(version) / "popularity" / "state.npz"
    with np.load(saved, allow_pickle=False) as z:
        arrays = dict(z)
    np.savez(saved, allow_pickle=False, **arrays | {"item_counts_": arrays["item_counts_"][:1]})
    code, _, err = run(capsys, "serve", "--registry", str(registry.root), "--database-url",
                       f"sqlite:///{tmp_path / 'events.db'}")
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    message = err.replace("\n", "")  # one message, wrapped to the console's width
    assert f"{registry.path(version) / 'popularity'}" in message and "item_counts_" in message
    assert "CURRENT" in message and "models rollback" in message


# --- ingest: idempotent, streamed, and clear about files that give nothing -----------------------

EVENTS_CSV = "user,item,kind,when\nu1,i1,view,2024-05-01T10:00:00\nu1,i2,view,1714557600\n"
EVENT_COLUMNS = "user_id=user,item_id=item,event_type=kind,timestamp=when"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_ingesting_a_file_again_adds_nothing(capsys, tmp_path, request, backend):
    url = (request.getfixturevalue("postgres_url") if backend == "postgres"
           else f"sqlite:///{tmp_path / 'store.db'}")
    f = tmp_path / "e.csv"
    f.write_text(EVENTS_CSV + "u1,i1,view,2024-05-01T10:00:00\n")  # row 4 repeats row 2
    argv = ["ingest", str(f), "--columns", EVENT_COLUMNS, "--store", url, "--json"]
    first = json.loads(run(capsys, *argv)[1])
    assert (first["stored"], first["duplicates"], first["problems"]) == (2, 0, {"duplicate": 1})
    again = json.loads(run(capsys, *argv)[1])
    assert (again["stored"], again["duplicates"]) == (0, 2)
    allowed = json.loads(run(capsys, *argv, "--allow-duplicates")[1])
    assert (allowed["stored"], allowed["rows_skipped"]) == (3, 0)  # true duplicates, on request
    from recengine.store import EventStore

    with EventStore(url) as store:
        assert store.count() == 5


def test_a_rerun_after_an_ingest_killed_midway_adds_only_the_rest(capsys, tmp_path,
                                                                   monkeypatch):
    from recengine.data.readers import CHUNK_ROWS
    from recengine.store import EventStore

    f = tmp_path / "e.csv"
    n = 2 * CHUNK_ROWS + 5
    f.write_text("user_id,item_id,event_type\n" + "".join(f"u{k % 97},i{k},view\n"
                                                           for k in range(n)))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    append = EventStore.append
    calls: list[int] = []

    def killed_at_the_second_chunk(self, events, **options):
        calls.append(len(events))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, after the first chunk's commit
        return append(self, events, **options)

    output = tmp_path / "valid.parquet"
    output.write_bytes(b"an earlier run's file")
    monkeypatch.setattr(EventStore, "append", killed_at_the_second_chunk)
    assert run(capsys, "ingest", str(f), "--store", url, "--output", str(output))[0] == 130
    monkeypatch.setattr(EventStore, "append", append)
    with EventStore(url) as store:
        assert store.count() == CHUNK_ROWS  # one chunk committed, no report printed
    assert output.read_bytes() == b"an earlier run's file"  # no half-written file in its place
    assert list(tmp_path.glob("*.partial")) == []
    code, out, _ = run(capsys, "ingest", str(f), "--store", url, "--output", str(output),
                       "--json")
    summary = json.loads(out)
    assert code == 0 and (summary["stored"], summary["duplicates"]) == (n - CHUNK_ROWS, CHUNK_ROWS)
    with EventStore(url) as store:
        assert store.count() == n and store.events()["item_id"].is_unique
    assert pd.read_parquet(output)["item_id"].tolist() == [f"i{k}" for k in range(n)]


def test_strict_names_a_bad_row_3_before_reading_on_and_stores_nothing(capsys, tmp_path):
    f = tmp_path / "e.csv"
    rows = "".join(f"u{k},i{k},view\n" for k in range(30_000))
    f.write_bytes(b"user_id,item_id,event_type\nu0,i0,view\nu1,i1,teleport\n" + rows.encode()
                  + b"\xff\n")  # not UTF-8: reading that far would fail differently
    url = f"sqlite:///{tmp_path / 'store.db'}"
    code, _, err = run(capsys, "ingest", str(f), "--strict", "--store", url)
    assert code == 2 and ("row 3, column 'event_type': unknown event type 'teleport'"
                          in " ".join(err.split()))  # the console wraps long lines
    from recengine.store import EventStore

    with EventStore(url) as store:
        assert store.count() == 0


@pytest.mark.parametrize(("content", "options", "message"), [
    pytest.param("user_id,item_id\n", ["--strict"], "no events: the file has no rows",
                 id="header only, strict"),
    pytest.param("user_id,item_id\n", [], "no events: the file has no rows", id="header only"),
    pytest.param("user_id,item_id,event_type,value\nu1,i1,rating,12\nu2,,view,\n", [],
                 "no valid event in 2 rows (1 value out of range, 1 missing id)", id="all bad"),
    pytest.param("user_id,item_id\nu1,i1\n", ["--encoding", "nope"],
                 "column '--encoding': unknown encoding 'nope'", id="unknown encoding"),
])
def test_an_ingest_that_accepts_nothing_exits_2_with_one_line(capsys, tmp_path, content, options,
                                                             message):
    f = tmp_path / "e.csv"
    f.write_text(content)
    code, _, err = run(capsys, "ingest", str(f), *options)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert message in " ".join(err.split())  # the console wraps long lines


def test_ingest_says_what_a_path_is_when_it_is_no_file(capsys, tmp_path):
    code, _, err = run(capsys, "ingest", "/dev/null", "--format", "csv")
    assert code == 2 and "/dev/null: this is a character device, not a file" in err
    code, _, err = run(capsys, "ingest", str(tmp_path), "--format", "csv")
    assert code == 2 and "this is a directory, not a file" in err
