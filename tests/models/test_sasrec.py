"""SASRec: the interface, the loss, and next-item behaviour that only the order of events gives."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from recengine.data.query import Query
from recengine.data.training_data import TrainingData
from recengine.errors import DataError
from recengine.models.base import TrainingOptions
from recengine.models.markov import Markov
from recengine.models.sasrec import (
    SOFTMAX_MAX_ITEMS,
    SASRec,
    _forward_scores,
    _network,
    _Trainer,
    gbce_beta,
    gbce_loss,
    resolve_loss,
)
from recengine.models.torch_training import hold_out_last, next_item_hits
from tests.models.conformance import RecommenderConformance
from tests.models.test_markov import logged

torch = pytest.importorskip("torch")

#: Small enough that each of the conformance suite's fits takes a fraction of a second.
TINY: dict[str, object] = {"hidden": 16, "layers": 1, "max_length": 8, "epochs": 3,
                           "negatives": 8, "batch_size": 16}
#: What learns the order data below in about a second.
QUICK: dict[str, object] = {"hidden": 32, "max_length": 6, "epochs": 100, "learning_rate": 0.01,
                            "dropout": 0.0, "validation_users": 0, "batch_size": 32}


class TestSASRec(RecommenderConformance):
    model_class = SASRec
    params: ClassVar[dict[str, object]] = TINY


class TestSASRecEnsemble(RecommenderConformance):
    model_class = SASRec
    params: ClassVar[dict[str, object]] = TINY | {"fits": 2}


def order_data(users: int = 60) -> TrainingData:
    """Two random fillers, then ``a b x c`` for half the users and ``b a x d`` for the other
    half: after ``x``, only the order of ``a`` and ``b`` says whether ``c`` or ``d`` comes."""
    rng = np.random.default_rng(0)
    fillers = [f"f{i}" for i in range(6)]
    return logged({f"u{u}": [*rng.choice(fillers, size=2, replace=False).tolist(),
                             *(["a", "b", "x", "c"] if u % 2 else ["b", "a", "x", "d"])]
                   for u in range(users)})


@pytest.fixture(scope="module")
def ordered() -> TrainingData:
    return order_data()


@pytest.fixture(scope="module")
def learned(ordered) -> SASRec:
    return SASRec(**QUICK).fit(ordered)


def test_only_the_order_of_the_same_items_separates_the_right_next_item(learned, ordered):
    assert learned.recommend_history(["a", "b", "x"], 1)[0].tolist() == ["c"]
    assert learned.recommend_history(["b", "a", "x"], 1)[0].tolist() == ["d"]
    # the last item alone cannot tell: a first-order chain gives both the same answer
    markov = Markov().fit(ordered)
    assert (markov.recommend_history(["a", "b", "x"], 1)[0].tolist()
            == markov.recommend_history(["b", "a", "x"], 1)[0].tolist())


def test_a_session_alone_and_a_session_after_a_history_are_read_in_order(learned):
    assert learned.recommend_query(Query(session=["a", "b", "x"]), 1)[0].tolist() == ["c"]
    assert learned.recommend_query(Query(session=["b", "a", "x"]), 1)[0].tolist() == ["d"]
    # a known user's history, then the session's events, newest last
    assert learned.recommend_query(Query(user="u0", session=["a", "b", "x"]),
                                   1)[0].tolist() == ["c"]
    reason = learned.explain_history(["a", "b", "x"], ["c"])[0]
    assert reason.startswith("follows your recent ") and reason[-1] in "abx"


def test_no_events_gives_popularity_and_the_fallback_chain_is_asked(learned, ordered):
    empty = learned.history_queries([])
    assert not learned.answers(empty)[0]
    counts = ordered.item_counts()
    ids, _ = learned.recommend_history([], 3)
    assert counts[ordered.items.index(ids.tolist())].tolist() == sorted(counts)[::-1][:3]
    assert learned.explain_history([], ["a"])[0].startswith("popular: ")


@pytest.mark.parametrize("loss", ["gbce", "bce"])
def test_every_loss_learns_what_follows(ordered, loss):
    """gBCE learns the order as softmax (the default here, a small catalogue: the test above)
    does; BCE with one negative, as published, learns more slowly: after as many epochs the
    right item is at least second."""
    model = SASRec(**QUICK | {"loss": loss}).fit(ordered)
    for history, right in ((["a", "b", "x"], "c"), (["b", "a", "x"], "d")):
        top = model.recommend_history(history, 2)[0].tolist()
        assert right == top[0] if loss == "gbce" else right in top


def chain_data(items: int = 100, users: int = 100) -> TrainingData:
    """Runs of 8 consecutive items of a ring of ``items`` (item i is always followed by i + 1),
    each user's run starting at random: the next item depends on the history alone."""
    starts = np.random.default_rng(0).integers(0, items, size=users)
    return logged({f"u{u}": [f"i{(start + k) % items:03d}" for k in range(8)]
                   for u, start in enumerate(starts.tolist())})


