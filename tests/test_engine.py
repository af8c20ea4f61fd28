"""The reusable Engine: packing, results against NumPy / finite differences / scikit-learn,
exact combination of shards' raw sums, chunking, no allocation in the steady state, and a
ValueError (never a Numba error) for every bad input."""
import gc
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import erf, expit, softmax

from fastmlp import backend
from fastmlp.backend import Engine

ACT = {"identity": lambda z: z, "logistic": expit, "tanh": np.tanh,
       "relu": lambda z: np.maximum(z, 0), "exp": np.exp,
       "softmax": lambda z: softmax(z, axis=1),
       "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
       "gelu": lambda z: z * 0.5 * (1 + erf(z / np.sqrt(2))),
       "silu": lambda z: z * expit(z)}


def _setup(sizes=(4, 6, 5, 3), out="softmax", loss="log_loss", act="tanh", n=17, seed=0,
           dtype=np.float64, **kw):
    eng = Engine(list(sizes), activation=act, out_activation=out, loss=loss, dtype=dtype,
                 leaky_relu_slope=0.2, **kw)
    rng = np.random.default_rng(seed)
    params = (rng.normal(size=eng.n_params) * 0.5).astype(dtype)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    if out == "softmax":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    elif loss == "poisson":
        Y = rng.poisson(1.5, (n, sizes[-1])).astype(float)
    elif "log_loss" in loss:
        Y = rng.integers(0, 2, (n, sizes[-1])).astype(float)
    else:
        Y = rng.normal(size=(n, sizes[-1]))
    sw = rng.uniform(0.2, 2.0, n).astype(dtype)
    return eng, params, X, Y.astype(dtype), sw


def _naive(eng, params, X):
    coefs, ints = eng.unpack(params)
    acts = [X]
    for l, (W, b) in enumerate(zip(coefs, ints)):
        f = eng.out_activation if l == len(coefs) - 1 else eng.activation
        acts.append(ACT[f](acts[-1] @ W + b))
    return acts


def test_pack_unpack_roundtrip_views_and_sklearn_layout():
    from sklearn.neural_network._multilayer_perceptron import _pack
    eng = Engine([3, 4, 2])
    rng = np.random.default_rng(0)
    coefs = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    ints = [rng.normal(size=4), rng.normal(size=2)]
    flat = eng.pack(coefs, ints)
    assert eng.n_params == 3 * 4 + 4 * 2 + 4 + 2
    np.testing.assert_array_equal(flat, _pack(coefs, ints))
    cs, bs = eng.unpack(flat)
    for a, b in zip(cs + bs, coefs + ints):
        np.testing.assert_array_equal(a, b)
    cs[1][0, 0] = 123.0  # views: writing them writes the flat vector
    assert 123.0 in flat
    out = np.empty(eng.n_params)
    assert eng.pack(coefs, ints, out=out) is out
    with pytest.raises(ValueError, match=r"coefs\[1\] must have shape \(4, 2\)"):
        eng.pack([coefs[0], coefs[1].T], ints)


@pytest.mark.parametrize("act", ["identity", "logistic", "tanh", "relu", "leaky_relu", "gelu",
                                 "silu"])
