"""``fastmlp.MLP.fit(optimizer='lbfgs')``: the estimators' L-BFGS driver on the MLP, its
stops, its model files."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

import fastmlp


def _classes(n=150, n_in=5, k=3, seed=0):
    rs = np.random.RandomState(seed)
    X = rs.normal(size=(n, n_in))
    y = rs.randint(0, k, n)
    return X, y, np.eye(k)[y]


def _mlp(n_in=5, k=3, **kw):
    kw = {"activation": "relu", "out_activation": "softmax", "loss": "log_loss",
          "dtype": "float64", "random_state": 0, **kw}
    return fastmlp.MLP((n_in, 7, k), **kw)


def _params(m):
    return np.concatenate([a.ravel() for a in m.coefs_ + m.intercepts_])


@pytest.mark.parametrize("alpha,seed,k", [(1e-4, 0, 15), (1e-2, 3, 60)])
def test_lbfgs_equals_the_classifiers_lbfgs(alpha, seed, k):
    """The same initial weights (scikit-learn's draws) and the same driver: the same
    iterates, to the bit, as MLPClassifier(solver='lbfgs')."""
    X, y, Y = _classes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = _mlp(alpha=alpha, random_state=seed).fit(X, Y, optimizer="lbfgs", epochs=k)
        est = fastmlp.MLPClassifier(hidden_layer_sizes=(7,), solver="lbfgs", max_iter=k,
                                    alpha=alpha, random_state=seed).fit(X, y)
    assert len(m.loss_curve_) == est.n_iter_
    assert m.loss_curve_[-1] == est.loss_
    for ours, theirs in zip(m.coefs_ + m.intercepts_, est.coefs_ + est.intercepts_):
        assert np.array_equal(ours, theirs)


def test_one_driver_for_the_estimators_and_the_mlp(monkeypatch):
    import fastmlp._fitting as F
    import fastmlp.model as M
    assert M.minimize_lbfgs is F.minimize_lbfgs
    calls = []
    real = F.minimize_lbfgs
    monkeypatch.setattr(F, "minimize_lbfgs", lambda *a, **k: calls.append(1) or real(*a, **k))
    X, y, _ = _classes(n=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastmlp.MLPClassifier(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=2).fit(X, y)
    assert calls == [1]


def test_loss_decreases_and_the_limit_warns():
    X, y, Y = _classes()
    m = _mlp()
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        m.fit(X, Y, optimizer="lbfgs", epochs=10)
    curve = m.loss_curve_
    assert len(curve) == 10 and curve[-1] < 0.95 * curve[0]
    assert all(b <= a for a, b in zip(curve, curve[1:]))  # a line search never goes up
    assert m.optimizer_settings_ == {"optimizer": "lbfgs"}
    # the full batch's workspace is not kept: a trainer of the fit's batch size holds it
    assert m.workspace_.capacity == min(256, len(X))
    assert np.array_equal(m.predict(X[:3]).argmax(1), m.predict(X)[:3].argmax(1))


def test_callback_and_stop_request_end_it_after_the_iteration():
    X, y, Y = _classes()
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = _mlp().fit(X, Y, optimizer="lbfgs", epochs=50,
                       callback=lambda it, loss: seen.append((it, loss)) or it == 3)
    assert [it for it, _ in seen] == [1, 2, 3] and len(m.loss_curve_) == 3
    assert [loss for _, loss in seen] == m.loss_curve_

    m = _mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(X, Y, optimizer="lbfgs", epochs=50,
              callback=lambda it, loss: m.request_stop() if it == 2 else None)
    assert len(m.loss_curve_) == 2
    # the request was used up: the next fit runs in full, and equals a fresh one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(X, Y, optimizer="lbfgs", epochs=5)
        fresh = _mlp().fit(X, Y, optimizer="lbfgs", epochs=5)
    assert len(m.loss_curve_) == 5 and np.array_equal(_params(m), _params(fresh))
    # a request before the fit: weights drawn, no iteration
    m = _mlp()
    m.request_stop()
    m.fit(X, Y, optimizer="lbfgs", epochs=5)
    assert m.loss_curve_ == [] and np.array_equal(_params(m), _params(_mlp().fit(
        X, Y, optimizer="lbfgs", epochs=0)))


def test_save_load_round_trip_and_partial_fit_refuses_lbfgs(tmp_path):
    X, y, Y = _classes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = _mlp().fit(X, Y, optimizer="lbfgs", epochs=8)
    m.save(tmp_path / "m.npz")
    r = fastmlp.load(tmp_path / "m.npz")
    assert type(r) is fastmlp.MLP and r.optimizer_settings_ == {"optimizer": "lbfgs"}
    assert r.loss_curve_ == m.loss_curve_
    assert np.array_equal(r.predict(X), m.predict(X))
    with pytest.raises(ValueError, match="trained by fit\\(optimizer='lbfgs'\\).*'sgd' or"):
        r.partial_fit(X, Y)
    with pytest.raises(ValueError, match="partial_fit cannot run L-BFGS"):
        r.partial_fit(X, Y, optimizer="lbfgs")
    assert np.array_equal(r.predict(X), m.predict(X))  # refused: nothing changed
    r.partial_fit(X, Y, optimizer="adam", learning_rate=1e-3)  # fine-tuning goes on
    assert len(r.loss_curve_) == 9


def test_hostile_lbfgs_states_are_refused(stop_after):
    X, y, Y = _classes(n=40)
    m = _mlp().fit(X, Y, optimizer="lbfgs", epochs=0)
    state = m._get_state()
    assert state["model"]["fit_settings"]["optimizer"] == "lbfgs"
    assert fastmlp.MLP._from_state(state).optimizer_settings_ == {"optimizer": "lbfgs"}
    sgd = _mlp().fit(X, Y, epochs=1)
    state = sgd._get_state()  # an optimizer state under settings that say L-BFGS
    state["model"]["fit_settings"]["optimizer"] = "lbfgs"
    with pytest.raises(ValueError, match="lbfgs, but an optimizer state"):
        fastmlp.MLP._from_state(state)
    stopped = _mlp()
    stopped.fit(X, Y, epochs=0, batch_size=8)
    stop_after(stopped, 2)
    stopped.partial_fit(X, Y)
    state = stopped._get_state()  # an interrupted epoch under settings that say L-BFGS
    assert "epoch" in state["model"]
    del state["model"]["optimizer"]
    for k in list(state["arrays"]):
        if k.startswith("optimizer/"):
            del state["arrays"][k]
    state["model"]["fit_settings"]["optimizer"] = "lbfgs"
    with pytest.raises(ValueError, match="an L-BFGS fit has no epochs"):
        fastmlp.MLP._from_state(state)


def test_sparse_input_and_sample_weight():
    X, y, Y = _classes()
    w = np.random.RandomState(1).uniform(0.5, 2, len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = _mlp(alpha=1e-3).fit(X, Y, optimizer="lbfgs", epochs=15, sample_weight=w)
        sparse = _mlp(alpha=1e-3).fit(sp.csr_matrix(X), Y, optimizer="lbfgs", epochs=15,
                                      sample_weight=w)
        est = fastmlp.MLPClassifier(hidden_layer_sizes=(7,), solver="lbfgs", max_iter=15,
                                    alpha=1e-3, random_state=0).fit(X, y, sample_weight=w)
        unweighted = _mlp(alpha=1e-3).fit(X, Y, optimizer="lbfgs", epochs=15)
    assert np.array_equal(_params(dense), np.concatenate(
        [a.ravel() for a in est.coefs_ + est.intercepts_]))
    # chunks of rows sum in another order: the same optimisation, to rounding
    np.testing.assert_allclose(_params(sparse), _params(dense), rtol=1e-6, atol=1e-8)
    assert not np.allclose(_params(unweighted), _params(dense))


def test_float32_model():
    X, y, Y = _classes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m32 = _mlp(dtype="float32").fit(X, Y, optimizer="lbfgs", epochs=20)
        m64 = _mlp().fit(X, Y, optimizer="lbfgs", epochs=20)
    assert m32.coefs_[0].dtype == np.float32 and len(m32.loss_curve_) == 20
    assert m32.loss_curve_[-1] < 0.95 * m32.loss_curve_[0]
    assert abs(m32.loss_curve_[-1] - m64.loss_curve_[-1]) < 0.05 * m64.loss_curve_[-1]


def test_bad_lbfgs_arguments_leave_the_model_as_it_was():
    X, y, Y = _classes(n=40)
    m = _mlp().fit(X, Y, epochs=1)
    before = _params(m)
    with pytest.raises(ValueError, match="'optimizer' parameter of MLP.fit"):
        m.fit(X, Y, optimizer="bfgs")
    with pytest.raises(ValueError, match="dropout needs optimizer='sgd' or 'adam'"):
        _mlp(dropout=0.5).fit(X, Y, optimizer="lbfgs")
    assert np.array_equal(_params(m), before)