@pytest.mark.parametrize("calibration", [0.75, 0.0])
def test_many_negatives_learn_the_history_and_do_not_collapse_to_one_answer(calibration):
    """With 99 sampled negatives (gBCE, and plain BCE at t = 0) the logits start at the scale
    of the loss's optimum (log(β / negatives), :func:`logit_offset`). Started at 0, ten epochs
    gave two distinct answers for the 100 one-item histories (1 % right): every item
    embedding had moved along one shared direction and the hidden state was the same for
    every history, the popularity-level plateau seen on MovieLens 100K."""
    data = chain_data()
    model = SASRec(**QUICK | {"loss": "gbce", "negatives": 256, "calibration": calibration,
                              "epochs": 10}).fit(data)
    top = [model.recommend_history([f"i{i:03d}"], 1)[0][0] for i in range(100)]
    right = np.mean([answer == f"i{(i + 1) % 100:03d}" for i, answer in enumerate(top)])
    assert right >= 0.95


def test_the_default_loss_is_softmax_on_small_catalogues_and_gbce_on_large():
    """On validation carves of MovieLens 100K and latest-small the softmax ranked better than
    gBCE (docs/benchmarks.md): the default trains with the softmax where its logits fit in
    memory."""
    assert SASRec().config.loss == "auto"
    assert resolve_loss("auto", 1682) == "softmax"
    assert resolve_loss("auto", SOFTMAX_MAX_ITEMS) == "softmax"
    assert resolve_loss("auto", SOFTMAX_MAX_ITEMS + 1) == "gbce"
    assert resolve_loss("bce", 1682) == "bce"
    trainer = _Trainer(_network(1682, 1, SASRec().config), SASRec().config, 1682,
                       torch.device("cpu"))
    assert (trainer.kind, trainer.beta) == ("softmax", 1.0)


def test_a_seed_gives_the_same_model_and_threads_come_back(ordered):
    params = TINY | {"epochs": 2}
    threads = torch.get_num_threads()
    one = SASRec(**params).fit(ordered, options=TrainingOptions(seed=3, threads=1))
    assert torch.get_num_threads() == threads
    two = SASRec(**params).fit(ordered, options=TrainingOptions(seed=3, threads=1))
    other = SASRec(**params).fit(ordered, options=TrainingOptions(seed=4, threads=1))
    queries = ordered.queries(np.arange(ordered.n_users))
    np.testing.assert_array_equal(one._score(queries), two._score(queries))
    assert not np.array_equal(one._score(queries), other._score(queries))


def test_early_stopping_keeps_the_epoch_that_validated_best(ordered):
    """Half the users' last events are the validation carve; the installed network is the
    one of the best epoch, not the last, and training stops ``patience`` epochs after it."""
    params = QUICK | {"validation_users": 30, "epochs": 40, "patience": 3,
                      "learning_rate": 0.05}
    model = SASRec(**params).fit(ordered)
    [curve], [best] = model.validation_, model.best_epoch_
    assert best == int(np.argmax(curve))
    assert len(curve) == 40 or len(curve) == best + 1 + 3
    held = hold_out_last(ordered.log, max_rows=30, seed=0)  # the fit's carve: seed 0
    history = held.train.take(held.rows)
    scores = _forward_scores(model.network_, history, model.event_types_, 6)
    ndcg, _ = next_item_hits(scores, held.targets, history)
    assert ndcg == pytest.approx(max(curve), abs=1e-6)