@pytest.mark.parametrize("out", ["identity", "logistic", "softmax", "exp", "leaky_relu"])
def test_forward_and_hidden_activations_match_numpy(act, out):
    loss = {"softmax": "log_loss", "exp": "poisson"}.get(out, "squared_error")
    eng, params, X, _, _ = _setup(out=out, loss=loss, act=act)
    expect = _naive(eng, params, X)
    res = np.empty((X.shape[0], 3))
    got, hidden = eng.forward(params, X, out=res, hidden=True)
    assert got is res
    np.testing.assert_allclose(got, expect[-1], rtol=1e-12, atol=1e-14)
    assert len(hidden) == 2
    for h, e in zip(hidden, expect[1:-1]):
        np.testing.assert_allclose(h, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("out,loss", [("identity", "squared_error"),
                                      ("logistic", "squared_error"),
                                      ("softmax", "log_loss"), ("logistic", "log_loss"),
                                      ("exp", "poisson")])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("act", ["logistic", "leaky_relu", "gelu", "silu"])
def test_input_gradient_matches_finite_differences(out, loss, weighted, act):
    eng, params, X, Y, sw = _setup(out=out, loss=loss, act=act, n=6)
    sw = sw if weighted else None
    scale = Y.shape[1] if loss == "squared_error" else 1  # gradients of n_outputs * loss
    dX = np.empty_like(X)
    g = np.empty(eng.n_params)
    loss0, _ = eng.loss_and_grads(params, X, Y, sw, alpha=0.3, out=g, X_grad=dX)
    h = 1e-6
    for idx in np.ndindex(X.shape):
        Xp, Xm = X.copy(), X.copy()
        Xp[idx] += h
        Xm[idx] -= h
        fd = scale * (eng.loss_and_grads(params, Xp, Y, sw, 0.3)[0]
                      - eng.loss_and_grads(params, Xm, Y, sw, 0.3)[0]) / (2 * h)
        assert abs(fd - dX[idx]) <= 1e-6 * max(1, abs(fd)), idx


@pytest.mark.parametrize("cls,kw", [("MLPClassifier", {}), ("MLPRegressor", {})])
def test_loss_and_grads_equal_scikit_learn(cls, kw):
    """Parity with scikit-learn's own L-BFGS objective, _loss_grad_lbfgs."""
    import sklearn.neural_network as nn
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, 40) if cls == "MLPClassifier" else rng.normal(size=(40, 2))
    est = getattr(nn, cls)(hidden_layer_sizes=(7,), activation="tanh", alpha=0.01,
                           max_iter=3, solver="lbfgs", random_state=0).fit(X, y)
    Y = est._label_binarizer.transform(y).astype(float) if cls == "MLPClassifier" else y
    sizes = [5, 7, Y.shape[1]]
    out = est.out_activation_
    eng = Engine(sizes, activation="tanh", out_activation=out,
                 loss="log_loss" if cls == "MLPClassifier" else "squared_error")
    params = eng.pack(est.coefs_, est.intercepts_)
    loss, grads = eng.loss_and_grads(params, X, Y, alpha=0.01)
    # scikit-learn's objective, evaluated with its own buffers
    layer_units = [X.shape[1]] + [7] + [Y.shape[1]]
    activations = [X] + [np.empty((40, u)) for u in layer_units[1:]]
    deltas = [np.empty_like(a) for a in activations[1:]]
    cg = [np.empty((a, b)) for a, b in zip(layer_units[:-1], layer_units[1:])]
    ig = [np.empty(b) for b in layer_units[1:]]
    sk_loss, sk_grad = est._loss_grad_lbfgs(params.copy(), X, Y, None, activations, deltas,
                                            cg, ig)
    assert loss == pytest.approx(sk_loss, rel=1e-12)
    np.testing.assert_allclose(grads, sk_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_shards_raw_sums_combine_to_the_whole_batch(sparse, weighted):
    eng, params, X, Y, sw = _setup(n=31)
    sw = sw if weighted else None
    Xin = sp.csr_matrix(X) if sparse else X
    expect_grads = np.empty(eng.n_params)
    expect_dX = np.empty_like(X)
    expect, _ = eng.loss_and_grads(params, Xin, Y, sw, alpha=0.05, out=expect_grads,
                                   X_grad=expect_dX)
    total = np.zeros(eng.n_params)
    part = np.empty(eng.n_params)
    dX = np.empty_like(X)
    loss_sum = weight_sum = 0.0
    for lo, hi in ((0, 5), (5, 6), (6, 20), (20, 31)):
        ls, ws = eng.raw_sums(params, Xin[lo:hi], Y[lo:hi],
                              None if sw is None else sw[lo:hi], out=part, X_grad=dX[lo:hi])
        total += part
        loss_sum += ls
        weight_sum += ws
    assert weight_sum == pytest.approx(31 if sw is None else sw.sum(), rel=1e-14)
    loss = eng.finish(params, total, loss_sum, weight_sum, alpha=0.05)
    assert loss == pytest.approx(expect, rel=1e-13)
    np.testing.assert_allclose(total, expect_grads, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dX / weight_sum, expect_dX, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sparse", [False, True])
def test_max_rows_chunks_give_the_same_results(sparse):
    eng, params, X, Y, sw = _setup(n=23)
    small = Engine(eng.layer_sizes, activation="tanh", out_activation="softmax",
                   loss="log_loss", max_rows=5)
    Xin = sp.csr_matrix(X) if sparse else X
    for e in (eng, small):
        assert e.forward(params, Xin).shape == (23, 3)
    np.testing.assert_allclose(small.forward(params, Xin), eng.forward(params, X), rtol=1e-13)
    a_dX, b_dX = np.empty_like(X), np.empty_like(X)
    a_loss, a = eng.loss_and_grads(params, X, Y, sw, 0.1, X_grad=a_dX)
    b_loss, b = small.loss_and_grads(params, Xin, Y, sw, 0.1, X_grad=b_dX)
    assert b_loss == pytest.approx(a_loss, rel=1e-13)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b_dX, a_dX, rtol=1e-12, atol=1e-15)
    assert small._capacity == 5  # memory bounded by max_rows
    with pytest.raises(ValueError, match="max_rows=5"):
        small.forward(params, X, hidden=True)


def test_buffers_grow_to_the_largest_batch_only():
    eng, params, X, Y, _ = _setup(n=40)
    eng.loss_and_grads(params, X[:10], Y[:10])
    assert eng._capacity == 10
    eng.loss_and_grads(params, X, Y)
    assert eng._capacity == 40
    acts = eng._acts
    eng.loss_and_grads(params, X[:7], Y[:7])
    assert eng._acts is acts and eng._capacity == 40


def test_float32_engine_tracks_float64():
    eng, params, X, Y, sw = _setup()
    e32 = Engine(eng.layer_sizes, activation="tanh", out_activation="softmax",
                 loss="log_loss", dtype="float32")
    l64, g64 = eng.loss_and_grads(params, X, Y, sw)
    l32, g32 = e32.loss_and_grads(params.astype(np.float32), X.astype(np.float32),
                                  Y.astype(np.float32), sw.astype(np.float32))
    assert g32.dtype == np.float32
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", ["loss_and_grads", "raw_sums", "forward",
                                    "loss_and_grads_X_grad"])
