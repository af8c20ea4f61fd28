"""The MLP front-end: training behaviour, the workspace, threads, shapes and bad input."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numba.core.runtime import _nrt_python, rtsys
from sklearn.exceptions import NotFittedError

import fastmlp
from fastmlp import kernels as K


def _data(n=600, n_in=8, n_out=2, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    W = rng.normal(size=(n_in, n_out))
    Y = np.tanh(X @ W) * 0.5 + 0.5
    return X.astype(dtype), Y.astype(dtype)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.2), ("adam", 0.01)])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_training_lowers_the_loss(optimizer, lr, activation):
    X, Y = _data()
    m = fastmlp.MLP([8, 16, 2], activation=activation, random_state=0)
    m.fit(X, Y, epochs=15, batch_size=32, learning_rate=lr, optimizer=optimizer,
          momentum=0.9 if optimizer == "sgd" else 0.0)
    assert len(m.loss_curve_) == 15
    assert m.loss_curve_[-1] < 0.5 * m.loss_curve_[0]
    mse = np.mean((m.predict(X) - Y) ** 2)
    assert mse < 0.5 * np.mean((Y - Y.mean(0)) ** 2)


def test_float32_tracks_float64():
    X, Y = _data()
    runs = {}
    for dtype in ("float32", "float64"):
        m = fastmlp.MLP([8, 16, 16, 2], dtype=dtype, random_state=3)
        m.fit(X, Y, epochs=5, batch_size=50, learning_rate=0.3, momentum=0.9)
        assert m.coefs_[0].dtype == dtype and m.predict(X).dtype == dtype
        runs[dtype] = m
    np.testing.assert_allclose(runs["float32"].loss_curve_, runs["float64"].loss_curve_,
                               rtol=1e-4)
    for a, b in zip(runs["float32"].coefs_, runs["float64"].coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_one_step_equals_the_backend_gradient_step():
    """A full-batch SGD step of MLP is exactly params - lr * loss_and_grads(...)."""
    X, Y = _data(n=40)
    m = fastmlp.MLP([8, 5, 2], dtype="float64", alpha=0.01, random_state=0)
    m.fit(X, Y, epochs=0, batch_size=40)
    coefs = [c.copy() for c in m.coefs_]
    ints = [b.copy() for b in m.intercepts_]
    loss, gc, gi = fastmlp.backend.loss_and_grads(coefs, ints, X, Y, activation="logistic",
                                                  alpha=0.01)
    m.partial_fit(X, Y, epochs=1, batch_size=40, learning_rate=0.1, shuffle=False)
    assert m.loss_curve_[-1] == pytest.approx(loss, rel=1e-12)
    for got, c, g in zip(m.coefs_ + m.intercepts_, coefs + ints, gc + gi):
        np.testing.assert_allclose(got, c - 0.1 * g, rtol=1e-12)


def test_deltas_are_the_last_batch_and_reused_for_the_gradients():
    X, Y = _data(n=70)
    m = fastmlp.MLP([8, 6, 4, 2], dtype="float64", random_state=0)
    m.fit(X, Y, epochs=1, batch_size=32, shuffle=False)  # batches 32, 32, 6
    deltas = m.deltas_
    assert [d.shape for d in deltas] == [(6, 6), (6, 4), (6, 2)]
    # recompute the last batch's deltas from the parameters it used: undo the last SGD step
    ws = m.workspace_
    A = [X[64:]] + [ws.A(l) for l in (1, 2, 3)]
    np.testing.assert_allclose(deltas[2], A[3] - Y[64:], rtol=1e-12)
    assert np.shares_memory(deltas[0], ws.deltas)
    # ... and the gradients of that batch were built from these very deltas and activations:
    # dW[l] = A[l]^T delta[l+1], db[l] = sum of delta[l+1] (raw sums; alpha = 0)
    t = m._trainer
    for l in range(3):
        np.testing.assert_allclose(t.coef_grads[l], A[l].T @ deltas[l], rtol=1e-12)
        np.testing.assert_allclose(t.intercept_grads[l], deltas[l].sum(0), rtol=1e-12)
    # the hidden deltas are the output delta carried back: delta[l] = (delta[l+1] W[l]^T) f'
    # with the weights before the last step, W_before = W_after + lr * dW / n
    W2 = m.coefs_[2] + 0.1 * t.coef_grads[2] / 6
    np.testing.assert_allclose(deltas[1], (deltas[2] @ W2.T) * A[2] * (1 - A[2]), rtol=1e-10)


def test_training_loop_allocates_nothing_per_batch():
    _nrt_python.memsys_enable_stats()
    X, Y = _data(n=3200, n_in=20, n_out=3)
    m = fastmlp.MLP([20, 64, 64, 3], dtype="float64", random_state=0)
    m.fit(X, Y, epochs=1, batch_size=32, shuffle=False)
    m.partial_fit(X, Y, epochs=1, batch_size=32, shuffle=True)  # every kernel loaded once
    ws_bytes = m.workspace_.nbytes
    for shuffle in (False, True):
        tracemalloc.start()
        m.partial_fit(X, Y, epochs=2, batch_size=32, shuffle=shuffle)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # 200 batches: one (32, 64) float64 array per batch would already be 16 KiB; the
        # shuffle's per-epoch permutation temporary is N int64
        assert peak < 8192 + (3200 * 8 if shuffle else 0), peak
        assert m.workspace_.nbytes == ws_bytes
    # inside the kernels: every NRT allocation of a whole training step is the MemInfo that
    # wraps one of its array arguments -- no buffer is allocated
    t = m._trainer
    args = (t.params, t.grads, t.ws.acts, t.ws.deltas, X[:32], Y[:32], t.ws.no_sw,
            t.layout.sizes, np.zeros(0))  # the last: the (0,) dropout rates
    step = K.train_kernels(K.LOGISTIC, K.IDENTITY, K.SQUARED_ERROR, False).forward_backward
    before = rtsys.get_allocation_stats()
    step(*args[:8], 32, 0.0, 0.01, args[8], np.uint64(0))
    K.sgd_update(t.params, t.grads, m._opt_state.velocity, 0.1, 0.9, True, 1 / 32, 0.0, 10)
    after = rtsys.get_allocation_stats()
    assert after.alloc - before.alloc == len(args) + 3


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 50),
       sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       dtype=st.sampled_from(["float32", "float64"]))
def test_shapes(n, batch, sizes, dtype):
    """Batch of 1, a last partial batch, one output, one unit per layer."""
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, sizes[0]))
    Y = rng.uniform(size=(n, sizes[-1]))
    m = fastmlp.MLP(sizes, dtype=dtype, random_state=0)
    m.fit(X, Y, epochs=2, batch_size=batch)
    out = m.predict(X)
    assert out.shape == (n, sizes[-1]) and np.isfinite(out).all()
    last = n - (n - 1) // min(batch, n) * min(batch, n)
    assert [d.shape for d in m.deltas_] == [(last, s) for s in sizes[1:]]
    assert np.isfinite(m.loss_curve_).all()


@pytest.mark.parametrize("shuffle", [False, True])
def test_sparse_input_trains_like_dense(shuffle):
    import scipy.sparse as sp
    X, Y = _data(n=90)
    X[np.abs(X) < 0.8] = 0
    runs = []
    for data in (X, sp.csr_matrix(X), sp.csc_matrix(X)):
        m = fastmlp.MLP([8, 5, 2], dtype="float64", random_state=0)
        runs.append(m.fit(data, Y, epochs=3, batch_size=16, shuffle=shuffle).predict(data))
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12)
    np.testing.assert_allclose(runs[2], runs[0], rtol=1e-12)


def test_predict_after_batch_size_one_uses_a_bigger_inference_workspace():
    X, Y = _data(n=300)
    m = fastmlp.MLP([8, 5, 2], dtype="float64", random_state=0).fit(X, Y, epochs=1,
                                                                    batch_size=1)
    expect = fastmlp.backend.forward(m.coefs_, m.intercepts_, X)
    np.testing.assert_allclose(m.predict(X), expect, rtol=1e-13)
    assert m.workspace_.capacity == 1  # the training workspace is left as it was


@pytest.mark.parametrize("batch_size", [1, 5000])
@pytest.mark.parametrize("sparse", [False, True])
def test_predict_beyond_one_chunk_matches_numpy(batch_size, sparse):
    """More rows than one prediction chunk (4096), after training batches smaller and larger
    than a chunk, dense and CSR: every row against NumPy."""
    import scipy.sparse as sp
    from scipy.special import expit
    from fastmlp._core import PREDICT_CHUNK
    n = 2 * PREDICT_CHUNK + 29
    X, Y = _data(n=n)
    X[np.abs(X) < 0.5] = 0
    m = fastmlp.MLP([8, 6, 2], dtype="float64", random_state=0)
    m.fit(X[:5000], Y[:5000], epochs=0, batch_size=batch_size)  # weights only, no training
    A = expit(X @ m.coefs_[0] + m.intercepts_[0]) @ m.coefs_[1] + m.intercepts_[1]
    np.testing.assert_allclose(m.predict(sp.csr_matrix(X) if sparse else X), A, rtol=1e-12,
                               atol=1e-15)


def test_single_output_from_1d_targets():
    X, Y = _data(n=50, n_out=1)
    m = fastmlp.MLP([8, 3, 1], random_state=0).fit(X, Y[:, 0], epochs=2, batch_size=7)
    assert m.predict(X).shape == (50, 1)


def test_results_do_not_depend_on_the_thread_count():
    X, Y = _data(n=5000, n_in=64)
    preds = []
    for n_threads in (1, 2):
        m = fastmlp.MLP([64, 256, 2], dtype="float64", n_threads=n_threads, random_state=0)
        preds.append(m.fit(X, Y, epochs=1, batch_size=1024).predict(X))
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-10)


def test_callback_stops_training_and_partial_fit_continues():
    X, Y = _data()
    m = fastmlp.MLP([8, 4, 2], random_state=0)
    m.fit(X, Y, epochs=10, callback=lambda epoch, loss: epoch == 3)
    assert len(m.loss_curve_) == 3
    w = m.coefs_[0].copy()
    m.partial_fit(X, Y)
    assert len(m.loss_curve_) == 4 and not np.array_equal(w, m.coefs_[0])


def test_caller_arrays_are_not_modified():
    X, Y = _data(n=64)
    X2, Y2 = X.copy(), Y.copy()
    m = fastmlp.MLP([8, 4, 2], dtype="float64", random_state=0)
    m.fit(X, Y, epochs=2, batch_size=16, shuffle=False)  # views of X are used in place
    m.predict(X)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Y, Y2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(layer_sizes=[8]), "at least two positive integers"),
    (dict(layer_sizes=[8, 0, 2]), "at least two positive integers"),
    (dict(layer_sizes=[8, 2.5, 2]), "at least two positive integers"),
    (dict(layer_sizes=[8, True, 2]), "at least two positive integers"),
    (dict(layer_sizes=[[8], 2]), "at least two positive integers"),
    (dict(layer_sizes=None), "'layer_sizes' parameter of MLP must be an array-like"),
    (dict(layer_sizes=8), "'layer_sizes' parameter of MLP must be an array-like"),
    (dict(layer_sizes="84"), "'layer_sizes' parameter of MLP must be an array-like"),
    (dict(activation="swish"), "'activation' parameter of MLP must be a str among"),
    (dict(out_activation=None), "'out_activation' parameter of MLP must be a str among"),
    (dict(loss="hinge"), "'loss' parameter of MLP must be a str among"),
    (dict(loss="log_loss"), "needs out_activation"),
    (dict(dtype="float16"), "dtype must be 'float32' or 'float64'"),
    (dict(alpha=-0.1), "'alpha' parameter of MLP must be a float in the range"),
    (dict(alpha="a"), "'alpha' parameter of MLP must be a float in the range"),
    (dict(random_state="a"), "'random_state' parameter of MLP"),
    (dict(n_threads=0), "'n_threads' parameter of MLP must be an int in the range"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = {"layer_sizes": [8, 4, 2], **kwargs}
    with pytest.raises(ValueError, match=match):
        fastmlp.MLP(**args)


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=-1), "'epochs' parameter of MLP.{method} must be an int in the range"),
    (dict(epochs=2.0), "'epochs' parameter of MLP.{method} must be an int in the range"),
    (dict(batch_size=0), "'batch_size' parameter of MLP.{method} must be an int"),
    (dict(learning_rate=0), "'learning_rate' parameter of MLP.{method} must be a float"),
    (dict(learning_rate=float("nan")), "'learning_rate' parameter of MLP.{method}"),
    (dict(learning_rate="0.1"), "'learning_rate' parameter of MLP.{method}"),
    (dict(optimizer="rmsprop"), "'optimizer' parameter of MLP.{method} must be a str among"),
    (dict(momentum=1.5), "'momentum' parameter of MLP.{method} must be a float in the range"),
    (dict(momentum="a"), "'momentum' parameter of MLP.{method} must be a float in the range"),
    (dict(shuffle="yes"), "'shuffle' parameter of MLP.{method}"),
    (dict(callback=3), "'callback' parameter of MLP.{method}"),
])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_bad_fit_arguments(kwargs, match, method):
    X, Y = _data(n=20)
    m = fastmlp.MLP([8, 4, 2])
    with pytest.raises(ValueError, match=match.format(method=method)):
        getattr(m, method)(X, Y, **kwargs)


def test_numpy_scalars_are_valid_hyper_parameters():
    X, Y = _data(n=40)
    runs = []
    for lr, epochs, batch, momentum in ((0.25, 2, 8, 0.5),
                                        (np.float32(0.25), np.int64(2), np.int32(8),
                                         np.float64(0.5))):
        m = fastmlp.MLP(np.array([8, 4, 2]), dtype="float64", alpha=np.float32(0.0),
                        random_state=np.int64(0), n_threads=np.int64(1))
        runs.append(m.fit(X, Y, epochs=epochs, batch_size=batch, learning_rate=lr,
                          momentum=momentum).predict(X))
    np.testing.assert_array_equal(runs[0], runs[1])
    m = fastmlp.MLP([8, 4, 2], dtype="float64", random_state=0)
    m.fit(X, Y, epochs=1, learning_rate=np.int64(1))
    assert np.isfinite(m.predict(X)).all()


def test_non_native_byte_order():
    X, Y = _data(n=40)
    m = fastmlp.MLP([8, 4, 2], dtype=">f4", random_state=0)
    assert m.dtype == np.float32 and m.dtype.isnative
    out = m.fit(X.astype(">f8"), Y.astype(">f4"), epochs=2, batch_size=8).predict(
        X.astype(">f4"))
    assert out.dtype == np.float32 and out.dtype.isnative
    ref = fastmlp.MLP([8, 4, 2], dtype="float32", random_state=0)
    np.testing.assert_array_equal(out, ref.fit(X, Y, epochs=2, batch_size=8).predict(X))


def test_poisson_targets_must_not_be_negative():
    X, Y = _data(n=20)
    m = fastmlp.MLP([8, 4, 2], out_activation="exp", loss="poisson")
    with pytest.raises(ValueError, match="Y must not contain negative values"):
        m.fit(X, Y - 1)


def test_bad_data():
    X, Y = _data(n=20)
    m = fastmlp.MLP([8, 4, 2])
    with pytest.raises(ValueError, match="NaN"):
        m.fit(np.where(X > 1, np.nan, X), Y)
    with pytest.raises(ValueError, match="features"):
        m.fit(X[:, :5], Y)
    with pytest.raises(NotFittedError, match="call fit"):
        m.predict(X)
    with pytest.raises(NotFittedError, match="call fit"):
        m.coefs_


@pytest.mark.parametrize("fit_kw,more_kw", [
    (dict(optimizer="sgd", momentum=0.9, learning_rate=0.05, batch_size=32), dict(batch_size=32)),
    (dict(optimizer="adam", learning_rate=0.003, batch_size=48, shuffle=False), {}),
])
def test_partial_fit_continues_with_the_settings_the_model_was_trained_with(tmp_path, fit_kw,
                                                                            more_kw):
    """fit(epochs=10) + partial_fit(X, Y, batch_size=32) after an SGD fit with momentum 0.9
    ran with momentum 0.0 and the default learning rate (issue 20 item 4): settings not
    given are those of the last training call, and a saved model keeps them."""
    X, Y = _data(n=300, n_in=5, n_out=1)

    def new():
        return fastmlp.MLP((5, 16, 1), activation="tanh", random_state=0, dtype="float64")

    at_once = new().fit(X, Y, epochs=11, **fit_kw)
    resumed = new().fit(X, Y, epochs=10, **fit_kw).partial_fit(X, Y, **more_kw)
    assert resumed.loss_curve_ == at_once.loss_curve_
    np.testing.assert_array_equal(resumed.predict(X), at_once.predict(X))
    ten = new().fit(X, Y, epochs=10, **fit_kw)
    ten.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz").partial_fit(X, Y)
    assert loaded.loss_curve_ == at_once.loss_curve_
    np.testing.assert_array_equal(loaded.predict(X), at_once.predict(X))
    # a setting given applies from then on; fit starts again from the defaults
    changed = new().fit(X, Y, epochs=1, **fit_kw).partial_fit(X, Y, learning_rate=0.01)
    changed.partial_fit(X, Y)
    assert changed._optimizer.learning_rate == 0.01
    assert changed._optimizer.name == fit_kw["optimizer"]
    fresh = new().fit(X, Y, epochs=1)
    assert (fresh._optimizer.name, fresh._optimizer.learning_rate) == ("sgd", 0.1)
    with pytest.raises(ValueError, match="momentum"):
        new().partial_fit(X, Y, momentum=1.5)


def test_fit_settings_in_a_state_are_checked_and_older_states_keep_the_optimizers():
    X, Y = _data(n=100, n_in=5, n_out=1)
    m = fastmlp.MLP((5, 4, 1), random_state=0).fit(X, Y, epochs=1, optimizer="sgd",
                                                   momentum=0.5, learning_rate=0.02,
                                                   batch_size=20, shuffle=False)
    state = m._get_state()
    assert state["model"]["fit_settings"] == {"batch_size": 20, "learning_rate": 0.02,
                                              "optimizer": "sgd", "momentum": 0.5,
                                              "shuffle": False}
    del state["model"]["fit_settings"]  # written before the settings were saved
    old = fastmlp.MLP._from_state(state)
    assert old._settings == {"batch_size": 20, "learning_rate": 0.02, "optimizer": "sgd",
                             "momentum": 0.5, "shuffle": True}
    for bad in ({"batch_size": 0}, {"learning_rate": 0.0}, {"momentum": 1.0},
                {"optimizer": "rmsprop"}, {"shuffle": 1}, {"extra": 1}):
        state = m._get_state()
        state["model"]["fit_settings"].update(bad)
        with pytest.raises(ValueError, match="fit settings"):
            fastmlp.MLP._from_state(state)


@pytest.mark.parametrize("kw", [dict(epochs=True), dict(batch_size=True),
                                 dict(learning_rate=True), dict(momentum=False)])
def test_booleans_are_not_numbers_for_numeric_settings(kw):
    """scikit-learn's intervals take True for 1; fastmlp's numeric settings do not (as
    Engine(max_rows=True) and n_threads=True are refused)."""
    X, Y = _data(n=20, n_in=3, n_out=1)
    with pytest.raises(ValueError, match=f"'{next(iter(kw))}' parameter of MLP.fit must be "
                                         f".*Got {next(iter(kw.values()))} instead"):
        fastmlp.MLP((3, 2, 1)).fit(X, Y, **kw)
    with pytest.raises(ValueError, match="'alpha' parameter of MLP must be"):
        fastmlp.MLP((3, 2, 1), alpha=True)


def test_the_trainer_takes_what_the_edge_checked(monkeypatch):
    """Issue 19: the front-ends check at the edge (fastmlp._validation); the Trainer below
    them takes the values as they are -- it calls no validator -- and its codes are those
    the edge resolved."""
    from fastmlp import _core, _validation

    def refuse(*args, **kwargs):
        raise AssertionError("the Trainer re-validated its arguments")

    for name in ("resolve", "check_dtype", "check_leaky_relu_slope", "check_dropout",
                 "check_hyperparams", "check_layer_sizes"):
        monkeypatch.setattr(_validation, name, refuse)
        monkeypatch.setattr(_core, name, refuse, raising=False)
    for out, loss, codes in (("softmax", "log_loss", (K.RELU, K.SOFTMAX, K.LOG_LOSS)),
                             ("logistic", "log_loss", (K.RELU, K.LOGISTIC, K.BINARY_LOG_LOSS)),
                             ("identity", "squared_error",
                              (K.RELU, K.IDENTITY, K.SQUARED_ERROR))):
        n_out = 1 if out == "logistic" else 2
        t = _core.Trainer([3, 4, n_out], activation="relu", out_activation=out, loss=loss,
                          dtype=np.float64, batch_size=8, alpha=1e-3, leaky_relu_slope=0.01)
        assert t.codes == codes
        t.init_params(np.random.RandomState(0))
        t.set_dropout(np.array([0.25]), 3)
        X = np.random.RandomState(1).normal(size=(8, 3))
        Y = np.eye(n_out)[np.arange(8) % n_out] if n_out > 1 else (X[:, :1] > 0) * 1.0
        assert np.isfinite(t.loss_and_grads(X, Y))
    t.set_dropout(np.zeros(1))
    assert t.dropout is None  # all-zero rates: off
