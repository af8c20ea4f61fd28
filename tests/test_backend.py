"""Rungs 2-3: the functional backend against NumPy, finite differences, and a network worked
by hand; plus its input validation."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from fastmlp import backend

ACT = {"identity": lambda z: z, "logistic": expit, "tanh": np.tanh,
       "relu": lambda z: np.maximum(z, 0), "exp": np.exp,
       "softmax": lambda z: np.exp(z - z.max(1, keepdims=True))
       / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)}


def _net(sizes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    coefs = [rng.normal(size=(a, b)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    ints = [rng.normal(size=b).astype(dtype) for b in sizes[1:]]
    return coefs, ints


def _naive_forward(coefs, ints, X, act, out):
    A = X
    for l, (W, b) in enumerate(zip(coefs, ints)):
        A = ACT[out if l == len(coefs) - 1 else act](A @ W + b)
    return A


@pytest.mark.parametrize("act", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("out", ["identity", "logistic", "softmax", "exp"])
def test_forward_matches_numpy(act, out):
    coefs, ints = _net([6, 5, 4, 3])
    X = np.random.default_rng(1).normal(size=(11, 6))
    np.testing.assert_allclose(backend.forward(coefs, ints, X, act, out),
                               _naive_forward(coefs, ints, X, act, out), rtol=1e-12)


def test_forward_sparse_equals_dense_and_float32_tracks_float64():
    coefs, ints = _net([6, 5, 2])
    X = sp.random(30, 6, density=0.4, format="csr", random_state=0)
    dense = backend.forward(coefs, ints, X.toarray())
    np.testing.assert_allclose(backend.forward(coefs, ints, X), dense, rtol=1e-13)
    np.testing.assert_allclose(backend.forward(coefs, ints, X.tocsc()), dense, rtol=1e-13)
    c32 = [c.astype(np.float32) for c in coefs]
    i32 = [b.astype(np.float32) for b in ints]
    out32 = backend.forward(c32, i32, X.toarray())
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, dense, rtol=1e-5, atol=1e-6)


PAIRS = [("identity", "squared_error"), ("logistic", "squared_error"),
         ("tanh", "squared_error"), ("logistic", "log_loss"), ("softmax", "log_loss"),
         ("logistic", "binary_log_loss"), ("exp", "poisson")]


def _targets(rng, out, loss, n, k):
    if out == "softmax":
        return np.eye(k)[rng.integers(0, k, n)]
    if "log_loss" in loss:
        return rng.integers(0, 2, (n, k)).astype(float)
    if loss == "poisson":
        return rng.poisson(1.5, (n, k)).astype(float)
    return rng.normal(size=(n, k))


@pytest.mark.parametrize("act", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("out,loss", PAIRS)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_finite_differences(act, out, loss, weighted):
    sizes = [4, 5, 3, 2]
    coefs, ints = _net(sizes, seed=2)
    coefs = [c * 0.7 for c in coefs]
    rng = np.random.default_rng(3)
    X = rng.normal(size=(8, 4))
    Y = _targets(rng, out, loss, 8, 2)
    sw = rng.uniform(0.2, 2, 8) if weighted else None
    alpha = 0.3
    kw = dict(activation=act, out_activation=out, loss=loss, alpha=alpha, sample_weight=sw)
    # squared error's gradient is that of n_outputs * loss (scikit-learn #8349); the L2 term
    # is not multiplied.  Differentiate the quantity the gradients belong to:
    n_out = sizes[-1] if loss == "squared_error" else 1
    n = 8 if sw is None else sw.sum()

    def objective(cs, bs):
        value = backend.loss_and_grads(cs, bs, X, Y, **kw)[0]
        l2 = 0.5 * alpha * sum((c ** 2).sum() for c in cs) / n
        return n_out * (value - l2) + l2

    _, gc, gi = backend.loss_and_grads(coefs, ints, X, Y, **kw)
    h = 1e-6
    for params, grads in ((coefs, gc), (ints, gi)):
        for l, p in enumerate(params):
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + h
                up = objective(coefs, ints)
                p[idx] = old - h
                down = objective(coefs, ints)
                p[idx] = old
                fd = (up - down) / (2 * h)
                assert abs(fd - grads[l][idx]) <= 1e-6 * max(1, abs(fd)), (l, idx)


def test_scalar_network_worked_by_hand():
    """y = f3(w3 f2(w2 f1(w1 x + b1) + b2) + b3) with sigmoid everywhere and the L2 loss
    0.5 (y - t)^2, every derivative written out by the chain rule."""
    s = expit
    x, t = 0.5, 0.8
    w1, w2, w3, b1, b2, b3 = 0.3, -0.7, 1.1, 0.1, -0.2, 0.05
    a1 = s(w1 * x + b1)
    a2 = s(w2 * a1 + b2)
    y = s(w3 * a2 + b3)
    d3 = (y - t) * y * (1 - y)          # dL/dz3
    d2 = d3 * w3 * a2 * (1 - a2)        # dL/dz2
    d1 = d2 * w2 * a1 * (1 - a1)        # dL/dz1
    expect = {"w3": d3 * a2, "b3": d3, "w2": d2 * a1, "b2": d2, "w1": d1 * x, "b1": d1}
    coefs = [np.array([[w1]]), np.array([[w2]]), np.array([[w3]])]
    ints = [np.array([b1]), np.array([b2]), np.array([b3])]
    loss, gc, gi = backend.loss_and_grads(coefs, ints, [[x]], [[t]], activation="logistic",
                                          out_activation="logistic", loss="squared_error")
    assert loss == pytest.approx(0.5 * (y - t) ** 2, rel=1e-14)
    got = {"w1": gc[0][0, 0], "w2": gc[1][0, 0], "w3": gc[2][0, 0],
           "b1": gi[0][0], "b2": gi[1][0], "b3": gi[2][0]}
    for name, value in expect.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name


def test_inputs_are_never_modified():
    coefs, ints = _net([3, 4, 2])
    X = np.random.default_rng(0).normal(size=(5, 3))
    Y = np.random.default_rng(1).normal(size=(5, 2))
    sw = np.ones(5)
    before = [a.copy() for a in (*coefs, *ints, X, Y, sw)]
    backend.forward(coefs, ints, X)
    backend.loss_and_grads(coefs, ints, X, Y, alpha=0.1, sample_weight=sw)
    for a, b in zip((*coefs, *ints, X, Y, sw), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad,match", [
    (dict(X=np.ones((5, 4))), "X has 4 features, but the network expects 3"),
    (dict(X=np.full((5, 3), np.nan)), "NaN"),
    (dict(X=np.full((5, 3), np.inf)), "infinity"),
    (dict(X=np.array([["a", "b", "c"]] * 5)), "could not convert|numeric"),
    (dict(X=np.ones((0, 3))), "0 sample"),
    (dict(Y=np.ones((4, 2))), "X has 5 samples but Y has 4"),
    (dict(Y=np.ones((5, 3))), "Y has 3 columns, but the network has 2 outputs"),
    (dict(activation="swish"), "'activation' parameter of loss_and_grads must be a str among"),
    (dict(loss="hinge"), "'loss' parameter of loss_and_grads must be a str among"),
    (dict(out_activation="identity", loss="log_loss"), "needs out_activation"),
    (dict(sample_weight=-np.ones(5)), "negative"),
    (dict(sample_weight=np.ones(3)), "sample_weight must have shape"),
    # a weighted mean over weights summing to zero is 0/0
    (dict(sample_weight=np.zeros(5)), "sample_weight must contain at least one positive"),
    (dict(sample_weight=0), "sample_weight must contain at least one positive"),
    (dict(sample_weight=0.0), "sample_weight must contain at least one positive"),
    (dict(sample_weight=-1), "sample_weight must not contain negative values"),
    (dict(sample_weight=float("nan")), "sample_weight contains NaN"),
    (dict(sample_weight=float("inf")), "sample_weight contains infinity"),
    (dict(Y=-np.ones((5, 2)), out_activation="exp", loss="poisson"),
     "Y must not contain negative values with loss='poisson'"),
    (dict(alpha=-1.0), "'alpha' parameter of loss_and_grads"),
    (dict(alpha=float("nan")), "'alpha' parameter of loss_and_grads"),
    (dict(n_threads=0), "'n_threads' parameter of loss_and_grads"),
])
def test_bad_input_gets_a_clear_error(bad, match):
    coefs, ints = _net([3, 4, 2])
    kw = dict(X=np.ones((5, 3)), Y=np.ones((5, 2)), activation="logistic",
              out_activation="identity", loss="squared_error")
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        backend.loss_and_grads(coefs, ints, kw.pop("X"), kw.pop("Y"), **kw)


@pytest.mark.parametrize("coefs,ints,match", [
    ([np.ones((3, 4)), np.ones((5, 2))], [np.ones(4), np.ones(2)], "coefs\\[1\\] has 5 rows"),
    ([np.ones((3, 4))], [np.ones(3)], "intercepts\\[0\\] must have shape"),
    ([np.ones((3, 4), np.float32)], [np.ones(4)], "share one dtype"),
    ([np.ones((3, 4), np.int64)], [np.ones(4, np.int64)], "float32 or float64"),
    ([np.full((3, 4), np.nan)], [np.ones(4)], "NaN or infinity"),
    ([], [], "non-empty"),
])
def test_bad_parameters_get_a_clear_error(coefs, ints, match):
    with pytest.raises(ValueError, match=match):
        backend.forward(coefs, ints, np.ones((2, 3)))


def test_bad_forward_options_get_a_clear_error():
    coefs, ints = _net([3, 4, 2])
    with pytest.raises(ValueError, match="'out_activation' parameter of forward"):
        backend.forward(coefs, ints, np.ones((2, 3)), out_activation="swish")
    with pytest.raises(ValueError, match="'n_threads' parameter of forward"):
        backend.forward(coefs, ints, np.ones((2, 3)), n_threads="two")


def _csr_with_duplicates():
    """A (4, 3) CSR matrix with duplicate and unsorted column indices in its rows, and the
    dense matrix SciPy says it is (duplicates summed)."""
    data = np.array([1.0, 2.0, -0.5, 3.0, 0.25, 4.0, 1.5, 1.5])
    indices = np.array([2, 0, 2, 1, 1, 0, 2, 2])
    indptr = np.array([0, 3, 5, 5, 8])
    X = sp.csr_matrix((data, indices, indptr), shape=(4, 3))
    dense = np.array([[2.0, 0, 0.5], [0, 3.25, 0], [0, 0, 0], [4.0, 0, 3.0]])
    np.testing.assert_array_equal(X.toarray(), dense)  # SciPy's meaning
    assert not X.has_canonical_format
    return X, dense


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_duplicates_are_summed_and_the_matrix_is_left_alone(fmt):
    X, dense = _csr_with_duplicates()
    X = X if fmt == "csr" else sp.csc_matrix((X.data, X.indices, X.indptr), shape=(3, 4))
    if fmt == "csc":  # the same entries read as columns: the transpose
        dense = dense.T
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    n = dense.shape[1]
    coefs, ints = _net([n, 4, 2])
    np.testing.assert_allclose(backend.forward(coefs, ints, X),
                               _naive_forward(coefs, ints, dense, "logistic", "identity"),
                               rtol=1e-12)
    Y = np.random.default_rng(2).normal(size=(dense.shape[0], 2))
    got = backend.loss_and_grads(coefs, ints, X, Y, alpha=0.1)
    expect = backend.loss_and_grads(coefs, ints, dense, Y, alpha=0.1)
    assert got[0] == pytest.approx(expect[0], rel=1e-12)
    for a, b in zip(got[1] + got[2], expect[1] + expect[2]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip((X.data, X.indices, X.indptr), before):
        np.testing.assert_array_equal(a, b)


def test_non_native_byte_order_is_converted():
    coefs, ints = _net([3, 4, 2])
    X = np.random.default_rng(1).normal(size=(6, 3))
    Y = np.random.default_rng(2).normal(size=(6, 2))
    swapped = [a.astype(a.dtype.newbyteorder(">")) for a in coefs + ints + [X, Y]]
    bc, bi, bX, bY = swapped[:2], swapped[2:4], swapped[4], swapped[5]
    out = backend.forward(bc, bi, bX)
    assert out.dtype == np.float64 and out.dtype.isnative
    np.testing.assert_array_equal(out, backend.forward(coefs, ints, X))
    got = backend.loss_and_grads(bc, bi, bX, bY, sample_weight=np.ones(6, ">f8"))
    expect = backend.loss_and_grads(coefs, ints, X, Y, sample_weight=np.ones(6))
    assert got[0] == expect[0]
    for a, b in zip(got[1] + got[2], expect[1] + expect[2]):
        np.testing.assert_array_equal(a, b)
    # big-endian float32 parameters mean a float32 network
    out32 = backend.forward([c.astype(">f4") for c in coefs], [b.astype(">f4") for b in ints],
                            X)
    assert out32.dtype == np.float32


def test_scalar_sample_weight_weighs_every_sample_alike():
    coefs, ints = _net([3, 4, 2])
    X = np.random.default_rng(1).normal(size=(7, 3))
    Y = np.random.default_rng(2).normal(size=(7, 2))
    for c in (3, 2.5, np.float32(0.5)):
        got = backend.loss_and_grads(coefs, ints, X, Y, alpha=0.2, sample_weight=c)
        expect = backend.loss_and_grads(coefs, ints, X, Y, alpha=0.2,
                                        sample_weight=np.full(7, float(c)))
        assert got[0] == pytest.approx(expect[0], rel=1e-14)
        for a, b in zip(got[1] + got[2], expect[1] + expect[2]):
            np.testing.assert_allclose(a, b, rtol=1e-14)
    # without the L2 term (whose n is the weight sum), the same as no weights at all
    got = backend.loss_and_grads(coefs, ints, X, Y, sample_weight=2.5)
    expect = backend.loss_and_grads(coefs, ints, X, Y)
    assert got[0] == pytest.approx(expect[0], rel=1e-13)
    for a, b in zip(got[1] + got[2], expect[1] + expect[2]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
def test_forward_beyond_one_prediction_chunk(dtype, sparse):
    """More rows than one prediction chunk (4096): every chunk, the last partial one
    included, against NumPy."""
    from fastmlp._core import PREDICT_CHUNK
    n = 2 * PREDICT_CHUNK + 37
    coefs, ints = _net([5, 6, 3], dtype=dtype)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 5)) * (rng.uniform(size=(n, 5)) < 0.6)
    expect = _naive_forward([c.astype(np.float64) for c in coefs],
                            [b.astype(np.float64) for b in ints], X, "tanh", "softmax")
    got = backend.forward(coefs, ints, sp.csr_matrix(X) if sparse else X.astype(dtype),
                          activation="tanh", out_activation="softmax")
    assert got.shape == (n, 3) and got.dtype == dtype
    np.testing.assert_allclose(got, expect, rtol=1e-12 if dtype == np.float64 else 2e-5,
                               atol=0 if dtype == np.float64 else 1e-6)


def test_engine_refuses_sparse_input_with_duplicates():
    """The Engine does not copy its inputs: a non-canonical CSR matrix is refused, with the
    fix in the message (the functional API canonicalises a copy instead)."""
    X, dense = _csr_with_duplicates()
    X = X.sorted_indices()  # sorted, but still with duplicates
    assert X.has_sorted_indices and not X.has_canonical_format
    eng = backend.Engine([3, 4, 2], dtype="float64")
    coefs, ints = _net([3, 4, 2])
    params = eng.pack(coefs, ints)
    with pytest.raises(ValueError, match="no duplicate entries"):
        eng.forward(params, X)
    X.sum_duplicates()
    np.testing.assert_allclose(eng.forward(params, X),
                               _naive_forward(coefs, ints, dense, "logistic", "identity"),
                               rtol=1e-12)


def test_every_entry_point_names_bad_options_in_one_style():
    """Unknown option names get scikit-learn's parameter-constraint message, naming the
    public callable, wherever they enter."""
    import fastmlp
    from fastmlp.optimizers import make_optimizer
    coefs, ints = _net([3, 2])
    cases = [(lambda: backend.Engine([3, 2], activation="swish"), "activation", "Engine"),
             (lambda: backend.Engine([3, 2], loss="hinge"), "loss", "Engine"),
             (lambda: fastmlp.MLP([3, 2], out_activation="swish"), "out_activation", "MLP"),
             (lambda: backend.forward(coefs, ints, np.ones((1, 3)), activation="swish"),
              "activation", "forward"),
             (lambda: make_optimizer("rmsprop"), "name", "make_optimizer")]
    for call, name, caller in cases:
        with pytest.raises(ValueError, match=f"The '{name}' parameter of {caller} must be a "
                                             f"str among .*Got '(swish|hinge|rmsprop)'"):
            call()


@pytest.mark.parametrize("case", ["X", "alpha", "sample_weight", "exp", "float32"])
def test_overflow_is_an_error_not_a_silent_nan(case):
    """Finite inputs whose result does not fit the dtype: a ValueError saying so."""
    coefs, ints = _net([3, 4, 2])
    X, Y = np.ones((5, 3)), np.ones((5, 2))
    kw = {}
    if case == "X":
        X = np.full((5, 3), 1e308)
        coefs[0] = np.abs(coefs[0]) + 1  # X @ W[0] > 3e308
        kw = dict(activation="relu")
    elif case == "alpha":
        kw = dict(alpha=1e308)
    elif case == "sample_weight":
        kw = dict(sample_weight=np.full(5, 1e308))
    elif case == "exp":
        coefs = [np.abs(c) + 0.1 for c in coefs]  # every pre-activation > 1e4
        X, kw = np.full((5, 3), 1e5), dict(activation="identity", out_activation="exp",
                                           loss="poisson")
    else:
        coefs = [np.abs(coefs[0]).astype(np.float32) + 1, coefs[1].astype(np.float32)]
        ints = [b.astype(np.float32) for b in ints]
        X, kw = np.full((5, 3), 3e38), dict(activation="identity")  # finite in float32
    with pytest.raises(ValueError, match="overflowed|sums to infinity"):
        backend.loss_and_grads(coefs, ints, X, Y, **kw)
    if case in ("X", "float32"):  # (exp saturates at the largest float, as a safe exp does)
        fkw = {k: v for k, v in kw.items() if k != "loss"}
        with pytest.raises(ValueError, match="the output overflowed"):
            backend.forward(coefs, ints, X, **fkw)


def test_a_boolean_sample_weight_is_refused():
    coefs, ints = _net([3, 2])
    with pytest.raises(ValueError, match="sample_weight must be a number or an array"):
        backend.loss_and_grads(coefs, ints, np.ones((5, 3)), np.ones((5, 2)),
                               sample_weight=True)