def test_steady_state_calls_allocate_nothing(method):
    """Over many calls, traced memory does not grow, and no call allocates anywhere near the
    size of one buffer (X alone is 160 KB, the engine's buffers 300 KB): nothing beyond a few
    small Python objects (threadpoolctl's bookkeeping included)."""
    eng, params, X, Y, sw = _setup(sizes=(20, 64, 32, 5), n=1000)
    grads, out, dX = np.empty(eng.n_params), np.empty((1000, 5)), np.empty_like(X)
    call = {"loss_and_grads": lambda: eng.loss_and_grads(params, X, Y, sw, 1e-3, out=grads),
            "raw_sums": lambda: eng.raw_sums(params, X, Y, sw, out=grads),
            "forward": lambda: eng.forward(params, X, out=out),
            "loss_and_grads_X_grad": lambda: eng.loss_and_grads(params, X, Y, out=grads,
                                                                X_grad=dX)}[method]
    for _ in range(3):
        call()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        worst = 0  # the most one call allocated on top of what was traced before it
        for _ in range(200):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            call()
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
        gc.collect()  # threadpoolctl's bookkeeping leaves reference cycles behind
        current = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # a few KB of interpreter and ctypes caches come and go (threadpoolctl's symbol lookups:
    # measured 10.7 KB after 200 calls, 15 KB after 2000, up to 34 KB late in a long test
    # session); one array per call kept alive would be >= 1.6 MB here
    assert current - base < 64_000, current - base
    assert worst < 8_000, worst


