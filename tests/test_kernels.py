"""Rung 1 of the ladder: every kernel against a naive NumPy version."""
import numpy as np
import pytest
import scipy.sparse as sp
from numba import njit, prange
from scipy.special import expit, xlogy

from fastmlp import kernels as K


@njit(parallel=True)
def _apply(out, x, which):
    for i in prange(x.size):
        if which == 0:
            out[i] = K.vexp(x[i])
        elif which == 1:
            out[i] = K.vsigmoid(x[i])
        else:
            out[i] = K.vtanh(x[i])


REFS = {0: np.exp, 1: expit, 2: np.tanh}
SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 1e-8, 0.625, -0.625, 20.0, -20.0, 88.0, -87.0, 700.0,
           -700.0, 1000.0, -1000.0, np.inf, -np.inf]


def _grid(dtype):
    return np.concatenate([np.linspace(-100, 100, 100001), np.linspace(-1, 1, 20001),
                           np.geomspace(1e-12, 50, 5000), -np.geomspace(1e-12, 50, 5000),
                           SPECIAL]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["exp", "sigmoid", "tanh"])
def test_elementary_functions_within_a_few_ulp(dtype, which):
    x = _grid(dtype)
    out = np.empty_like(x)
    _apply(out, x, which)
    with np.errstate(over="ignore"):
        ref = REFS[which](x.astype(np.float64))
    finfo = np.finfo(dtype)
    ok = np.abs(ref) >= finfo.tiny
    if which == 0:  # exp is clamped to its documented range, where 2**k stays normal
        lo, hi = K.expfn.EXP32_RANGE if dtype == np.float32 else K.expfn.EXP64_RANGE
        ok &= (x >= lo) & (x <= hi)
        assert (out[x > hi] == out[x >= hi].min()).all()
    ulps = np.abs(out[ok] - ref[ok]) / np.spacing(np.abs(ref[ok]).astype(dtype)).astype(float)
    assert ulps.max() <= 6, (x[ok][ulps.argmax()], ulps.max())
    assert np.isfinite(out).all()  # saturation: no inf or NaN anywhere on the grid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturation_and_nan(dtype):
    x = np.array([1000, -1000, np.inf, -np.inf, np.nan], dtype)
    for which, expect in [(1, [1, 0, 1, 0]), (2, [1, -1, 1, -1])]:
        out = np.empty_like(x)
        _apply(out, x, which)
        np.testing.assert_allclose(out[:4], expect, atol=np.finfo(dtype).tiny * 4)
        assert np.isnan(out[4])
    out = np.empty_like(x)
    _apply(out, x, 0)
    assert out[1] < np.finfo(dtype).tiny * 2 and out[3] == out[1] and np.isnan(out[4])
    assert np.isfinite(out[:4]).all()  # clamped, never overflowing to inf


@njit
def _apply_log(out, x):
    for i in range(x.size):
        out[i] = K.vlog(x[i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_within_an_ulp_over_the_whole_range(dtype):
    """vlog (the log loss's log) against NumPy's: every binade from the smallest subnormal to
    the largest float, the region around 1 where log cancels, and the specials."""
    finfo = np.finfo(dtype)
    rng = np.random.default_rng(3)
    lo = np.log(float(finfo.smallest_subnormal))
    x = np.concatenate([np.exp(rng.uniform(lo, np.log(float(finfo.max)), 200000)),
                        rng.uniform(0.5, 2, 100000), 1 + rng.uniform(-1e-4, 1e-4, 20000),
                        [finfo.smallest_subnormal, finfo.tiny, finfo.eps, 1 - finfo.epsneg,
                         1.0, 2.0, 0.5, finfo.max]]).astype(dtype)
    x = x[(x > 0) & np.isfinite(x)]
    out = np.empty_like(x)
    _apply_log(out, x)
    ref = np.log(x.astype(np.longdouble))
    ulps = np.abs(out - ref) / np.spacing(np.abs(ref).astype(dtype)).astype(np.longdouble)
    assert float(ulps.max()) <= 1.0, (x[ulps.argmax()], float(ulps.max()))
    specials = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan], dtype)
    out = np.empty_like(specials)
    _apply_log(out, specials)
    assert out[0] == out[1] == -np.inf and out[4] == np.inf
    assert np.isnan(out[[2, 3, 5]]).all()


def _naive_act(z, act):
    if act == K.LOGISTIC:
        return expit(z)
    if act == K.TANH:
        return np.tanh(z)
    if act == K.RELU:
        return np.maximum(z, 0)
    if act == K.EXP:
        return np.exp(z)
    if act == K.SOFTMAX:
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return z


def _naive_dact(a, act):
    return {K.LOGISTIC: a * (1 - a), K.TANH: 1 - a * a, K.RELU: (a > 0).astype(a.dtype),
            K.EXP: a, K.IDENTITY: np.ones_like(a)}[act]


