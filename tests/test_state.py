"""Training state: fit re-seeds, the shuffle and interrupted-epoch state make any split of the
epochs (calls, interruptions, save/load) give the same model, stop requests are honoured, and
``_get_state``/``_set_state`` hold everything a model file needs."""
import warnings

import numpy as np
import pytest

import fastmlp

RS = np.random.RandomState(0)
X = RS.randn(120, 5)
Y = RS.randn(120, 2)
KW = dict(batch_size=16, optimizer="adam", learning_rate=0.01)


def _params(m):
    return np.concatenate([a.ravel() for a in m.coefs_ + m.intercepts_])


def _mlp():
    return fastmlp.MLP([5, 6, 2], activation="tanh", dtype="float64", random_state=0)


def test_fit_twice_gives_the_same_model():
    m = _mlp()
    m.fit(X, Y, epochs=3, **KW)
    first = _params(m).copy(), list(m.loss_curve_)
    m.fit(X, Y, epochs=3, **KW)
    assert np.array_equal(_params(m), first[0]) and m.loss_curve_ == first[1]


def test_fit_k_epochs_equals_k_single_epoch_calls():
    a = _mlp().fit(X, Y, epochs=4, **KW)
    b = _mlp()
    for _ in range(4):
        b.partial_fit(X, Y, epochs=1, **KW)
    c = _mlp()
    c.partial_fit(X, Y, epochs=1, **KW)
    c.partial_fit(X, Y, epochs=3, **KW)
    for m in (b, c):
        assert np.array_equal(_params(m), _params(a))
        assert m.loss_curve_ == a.loss_curve_


@pytest.mark.parametrize("stop_at", [1, 8, 11, 20, 31])
def test_any_interruption_point_resumes_to_the_uninterrupted_fit(tmp_path, stop_at, stop_after):
    """fit(epochs=4) (8 batches an epoch) stopped after `stop_at` batches, saved, loaded and
    resumed in one call ends with exactly the uninterrupted weights (float64)."""
    ref = _mlp().fit(X, Y, epochs=4, **KW)
    m = _mlp()
    m.fit(X, Y, epochs=0, **KW)  # creates the optimizer, so that it can be counted
    stop_after(m, stop_at)
    m.partial_fit(X, Y, epochs=4, **KW)
    done = len(m.loss_curve_)
    assert done == stop_at // 8
    pending = m.pending_epoch
    if stop_at % 8:
        assert pending == {"epoch": done + 1, "position": 16 * (stop_at % 8), "n_rows": 120}
    else:
        assert pending is None
    m.save(tmp_path / "m.npz")
    r = fastmlp.load(tmp_path / "m.npz")
    assert r.pending_epoch == pending
    r.partial_fit(X, Y, epochs=4 - done, **KW)
    assert np.array_equal(_params(r), _params(ref))
    np.testing.assert_allclose(r.loss_curve_, ref.loss_curve_, rtol=1e-12)


def test_a_pending_epoch_is_never_dropped_silently(stop_after):
    m = _mlp()
    m.fit(X, Y, epochs=0, **KW)
    stop_after(m, 3)
    m.partial_fit(X, Y, epochs=1, **KW)
    assert m.pending_epoch["position"] == 48
    m.partial_fit(X, Y, epochs=0, **KW)  # nothing to do: the epoch stays pending
    assert m.pending_epoch["position"] == 48
    with pytest.raises(ValueError, match="interrupted epoch over 120 rows is pending"):
        m.partial_fit(X[:60], Y[:60], epochs=1, **KW)
    assert m.pending_epoch["position"] == 48
    m.partial_fit(X, Y, epochs=1, **KW)  # finishes it
    assert m.pending_epoch is None and len(m.loss_curve_) == 1
    m.fit(X[:60], Y[:60], epochs=1, **KW)  # fit starts over: nothing pending to finish
    assert m.pending_epoch is None


def test_a_stop_request_before_an_epoch_is_not_wiped():
    m = _mlp()
    m.fit(X, Y, epochs=1, **KW)
    before = _params(m).copy()
    m.request_stop()  # arrives between two calls (say, during validation)
    m.partial_fit(X, Y, epochs=3, **KW)
    assert len(m.loss_curve_) == 1 and np.array_equal(_params(m), before)
    m.partial_fit(X, Y, epochs=1, **KW)  # the request was used up
    assert len(m.loss_curve_) == 2


def test_a_stop_request_before_lbfgs_starts_stops_it():
    from fastmlp.estimators import MLPRegressor
    est = MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=50, random_state=0)
    est.request_stop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, Y[:, 0])
    assert est.n_iter_ <= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, Y[:, 0])  # used up
    assert est.n_iter_ > 1


def test_a_stop_request_before_an_estimator_epoch_stops_it():
    from fastmlp.estimators import MLPRegressor
    est = MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    est.request_stop()
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, Y[:, 0])
    assert est.n_iter_ == 0


def test_state_round_trips_through_get_and_set_state(stop_after):
    m = _mlp()
    m.fit(X, Y, epochs=0, **KW)
    stop_after(m, 3)
    m.partial_fit(X, Y, epochs=2, **KW)
    m.classes_ = np.array(["a", "b"])
    state = m._get_state()
    assert set(state) == {"model", "arrays", "scaling", "format_version"}
    r = _mlp()
    r._set_state(state)
    assert r.pending_epoch == m.pending_epoch and list(r.classes_) == ["a", "b"]
    m.partial_fit(X, Y, epochs=2, **KW)
    r.partial_fit(X, Y, epochs=2, **KW)
    assert np.array_equal(_params(m), _params(r))
    with pytest.raises(ValueError, match="another architecture"):
        fastmlp.MLP([5, 7, 2], dtype="float64")._set_state(state)


def test_public_hooks_describe_the_training():
    m = _mlp()
    assert m.optimizer_settings_ is None and m.pending_epoch is None
    m.fit(X, Y, epochs=1, batch_size=16, optimizer="sgd", momentum=0.5, learning_rate=0.1)
    assert m.optimizer_settings_ == {"optimizer": "sgd", "learning_rate": 0.1,
                                     "batch_size": 16, "momentum": 0.5}
    m.n_threads = 1
    assert m.n_threads == 1
    with pytest.raises(ValueError):
        m.n_threads = 0


def test_a_network_beyond_the_memory_is_refused_clearly():
    m = fastmlp.MLP([5, 10 ** 6, 10 ** 6, 2], random_state=0)  # 16 TB to train
    with pytest.raises(MemoryError, match="5-1000000-1000000-2 .* more than the .* available"):
        m.fit(X, Y, epochs=1)