def test_functional_api_reuses_engines():
    eng, params, X, Y, _ = _setup()
    coefs, ints = [c.copy() for c in eng.unpack(params)[0]], [b.copy() for b in
                                                              eng.unpack(params)[1]]
    kw = dict(activation="tanh", out_activation="softmax", loss="log_loss")
    first = backend.loss_and_grads(coefs, ints, X, Y, **kw)
    cached = backend._local.engines[next(reversed(backend._local.engines))]
    second = backend.loss_and_grads(coefs, ints, X, Y, **kw)
    assert backend._local.engines[next(reversed(backend._local.engines))] is cached
    assert first[0] == second[0]
    # results are new arrays, not views of a buffer the next call overwrites
    assert not np.shares_memory(first[1][0], second[1][0])


BAD = [
    (dict(X=np.ones((5, 4), np.float32)), "X has dtype float32, but the engine computes in "
                                          "float64"),
    (dict(X=np.full((5, 4), np.nan)), "X contains NaN or infinity"),
    (dict(X=np.full((5, 4), np.inf)), "X contains NaN or infinity"),
    (dict(X=np.full((5, 4), 1e308)), None),  # the sum overflows, the values are finite
    (dict(X=np.asfortranarray(np.ones((5, 4)))), "C-contiguous"),
    (dict(X=np.ones((5, 3))), "X has 3 columns, expected 4"),
    (dict(X=np.ones((0, 4)), Y=np.ones((0, 3))), "X has no rows"),
    (dict(X=np.ones(4)), "X must be 2-D"),
    (dict(X=[[1.0] * 4] * 5), "X must be a NumPy array"),
    (dict(X=sp.csc_matrix(np.ones((5, 4)))), "CSR"),
    (dict(Y=np.ones((5, 2))), "Y has 2 columns, expected 3"),
    (dict(Y=np.ones((4, 3))), "Y has 4 rows, expected 5"),
    (dict(Y=np.ones((5, 3), np.int64)), "Y has dtype int64"),
    (dict(Y=np.full((5, 3), np.nan)), "Y contains NaN"),
    (dict(sample_weight=-np.ones(5)), "negative"),
    (dict(sample_weight=np.zeros(5)), "weight sum must be positive"),
    (dict(sample_weight=np.ones(4)), "sample_weight has 4 rows, expected 5"),
    (dict(params=np.ones(7)), r"params must have shape \(43,\)"),
    (dict(params=np.full(43, np.nan)), "params contains NaN"),
    (dict(params=np.ones(43, np.float32)), "params has dtype float32"),
    (dict(params=np.ones(86)[::2]), "contiguous"),
    (dict(out=np.ones(43, np.float32)), "out has dtype float32"),
    (dict(out="params"), "out must not overlap params"),
    (dict(alpha=-1.0), "alpha must be a non-negative number"),
    (dict(alpha=np.nan), "alpha must be a non-negative number"),
    (dict(X_grad=np.ones((5, 3))), "X_grad has 3 columns"),
    (dict(X_grad="X"), "X_grad must not overlap X"),
]


@pytest.mark.parametrize("bad,match", BAD)
def test_bad_input_is_a_value_error_never_a_numba_error(bad, match):
    eng = Engine([4, 5, 3], out_activation="softmax", loss="log_loss")
    kw = dict(params=np.full(eng.n_params, 0.1), X=np.ones((5, 4)), Y=np.eye(3)[[0, 1, 2, 0, 1]],
              sample_weight=None, alpha=0.0, out=None, X_grad=None)
    kw.update(bad)
    if isinstance(kw["out"], str):
        kw["out"] = kw["params"]
    if isinstance(kw["X_grad"], str):
        kw["X_grad"] = kw["X"]
    if match is None:
        loss, _ = eng.loss_and_grads(**kw)
        assert np.isfinite(loss)
        return
    with pytest.raises(ValueError, match=match):
        eng.loss_and_grads(**kw)


