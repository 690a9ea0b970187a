"""WALS: the interface, the kernels against their NumPy twins, and the algebra it promises."""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data.synthetic import generate
from recengine.data.training_data import TrainingData
from recengine.data.weighting import aggregate
from recengine.errors import DataError, NotSupportedError
from recengine.models import WALS, kernels
from recengine.models.base import TrainingOptions
from recengine.models.wals import ModelFitError
from tests.models.conformance import RecommenderConformance, small_data


class TestWALSImplicit(RecommenderConformance):
    model_class = WALS
    params: ClassVar[dict[str, object]] = {"factors": 8, "iterations": 8, "regularization": 0.1}


class TestWALSExplicit(RecommenderConformance):
    model_class = WALS
    params: ClassVar[dict[str, object]] = {
        "factors": 4, "iterations": 8, "feedback": "explicit", "unobserved_weight": 0.01,
        "biases": True, "solver": "cholesky", "regularization": 0.5}


def objective(model: WALS, data: TrainingData) -> float:
    """The documented loss, computed densely and independently of the kernels."""
    cfg = model.config
    X, Y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    matrix = (data.feedback if cfg.feedback == "implicit" else data.ratings).toarray()
    observed = np.zeros(matrix.shape, dtype=bool)
    m = data.feedback if cfg.feedback == "implicit" else data.ratings
    observed[np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)), m.indices] = True
    pred = X @ Y.T
    if cfg.feedback == "implicit":
        weight = np.where(observed, cfg.unobserved_weight + cfg.alpha * matrix,
                          cfg.unobserved_weight)
        target = observed.astype(np.float64)
        loss = (weight * (target - pred) ** 2).sum()
    else:
        full = pred + (model.global_mean_ + model.user_bias_[:, None] + model.item_bias_[None, :]
                       if cfg.biases else 0.0)
        loss = ((cfg.unobserved_weight + cfg.alpha) * (matrix - full) ** 2)[observed].sum()
        loss += cfg.unobserved_weight * (pred[~observed] ** 2).sum()
        if cfg.biases:
            loss += cfg.regularization * ((model.user_bias_ ** 2).sum()
                                          + (model.item_bias_ ** 2).sum())
    return float(loss + cfg.regularization * ((X ** 2).sum() + (Y ** 2).sum()))


@pytest.mark.parametrize("params", [
    {"solver": "cholesky"},
    {"solver": "cg", "cg_steps": 3},
    {"solver": "cg", "item_weight_exponent": 0.5},
    {"feedback": "explicit", "unobserved_weight": 0.05, "solver": "cholesky"},
    {"feedback": "explicit", "unobserved_weight": 0.05, "biases": True, "solver": "cholesky"},
])
def test_objective_decreases_every_sweep(params):
    data = small_data(seed=2)
    base = {"factors": 6, "regularization": 0.1, "alpha": 3.0, "init_scale": 0.3} | params
    losses = [objective(WALS(iterations=t, **base).fit(data), data) for t in range(1, 9)]
    if base.get("item_weight_exponent"):
        return  # the documented loss above has no item weights; the run must still finish
    assert all(b <= a * (1 + 1e-5) for a, b in itertools.pairwise(losses)), losses
    assert losses[-1] < 0.9 * losses[0]


def random_problem(seed: int = 0, rows: int = 30, cols: int = 25, k: int = 5):
    rng = np.random.default_rng(seed)
    m = sp.random_array((rows, cols), density=0.3, random_state=seed, format="csr",
                        dtype=np.float32)
    m.sort_indices()
    weight = (1 + 3 * rng.random(m.nnz)).astype(np.float32)
    target = rng.random(m.nnz).astype(np.float32)
    Y = rng.standard_normal((cols, k)).astype(np.float32)
    gram = 0.5 * (Y.T.astype(np.float64) @ Y)
    reg = np.full(rows, 0.1)
    X0 = rng.standard_normal((rows, k)).astype(np.float32) * 0.1
    return m, weight, target, Y, gram, reg, X0


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_compiled_kernels_agree_with_their_numpy_twins(solver):
    m, weight, target, Y, gram, reg, X0 = random_problem()
    fast, slow = X0.copy(), X0.copy()
    args = (m.indptr, m.indices, weight, target, Y, gram, reg)
    if solver == "cholesky":
        kernels.solve_cholesky(*args, fast, 0.5)
        kernels.solve_cholesky_numpy(*args, slow, 0.5)
        serial = X0.copy()
        kernels.solve_cholesky_serial(*args, serial, 0.5)
        np.testing.assert_array_equal(serial, fast)
    else:
        kernels.solve_cg(*args, fast, 0.5, 3)
        kernels.solve_cg_numpy(*args, slow, 0.5, 3)
    np.testing.assert_allclose(fast, slow, rtol=1e-3, atol=1e-4)


