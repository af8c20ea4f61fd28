"""fastmlp.MLPClassifier / MLPRegressor against scikit-learn 1.9 itself.

The rung of the test ladder that says "same numbers": every configuration below is fitted by
both libraries with the same random_state, and parameters, loss curves, validation scores,
iteration counts, warnings and predictions are compared (1e-6 relative in float64, 2e-3 in
float32; relative to each array's largest entry so that near-zero entries do not dominate).
Data is small and iterations few, so the whole file runs in seconds.
"""
import pickle
import re
import types
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
import sklearn.neural_network as sknn
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastmlp
import fastmlp._core
import fastmlp.estimators as fe
import fastmlp.optimizers
from fastmlp import MLPClassifier, MLPRegressor
from fastmlp._validation import one_hot_labels

pytestmark = [
    # few iterations on purpose; tests that compare warnings record them explicitly
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

# The estimators reproduce scikit-learn 1.9's algorithm (pyproject pins >=1.9,<1.10): parity
# runs on every 1.9.x.  Outside that series the comparisons are skipped -- and one test fails,
# so that a run never reports green with its parity coverage silently gone.
SKLEARN_SERIES = tuple(int(p) for p in sklearn.__version__.split(".")[:2])
PARITY = SKLEARN_SERIES == (1, 9)


@pytest.fixture(autouse=True)
def _parity_needs_scikit_learn_1_9(request):
    if not PARITY and request.node.originalname != "test_scikit_learn_is_the_pinned_series":
        pytest.skip(f"parity needs scikit-learn 1.9.x, found {sklearn.__version__}")


def test_scikit_learn_is_the_pinned_series():
    assert PARITY, (f"scikit-learn {sklearn.__version__} is outside the pinned 1.9 series: "
                    "every parity test in this file was skipped")


@pytest.fixture
def trainers(monkeypatch):
    """The Trainers the estimators build for fitting, in order (an L-BFGS fit frees its
    trainer when it returns, so tests look here)."""
    made = []
    original = fe._BaseMLP._make_trainer

    def spy(self, *args, **kwargs):
        made.append(original(self, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(fe._BaseMLP, "_make_trainer", spy)
    return made

N, D = 113, 6  # 113 rows: no batch size used below divides it


def make_data(kind, n=N, d=D, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    score = X[:, :3] + 0.5 * rng.randn(n, 3)
    if kind == "binary":
        return X, (score[:, 0] > 0).astype(int)
    if kind == "multiclass":
        return X, score.argmax(1)
    if kind == "strings":
        return X, np.array(["cat", "dog", "emu"])[score.argmax(1)]
    if kind == "multilabel":
        return X, (score > 0).astype(int)
    w = rng.randn(d, 2)
    if kind == "regression":
        return X, X @ w[:, 0] + 0.1 * rng.randn(n)
    if kind == "multioutput":
        return X, X @ w + 0.1 * rng.randn(n, 2)
    if kind == "poisson":
        return X, rng.poisson(np.exp(0.3 * X @ w[:, 0])).astype(float)
    raise ValueError(kind)


def _close(a, b, rtol, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    scale = np.max(np.abs(b)) if b.size else 0.0
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=what)


def fit_both(cls_name, X, y, kw, method="fit", calls=1, **fit_kw):
    """Fit fastmlp's and sklearn's estimator of that name; returns them and their warnings."""
    ours, ref = getattr(fastmlp, cls_name)(**kw), getattr(sknn, cls_name)(**kw)
    caught = []
    for est in (ours, ref):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for _ in range(calls):
                getattr(est, method)(X, y, **fit_kw)
        caught.append(sorted({(type(x.message).__name__, str(x.message)) for x in w}))
    return ours, ref, caught


def assert_same_model(ours, ref, X, rtol=1e-6):
    for name in ("n_iter_", "t_", "n_outputs_", "n_layers_", "out_activation_",
                 "n_features_in_"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert len(ours.coefs_) == len(ref.coefs_)
    for l, (a, b) in enumerate(zip(ours.coefs_ + ours.intercepts_,
                                   ref.coefs_ + ref.intercepts_)):
        assert a.dtype == b.dtype, f"param {l} dtype"
        _close(a, b, rtol, f"param {l}")
    _close(ours.loss_, ref.loss_, rtol, "loss_")
    for name in ("loss_curve_", "validation_scores_", "best_loss_",
                 "best_validation_score_"):
        a, b = getattr(ours, name, None), getattr(ref, name, None)
        assert (a is None) == (b is None), name
        if b is not None:
            _close(a, b, rtol, name)
    if hasattr(ref, "_optimizer") and hasattr(ref._optimizer, "learning_rate") \
            and ref.solver == "sgd":
        _close(ours._optimizer.learning_rate, ref._optimizer.learning_rate, rtol, "lr")
    if hasattr(ref, "classes_"):
        np.testing.assert_array_equal(ours.classes_, ref.classes_)
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
        p, q = ours.predict_proba(X), ref.predict_proba(X)
        assert p.dtype == q.dtype
        _close(p, q, rtol, "predict_proba")
    else:
        p, q = ours.predict(X), ref.predict(X)
        assert p.dtype == q.dtype and p.shape == q.shape
        _close(p, q, rtol, "predict")


# (id, estimator, data kind, params, fit options)
BASE = dict(hidden_layer_sizes=(7,), max_iter=12, random_state=0, batch_size=32)
CONFIGS = [
    ("adam-relu-multiclass", "MLPClassifier", "multiclass", {}, {}),
    ("sgd-nesterov-tanh-binary", "MLPClassifier", "binary",
     dict(solver="sgd", activation="tanh", learning_rate_init=0.05), {}),
    ("sgd-momentum-logistic-invscaling", "MLPClassifier", "multiclass",
     dict(solver="sgd", activation="logistic", nesterovs_momentum=False,
          learning_rate="invscaling", learning_rate_init=0.5, power_t=0.3), {}),
    ("sgd-plain-identity-strings-noshuffle", "MLPClassifier", "strings",
     dict(solver="sgd", activation="identity", momentum=0.0, shuffle=False), {}),
    # tol so large that every epoch counts as no improvement: the rate is divided by 5 again
    # and again (checked through the optimizer's learning_rate)
    ("sgd-adaptive-divides", "MLPClassifier", "multiclass",
     dict(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=2,
          learning_rate_init=0.1), {}),
    ("adam-early-stopping-binary-stratified", "MLPClassifier", "binary",
     dict(early_stopping=True, n_iter_no_change=2, tol=0.05, max_iter=30,
          learning_rate_init=0.01), {}),
    ("sgd-early-stopping-multiclass-unstratified-weighted", "MLPClassifier", "multiclass",
     dict(solver="sgd", early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
          max_iter=40), {"sample_weight": True}),
    ("adam-multilabel-2layers-alpha", "MLPClassifier", "multilabel",
     dict(hidden_layer_sizes=(6, 5), alpha=0.01, activation="tanh"), {}),
    ("adam-training-loss-stops", "MLPClassifier", "multiclass",
     dict(tol=0.5, n_iter_no_change=2, max_iter=30), {}),
    ("adam-batch-clipped", "MLPClassifier", "binary", dict(batch_size=500), {}),
    ("adam-batch1-inf-patience", "MLPClassifier", "binary",
     dict(batch_size=1, max_iter=3, n_iter_no_change=np.inf), {}),
    ("adam-weighted-strings", "MLPClassifier", "strings", {}, {"sample_weight": True}),
    ("adam-multilabel-early-stopping", "MLPClassifier", "multilabel",
     dict(early_stopping=True, n_iter_no_change=1, tol=0.2, max_iter=30), {}),
    ("lbfgs-tanh-multiclass", "MLPClassifier", "multiclass",
     dict(solver="lbfgs", activation="tanh", max_iter=25), {}),
    ("lbfgs-logistic-binary-weighted", "MLPClassifier", "binary",
     dict(solver="lbfgs", activation="logistic", max_iter=25, alpha=0.1),
     {"sample_weight": True}),
    ("lbfgs-maxfun", "MLPClassifier", "multilabel",
     dict(solver="lbfgs", max_iter=50, max_fun=10), {}),
    ("adam-csr", "MLPClassifier", "multiclass", {}, {"sparse": "csr"}),
    ("sgd-csc-early-stopping", "MLPClassifier", "binary",
     dict(solver="sgd", early_stopping=True), {"sparse": "csc"}),
    ("lbfgs-csr", "MLPClassifier", "multiclass", dict(solver="lbfgs", max_iter=15),
     {"sparse": "csr"}),
    ("reg-adam-relu", "MLPRegressor", "regression", {}, {}),
    ("reg-sgd-multioutput-issue8349", "MLPRegressor", "multioutput",
     dict(solver="sgd", learning_rate_init=0.01, activation="tanh"), {}),
    ("reg-adam-poisson", "MLPRegressor", "poisson", dict(loss="poisson"), {}),
    ("reg-sgd-poisson-invscaling", "MLPRegressor", "poisson",
     dict(loss="poisson", solver="sgd", learning_rate="invscaling",
          learning_rate_init=0.01), {}),
    ("reg-lbfgs-multioutput", "MLPRegressor", "multioutput",
     dict(solver="lbfgs", max_iter=30, hidden_layer_sizes=(5, 4)), {}),
    ("reg-lbfgs-poisson-weighted", "MLPRegressor", "poisson",
     dict(loss="poisson", solver="lbfgs", max_iter=20), {"sample_weight": True}),
    ("reg-sgd-early-stopping-weighted", "MLPRegressor", "regression",
     dict(solver="sgd", early_stopping=True, n_iter_no_change=2, tol=0.01, max_iter=40,
          learning_rate_init=0.01), {"sample_weight": True}),
    ("reg-sgd-adaptive-logistic", "MLPRegressor", "regression",
     dict(solver="sgd", learning_rate="adaptive", activation="logistic", tol=1.0,
          n_iter_no_change=1, learning_rate_init=0.01), {}),
    ("reg-adam-csr-multioutput", "MLPRegressor", "multioutput", {}, {"sparse": "csr"}),
    ("reg-sgd-csr-noshuffle-weighted", "MLPRegressor", "regression",
     dict(solver="sgd", shuffle=False, learning_rate_init=0.01),
     {"sparse": "csr", "sample_weight": True}),
    ("reg-lbfgs-csc", "MLPRegressor", "regression", dict(solver="lbfgs", max_iter=15),
     {"sparse": "csc"}),
    ("reg-adam-identity-noshuffle", "MLPRegressor", "regression",
     dict(activation="identity", shuffle=False, alpha=0.0), {}),
]


def _prepare(kind, fit, dtype=np.float64):
    X, y = make_data(kind)
    X = X.astype(dtype)
    fit_kw = {}
    if fit.get("sample_weight"):
        fit_kw["sample_weight"] = np.random.RandomState(1).uniform(0.2, 2.0, len(y))
    if fit.get("sparse"):
        X = X * (np.abs(X) > 0.5)  # mostly zeros
        X = sp.csr_matrix(X) if fit["sparse"] == "csr" else sp.csc_matrix(X)
    return X, y, fit_kw


@pytest.mark.parametrize("cid, cls, kind, params, fit", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_parity_float64(cid, cls, kind, params, fit):
    X, y, fit_kw = _prepare(kind, fit)
    ours, ref, (w_ours, w_ref) = fit_both(cls, X, y, {**BASE, **params}, **fit_kw)
    assert w_ours == w_ref
    assert_same_model(ours, ref, X)
    if ("early-stopping" in cid and cid != "sgd-csc-early-stopping") or "stops" in cid:
        assert ref.n_iter_ < ref.max_iter  # the early stop did trigger
    if "adaptive" in cid:
        assert ref._optimizer.learning_rate < ref.learning_rate_init / 5


FLOAT32_CONFIGS = [c for c in CONFIGS if "lbfgs" not in c[0] and "batch1" not in c[0]]


@pytest.mark.parametrize("cid, cls, kind, params, fit", FLOAT32_CONFIGS,
                         ids=[c[0] for c in FLOAT32_CONFIGS])
def test_parity_float32(cid, cls, kind, params, fit):
    X, y, fit_kw = _prepare(kind, fit, np.float32)
    ours, ref, (w_ours, w_ref) = fit_both(cls, X, y, {**BASE, **params}, **fit_kw)
    assert ours.coefs_[0].dtype == np.float32
    assert ours._trainer.dtype == np.float32  # float32 kernels, end to end
    assert w_ours == w_ref
    assert_same_model(ours, ref, X, rtol=2e-3)


def test_lbfgs_float32_input_gives_float64_weights(trainers):
    X, y = make_data("binary")
    ours, ref, _ = fit_both("MLPClassifier", X.astype(np.float32), y,
                            dict(BASE, solver="lbfgs", max_iter=10))
    assert ours.coefs_[0].dtype == np.float64
    assert trainers[-1].dtype == np.float32  # SciPy evaluates at float32 points
    assert_same_model(ours, ref, X.astype(np.float32), rtol=2e-3)


def test_lbfgs_sparse_in_chunks(monkeypatch, trainers):
    """Sparse lbfgs goes through the network in chunks of rows (with the L2 term added once):
    the same model as sklearn's full batch."""
    monkeypatch.setattr(fastmlp._core, "PREDICT_CHUNK", 25)
    X, y, fit_kw = _prepare("multiclass", {"sparse": "csr", "sample_weight": True})
    ours, ref, _ = fit_both("MLPClassifier", X, y,
                            dict(BASE, solver="lbfgs", max_iter=20, alpha=0.05), **fit_kw)
    assert trainers[-1].batch_size == 25
    assert_same_model(ours, ref, X)


@pytest.mark.parametrize("cls, kind, params", [
    ("MLPClassifier", "multiclass", dict(solver="sgd", learning_rate="invscaling")),
    ("MLPClassifier", "multilabel", {}),
    ("MLPRegressor", "multioutput", dict(solver="sgd", learning_rate="adaptive", tol=5.0,
                                        n_iter_no_change=1)),
])
def test_partial_fit_sequence(cls, kind, params):
    """partial_fit on chunks of different sizes (so batch sizes change): optimizer state,
    t_, loss_curve_ and the schedules carry over as in sklearn."""
    X, y = make_data(kind)
    ests = getattr(fastmlp, cls)(**BASE, **params), getattr(sknn, cls)(**BASE, **params)
    for est in ests:
        for start, stop in [(0, 50), (50, 113), (0, 113), (20, 30)]:
            kw = {}
            if cls == "MLPClassifier":
                kw["classes"] = np.unique(y) if kind == "multiclass" else [0, 1, 2]
            sw = np.linspace(0.5, 1.5, stop - start)
            est.partial_fit(X[start:stop], y[start:stop], sample_weight=sw, **kw)
    assert_same_model(*ests, X)
    assert len(ests[0].loss_curve_) == 4 and ests[0].n_iter_ == 1


def test_partial_fit_keeps_adam_state():
    X, y = make_data("binary")
    est = MLPClassifier(**BASE).partial_fit(X, y, classes=[0, 1])
    state = est._optimizer_state
    assert int(state.count[0]) == 4  # ceil(113 / 32) steps
    est.partial_fit(X, y)
    assert est._optimizer_state is state and int(state.count[0]) == 8
    assert MLPClassifier(**dict(BASE, solver="lbfgs")).fit(X, y)._optimizer is None


@pytest.mark.parametrize("early_stopping", [False, True])
def test_warm_start(early_stopping):
    """A second fit continues from the weights; the optimizer restarts; with early stopping
    the best score (and sklearn's aliasing of the restored weights) persists."""
    X, y = make_data("multiclass")
    kw = dict(BASE, warm_start=True, early_stopping=early_stopping, n_iter_no_change=2,
              solver="sgd", max_iter=8)
    ests = MLPClassifier(**kw), sknn.MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in ests:
            est.fit(X, y)
            est.set_params(max_iter=5, learning_rate_init=0.3)
            est.fit(X, y)
            est.fit(X, y)
    assert_same_model(*ests, X)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("first, second", [(np.float64, np.float32), (np.float32, np.float64)])
def test_warm_start_across_dtypes(solver, first, second):
    """A warm start keeps the weights' dtype, as sklearn's in-place updates do."""
    X, y = make_data("regression")
    kw = dict(BASE, warm_start=True, solver=solver, max_iter=6)
    ests = MLPRegressor(**kw), sknn.MLPRegressor(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in ests:
            est.fit(X.astype(first), y).fit(X.astype(second), y)
    float32_involved = solver == "adam" and np.float32 in (first, second) or \
        solver == "lbfgs" and first == np.float32
    assert_same_model(*ests, X, rtol=2e-3 if float32_involved else 1e-6)


def test_random_state_instance_keeps_advancing():
    X, y = make_data("binary")
    ests = (MLPClassifier(**dict(BASE, random_state=np.random.RandomState(5))),
            sknn.MLPClassifier(**dict(BASE, random_state=np.random.RandomState(5))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in ests:
            est.fit(X, y)
            est.fit(X, y)
    assert_same_model(*ests, X)


@pytest.mark.parametrize("params", [
    dict(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1),
    dict(solver="sgd", early_stopping=True, n_iter_no_change=1, tol=0.5),
    dict(solver="adam", max_iter=3),
])
def test_verbose_output_matches(params, capsys):
    X, y = make_data("binary")
    outputs = []
    for cls in (MLPClassifier, sknn.MLPClassifier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cls(**dict(BASE, verbose=True, **params)).fit(X, y)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and "Iteration 1, loss = " in outputs[0]


def test_convergence_warning():
    X, y = make_data("binary")
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\) reached"):
        MLPClassifier(**dict(BASE, max_iter=3)).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPRegressor(**dict(BASE, solver="lbfgs", max_iter=2)).fit(*make_data("regression"))


def test_stop_requested_ends_fit_cleanly(monkeypatch):
    """The CLI's Ctrl-C handler sets trainer.stop_requested: run_epoch returns after the
    current batch, and fit stops there (the partial epoch is not recorded)."""
    X, y = make_data("multiclass")
    est = MLPClassifier(**dict(BASE, max_iter=50))
    calls = []

    def one_step_per_call(self):  # so that the request lands after any batch
        return 1

    def steps_done(self, n_steps):
        calls.append(n_steps)
        if len(calls) == 10:  # mid-way through the third epoch (4 batches per epoch)
            self.stop_requested = True

    from fastmlp._core import Trainer
    monkeypatch.setattr(Trainer, "_steps_per_call", one_step_per_call)
    monkeypatch.setattr(Trainer, "_steps_done", steps_done)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        est.fit(X, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2 and len(calls) == 10
    est.predict(X)


def test_sparse_equals_dense_and_inputs_untouched():
    X, y = make_data("multiclass")
    Xs = sp.csr_matrix(X * (np.abs(X) > 0.5))
    # unsorted indices: the estimator must sort a copy, never the caller's matrix
    Xu = Xs.copy()
    for i in range(Xu.shape[0]):
        a, b = Xu.indptr[i], Xu.indptr[i + 1]
        Xu.indices[a:b] = Xu.indices[a:b][::-1].copy()
        Xu.data[a:b] = Xu.data[a:b][::-1].copy()
    Xu.has_sorted_indices = False
    before = (Xu.data.copy(), Xu.indices.copy(), y.copy())
    sw = np.ones(len(y))
    sparse_model = MLPClassifier(**BASE).fit(Xu, y, sample_weight=sw)
    dense_model = MLPClassifier(**BASE).fit(Xs.toarray(), y, sample_weight=sw)
    np.testing.assert_array_equal(before[0], Xu.data)
    np.testing.assert_array_equal(before[1], Xu.indices)
    np.testing.assert_array_equal(before[2], y)
    np.testing.assert_array_equal(sw, 1.0)
    for a, b in zip(sparse_model.coefs_, dense_model.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse_model.predict_proba(Xu), dense_model.predict_proba(
        Xs.toarray()), rtol=1e-10)


def _csr_with_duplicates(X, seed=0):
    """X (dense) as a CSR matrix whose rows store each nonzero as two entries (the value
    split in two parts), in shuffled column order: not canonical, but the same matrix for
    SciPy (duplicates are summed)."""
    rng = np.random.RandomState(seed)
    data, indices, indptr = [], [], [0]
    for row in X:
        cols = np.flatnonzero(row)
        part = rng.uniform(0.2, 0.8, len(cols))
        entries = np.r_[cols, cols]
        values = np.r_[row[cols] * part, row[cols] * (1 - part)]
        perm = rng.permutation(len(entries))
        data.extend(values[perm])
        indices.extend(entries[perm])
        indptr.append(len(data))
    M = sp.csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=X.shape)
    assert not M.has_canonical_format
    np.testing.assert_allclose(M.toarray(), X, rtol=1e-15)
    return M


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_csr_with_duplicate_entries_matches_sklearn(solver):
    X, y = make_data("regression")
    X = X * (np.abs(X) > 0.5)
    M = _csr_with_duplicates(X)
    before = (M.data.copy(), M.indices.copy(), M.indptr.copy())
    ours, ref, _ = fit_both("MLPRegressor", M, y, dict(BASE, solver=solver, max_iter=10))
    assert_same_model(ours, ref, M)
    np.testing.assert_allclose(ours.predict(M), ours.predict(X), rtol=1e-12)
    for a, b in zip((M.data, M.indices, M.indptr), before):  # the caller's matrix as it was
        np.testing.assert_array_equal(a, b)
    assert not M.has_canonical_format


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_scalar_sample_weight_matches_sklearn(solver):
    X, y = make_data("regression")
    ours, ref, (w_ours, w_ref) = fit_both("MLPRegressor", X, y,
                                          dict(BASE, solver=solver, alpha=0.1,
                                               learning_rate_init=0.01), sample_weight=2.5)
    assert w_ours == w_ref
    assert_same_model(ours, ref, X)


@pytest.mark.parametrize("cls, kind", [("MLPClassifier", "multiclass"),
                                       ("MLPRegressor", "multioutput")])
def test_predict_beyond_one_chunk_matches_sklearn(cls, kind):
    """Prediction runs in chunks of 4096 rows: more than two chunks (the last one partial),
    dense and sparse, against scikit-learn's one-shot prediction."""
    X, y = make_data(kind)
    ours, ref, _ = fit_both(cls, X, y, dict(BASE, max_iter=3))
    n = 2 * fastmlp._core.PREDICT_CHUNK + 101
    big = make_data(kind, n=n, seed=5)[0]
    big *= np.abs(big) > 0.3
    for data in (big, sp.csr_matrix(big)):
        if cls == "MLPClassifier":
            p, q = ours.predict_proba(data), ref.predict_proba(data)
            np.testing.assert_array_equal(ours.predict(data), ref.predict(data))
        else:
            p, q = ours.predict(data), ref.predict(data)
        assert p.shape == q.shape == (n, y.shape[1] if y.ndim == 2 else 3)
        _close(p, q, 1e-10, "chunked prediction")


def _reachable_array_bytes(obj):
    """Bytes of the distinct NumPy buffers reachable from obj's attributes (views count their
    base once)."""
    seen, bases, stack = set(), {}, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (type, str, bytes, int, float)):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            while isinstance(o.base, np.ndarray):
                o = o.base
            bases[id(o)] = o.nbytes
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif hasattr(o, "__dict__") and not isinstance(o, types.ModuleType):
            stack.extend(vars(o).values())
    return sum(bases.values())


def test_lbfgs_fit_frees_its_full_batch_workspace():
    """An L-BFGS fit evaluates the whole data set at once; what is kept afterwards is the
    model (a few copies of the parameters), not activations and deltas for every row."""
    X, y = make_data("regression", n=3000, d=20)
    est = MLPRegressor(hidden_layer_sizes=(50,), solver="lbfgs", max_iter=3,
                       random_state=0).fit(X, y)
    param_bytes = sum(a.nbytes for a in est.coefs_ + est.intercepts_)
    kept = _reachable_array_bytes(est)
    assert kept < 4 * param_bytes, (kept, param_bytes, X.nbytes)
    # and training goes on from the kept model
    est.set_params(warm_start=True).fit(X, y)
    assert np.isfinite(est.predict(X)).all()


def test_predict_proba_and_log_proba():
    X, y = make_data("binary")
    est = MLPClassifier(**BASE).fit(X, y)
    p = est.predict_proba(X)
    assert p.shape == (N, 2)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(est.predict_log_proba(X), np.log(p))


def test_pickle_joblib_and_resume(tmp_path):
    """Pickling drops the trainer (a cache); coefs_ and the optimizer state survive, and
    training resumes from them exactly."""
    X, y = make_data("multiclass")
    est = MLPClassifier(**BASE).partial_fit(X, y, classes=np.unique(y))
    trainer = est._trainer
    blob = pickle.dumps(est)
    assert b"Workspace" not in blob and est._trainer is trainer
    copy = pickle.loads(blob)
    joblib.dump(est, tmp_path / "m.joblib")
    copy2 = joblib.load(tmp_path / "m.joblib")
    for other in (copy, copy2):
        np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))
    est.partial_fit(X, y)
    copy.partial_fit(X, y)
    for a, b in zip(est.coefs_ + est.intercepts_, copy.coefs_ + copy.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert est.loss_curve_ == copy.loss_curve_


def test_save_delegates_to_persistence(monkeypatch):
    from fastmlp import persistence
    seen = []
    monkeypatch.setattr(persistence, "save", lambda est, path: seen.append((est, path)))
    for cls, kind in ((MLPClassifier, "binary"), (MLPRegressor, "regression")):
        est = cls(**dict(BASE, max_iter=2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(*make_data(kind))
        est.save("model.npz")
        assert seen[-1] == (est, "model.npz")


def test_clone_pipeline_gridsearch():
    X, y = make_data("multiclass")
    est = MLPClassifier(**dict(BASE, max_iter=5))
    assert clone(est).get_params() == est.get_params()
    assert [k for k in MLPRegressor().get_params() if k not in fe.EXTENSION_PARAMS] \
        == list(sknn.MLPRegressor().get_params())
    assert MLPRegressor.__init__.__code__.co_varnames[1] == "loss"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), est).fit(X, y)
        assert pipe.score(X, y) > 0.3
        search = GridSearchCV(est, {"alpha": [1e-4, 1e-2]}, cv=2).fit(X, y)
    assert isinstance(search.best_estimator_, MLPClassifier)


def test_gridsearch_on_threads_equals_one_job():
    """The README's recipe for grid searches (joblib's threading backend, fits running
    concurrently in one process) scores every setting exactly as one job does."""
    from joblib import parallel_config
    X, y = make_data("multiclass")
    est = make_pipeline(StandardScaler(), MLPClassifier(**dict(BASE, max_iter=8)))
    grid = {"mlpclassifier__alpha": [1e-4, 1e-2],
            "mlpclassifier__hidden_layer_sizes": [(8,), (16,)]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = GridSearchCV(est, grid, cv=3, n_jobs=1).fit(X, y)
        with parallel_config(backend="threading"):
            threads = GridSearchCV(est, grid, cv=3, n_jobs=2).fit(X, y)
    for key in ("mean_test_score", "split0_test_score", "split2_test_score"):
        np.testing.assert_array_equal(threads.cv_results_[key], one.cv_results_[key])
    np.testing.assert_array_equal(threads.best_estimator_[-1].coefs_[0],
                                  one.best_estimator_[-1].coefs_[0])


def test_same_parameter_constraints_and_defaults():
    for ours, ref in ((MLPClassifier, sknn.MLPClassifier), (MLPRegressor, sknn.MLPRegressor)):
        # fastmlp's extensions are extra parameters whose defaults keep scikit-learn's
        # behaviour; everything scikit-learn has is the same
        params = ours().get_params()
        extra = {k: params.pop(k) for k in set(params) & set(fe.EXTENSION_PARAMS)}
        assert extra == {k: v for k, v in fe.EXTENSION_PARAMS.items() if k in extra}
        assert params == ref().get_params()
        assert set(ours._parameter_constraints) - set(fe.EXTENSION_PARAMS) \
            == set(ref._parameter_constraints)
        for key, value in ref._parameter_constraints.items():
            ours_c = [_constraint(c) for c in ours._parameter_constraints[key]]
            ref_c = [_constraint(c) for c in value]
            if key == "activation":  # extended with more activations
                assert ours_c[0][:2] == ref_c[0][:2] and ours_c[0][2] >= ref_c[0][2]
            else:
                assert ours_c == ref_c, key


def _constraint(c):
    if isinstance(c, str):
        return c
    if hasattr(c, "closed"):  # Interval
        return (type(c).__name__, c.type, c.left, c.right, c.closed)
    return (type(c).__name__, c.type, frozenset(c.options))  # StrOptions / Options


def _normalize_sets(message):
    # '{'a', 'b'}' in a message follows set iteration order, which varies between processes
    return re.sub(r"\{([^{}]*)\}",
                  lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message)


# -- bad input: sklearn's own error types and messages -------------------------------------
def _nan_X():
    X, y = make_data("binary")
    X = X.copy()
    X[3, 2] = np.nan
    return X, y


def _inf_X():
    X, y = make_data("binary")
    X = X.copy()
    X[3, 2] = np.inf
    return X, y


BAD_INPUT = {
    "nan-X": lambda cls: cls(**BASE).fit(*_nan_X()),
    "inf-X": lambda cls: cls(**BASE).fit(*_inf_X()),
    "nan-y-regressor": lambda cls: MLPRegressor_like(cls)(**BASE).fit(
        make_data("regression")[0], np.full(N, np.nan)),
    "wrong-feature-count": lambda cls: cls(**dict(BASE, max_iter=2)).fit(
        *make_data("binary")).predict(np.zeros((3, D + 1))),
    "partial-fit-unseen-class": lambda cls: cls(**BASE).partial_fit(
        make_data("binary")[0], make_data("binary")[1], classes=[0, 1]).partial_fit(
        make_data("binary")[0][:3], np.array([0, 1, 2])),
    "partial-fit-no-classes": lambda cls: cls(**BASE).partial_fit(*make_data("binary")),
    "partial-fit-classes-changed": lambda cls: cls(**BASE).partial_fit(
        *make_data("binary"), classes=[0, 1]).partial_fit(*make_data("binary"),
                                                           classes=[0, 1, 2]),
    "partial-fit-early-stopping": lambda cls: cls(**dict(BASE, early_stopping=True))
    .partial_fit(*make_data("binary"), classes=[0, 1]),
    "partial-fit-lbfgs": lambda cls: cls(**dict(BASE, solver="lbfgs")).partial_fit(
        *make_data("binary"), classes=[0, 1]),
    "bad-solver": lambda cls: cls(solver="rmsprop").fit(*make_data("binary")),
    "bad-momentum": lambda cls: cls(momentum=1.5).fit(*make_data("binary")),
    "zero-hidden": lambda cls: cls(hidden_layer_sizes=(4, 0)).fit(*make_data("binary")),
    "validation-too-small": lambda cls: cls(**dict(BASE, early_stopping=True,
                                                   validation_fraction=0.005)).fit(
        *make_data("multiclass")),
    "warm-start-new-classes": lambda cls: cls(**dict(BASE, warm_start=True, max_iter=2))
    .fit(*make_data("binary")).fit(*make_data("multiclass")),
    "not-fitted": lambda cls: cls().predict(np.zeros((2, D))),
    "bad-sample-weight": lambda cls: cls(**BASE).fit(*make_data("binary"),
                                                     sample_weight=np.ones(5)),
    "empty-X": lambda cls: cls(**BASE).fit(np.zeros((0, D)), np.zeros(0)),
    "overflow": lambda cls: cls(**dict(BASE, solver="sgd", learning_rate_init=1e6,
                                       max_iter=4)).fit(make_data("binary")[0] * 1e30,
                                                        make_data("binary")[1]),
}


def MLPRegressor_like(cls):
    return MLPRegressor if cls is MLPClassifier else sknn.MLPRegressor


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_same_error_as_sklearn(case):
    errors = []
    for cls in (MLPClassifier, sknn.MLPClassifier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(Exception) as info:
                BAD_INPUT[case](cls)
        errors.append(info.value)
    ours, ref = errors
    assert type(ours) is type(ref)
    assert _normalize_sets(str(ours)) == _normalize_sets(str(ref))


def test_not_fitted_and_no_partial_fit_for_lbfgs():
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(np.zeros((2, 3)))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    # sklearn 1.9.1's regressor keeps partial_fit for lbfgs (see the comment in estimators)
    assert hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


# -- scikit-learn's own estimator checks, no expected failures -----------------------------
@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("weight, match", [(np.nan, "sample_weight contains NaN"),
                                           (np.inf, "sample_weight contains infinity")])
def test_non_finite_scalar_sample_weight_is_refused(solver, weight, match):
    """scikit-learn expands a scalar weight without checking it (lbfgs then ends with a NaN
    loss and no error); fastmlp refuses it, as it refuses a NaN in a weight array."""
    X, y = make_data("regression")
    est = MLPRegressor(**dict(BASE, solver=solver))
    with pytest.raises(ValueError, match=match):
        est.fit(X, y, sample_weight=weight)
    assert not hasattr(est, "coefs_")


@pytest.mark.parametrize("cls, kind", [("MLPClassifier", "multiclass"),
                                       ("MLPRegressor", "regression")])
def test_non_native_byte_order_trains_like_native(cls, kind):
    X, y = make_data(kind)
    sw = np.random.RandomState(1).uniform(0.2, 2.0, len(y))
    big = getattr(fastmlp, cls)(**BASE).fit(
        X.astype(">f8"), y.astype(">f8") if kind == "regression" else y,
        sample_weight=sw.astype(">f8"))
    native = getattr(fastmlp, cls)(**BASE).fit(X, y, sample_weight=sw)
    for a, b in zip(big.coefs_ + big.intercepts_, native.coefs_ + native.intercepts_):
        assert a.dtype.isnative
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(big.predict(X.astype(">f4")),
                                  native.predict(X.astype(np.float32)))


# -- L-BFGS over many iterations ---------------------------------------------------------------
def _diabetes_rel_diff(ours, theirs, X, proba):
    a, b = ((ours.predict_proba(X), theirs.predict_proba(X)) if proba
            else (ours.predict(X), theirs.predict(X)))
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_lbfgs_regressor_is_scikit_learns_to_max_iter_200():
    """Diabetes, (32,), scikit-learn's default max_iter: the same predictions, bit for bit.
    L-BFGS amplifies one-ulp differences (this fit differed by 5e-2 after 200 iterations when
    the loss, the L2 term, the output intercept and the gradient's finishing pass rounded
    differently); they are summed as scikit-learn sums them."""
    from sklearn.datasets import load_diabetes
    X, y = load_diabetes(return_X_y=True)
    kw = dict(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(**kw).fit(X, y)
        theirs = sknn.MLPRegressor(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 200
    assert ours.loss_ == theirs.loss_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_lbfgs_amplifies_ulps_in_scikit_learn_itself():
    """What is promised where fastmlp's kernels round differently from NumPy (here a weighted
    classifier: the logistic output and the weighted deltas, a few ulps per evaluation):
    each evaluation's loss and gradient agree to ~1e-15, and the fits agree closely for the
    first iterations; after ~100 L-BFGS iterations the differences grow to 1e-2 -- as
    scikit-learn differs from itself when its gradient is changed by one part in 2**52."""
    from sklearn.datasets import load_diabetes
    X, t = load_diabetes(return_X_y=True)
    y = (t > 140).astype(int)
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))

    class OneUlp(sknn.MLPClassifier):  # scikit-learn, its gradient * (1 + 2**-52)
        def _loss_grad_lbfgs(self, *args, **kwargs):
            loss, grad = super()._loss_grad_lbfgs(*args, **kwargs)
            return loss, grad * (1 + 2.0 ** -52)

    def fits(max_iter):
        kw = dict(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=max_iter, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return [cls(**kw).fit(X, y, sample_weight=sw)
                    for cls in (MLPClassifier, sknn.MLPClassifier, OneUlp)]

    ours, theirs, nudged = fits(10)
    assert _diabetes_rel_diff(ours, theirs, X, True) < 1e-10
    assert _diabetes_rel_diff(nudged, theirs, X, True) < 1e-10
    ours, theirs, nudged = fits(200)
    ulp_own = _diabetes_rel_diff(nudged, theirs, X, True)
    ulp_ours = _diabetes_rel_diff(ours, theirs, X, True)
    assert ulp_own > 1e-4  # scikit-learn's own fit moves that far from a one-ulp change
    assert ulp_ours < 1.0  # the same kind of fit, not a different algorithm
    print(f"after 200 iterations: fastmlp {ulp_ours:.1e}, scikit-learn nudged {ulp_own:.1e}")


# -- the learning-rate schedules live with the optimizer, as scikit-learn's do -------------------
@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_sgd_schedule_steps_as_sklearn_sgd_optimizer(schedule, capsys):
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer
    ours = fastmlp.optimizers.make_optimizer("sgd", learning_rate=0.3, momentum=0.9,
                                             schedule=schedule, power_t=0.7)
    ref = SGDOptimizer([np.zeros(2)], 0.3, schedule, 0.9, False, 0.7)
    for t in (10, 25, 120, 400):
        ours.iteration_ends(t)
        ref.iteration_ends(t)
        assert ours.learning_rate == ref.learning_rate
    for _ in range(12):  # adaptive: /5 until <= 1e-6, then stops; the others stop at once
        assert ours.trigger_stopping("msg", True) == ref.trigger_stopping("msg", True)
        assert ours.learning_rate == ref.learning_rate
    out = capsys.readouterr().out.splitlines()
    assert out[::2] == out[1::2]  # the same messages, in turn


def test_adam_trigger_stopping_always_stops(capsys):
    opt = fastmlp.optimizers.make_optimizer("adam", learning_rate=0.01, schedule="adaptive")
    opt.iteration_ends(100)
    assert opt.learning_rate == 0.01
    assert opt.trigger_stopping("No gain.", True) is True
    assert capsys.readouterr().out == "No gain. Stopping.\n"


def test_unknown_sgd_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        fastmlp.optimizers.make_optimizer("sgd", schedule="cosine")


def test_the_estimator_optimizer_carries_its_schedule():
    rs = np.random.RandomState(0)
    X, y = rs.randn(60, 4), rs.randint(0, 2, 60)
    est = MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", learning_rate="invscaling",
                        power_t=0.25, learning_rate_init=0.05, max_iter=3, random_state=0)
    est.fit(X, y)
    opt = est._optimizer
    assert (opt.schedule, opt.power_t, opt.learning_rate_init) == ("invscaling", 0.25, 0.05)
    assert opt.learning_rate == 0.05 / (est.t_ + 1) ** 0.25


@pytest.mark.parametrize("y", [
    np.arange(1000) % 10, np.arange(1000) % 2, (np.arange(1000) % 2) * 4.0 - 1,
    np.array([5, 7, 7, 5]), np.array(["a", "b", "c"] * 3), np.array([1, 1, 1]),
    (np.arange(50) % 6 - 3).astype(np.float32), np.array([0, 1, 2], np.uint8),
    np.array([True, False, True]), np.array([-2 ** 62, 2 ** 62, 0]),
    (np.arange(60).reshape(20, 3) % 2)], ids=lambda y: f"{y.dtype}{y.shape}")
def test_one_hot_equals_label_binarizer(y):
    # the fit's own indicator columns are LabelBinarizer's, whatever the labels' kind
    lb = LabelBinarizer().fit(y)
    got = one_hot_labels(lb, y)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, lb.transform(y).astype(bool))
    # labels outside the binarizer's classes: its own all-zero rows
    lb3 = LabelBinarizer().fit([0, 1, 2])
    np.testing.assert_array_equal(one_hot_labels(lb3, np.array([0, 3, 2])),
                                  lb3.transform([0, 3, 2]).astype(bool))


def test_a_network_beyond_the_memory_is_one_clear_error_before_any_allocation(monkeypatch):
    """Training that needs more memory than is available: one MemoryError naming the network
    and the batch, before the weights are drawn, as fastmlp.MLP says it; a warm start keeps
    the weights it had (hidden_layer_sizes=(10**9,) failed inside the weights' random draw,
    "Unable to allocate 29.8 GiB for an array with shape (4, 1000000000)")."""
    from fastmlp import _state
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 20)), np.arange(300) % 3
    warm = fe.MLPClassifier(hidden_layer_sizes=(500,), max_iter=2, warm_start=True,
                            random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
    before = [c.copy() for c in warm.coefs_]
    monkeypatch.setattr(_state, "available_memory", lambda: 10 ** 6)
    fresh = [fe.MLPClassifier(hidden_layer_sizes=(500,), max_iter=1),
             fe.MLPClassifier(hidden_layer_sizes=(500,), solver="lbfgs")]
    for est, batch in ((fresh[0], 200), (fresh[1], 300), (warm, 200)):
        with pytest.raises(MemoryError, match=re.escape(
                f"training a network 20-500-3 (float64) with batch size {batch} needs ")
                + r".* more than the 976\.6 KB of memory available"):
            est.fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(before, warm.coefs_))
    assert not any(hasattr(est, "coefs_") for est in fresh)  # no weights were drawn