def test_bad_construction_and_poisson_targets():
    for sizes in ([4], [4, 0, 2], [4.5, 2], "ab", None, [True, 2]):
        with pytest.raises(ValueError, match="layer_sizes"):
            Engine(sizes)
    with pytest.raises(ValueError, match="max_rows"):
        Engine([2, 2], max_rows=0)
    with pytest.raises(ValueError, match="dtype"):
        Engine([2, 2], dtype="int32")
    with pytest.raises(ValueError, match="needs out_activation"):
        Engine([2, 2], loss="poisson")
    eng = Engine([2, 2], out_activation="exp", loss="poisson")
    with pytest.raises(ValueError, match="non-negative"):
        eng.loss_and_grads(np.zeros(eng.n_params), np.ones((3, 2)), -np.ones((3, 2)))
    with pytest.raises(ValueError, match="out must be writeable"):
        ro = np.empty(eng.n_params)
        ro.flags.writeable = False
        eng.loss_and_grads(np.zeros(eng.n_params), np.ones((3, 2)), np.ones((3, 2)), out=ro)


def _overlap_case(case):
    """An engine and the arguments of one call whose output shares memory with an input."""
    eng = Engine([4, 5, 3], out_activation="softmax", loss="log_loss", max_rows=3)
    P, n = eng.n_params, 6
    rng = np.random.default_rng(1)
    buf = rng.normal(size=P + 4 * n + 3 * n + n + 64) * 0.1
    params, X = buf[:P], buf[P:P + 4 * n].reshape(n, 4)
    Y = np.eye(3)[np.arange(n) % 3]
    kw = dict(params=params, X=X, Y=Y, sample_weight=None, out=None, X_grad=None)
    call = "loss_and_grads"
    if case == "out~X":  # the gradient vector starts inside X
        kw["out"] = buf[P + 10:P + 10 + P]
    elif case == "out~sample_weight":
        sw = np.ones(n + P)
        kw.update(sample_weight=sw[:n], out=sw[n - 2:n - 2 + P])
    elif case == "X_grad~params":
        kw["X_grad"] = buf[P - 8:P - 8 + 4 * n].reshape(n, 4)
        kw["X"] = X.copy()
    elif case == "X_grad~out":
        g = np.zeros(P + 4 * n)
        kw.update(out=g[:P], X_grad=g[P - 1:P - 1 + 4 * n].reshape(n, 4))
    elif case == "X_grad~Y":
        Yb = np.zeros(4 * n + 3 * n)
        Yb[:3 * n] = Y.ravel()
        kw.update(Y=Yb[:3 * n].reshape(n, 3), X_grad=Yb[2:2 + 4 * n].reshape(n, 4))
    elif case == "raw_sums out~Y":
        Yb = np.zeros(3 * n + P)
        Yb[:3 * n] = Y.ravel()
        kw.update(Y=Yb[:3 * n].reshape(n, 3), out=Yb[3 * n - 1:3 * n - 1 + P])
        call = "raw_sums"
    elif case in ("forward out~params", "forward out~X"):
        o = buf[P - 5:P - 5 + 3 * n] if case.endswith("params") else buf[P + 3:P + 3 + 3 * n]
        return eng, "forward", dict(params=params, X=X, out=o.reshape(n, 3)), case[12:]
    elif case == "finish grads~params":
        return eng, "finish", dict(params=params, grads=params, loss_sum=1.0,
                                   weight_sum=2.0), "params"
    return eng, call, kw, case.split("~")[1]


OVERLAPS = ["out~X", "out~sample_weight", "X_grad~params", "X_grad~out", "X_grad~Y",
            "raw_sums out~Y", "forward out~params", "forward out~X", "finish grads~params"]


