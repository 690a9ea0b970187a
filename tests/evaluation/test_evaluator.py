"""The evaluator: held-out pairs only, seen items excluded, groups, fold-in for held-out users."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from recengine.data.query import Queries
from recengine.data.splits import Split, held_out_users, stratified
from recengine.data.training_data import TrainingData
from recengine.evaluation.evaluator import evaluate
from recengine.evaluation.report import print_table, write_report
from recengine.models import Bias, Popularity, RandomItems
from recengine.models.base import ModelConfig, Recommender


def frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                         "rating": [r[2] for r in rows], "feedback": 1.0,
                         "timestamp": pd.NaT})


def test_popularity_metrics_by_hand():
    # Training popularity: a (3 users) > b (2) > c (1) > d (0). Test: u1 holds d; u2 holds c.
    train = frame([("u1", "a", 5), ("u1", "b", 4), ("u2", "a", 3), ("u3", "a", 4),
                   ("u3", "b", 2), ("u3", "c", 1)])
    test = frame([("u1", "d", 3), ("u2", "c", 4)])
    data = TrainingData.from_interactions(train, extra_items=np.array(["d"]))
    result = evaluate({"pop": Popularity()}, data, Split(train, test), ks=[2])
    metrics = result.models["pop"].metrics
    # u1 has seen a, b: its top-2 is [c, d] → hit at rank 2. u2 has seen a: top-2 [b, c] → rank 2.
    assert metrics["precision@2"] == pytest.approx(0.5)
    assert metrics["recall@2"] == pytest.approx(1.0)
    assert metrics["mrr@2"] == pytest.approx(0.5)
    assert metrics["ndcg@2"] == pytest.approx(1 / np.log2(3))
    assert metrics["coverage@2"] == pytest.approx(3 / 4)  # b, c, d recommended of a, b, c, d
    assert result.n_users == 2 and result.n_items == 4


def test_ratings_are_scored_for_rating_models_only():
    train = frame([("u1", "a", 5), ("u1", "b", 3), ("u2", "a", 4), ("u2", "c", 2)])
    test = frame([("u1", "c", 2), ("u2", "b", 3)])
    data = TrainingData.from_interactions(train)
    result = evaluate({"bias": Bias(damping=0), "pop": Popularity()}, data, Split(train, test))
    # mu = 3.5; b_a = (1.5 + 0.5) / 2 = 1, b_b = -0.5, b_c = -1.5;
    # b_u1 = ((5-3.5-1) + (3-3.5+0.5)) / 2 = 0.25, b_u2 = ((4-3.5-1) + (2-3.5+1.5)) / 2 = -0.25
    # u1,c: 3.5 + 0.25 - 1.5 = 2.25 vs 2; u2,b: 3.5 - 0.25 - 0.5 = 2.75 vs 3: both off by 0.25
    assert result.models["bias"].metrics["rmse"] == pytest.approx(0.25)
    assert result.models["bias"].metrics["mae"] == pytest.approx(0.25)
    assert "rmse" not in result.models["pop"].metrics


class Oracle(Recommender):
    """Cheats by reading the test set: proves the evaluator rewards finding held-out pairs."""

    name = "oracle"

    class Config(ModelConfig):
        pass

    test: pd.DataFrame

    @classmethod
    def of(cls, split: Split) -> Oracle:
        """An oracle that has read ``split``'s test part."""
        oracle = cls()
        oracle.test = split.test
        return oracle

    def _train(self, data: TrainingData, options: object, progress: object) -> dict:
        return {"truth_": data.history(self.test, data.users.ids).toarray() > 0}

    def _score(self, queries: Queries) -> np.ndarray:
        return self.truth_[queries.users].astype(np.float32)


def test_an_oracle_scores_perfect_recall_and_random_does_not(synthetic_pairs):
    split = stratified(synthetic_pairs, 0.25, seed=0)
    data = TrainingData.from_interactions(split.train,
                                          extra_items=split.test["item_id"].unique())
    result = evaluate({"oracle": Oracle.of(split), "random": RandomItems()}, data, split,
                      ks=[20])
    assert result.models["oracle"].metrics["hit_rate@20"] == pytest.approx(1.0)
    assert result.models["random"].metrics["ndcg@20"] < 0.2
    sizes = result.group_sizes
    assert sum(sizes.values()) == result.n_users and min(sizes.values()) > 0
    for group in ("light", "medium", "heavy"):
        assert "ndcg@20" in result.models["random"].by_activity[group]


def test_held_out_users_are_folded_in(synthetic_pairs):
    split = held_out_users(synthetic_pairs, 0.2, 0.5, seed=1)
    data = TrainingData.from_interactions(split.train, extra_items=np.concatenate(
        [split.test["item_id"].unique(), split.given["item_id"].unique()]))
    result = evaluate({"pop": Popularity()}, data, split, ks=[10])
    assert result.n_users == split.test["user_id"].nunique()
    # seen exclusion used the given history: no recommended item is one the user gave
    given = split.given.groupby("user_id")["item_id"].agg(set)
    recommended = result.models["pop"].recommended
    users = pd.unique(split.test["user_id"])
    for row, user in zip(recommended[:20], users[:20], strict=True):
        assert not set(data.items.id_of(row[row >= 0]).tolist()) & given[user]