def test_gbce_is_the_published_loss():
    """β from α and t, and the loss equal to gSASRec's own form: the positive's logit
    transformed so that σ(s') = σ(s)^β, then BCE averaged over 1 + negatives logits."""
    assert gbce_beta(256, 1683, 0.0) == 1.0  # plain BCE
    assert gbce_beta(256, 1683, 1.0) == pytest.approx(256 / 1682)  # fully calibrated: α
    alpha = 100 / 999
    assert gbce_beta(100, 1000, 0.75) == pytest.approx(alpha * (0.75 * (1 - 1 / alpha)
                                                                + 1 / alpha))
    positive = torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64)
    negative = torch.tensor([[0.2, -0.3], [1.0, 0.0], [-2.0, 0.7]], dtype=torch.float64)
    beta = 0.3
    transformed = torch.log(1.0 / (torch.sigmoid(positive) ** -beta - 1.0))
    logits = torch.cat([transformed[:, None], negative], dim=1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert float(gbce_loss(positive, negative, beta)) == pytest.approx(float(expected))


@pytest.mark.parametrize(("params", "field"), [
    ({"hidden": 30, "heads": 4}, "heads"), ({"loss": "hinge"}, "loss"),
    ({"dropout": 1.0}, "dropout"), ({"max_length": 0}, "max_length"),
    ({"calibration": 1.5}, "calibration"), ({"negatives": 0}, "negatives"),
    ({"fits": 0}, "fits")])
def test_bad_settings_are_refused_naming_the_field(params, field):
    with pytest.raises(DataError, match="invalid sasrec parameter") as caught:
        SASRec(**params)
    assert caught.value.column == field


def test_an_hnsw_graph_answers_as_its_scores_do_with_and_without_events(ordered):
    """Its scores are inner products (the last hidden state against item embeddings; a query
    without events against each item's popularity share), so a graph index serves both."""
    model = SASRec(**TINY).fit(ordered)
    queries = ordered.queries(np.arange(ordered.n_users))
    vectors, offsets = model._embed(queries)
    np.testing.assert_allclose(vectors @ model._item_vectors().T + offsets[:, None],
                               model._score(queries), rtol=1e-5, atol=1e-6)
    exact, _ = model.recommend_indices(np.arange(ordered.n_users), 3)
    empty = model.recommend_history([], n=3)[0]
    popular = ordered.items.id_of(np.argsort(-ordered.item_counts(), kind="stable")[:3])
    assert set(empty.tolist()) == set(popular.tolist())
    indexed = SASRec(model.config).set_state(ordered.users, ordered.items,
                                             *model.get_state(), ordered).build_index()
    approximate, _ = indexed.recommend_indices(np.arange(ordered.n_users), 3)
    assert (exact == approximate).mean() > 0.95
    assert set(indexed.recommend_history([], n=3)[0].tolist()) == set(popular.tolist())


def test_fits_sum_the_logits_of_networks_fitted_with_the_seed_plus_k(ordered):
    """Three fits from seed 3 score as the fits of seeds 3, 4 and 5 summed, the first being
    the one-fit model of seed 3; saved and loaded, the ensemble scores the same."""
    params = TINY | {"epochs": 2}
    options = [TrainingOptions(seed=seed, threads=1) for seed in (3, 4, 5)]
    singles = [SASRec(**params).fit(ordered, options=o) for o in options]
    ensemble = SASRec(**params, fits=3).fit(ordered, options=options[0])
    queries = ordered.queries(np.arange(ordered.n_users))
    np.testing.assert_allclose(ensemble._score(queries),
                               sum(model._score(queries) for model in singles),
                               rtol=1e-4, atol=1e-5)
    assert ensemble.validation_ == [model.validation_[0] for model in singles]
    assert ensemble.best_epoch_ == [model.best_epoch_[0] for model in singles]
    loaded = SASRec(ensemble.config).set_state(ordered.users, ordered.items,
                                               *ensemble.get_state(), ordered)
    np.testing.assert_array_equal(loaded._score(queries), ensemble._score(queries))
    vectors, offsets = loaded._embed(queries)
    np.testing.assert_allclose(vectors @ loaded._item_vectors().T + offsets[:, None],
                               loaded._score(queries), rtol=1e-5, atol=1e-6)


def test_a_state_saved_with_one_unnested_validation_curve_loads(ordered):
    """States saved before ``fits`` hold one fit's curve and best epoch, unnested."""
    model = SASRec(**TINY).fit(ordered)
    arrays, meta = model.get_state()
    flat = meta | {"validation": meta["validation"][0], "best_epoch": meta["best_epoch"][0]}
    loaded = SASRec(model.config).set_state(ordered.users, ordered.items, arrays, flat, ordered)
    assert loaded.validation_ == model.validation_
    assert loaded.best_epoch_ == model.best_epoch_
    bare = {key: value for key, value in meta.items()
            if key not in ("validation", "best_epoch")}
    unknown = SASRec(model.config).set_state(ordered.users, ordered.items, arrays, bare,
                                             ordered)
    assert (unknown.validation_, unknown.best_epoch_) == ([[]], [-1])