@pytest.mark.parametrize("case", OVERLAPS)
def test_outputs_overlapping_inputs_are_refused_and_nothing_is_written(case):
    """Every output against every input and the other outputs (issue 20 item 1): the call
    would read what it has already overwritten (wrong gradients, parameters destroyed)."""
    eng, call, kw, other = _overlap_case(case)
    arrays = [a for a in kw.values() if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    with pytest.raises(ValueError, match=f"must not overlap {other}"):
        getattr(eng, call)(**kw)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


def test_engine_buffers_are_neither_outputs_nor_inputs():
    """The hidden activations forward returns are views of the buffers the next call
    overwrites: as an output or as X they are refused (same engine)."""
    eng = Engine([3, 3, 3])
    params = np.full(eng.n_params, 0.1)
    X = np.ones((4, 3))
    _, (h,) = eng.forward(params, X, hidden=True)
    with pytest.raises(ValueError, match="engine's buffers"):
        eng.forward(params, X, out=h)
    with pytest.raises(ValueError, match="engine's buffers"):
        eng.forward(params, h)
    assert eng.forward(params, h.copy()).shape == (4, 3)


def test_pack_out_overlapping_the_arrays_it_reads_is_refused():
    eng = Engine([3, 4, 2])
    p = np.arange(eng.n_params, dtype=float)
    coefs, ints = eng.unpack(p)
    assert eng.pack(coefs, ints, out=p) is p  # each array in its own slot: a no-op
    np.testing.assert_array_equal(p, np.arange(eng.n_params))
    shifted = np.zeros(eng.n_params + 1)
    with pytest.raises(ValueError, match=r"out must not overlap coefs\[1\]"):
        eng.pack([np.zeros((3, 4)), shifted[5:13].reshape(4, 2)], [np.zeros(4), np.zeros(2)],
                 out=shifted[:eng.n_params])


def test_a_second_thread_calling_a_busy_engine_gets_a_clear_error(monkeypatch):
    """One engine's buffers serve one call at a time (issue 20 item 2): while one thread is
    inside a call, another thread's call raises instead of silently mixing rows."""
    import threading

    import fastmlp._engine as engine_module
    eng, params, X, Y, sw = _setup()
    inside, release = threading.Event(), threading.Event()
    real = engine_module.K.forward_backward

    def slow_forward_backward(*args):
        inside.set()
        release.wait(30)
        return real(*args)

    monkeypatch.setattr(engine_module.K, "forward_backward", slow_forward_backward)
    results = []
    t = threading.Thread(target=lambda: results.append(eng.loss_and_grads(params, X, Y)))
    t.start()
    try:
        assert inside.wait(30)
        for call in (lambda: eng.forward(params, X), lambda: eng.loss_and_grads(params, X, Y),
                     lambda: eng.raw_sums(params, X, Y)):
            with pytest.raises(RuntimeError, match="already running a call in another "
                                                   "thread.*one Engine per thread"):
                call()
    finally:
        release.set()
        t.join(30)
    monkeypatch.undo()
    assert len(results) == 1
    # the lock is released after a call, also after one that raised
    np.testing.assert_array_equal(eng.loss_and_grads(params, X, Y)[1], results[0][1])
    with pytest.raises(ValueError):
        eng.forward(params, X[:, :2])
    assert eng.forward(params, X).shape == (X.shape[0], 3)
    import copy
    import pickle
    for clone in (copy.deepcopy(eng), pickle.loads(pickle.dumps(eng))):
        np.testing.assert_array_equal(clone.loss_and_grads(params, X, Y)[1], results[0][1])


def test_buffers_beyond_memory_and_boolean_max_rows_are_refused(monkeypatch):
    """Engine([4, 100, 3], max_rows=3 * 10**7) was killed by the OOM killer (issue 20
    item 9): the buffers are checked against the available memory first, as the CLI and
    the loader check theirs; max_rows=True is not an int."""
    import fastmlp._state as state
    with pytest.raises(ValueError, match="'max_rows' parameter of Engine must be an int"):
        Engine([4, 100, 3], max_rows=True)
    with pytest.raises(ValueError, match="'n_threads'"):
        Engine([4, 100, 3], n_threads=True)
    monkeypatch.setattr(state, "available_memory", lambda: 10 ** 6)
    with pytest.raises(MemoryError, match=r"Engine 4-100-3 with max_rows=30000000 .*needs "
                                          r"[0-9.]+ GB, more than the 976.6 KB"):
        Engine([4, 100, 3], max_rows=3 * 10 ** 7)
    eng = Engine([4, 100, 3])  # growing buffers: checked when a batch makes them grow
    with pytest.raises(MemoryError, match="on a batch of 2000 rows .*pass max_rows"):
        eng.forward(np.zeros(eng.n_params), np.zeros((2000, 4)))
    assert Engine([4, 100, 3], max_rows=100).max_rows == 100
