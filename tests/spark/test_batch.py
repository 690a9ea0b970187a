"""Batch top-k and audiences on Spark against the local model's own answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recengine.errors import EngineError
from recengine.models import WALS, Popularity
from recengine.spark.batch import write_audiences, write_top_k
from tests.models.conformance import small_data


@pytest.fixture(scope="module")
def data():
    return small_data(seed=7, n_users=120, n_items=50)


@pytest.fixture(scope="module", params=["implicit", "explicit-with-biases"])
def model(request, data):
    if request.param == "implicit":
        return WALS(factors=6, iterations=4).fit(data)
    return WALS(factors=4, iterations=4, feedback="explicit", biases=True).fit(data)


def lists(path, key: str, other: str) -> dict[str, tuple[list[str], list[float]]]:
    """Each key's ranked ids and scores from the Parquet output."""
    frame = pd.read_parquet(path).sort_values([key, "rank"])
    assert (frame.groupby(key)["rank"].apply(lambda r: r.tolist() == list(range(1, len(r) + 1)))
            .all())
    return {k: (g[other].tolist(), g["score"].tolist()) for k, g in frame.groupby(key)}


def assert_same(got: dict[str, tuple[list[str], list[float]]], ids: np.ndarray,
                expected_ids: np.ndarray, expected_scores: np.ndarray) -> None:
    assert set(got) == {str(i) for i in ids}
    for key, row_ids, row_scores in zip(ids, expected_ids, expected_scores, strict=True):
        keep = [i is not None for i in row_ids]
        ranked, scores = got[str(key)]
        assert ranked == [str(i) for i in row_ids[keep]], key
        np.testing.assert_allclose(scores, row_scores[keep], rtol=1e-5, atol=1e-6)


def test_top_k_for_every_user_is_the_local_answer(spark, model, data, tmp_path):
    written = write_top_k(spark, model, 7, tmp_path / "top.parquet")
    ids, scores = model.recommend(list(data.users.ids), 7)
    assert written == int((ids != None).sum())  # noqa: E711 - an object array's padding
    assert_same(lists(tmp_path / "top.parquet", "user_id", "item_id"), data.users.ids, ids,
                scores)
    seen = {(str(data.users.ids[u]), str(data.items.ids[i]))
            for u, i in zip(*data.feedback.nonzero(), strict=True)}
    frame = pd.read_parquet(tmp_path / "top.parquet")
    assert not seen & set(zip(frame["user_id"], frame["item_id"], strict=True))


def test_audience_of_every_item_is_the_local_answer(spark, model, data, tmp_path):
    write_audiences(spark, model, 9, tmp_path / "audience.parquet")
    ids, scores = model.audience(list(data.items.ids), 9)
    assert_same(lists(tmp_path / "audience.parquet", "item_id", "user_id"), data.items.ids, ids,
                scores)


def test_seen_items_come_back_when_asked(spark, data, tmp_path):
    model = WALS(factors=4, iterations=2).fit(data)
    write_top_k(spark, model, data.n_items, tmp_path / "all.parquet", exclude_seen=False)
    frame = pd.read_parquet(tmp_path / "all.parquet")
    assert len(frame) == data.n_users * data.n_items


def test_a_model_without_vectors_is_refused(spark, data, tmp_path):
    with pytest.raises(EngineError, match="popularity has no vector form"):
        write_top_k(spark, Popularity().fit(data), 5, tmp_path / "x.parquet")


def test_the_batch_command_writes_both_tables(spark, capsys, tmp_path):
    """`recengine train` locally, then `recengine batch` on Spark: the saved model's answers."""
    import json

    from recengine.cli import main

    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event_type\n" + "".join(
        f"u{u},i{(u * 7 + j) % 13},view\n" for u in range(30) for j in range(4)))
    folder = tmp_path / "wals"
    assert main(["train", "--events", str(events), "--model", "wals", "--output",
                 str(folder)]) == 0
    capsys.readouterr()
    assert main(["batch", "--model-dir", str(folder), "--k", "3", "--audience", "4",
                 "--output", str(tmp_path / "out"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["rows"] == {"top-k": 30 * 3, "audience": 13 * 4}
    from recengine.cli import _load_saved

    model = _load_saved(folder)
    top = pd.read_parquet(tmp_path / "out" / "top-k.parquet").sort_values(["user_id", "rank"])
    first = top[top["user_id"] == "u0"]["item_id"].tolist()
    assert first == model.recommend("u0", 3)[0].tolist()