def test_cg_converges_to_the_cholesky_solution():
    m, weight, target, Y, gram, reg, X0 = random_problem(seed=1)
    exact, cg = X0.copy(), X0.copy()
    args = (m.indptr, m.indices, weight, target, Y, gram, reg)
    kernels.solve_cholesky(*args, exact, 0.5)
    kernels.solve_cg(*args, cg, 0.5, 20)
    np.testing.assert_allclose(cg, exact, rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def fitted() -> tuple[WALS, TrainingData]:
    data = small_data(seed=3)
    model = WALS(factors=6, iterations=10, alpha=2.0, regularization=0.1, confidence="raw",
                 item_weight_exponent=0.0)
    return model.fit(data), data


def test_scaled_confidence_weighs_feedback_in_units_of_its_mean():
    """The default: ``w0 + α · r / r̄``, in training and in fold-in alike."""
    data = small_data(seed=3)
    scaled = WALS(factors=6, iterations=10, alpha=2.0, regularization=0.1,
                  item_weight_exponent=0.0).fit(data)
    mean = float(data.feedback.data.mean())
    assert scaled.weight_norms_[2] == pytest.approx(mean)
    row = data.feedback[[5]]
    Y = scaled.item_factors_
    expected = np.zeros((1, Y.shape[1]), np.float32)
    weight = (1.0 + 2.0 * row.data / mean).astype(np.float32)
    kernels.solve_cholesky_numpy(row.indptr, row.indices, weight, np.ones(row.nnz, np.float32),
                                 Y, Y.T.astype(np.float64) @ Y, np.array([0.1]), expected, 1.0)
    history = dict(zip(data.items.ids[row.indices], row.data.tolist(), strict=True))
    np.testing.assert_allclose(scaled.fold_in(history), expected[0], rtol=1e-4, atol=1e-5)
    # star-valued and 0/1 feedback of the same pairs: the same model up to the scale
    binary = TrainingData.from_interactions(pd.DataFrame({
        "user_id": data.users.ids[np.repeat(np.arange(data.n_users),
                                            np.diff(data.feedback.indptr))],
        "item_id": data.items.ids[data.feedback.indices], "rating": np.nan, "feedback": 1.0}))
    stars = TrainingData.from_interactions(pd.DataFrame({
        "user_id": binary.users.ids[np.repeat(np.arange(binary.n_users),
                                              np.diff(binary.feedback.indptr))],
        "item_id": binary.items.ids[binary.feedback.indices], "rating": np.nan,
        "feedback": 4.0}))
    a = WALS(factors=4, iterations=4).fit(binary)
    b = WALS(factors=4, iterations=4).fit(stars)
    np.testing.assert_allclose(a.item_factors_, b.item_factors_, rtol=1e-4, atol=1e-6)


def test_fold_in_agrees_with_an_exact_user_step(fitted):
    model, data = fitted
    u = 5
    row = data.feedback[[u]]
    history = dict(zip(data.items.ids[row.indices], row.data.tolist(), strict=True))
    Y = model.item_factors_
    expected = np.zeros((1, Y.shape[1]), np.float32)
    weight = (1.0 + 2.0 * row.data).astype(np.float32)
    kernels.solve_cholesky_numpy(row.indptr, row.indices, weight, np.ones(row.nnz, np.float32),
                                 Y, Y.T.astype(np.float64) @ Y, np.array([0.1]), expected, 1.0)
    np.testing.assert_allclose(model.fold_in(history), expected[0], rtol=1e-4, atol=1e-5)
    # a trained user's learned vector is close to their fold-in: both solve the same step
    np.testing.assert_allclose(model.fold_in(history), model.user_factors_[u], atol=0.05)


def test_explanations_add_up_to_the_score(fitted):
    model, _ = fitted
    history = {"i0": 1.5, "i3": 1.0, "i7": 2.0}
    vector = model.fold_in(history)
    for item in ("i1", "i9"):
        parts = model.explain_contributions(history, item)
        assert set(parts) == set(history)
        score = float(vector @ model.item_factors_[model.items_.index([item])[0]])
        assert sum(parts.values()) == pytest.approx(score, rel=1e-4, abs=1e-6)


def test_explain_names_past_items(fitted):
    model, _ = fitted
    ids, _ = model.recommend("u1", 2)
    reasons = model.explain("u1", ids.tolist())
    assert all(r.startswith("because you liked ") for r in reasons)


def test_same_seed_same_factors_whatever_the_thread_count():
    data = small_data(seed=4)
    a = WALS(factors=5, iterations=4, num_threads=1).fit(data).item_factors_
    b = WALS(factors=5, iterations=4, num_threads=2).fit(data).item_factors_
    c = WALS(factors=5, iterations=4, random_state=1).fit(data).item_factors_
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_audience_ranks_users_by_score_and_skips_buyers(fitted):
    model, data = fitted
    users, scores = model.audience("i2", n=5)
    buyers = set(data.users.ids[data.feedback[:, [data.items.index(["i2"])[0]]].tocoo().row])
    assert not buyers & set(users.tolist())
    expected = model.score(users.tolist(), ["i2"] * 5)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert np.all(np.diff(scores) <= 1e-6)
    combined, _ = model.audience(["i2", "i4"], n=3, combine=True)
    assert combined.shape == (3,)


def test_similar_users_by_cosine(fitted):
    model, _ = fitted
    ids, sims = model.similar_users("u0", 3)
    assert "u0" not in ids.tolist() and np.all(sims <= 1 + 1e-6)
    v = model.user_factors_
    cos = v @ v[0] / (np.linalg.norm(v, axis=1) * np.linalg.norm(v[0]))
    cos[0] = -np.inf
    assert ids[0] == model.users_.ids[int(np.argmax(cos))]


def test_explicit_needs_ratings_and_biases_need_explicit():
    data = small_data()
    implicit_only = TrainingData(data.users, data.items, data.feedback, data.feedback[:, :0])
    with pytest.raises(DataError, match="explicit WALS needs ratings"):
        WALS(feedback="explicit").fit(implicit_only)
    with pytest.raises(DataError, match="biases apply to explicit feedback only"):
        WALS(biases=True).fit(data)


def test_explicit_with_biases_predicts_ratings():
    pairs = pd.DataFrame({"user_id": list("aabbc"), "item_id": list("xyxzy"),
                          "rating": [5.0, 1.0, 4.0, 2.0, 1.0], "feedback": 1.0})
    data = TrainingData.from_interactions(pairs)
    model = WALS(factors=2, iterations=30, feedback="explicit", biases=True,
                 unobserved_weight=0.0, regularization=0.01, solver="cholesky").fit(data)
    assert model.predicts_ratings
    np.testing.assert_allclose(model.score(pairs["user_id"], pairs["item_id"]), pairs["rating"],
                               atol=0.25)


def test_invalid_config_is_a_clear_error():
    with pytest.raises(DataError, match="invalid wals parameter"):
        WALS(factors=0)


def test_item_fold_in_agrees_with_an_exact_item_step(fitted):
    model, data = fitted
    i = 4
    column = sp.csr_array(data.feedback[:, [i]].T)
    column.sort_indices()
    audience = dict(zip(data.users.ids[column.indices], column.data.tolist(), strict=True))
    X = model.user_factors_
    expected = np.zeros((1, X.shape[1]), np.float32)
    weight = (1.0 + 2.0 * column.data).astype(np.float32)
    kernels.solve_cholesky_numpy(column.indptr, column.indices, weight,
                                 np.ones(column.nnz, np.float32), X,
                                 X.T.astype(np.float64) @ X, np.array([0.1]), expected, 1.0)
    vector = model.fold_in_item({**audience, "nobody": 3.0})
    np.testing.assert_allclose(vector, expected[0], rtol=1e-3, atol=1e-4)
    # a brand-new item folded in from its buyers is targeted at users like them
    assert np.corrcoef(X @ vector, X @ model.item_factors_[i])[0, 1] > 0.9


def test_item_fold_in_weighs_rows_as_training_did():
    """The last half-sweep solves every item exactly against the final users; folding the
    training columns in again must give the same vectors, with the item weights ``C_i`` and
    the user weights ``R_u`` each scaled by their own training mean (not the other side's)."""
    data = small_data(seed=2)
    model = WALS(factors=4, iterations=3, solver="cholesky", item_weight_exponent=0.3,
                 user_weight_exponent=0.5, regularization=0.5).fit(data)
    assert model.weight_norms_[0] != pytest.approx(model.weight_norms_[1], rel=1e-2)
    folded, _ = model._fold_in(sp.csr_array(data.feedback.T.tocsr()), items=True)
    np.testing.assert_allclose(folded, model.item_factors_, rtol=1e-3, atol=1e-4)


def test_dot_similarity_ranks_by_inner_product(fitted):
    _, data = fitted
    dot = WALS(factors=6, iterations=10, alpha=2.0, regularization=0.1,
               similarity="dot").fit(data)
    _, sims = dot.similar_items("i1", 3)
    Y = dot.item_factors_
    i = int(dot.items_.index(["i1"])[0])
    others = np.delete(Y @ Y[i], i)
    np.testing.assert_allclose(sims, np.sort(others)[::-1][:3], rtol=1e-5)


def test_similar_items_follow_a_refit(fitted):
    """The item norms kept for cosine similarity belong to the current factors."""
    _, data = fitted
    dataset = generate(n_users=80, n_items=40, seed=3)
    other = TrainingData.from_interactions(aggregate(dataset.events, dataset.schema))
    model = WALS(factors=6, iterations=4).fit(data)
    model.similar_items(str(model.items_.ids[0]), 3)  # keeps the first fit's norms
    model.fit(other)
    fresh = WALS(factors=6, iterations=4).fit(other)
    item = str(other.items.ids[0])
    got, want = model.similar_items(item, 3), fresh.similar_items(item, 3)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)