ALL_ACTS = [K.IDENTITY, K.LOGISTIC, K.TANH, K.RELU, K.SOFTMAX, K.EXP]


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("act", ALL_ACTS)
@pytest.mark.parametrize("shape", [(3, 5), (1100, 257)])  # a few rows, and many
def test_bias_activate_matches_numpy(dtype, rtol, act, shape):
    rng = np.random.default_rng(act)
    Z = rng.normal(size=shape).astype(dtype) * 3
    b = rng.normal(size=shape[1]).astype(dtype)
    expect = _naive_act(Z.astype(np.float64) + b, act)
    K.bias_activate(Z, b, act)
    np.testing.assert_allclose(Z, expect, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [K.IDENTITY, K.LOGISTIC, K.TANH, K.RELU, K.EXP])
@pytest.mark.parametrize("shape", [(4, 3), (1100, 257)])  # a few rows, and many
def test_dactivation_colsum_matches_numpy(dtype, act, shape):
    rng = np.random.default_rng(1)
    A = _naive_act(rng.normal(size=shape), act).astype(dtype)
    D = rng.normal(size=shape).astype(dtype)
    expect = D.astype(np.float64) * _naive_dact(A, act)  # f' rounded as the kernel does
    db = np.full(shape[1], np.nan, dtype)
    K.dactivation_colsum(D, A, act, db)
    np.testing.assert_allclose(D, expect, rtol=1e-6)
    np.testing.assert_allclose(db, expect.sum(0), rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


def _naive_loss(A, Y, sw, loss):
    eps = np.finfo(A.dtype).eps
    w = np.ones(len(A)) if sw.size == 0 else sw
    if loss == K.SQUARED_ERROR:
        per = 0.5 * ((A - Y) ** 2).mean(1)
    elif loss == K.POISSON:
        per = (xlogy(Y, Y / A) - Y + A).sum(1)
    else:
        p = np.clip(A, eps, 1 - eps)
        per = -xlogy(Y, p).sum(1)
        if loss == K.BINARY_LOG_LOSS:
            per -= xlogy(1 - Y, 1 - p).sum(1)
    return (w * per).sum(), (A - Y) * w[:, None]


@pytest.mark.parametrize("loss", [K.SQUARED_ERROR, K.LOG_LOSS, K.BINARY_LOG_LOSS, K.POISSON])
@pytest.mark.parametrize("weighted", [False, True])
def test_output_delta_loss_matches_numpy(loss, weighted):
    rng = np.random.default_rng(2)
    A = rng.uniform(0.01, 0.99, (9, 4))
    Y = rng.integers(0, 2, (9, 4)).astype(float) if loss != K.SQUARED_ERROR else \
        rng.normal(size=(9, 4))
    sw = rng.uniform(0.1, 3, 9) if weighted else np.zeros(0)
    D = np.empty_like(A)
    total = K.output_delta_loss(D, A, Y, sw, loss)
    expect_total, expect_D = _naive_loss(A, Y, sw, loss)
    np.testing.assert_allclose(total, expect_total, rtol=1e-12)
    np.testing.assert_allclose(D, expect_D, rtol=1e-12)


def _fused_grad(g, p, scale, l2, n_coef):
    out = scale * g
    out[:n_coef] += l2 * p[:n_coef]
    return out


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_update_matches_numpy(momentum, nesterov):
    rng = np.random.default_rng(3)
    p, g, v = rng.normal(size=(3, 1000))
    p0, v0 = p.copy(), v.copy()
    K.sgd_update(p, g, v, 0.1, momentum, nesterov, 0.25, 0.01, 600)
    grad = _fused_grad(g, p0, 0.25, 0.01, 600)
    v_new = momentum * v0 - 0.1 * grad
    tol = dict(rtol=1e-14, atol=1e-15)
    if momentum:
        np.testing.assert_allclose(v, v_new, **tol)
    np.testing.assert_allclose(p, p0 + (momentum * v_new - 0.1 * grad if nesterov else v_new),
                               **tol)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_update_float32_matches_numpy(momentum, nesterov):
    """float32 parameters: the update runs in float32 (as scikit-learn's NumPy code does),
    so it matches a float32 NumPy reference to float32 rounding, and the velocity stays
    float32."""
    f = np.float32
    rng = np.random.default_rng(6)
    p, g, v = rng.normal(size=(3, 1000)).astype(f)
    p0, v0 = p.copy(), v.copy()
    K.sgd_update(p, g, v, f(0.1), f(momentum), nesterov, f(0.25), f(0.01), 600)
    grad = f(0.25) * g
    grad[:600] += f(0.01) * p0[:600]
    v_new = f(momentum) * v0 - f(0.1) * grad
    expect = p0 + (f(momentum) * v_new - f(0.1) * grad if nesterov else v_new)
    assert p.dtype == v.dtype == f
    tol = dict(rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(p, expect, **tol)
    np.testing.assert_allclose(v, v_new if momentum else v0, **tol)
    assert not np.array_equal(p, p0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_update_matches_numpy(dtype):
    rng = np.random.default_rng(4)
    p, g, m = rng.normal(size=(3, 1000)).astype(dtype)
    v = rng.uniform(0, 1, 1000).astype(dtype)
    p0, m0, v0 = p.copy(), m.copy(), v.copy()
    K.adam_update(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0.5, 0.02, 700)
    grad = _fused_grad(g.astype(float), p0.astype(float), 0.5, 0.02, 700)
    m1 = 0.9 * m0.astype(float) + 0.1 * grad
    v1 = 0.999 * v0.astype(float) + 0.001 * grad ** 2
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(m, m1, **tol)
    np.testing.assert_allclose(v, v1, **tol)
    np.testing.assert_allclose(p, p0 - 0.01 * m1 / (np.sqrt(v1) + 1e-8), **tol)


def test_gathers_match_numpy_indexing():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 7))
    idx = rng.permutation(50)[:20].astype(np.int64)
    out = np.empty((20, 7))
    K.gather_rows(out, X, idx)
    np.testing.assert_array_equal(out, X[idx])
    S = sp.random(50, 7, density=0.3, format="csr", random_state=0)
    K.gather_csr_rows(out, S.data, S.indices, S.indptr, idx)
    np.testing.assert_array_equal(out, S[idx].toarray())
    v = np.empty(20)
    K.gather_vector(v, X[:, 0].copy(), idx)
    np.testing.assert_array_equal(v, X[idx, 0])
    out2 = np.empty((20, 7))
    K.csr_slice_to_dense(out2, S.data, S.indices, S.indptr, 13)
    np.testing.assert_array_equal(out2, S[13:33].toarray())


@pytest.mark.parametrize("n_rows", [0, 1, K.network.PREFETCH_AHEAD, 20])
@pytest.mark.parametrize("layout", ["C", "F", "readonly"])
def test_gather_rows_prefetching_changes_nothing(n_rows, layout):
    """gather_rows asks for rows PREFETCH_AHEAD ahead: fewer rows than that, rows of any
    layout (an F-ordered source's rows are not contiguous: the hint covers other bytes) and a
    read-only source gather exactly, and the source is left as it was."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(50, 33)).astype(np.float32)
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "readonly":
        X.flags.writeable = False
    before = X.copy()
    idx = rng.integers(0, 50, n_rows).astype(np.int64)
    out = np.full((n_rows, 33), np.nan, np.float32)
    K.gather_rows(out, X, idx)
    np.testing.assert_array_equal(out, before[idx])
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("factory, key", [
    ("forward_kernels", (K.TANH, K.SOFTMAX)),
    ("steps_kernel", (K.TANH, K.SOFTMAX, K.LOG_LOSS, True, K.SGD)),
    ("train_kernels", (K.TANH, K.SOFTMAX, K.LOG_LOSS, True)),
])
def test_threads_asking_for_new_kernels_at_once_get_the_same_ones(factory, key):
    """The specialised kernels are made once per key, even when threads ask for a key nobody
    asked for before at the same moment (each would load or compile its own copy)."""
    import subprocess
    import sys
    code = (
        "import sys, threading\n"
        "from fastmlp import kernels as K\n"
        "sys.setswitchinterval(1e-6)\n"
        "barrier = threading.Barrier(8); got = []\n"
        "def ask():\n"
        f"    barrier.wait(); got.append(id(K.{factory}(*{key!r})))\n"
        "threads = [threading.Thread(target=ask) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(got), len(set(got)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["8", "1"]


# -- the elementwise block leaves vectorise ------------------------------------------------------
# Not a timing: the optimised LLVM IR of a loop over a block must hold vector operations.  An
# element function left as a call (past LLVM's inlining threshold) makes the loop scalar: GELU's
# ran ~9x slower that way, with every value still right.
def _leaf_ir(leaf, code, dtype, n_arrays):
    from numba import types

    from fastmlp.kernels import activations as A

    fn = getattr(A, leaf)
    if leaf == "activate_block":
        kernel = njit(lambda Z, b: fn(Z, b, code, 0.01))
    else:
        kernel = njit(lambda D, X, s: fn(D, X, s, code, 0.01))
    arr2, arr1 = types.Array(dtype, 2, "C"), types.Array(dtype, 1, "C")
    sig = (arr2, arr1) if n_arrays == 2 else (arr2, arr2, arr1)
    kernel.compile(sig)
    return kernel.inspect_llvm(sig)


@pytest.mark.parametrize("leaf,act", [
    (leaf, act) for act in ["LOGISTIC", "TANH", "RELU", "GELU", "SILU", "EXP"]
    for leaf in ["activate_block", "dactivation_block"]])
def test_elementwise_leaves_vectorise(leaf, act):
    import re

    from numba import types

    from fastmlp.kernels import activations

    ir = _leaf_ir(leaf, getattr(activations, act), types.float64,
                  2 if leaf == "activate_block" else 3)
    assert re.search(r"<\d+ x double>", ir), f"{leaf} of {act} is not vectorised"