def test_report_files(synthetic_pairs, tmp_path):
    split = stratified(synthetic_pairs, 0.25, seed=0)
    data = TrainingData.from_interactions(split.train, extra_items=split.test["item_id"].unique())
    result = evaluate({"pop": Popularity(), "random": RandomItems()}, data, split, ks=[5, 10])
    files = write_report(result, tmp_path)
    assert [p.name for p in files.plots] == ["metrics_vs_k.png", "popularity.png"]
    for p in (files.json, *files.plots):
        assert p.stat().st_size > 1000
    assert '"ndcg@10"' in files.json.read_text()


def test_report_without_the_plots_extra_is_the_json_and_names_the_extra(
        synthetic_pairs, tmp_path, monkeypatch):
    """Where matplotlib is missing, the metrics are still written and the plots' line says
    which extra brings them."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    split = stratified(synthetic_pairs, 0.25, seed=0)
    data = TrainingData.from_interactions(split.train, extra_items=split.test["item_id"].unique())
    files = write_report(evaluate({"pop": Popularity()}, data, split, ks=[10]), tmp_path)
    assert files.plots == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    line = str(files)
    assert "\n" not in line
    assert line.endswith("plots: skipped, plotting needs the 'plots' extra (matplotlib is not "
                         "installed): pip install 'recengine[plots]'")


def test_cold_items_rank_only_the_held_out_items_and_give_auc(synthetic_pairs):
    from recengine.data.splits import cold_items

    split = cold_items(synthetic_pairs, 0.2, seed=0)
    data = TrainingData.from_interactions(split.train, extra_items=split.candidates)
    result = evaluate({"oracle": Oracle.of(split), "random": RandomItems()}, data, split,
                      ks=[10])
    cold = set(data.items.index(split.candidates).tolist())
    recommended = result.models["random"].recommended
    assert set(recommended[recommended >= 0].tolist()) <= cold
    assert result.models["oracle"].metrics["auc"] == pytest.approx(1.0)
    assert 0.4 < result.models["random"].metrics["auc"] < 0.6


def test_a_model_trained_elsewhere_is_measured_without_a_fit(synthetic_pairs):
    """Factors from another trainer (own vocabularies, another id order) score as the model
    fitted here does, and its fit is never called."""
    from recengine.models import WALS

    split = stratified(synthetic_pairs, 0.25, seed=0)
    data = TrainingData.from_interactions(split.train,
                                          extra_items=split.test["item_id"].unique())
    here = WALS(factors=8, iterations=4).fit(data)
    users, items = data.users.ids[::-1], data.items.ids[::-1]  # another trainer's order
    elsewhere = WALS.from_factors(users, items, here.user_factors_[::-1],
                                  here.item_factors_[::-1], factors=8, iterations=4)

    def no_fit(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a pre-fitted model was refitted")

    elsewhere.fit = no_fit  # type: ignore[method-assign]
    result = evaluate({"here": here, "elsewhere": elsewhere}, data, split,
                      prefitted=["elsewhere"])
    a, b = result.models["here"], result.models["elsewhere"]
    np.testing.assert_array_equal(a.recommended, b.recommended)
    assert a.metrics["ndcg@10"] == pytest.approx(b.metrics["ndcg@10"])
    assert b.fit_seconds < 0.01


def test_per_user_values_and_the_paired_lead_of_the_best_model(synthetic_pairs):
    split = stratified(synthetic_pairs, 0.25, seed=0)
    data = TrainingData.from_interactions(split.train,
                                          extra_items=split.test["item_id"].unique())
    result = evaluate({"random": RandomItems(), "oracle": Oracle.of(split),
                       "pop": Popularity()}, data, split, ks=[5, 10])
    for r in result.models.values():
        assert r.per_user["ndcg@10"].shape == (result.n_users,)
        assert np.nanmean(r.per_user["hit_rate@5"]) == pytest.approx(r.metrics["hit_rate@5"])
        assert "novelty@10" not in r.per_user and "ndcg@20" not in r.per_user
    best, leads = result.against_best()
    assert best == "oracle" and set(leads) == {"random", "pop"}
    assert leads["random"].low > 0 and leads["random"].share_not_ahead == 0.0
    lead = result.paired("pop", "random", "recall@5")
    assert lead.mean == pytest.approx(result.models["pop"].metrics["recall@5"]
                                      - result.models["random"].metrics["recall@5"])
    assert result.paired("random", "pop").mean == pytest.approx(
        -result.paired("pop", "random").mean)
    paired = result.to_dict()["paired"]
    assert paired["metric"] == "ndcg@10" and paired["best"] == "oracle"
    assert paired["lead_over"]["pop"]["low"] > 0
    with pytest.raises(KeyError, match="no model 'als'"):
        result.paired("als", "pop")
    with pytest.raises(KeyError, match="no per-user 'novelty@10'"):
        result.paired("oracle", "pop", "novelty@10")


def test_the_printed_tables_end_with_the_best_models_lead(synthetic_pairs):
    split = stratified(synthetic_pairs, 0.25, seed=0)
    data = TrainingData.from_interactions(split.train, extra_items=split.test["item_id"].unique())
    result = evaluate({"random": RandomItems(), "pop": Popularity()}, data, split, ks=[10])
    console = Console(record=True, width=200)
    print_table(result, console)
    text = console.export_text()
    lead = result.paired("pop", "random")
    assert "ndcg@10: pop's lead, paired bootstrap" in text
    assert f"{lead.mean:+.4f}" in text and f"{lead.low:+.4f} … {lead.high:+.4f}" in text
    alone = Console(record=True, width=200)
    print_table(evaluate({"pop": Popularity()}, data, split, ks=[10]), alone)
    assert "lead" not in alone.export_text()