def test_a_diverging_refit_leaves_the_fitted_factors():
    """WALS used to write state part-way through training."""
    data = small_data()
    model = WALS(factors=4, iterations=3).fit(data)
    factors = model.user_factors_.copy()
    model.config = WALS.Config(factors=4, iterations=3, alpha=1e30, regularization=0.0)
    with pytest.raises(ModelFitError, match="non-finite"):
        model.fit(small_data(seed=1, n_users=10))
    np.testing.assert_array_equal(model.user_factors_, factors)
    assert model.users_ == data.users


def test_training_options_are_scoped_to_the_fit():
    """Threads bound this fit only; the seed replaces the configuration's random_state."""
    import numba

    data = small_data()
    before = numba.get_num_threads()
    WALS(factors=4, iterations=2, num_threads=1).fit(data)
    WALS(factors=4, iterations=2).fit(data, options=TrainingOptions(threads=1))
    assert numba.get_num_threads() == before
    seeded = WALS(factors=4, iterations=2).fit(data, options=TrainingOptions(seed=7))
    same = WALS(factors=4, iterations=2, random_state=7).fit(data)
    np.testing.assert_array_equal(seeded.item_factors_, same.item_factors_)
    with pytest.raises(NotSupportedError, match="cuda"):
        WALS().fit(data, options=TrainingOptions(device="cuda"))


def test_factors_trained_elsewhere_make_a_fitted_model():
    """WALS.from_factors answers exactly as the model the factors came from."""
    data = small_data()
    params = {"factors": 6, "iterations": 4, "item_weight_exponent": 0.0, "confidence": "raw"}
    trained = WALS(**params).fit(data)
    rebuilt = WALS.from_factors(data.users.ids, data.items.ids, trained.user_factors_,
                                trained.item_factors_, histories=data, **params)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(rebuilt.recommend_indices(users, 10)[0],
                                  trained.recommend_indices(users, 10)[0])
    np.testing.assert_allclose(rebuilt.fold_in(["i1", "i4"]), trained.fold_in(["i1", "i4"]),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="factors must be"):
        WALS.from_factors(["u"], ["a"], np.ones((1, 3)), np.ones((1, 2)), factors=3)
