"""What the PyTorch models share: options kept to the fit, the carve, early stopping, arrays."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.data.query import Sequences
from recengine.errors import DataError
from recengine.models.base import TrainingOptions
from recengine.models.torch_training import (
    EarlyStopping,
    hold_out_last,
    hold_out_random,
    load_network,
    network_arrays,
    next_item_hits,
    train_epochs,
    training_session,
)

torch = pytest.importorskip("torch")


def test_a_session_seeds_torch_and_gives_back_the_callers_random_state_and_threads():
    torch.manual_seed(123)
    expected_after = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    with training_session(TrainingOptions(seed=7, threads=1), default_seed=0) as device:
        assert device.type == "cpu" and torch.get_num_threads() == 1
        first = torch.rand(2)
    with training_session(TrainingOptions(seed=7), default_seed=0):
        assert torch.equal(torch.rand(2), first)  # the seed decides, not what ran before
    with training_session(TrainingOptions(), default_seed=7):
        assert torch.equal(torch.rand(2), first)  # no seed: the model's default
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected_after)  # the caller's stream went on untouched


def test_a_session_restores_threads_when_training_raises():
    threads = torch.get_num_threads()
    with pytest.raises(ValueError), training_session(TrainingOptions(threads=1), 0):
        raise ValueError("boom")
    assert torch.get_num_threads() == threads


def test_hold_out_last_keeps_every_row_and_every_column_aligned():
    log = Sequences.from_rows([[1, 2, 3], [4], [5, 6]], weights=[[1, 2, 3], [4], [5, 6]])
    held = hold_out_last(log)
    assert held.rows.tolist() == [0, 2] and held.targets.tolist() == [3, 6]
    assert [held.train.row_items(r).tolist() for r in range(3)] == [[1, 2], [4], [5]]
    assert held.train.weights.tolist() == [1, 2, 4, 5]
    drawn = hold_out_last(log, max_rows=1, seed=1)
    assert len(drawn.rows) == 1 and drawn.train.n_events == 5


def test_hold_out_random_takes_every_event_of_one_item_and_keeps_the_rest():
    log = Sequences.from_rows([[1, 2, 1, 3], [4, 4], [5, 6]], weights=[[1, 2, 3, 4], [5, 6],
                                                                        [7, 8]])
    for seed in range(5):
        held = hold_out_random(log, seed=seed)
        assert held.rows.tolist() == [0, 2]  # row 1 has one distinct item: nothing to predict
        for row, target in zip(held.rows, held.targets, strict=True):
            kept = held.train.row_items(row).tolist()
            assert target in log.row_items(row) and target not in kept
            assert kept == [i for i in log.row_items(row).tolist() if i != target]
        assert held.train.row_items(1).tolist() == [4, 4]
    assert len(hold_out_random(log, max_rows=1).rows) == 1
    drawn = {int(hold_out_random(log, seed=s).targets[0]) for s in range(20)}
    assert drawn == {1, 2, 3}  # any item of the row, not only the last


def test_a_session_can_default_to_fewer_threads_than_torch():
    threads = torch.get_num_threads()
    with training_session(TrainingOptions(), 0, default_threads=1):
        assert torch.get_num_threads() == 1
    with training_session(TrainingOptions(threads=2), 0, default_threads=1):
        assert torch.get_num_threads() == 2  # the options win
    assert torch.get_num_threads() == threads


def test_next_item_hits_ranks_the_target_among_unseen_items():
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    assert next_item_hits(scores, np.array([3]), k=1) == (0.0, 0.0)  # two items above it
    seen = Sequences.from_rows([[0, 1, 3]])  # seen items drop out, the target stays
    ndcg, hit = next_item_hits(scores, np.array([3]), seen, k=1)
    assert (ndcg, hit) == (1.0, 1.0)
    assert next_item_hits(np.array([[np.nan, 1.0]]), np.array([0])) == (0.0, 0.0)


def test_early_stopping_keeps_the_best_parameters_and_stops_after_patience():
    net = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2)
    assert not stop.update(0.5, net, epoch=0)
    best = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not stop.update(0.4, net, epoch=1)
    assert stop.update(0.5, net, epoch=2)  # equal is no improvement
    assert stop.best_epoch == 0 and torch.equal(stop.best_state()["weight"], best)


def test_networks_round_trip_through_arrays_and_refuse_a_wrong_shape():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    arrays = network_arrays(net)
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    other = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    load_network(other, arrays)
    x = torch.ones(1, 3)
    assert torch.equal(net(x), other(x))
    with pytest.raises(DataError, match=r"net\.0\.weight is \(2, 2\), expected \(2, 3\)"):
        load_network(other, {**arrays, "net.0.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(DataError, match=r"no array 'net\.1\.bias'"):
        load_network(other, {k: v for k, v in arrays.items() if k != "net.1.bias"})


def test_train_epochs_keeps_the_network_that_validated_best_or_else_the_last():
    net = torch.nn.Linear(1, 1, bias=False)
    start = float(net.weight.detach())
    scores = iter([0.1, 0.5, 0.2, 0.3, 0.9])
    seen: list[tuple[str, int, int]] = []

    def step() -> None:
        with torch.no_grad():
            net.weight.add_(1.0)

    done = train_epochs(net, epochs=5, patience=2, train=step, validate=lambda: next(scores),
                        progress=lambda *a: seen.append(a), description="fit")
    assert (done.run, done.best, done.scores) == (4, 1, [0.1, 0.5, 0.2, 0.3])  # stopped
    assert float(net.weight.detach()) == pytest.approx(start + 2.0)  # the second epoch's network
    assert len(seen) == 4 and seen[-1] == ("fit", 4, 5)
    unvalidated = train_epochs(net, epochs=3, patience=1, train=step, validate=None,
                               progress=None, description="fit")
    assert (unvalidated.run, unvalidated.best, unvalidated.scores) == (3, 2, [])
    assert float(net.weight.detach()) == pytest.approx(start + 5.0)  # the last network stays


def test_train_epochs_can_keep_the_network_it_started_with():
    """validate_first: the untrained network is judged too, and kept when no epoch beats it."""
    net = torch.nn.Linear(1, 1, bias=False)
    start = float(net.weight.detach())
    scores = iter([0.6, 0.5, 0.4, 0.55])

    def step() -> None:
        with torch.no_grad():
            net.weight.add_(1.0)

    done = train_epochs(net, epochs=5, patience=3, train=step, validate=lambda: next(scores),
                        progress=None, description="fit", validate_first=True)
    assert (done.run, done.best, done.scores) == (3, -1, [0.5, 0.4, 0.55])
    assert float(net.weight.detach()) == pytest.approx(start)
