"""fastmlp's extensions beyond scikit-learn's MLP: what each one means, not only that it runs.

Every extension is off by default, and the defaults' numbers are scikit-learn's (that is
tests/test_estimators.py's job); here each switched-on extension is checked against its
definition: the validation curves against scikit-learn's metrics on the same predictions,
class weights against the sample weights they stand for, callbacks against the epochs they
report, and so on.
"""
import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from numba import njit
from scipy.special import expit, ndtr
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, log_loss,
                             mean_squared_error, r2_score, recall_score)
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastmlp
import fastmlp.persistence
from fastmlp import MLPClassifier, MLPRegressor, backend
from fastmlp import kernels as K
from fastmlp._core import Trainer

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def classification(n=240, seed=0, weights=None):
    X, y = make_classification(n, 8, n_informative=4, random_state=seed, weights=weights,
                               flip_y=0.05)
    return X[: n * 2 // 3], y[: n * 2 // 3], X[n * 2 // 3:], y[n * 2 // 3:]


def regression(n=240, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.3 * rng.randn(n)
    return X[: n * 2 // 3], y[: n * 2 // 3], X[n * 2 // 3:], y[n * 2 // 3:]


SMALL = dict(hidden_layer_sizes=(12,), random_state=0, learning_rate_init=0.01)


# -- a validation set of one's own -----------------------------------------------------------
def test_validation_curves_are_the_metrics_of_each_epoch():
    Xt, yt, Xv, yv = classification()
    sw = np.linspace(0.5, 2, len(yv))
    est = MLPClassifier(**SMALL, max_iter=1)
    scores, losses = [], []
    for epoch in range(4):  # partial_fit: one epoch per call, the set checked after each
        est.partial_fit(Xt, yt, classes=[0, 1], X_val=Xv, y_val=yv, sample_weight_val=sw)
        scores.append(accuracy_score(yv, est.predict(Xv), sample_weight=sw))
        losses.append(log_loss(yv, est.predict_proba(Xv), sample_weight=sw))
    np.testing.assert_allclose(est.validation_scores_, scores, rtol=1e-12)
    np.testing.assert_allclose(est.validation_loss_curve_, losses, rtol=1e-10)

    Xt, yt, Xv, yv = regression()
    reg = MLPRegressor(**SMALL, max_iter=7).fit(Xt, yt, X_val=Xv, y_val=yv)
    assert len(reg.validation_scores_) == len(reg.validation_loss_curve_) == 7
    assert reg.validation_scores_[-1] == pytest.approx(r2_score(yv, reg.predict(Xv)), rel=1e-12)
    # scikit-learn's squared-error loss is half the mean squared error
    assert reg.validation_loss_curve_[-1] == pytest.approx(
        0.5 * mean_squared_error(yv, reg.predict(Xv)), rel=1e-10)


def test_validation_set_without_early_stopping_only_watches():
    Xt, yt, Xv, yv = classification()
    plain = MLPClassifier(**SMALL, max_iter=15).fit(Xt, yt)
    watched = MLPClassifier(**SMALL, max_iter=15).fit(Xt, yt, X_val=Xv, y_val=yv)
    assert plain.validation_scores_ is None and plain.validation_loss_curve_ is None
    assert watched.loss_curve_ == plain.loss_curve_
    for a, b in zip(watched.coefs_ + watched.intercepts_, plain.coefs_ + plain.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert len(watched.validation_scores_) == watched.n_iter_ == 15
    assert watched.best_validation_score_ == max(watched.validation_scores_)


def test_early_stopping_follows_the_users_set_and_trains_on_all_rows():
    Xt, yt, Xv, yv = classification()
    est = MLPClassifier(**SMALL, max_iter=300, early_stopping=True, n_iter_no_change=5)
    est.fit(Xt, yt, X_val=Xv, y_val=yv)
    assert est.n_iter_ < 300
    assert est.t_ == est.n_iter_ * len(yt)  # nothing held out of the training rows
    scores = est.validation_scores_
    best = int(np.argmax(scores))
    # stopped n_iter_no_change + 1 epochs after the last improvement by more than tol
    assert len(scores) - 1 - best >= est.n_iter_no_change
    # scikit-learn's rule: the weights of the best epoch are restored
    assert accuracy_score(yv, est.predict(Xv)) == est.best_validation_score_ == scores[best]


def test_restore_best_weights_true_and_false():
    Xt, yt, Xv, yv = regression()
    best = MLPRegressor(**SMALL, max_iter=60, restore_best_weights=True,
                        alpha=0.0).fit(Xt, yt, X_val=Xv, y_val=yv)
    last = MLPRegressor(**SMALL, max_iter=60, alpha=0.0).fit(Xt, yt, X_val=Xv, y_val=yv)
    assert best.validation_scores_ == last.validation_scores_  # same training
    assert r2_score(yv, best.predict(Xv)) == pytest.approx(max(best.validation_scores_),
                                                           rel=1e-12)
    assert r2_score(yv, last.predict(Xv)) == pytest.approx(last.validation_scores_[-1],
                                                           rel=1e-12)
    # restore_best_weights=False with early stopping: the last epoch's weights (Keras default)
    kept = MLPRegressor(**SMALL, max_iter=300, early_stopping=True, n_iter_no_change=3,
                        restore_best_weights=False).fit(Xt, yt, X_val=Xv, y_val=yv)
    assert r2_score(yv, kept.predict(Xv)) == pytest.approx(kept.validation_scores_[-1],
                                                           rel=1e-12)
    # partial_fit has no end of training: each call keeps its epoch's weights
    inc = MLPRegressor(**SMALL, restore_best_weights=True)
    for _ in range(3):
        inc.partial_fit(Xt, yt, X_val=Xv, y_val=yv)
    assert r2_score(yv, inc.predict(Xv)) == pytest.approx(inc.validation_scores_[-1],
                                                          rel=1e-12)


def test_scoring_loss_and_a_users_scorer():
    Xt, yt, Xv, yv = classification(weights=[0.8])
    est = MLPClassifier(**SMALL, max_iter=8, scoring="loss").fit(Xt, yt, X_val=Xv, y_val=yv)
    np.testing.assert_array_equal(est.validation_scores_, -np.array(est.validation_loss_curve_))
    est = MLPClassifier(**SMALL, max_iter=8, scoring="balanced_accuracy",
                        early_stopping=True, restore_best_weights=False)
    est.fit(Xt, yt, X_val=Xv, y_val=yv)
    assert est.validation_scores_[-1] == balanced_accuracy_score(yv, est.predict(Xv))
    # with the internal split too
    est = MLPClassifier(**SMALL, max_iter=8, scoring="balanced_accuracy",
                        early_stopping=True).fit(Xt, yt)
    assert len(est.validation_scores_) == est.n_iter_
    with pytest.raises(ValueError, match="scoring"):
        MLPClassifier(**SMALL, scoring="no_such_metric").fit(Xt, yt)


def test_lbfgs_users_scorer_on_a_validation_set_of_another_dtype():
    """float32 training with a float64 validation set: the set is converted to the network's
    dtype and the user's scorer still scores every L-BFGS iteration."""
    Xt, yt, Xv, yv = classification()
    est = MLPClassifier(**SMALL, solver="lbfgs", max_iter=8, scoring="balanced_accuracy")
    est.fit(Xt.astype(np.float32), yt, X_val=Xv, y_val=yv)
    assert len(est.validation_scores_) == est.n_iter_ == 8
    assert all(0 <= s <= 1 for s in est.validation_scores_)


def test_lbfgs_records_validation_per_iteration_and_prints_verbose(capsys):
    Xt, yt, Xv, yv = classification()
    est = MLPClassifier(**SMALL, solver="lbfgs", max_iter=25, verbose=True,
                        restore_best_weights=True).fit(Xt, yt, X_val=Xv, y_val=yv)
    out = capsys.readouterr().out
    assert out.count("Iteration ") == est.n_iter_ == len(est.validation_scores_)
    assert "Iteration 1, loss = " in out
    assert len(est.validation_loss_curve_) == est.n_iter_
    assert accuracy_score(yv, est.predict(Xv)) == max(est.validation_scores_)
    plain = MLPClassifier(**SMALL, solver="lbfgs", max_iter=25).fit(Xt, yt)
    assert not hasattr(plain, "validation_scores_")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("kwargs, message", [
    (dict(X_val="Xv"), "y_val was not provided"),
    (dict(y_val="yv"), "X_val was not provided"),
    (dict(sample_weight_val="sw"), "X_val and y_val were not provided"),
    (dict(X_val="Xv3", y_val="yv"), "features"),
    (dict(X_val="Xv", y_val="yv_short"), "inconsistent numbers of samples"),
    (dict(X_val="Xv", y_val="yv_unknown"), "y_val has classes not in"),
    (dict(X_val="Xv", y_val="yv", sample_weight_val="zeros"), "at least one non-zero"),
])
def test_bad_validation_sets_are_refused(kwargs, message):
    Xt, yt, Xv, yv = classification()
    values = dict(Xv=Xv, yv=yv, Xv3=Xv[:, :3], yv_short=yv[:-1], yv_unknown=yv + 5,
                  sw=np.ones(len(yv)), zeros=np.zeros(len(yv)))
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**SMALL, max_iter=2).fit(Xt, yt, **{k: values[v]
                                                           for k, v in kwargs.items()})


# -- class_weight -----------------------------------------------------------------------------
def test_class_weight_is_sample_weight():
    Xt, yt, _, _ = classification(weights=[0.85])
    sw = np.linspace(0.5, 1.5, len(yt))
    by_class = MLPClassifier(**SMALL, max_iter=10, class_weight={0: 1.0, 1: 3.0})
    by_class.fit(Xt, yt, sample_weight=sw)
    by_sample = MLPClassifier(**SMALL, max_iter=10).fit(
        Xt, yt, sample_weight=sw * np.where(yt == 1, 3.0, 1.0))
    for a, b in zip(by_class.coefs_, by_sample.coefs_):
        np.testing.assert_array_equal(a, b)
    balanced = MLPClassifier(**SMALL, max_iter=10, class_weight="balanced").fit(Xt, yt)
    by_sample = MLPClassifier(**SMALL, max_iter=10).fit(
        Xt, yt, sample_weight=compute_sample_weight("balanced", yt))
    for a, b in zip(balanced.coefs_, by_sample.coefs_):
        np.testing.assert_array_equal(a, b)


def test_balanced_class_weight_raises_minority_recall():
    Xt, yt, Xv, yv = classification(n=600, weights=[0.9], seed=3)
    plain = MLPClassifier(**SMALL, max_iter=30).fit(Xt, yt)
    balanced = MLPClassifier(**SMALL, max_iter=30, class_weight="balanced").fit(Xt, yt)
    assert recall_score(yv, balanced.predict(Xv)) > recall_score(yv, plain.predict(Xv))


def test_class_weight_in_partial_fit():
    Xt, yt, _, _ = classification()
    with pytest.raises(ValueError, match="balanced"):
        MLPClassifier(**SMALL, class_weight="balanced").partial_fit(Xt, yt, classes=[0, 1])
    a = MLPClassifier(**SMALL, class_weight={1: 2.0}).partial_fit(Xt, yt, classes=[0, 1])
    b = MLPClassifier(**SMALL).partial_fit(Xt, yt, classes=[0, 1],
                                           sample_weight=np.where(yt == 1, 2.0, 1.0))
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])



@pytest.mark.parametrize("class_weight,message", [
    ({0: np.nan, 1: 1.0}, r"class_weight\[0\] must be a finite non-negative number, got nan"),
    ({0: 1.0, 1: np.inf}, r"class_weight\[1\] must be .* got inf"),
    ({0: -1.0, 1: 1.0}, r"class_weight\[0\] must be .* got -1.0"),
    ({0: True, 1: 1.0}, r"class_weight\[0\] must be .* got True"),
    ({0: 0.0, 1: 0}, "class_weight gives every training sample zero weight"),
    ({0: 1e308, 1: 1e308}, "sums to infinity"),
    ([{0: 1.0, 1: np.nan}], r"class_weight\[0\]\[1\] must be"),
])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_bad_class_weight_is_refused_before_training(monkeypatch, class_weight, message,
                                                     method):
    """NaN, infinity, negative or all-zero class weights trained the whole fit, then failed
    with "Solver produced non-finite parameter weights" (issue 20 item 12): refused before
    any step, as an all-zero sample_weight is."""
    from fastmlp import _core
    Xt, yt, _, _ = classification()
    steps = []
    real = _core.Trainer.run_epoch
    monkeypatch.setattr(_core.Trainer, "run_epoch",
                        lambda self, *a, **k: steps.append(1) or real(self, *a, **k))
    est = MLPClassifier(**SMALL, max_iter=3, class_weight=class_weight)
    kw = {"classes": [0, 1]} if method == "partial_fit" else {}
    if isinstance(class_weight, list):  # a list of dicts is for multi-output targets
        yt = yt.reshape(-1, 1)
    with pytest.raises(ValueError, match=message):
        getattr(est, method)(Xt, yt, **kw)
    assert not steps
    assert not hasattr(est, "coefs_")


# -- scikit-learn's callbacks -----------------------------------------------------------------
class Recorder:
    """A FitCallback that records the tasks it sees and can stop after some epochs."""

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.events = []

    def setup(self, estimator, context):
        self.events.append(("setup", context.task_name))

    def teardown(self, estimator, context):
        self.events.append(("teardown", context.task_name))

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        self.events.append(("begin", context.task_name, context.task_id))

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, fitted_estimator=None):
        self.events.append(("end", context.task_name, context.task_id))
        if context.task_name == "epoch" and fitted_estimator is not None:
            self.last_score = fitted_estimator.score(X, y)
        return self.stop_after is not None and context.task_id + 1 >= self.stop_after


def test_callbacks_see_every_epoch_and_can_stop():
    from sklearn.callback import ScoringMonitor
    Xt, yt, _, _ = classification()
    monitor = ScoringMonitor(scoring="accuracy")
    est = MLPClassifier(**SMALL, max_iter=6).set_callbacks(monitor).fit(Xt, yt)
    plain = MLPClassifier(**SMALL, max_iter=6).fit(Xt, yt)
    np.testing.assert_array_equal(est.coefs_[0], plain.coefs_[0])  # callbacks change nothing
    log = monitor.get_logs().data_as_pandas
    epochs = log[log["task_id_path"].map(len) == 2]
    assert len(epochs) == 6
    # the score after the last epoch is the final model's
    assert epochs["accuracy"].iloc[-1] == est.score(Xt, yt)

    rec = Recorder(stop_after=3)
    est = MLPClassifier(**SMALL, max_iter=50).set_callbacks(rec).fit(Xt, yt)
    assert est.n_iter_ == 3
    assert rec.events[0] == ("setup", "fit") and rec.events[-1] == ("teardown", "fit")
    begins = [e for e in rec.events if e[0] == "begin"]
    ends = [e for e in rec.events if e[0] == "end"]
    assert begins == [("begin", "fit", 0)] + [("begin", "epoch", i) for i in range(3)]
    assert sorted(ends) == sorted(("end",) + b[1:] for b in begins)
    assert rec.last_score == est.score(Xt, yt)


def test_callbacks_for_lbfgs_iterations():
    Xt, yt, _, _ = classification()
    rec = Recorder()
    est = MLPClassifier(**SMALL, solver="lbfgs", max_iter=10).set_callbacks(rec).fit(Xt, yt)
    iters = [e for e in rec.events if e[0] == "end" and e[1] == "lbfgs-iter"]
    # one per iteration, plus the empty one scikit-learn's L-BFGS bridge closes
    assert len(iters) == est.n_iter_ + 1
    rec = Recorder(stop_after=4)
    est = MLPClassifier(**SMALL, solver="lbfgs", max_iter=50).set_callbacks(rec).fit(Xt, yt)
    assert est.n_iter_ == 4


def test_progress_bar_needs_rich_which_an_extra_installs():
    """scikit-learn's ProgressBar draws with rich: the `progress` extra (and `test`) bring it,
    and with it a fit shows one bar and gives the same numbers as without."""
    tomllib = pytest.importorskip("tomllib")
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for extra in ("progress", "test"):
        assert any(d.split(">")[0].split("=")[0].strip() == "rich" for d in extras[extra])
    pytest.importorskip("rich")
    from sklearn.callback import ProgressBar
    Xt, yt, _, _ = classification()
    est = MLPClassifier(**SMALL, max_iter=3).set_callbacks(ProgressBar()).fit(Xt, yt)
    plain = MLPClassifier(**SMALL, max_iter=3).fit(Xt, yt)
    np.testing.assert_array_equal(est.coefs_[0], plain.coefs_[0])


# -- the new activations: kernels ------------------------------------------------------------
@njit
def _apply_new(out, x, which):
    for i in range(x.size):
        if which == 0:
            out[i] = K.vgelu(x[i])
        elif which == 1:
            out[i] = K.vdgelu(x[i])
        elif which == 2:
            out[i] = K.vsilu(x[i])
        else:
            out[i] = K.vdsilu(x[i])


def _reference(x, which):
    """(value, scale): float64 reference and the size of the terms it sums (for tolerances)."""
    cdf, pdf, sig = ndtr(x), np.exp(-x * x / 2) / np.sqrt(2 * np.pi), expit(x)
    if which == 0:
        return x * cdf, np.abs(x * cdf)
    if which == 1:
        return cdf + x * pdf, cdf + np.abs(x * pdf)
    if which == 2:
        return x * sig, np.abs(x * sig)
    return sig * (1 + x * (1 - sig)), sig * (1 + np.abs(x) * (1 - sig))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", [0, 1, 2, 3], ids=["gelu", "dgelu", "silu", "dsilu"])
def test_gelu_silu_and_derivatives_accuracy(dtype, which):
    x = np.concatenate([np.linspace(-60, 60, 120001), np.linspace(-3, 3, 60001),
                        np.geomspace(1e-12, 40, 4000), -np.geomspace(1e-12, 40, 4000),
                        [0.0, -0.0]]).astype(dtype)
    out = np.empty_like(x)
    _apply_new(out, x, which)
    xr = x.astype(np.float64)
    ref, scale = _reference(xr, which)
    # a few ulp of the terms summed, times the condition number of exp(-z^2/2) in z (1 + z^2
    # ulp: the error of the exact function at an argument within an ulp), for the tails
    eps = np.finfo(dtype).eps
    tol = 8 * eps * scale * (1 + xr * xr) + np.finfo(dtype).tiny * 1e4  # ~0 beyond the cutoffs
    err = np.abs(out - ref)
    assert (err <= tol).all(), (x[np.argmax(err / tol)], (err / tol).max())
    # within 10 ulp where the functions are well conditioned
    core = (np.abs(xr) <= 2) & (scale > 1e-3) & (np.abs(ref) > 0.1 * scale)
    assert (err[core] <= 10 * eps * scale[core]).all()
    assert np.isfinite(out).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_new_activations_limits_and_nan(dtype):
    x = np.array([np.inf, -np.inf, 1e30, -1e30, np.nan], dtype)
    expect = {0: [np.inf, 0, 1e30, 0], 1: [1, 0, 1, 0], 2: [np.inf, 0, 1e30, 0], 3: [1, 0, 1, 0]}
    for which, e in expect.items():
        out = np.empty_like(x)
        _apply_new(out, x, which)
        np.testing.assert_allclose(out[:4], np.array(e, dtype), rtol=1e-6, atol=1e-30)
        assert np.isnan(out[4])


def _naive(z, act, slope):
    if act == K.LEAKY_RELU:
        return np.where(z > 0, z, slope * z), np.where(z > 0, 1.0, slope)
    if act == K.GELU:
        return z * ndtr(z), ndtr(z) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    return z * expit(z), expit(z) * (1 + z * (1 - expit(z)))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("act", ["LEAKY_RELU", "GELU", "SILU"])
def test_new_activation_kernels_match_numpy(dtype, rtol, act):
    code = getattr(K, act)
    rng = np.random.RandomState(0)
    Z0 = (rng.randn(37, 21) * 2).astype(dtype)
    b = rng.randn(21).astype(dtype)
    G = rng.randn(37, 21).astype(dtype)
    f, df = _naive(Z0.astype(float) + b, code, 0.1)
    # forward, keeping the pre-activation where backprop needs it
    Z, P = Z0.copy(), np.full_like(Z0, np.nan)
    K.bias_activate_keep(Z, P, b, code, dtype(0.1))
    np.testing.assert_allclose(Z, f, rtol=rtol, atol=rtol)
    assert K.keeps_preactivation(code) == (act != "LEAKY_RELU")
    Z2 = Z0.copy()
    K.bias_activate(Z2, b, code, dtype(0.1))
    np.testing.assert_array_equal(Z2, Z)
    # backward: delta = G * f'(.) and its column sums, from A or from P
    db = np.empty(21, dtype)
    if K.keeps_preactivation(code):
        np.testing.assert_allclose(P, Z0.astype(float) + b, rtol=rtol)
        K.dpreactivation_colsum(P, G, code, db)
        D = P
    else:
        assert np.isnan(P).all()  # untouched
        D = G.copy()
        K.dactivation_colsum(D, Z, code, db, dtype(0.1))
    np.testing.assert_allclose(D, G * df, rtol=rtol * 10, atol=rtol * 10)
    np.testing.assert_allclose(db, (G * df).sum(0), rtol=rtol * 100, atol=rtol * 100)


@pytest.mark.parametrize("activation", ["leaky_relu", "gelu", "silu"])
@pytest.mark.parametrize("out_activation, loss, n_out", [("identity", "squared_error", 1),
                                                         ("softmax", "log_loss", 3)])
def test_new_activations_gradients_by_finite_differences(activation, out_activation, loss,
                                                         n_out):
    rng = np.random.RandomState(1)
    sizes = [4, 6, 5, n_out]
    coefs = [rng.randn(a, b) * 0.8 for a, b in zip(sizes[:-1], sizes[1:])]
    intercepts = [rng.randn(b) * 0.5 for b in sizes[1:]]
    X = rng.randn(9, 4)
    Y = np.eye(3)[rng.randint(0, 3, 9)] if n_out == 3 else rng.randn(9, 1)
    kw = dict(activation=activation, out_activation=out_activation, loss=loss, alpha=0.1)
    _, gc, gi = backend.loss_and_grads(coefs, intercepts, X, Y, **kw)
    h = 1e-6
    for params, grads in ((coefs, gc), (intercepts, gi)):
        for p, g in zip(params, grads):
            num = np.empty_like(p)
            for k in np.ndindex(p.shape):
                p[k] += h
                up = backend.loss_and_grads(coefs, intercepts, X, Y, **kw)[0]
                p[k] -= 2 * h
                down = backend.loss_and_grads(coefs, intercepts, X, Y, **kw)[0]
                p[k] += h
                num[k] = (up - down) / (2 * h)
            np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_leaky_relu_is_relu_at_slope_0_and_identity_at_slope_1():
    Xt, yt, _, _ = classification()
    fits = {}
    for name, kw in [("relu", dict(activation="relu")),
                     ("leaky0", dict(activation="leaky_relu", leaky_relu_slope=0.0)),
                     ("identity", dict(activation="identity")),
                     ("leaky1", dict(activation="leaky_relu", leaky_relu_slope=1.0)),
                     ("leaky", dict(activation="leaky_relu", leaky_relu_slope=0.1))]:
        fits[name] = MLPClassifier(**SMALL, max_iter=5, **kw).fit(Xt, yt).coefs_[0]
    np.testing.assert_array_equal(fits["relu"], fits["leaky0"])
    np.testing.assert_array_equal(fits["identity"], fits["leaky1"])
    assert not np.array_equal(fits["relu"], fits["leaky"])


@pytest.mark.parametrize("activation", ["leaky_relu", "gelu", "silu"])
def test_estimators_learn_with_new_activations(activation):
    Xt, yt, Xv, yv = regression(n=600)
    fits = [MLPRegressor(hidden_layer_sizes=(32,), activation=activation, random_state=0,
                         learning_rate_init=0.01, max_iter=150).fit(Xt.astype(dt), yt)
            for dt in (np.float64, np.float32)]
    assert fits[0].score(Xv, yv) > 0.6  # the sine and the product are learned
    # float32 end to end follows the float64 fit
    np.testing.assert_allclose(fits[1].predict(Xv), fits[0].predict(Xv), atol=0.05)
    # and lbfgs (one full batch) too
    clf = MLPClassifier(hidden_layer_sizes=(16,), activation=activation, solver="lbfgs",
                        random_state=0, max_iter=100).fit(*classification()[:2])
    assert clf.score(*classification()[2:]) > 0.75


def test_new_activation_options_are_checked():
    with pytest.raises(ValueError, match="leaky_relu_slope"):
        MLPClassifier(activation="leaky_relu", leaky_relu_slope=-0.1).fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match="out_activation"):
        backend.forward([np.ones((2, 2))], [np.zeros(2)], np.ones((3, 2)),
                        out_activation="gelu")
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="swish").fit([[0.0], [1.0]], [0, 1])


# -- dropout ----------------------------------------------------------------------------------
def _trainer(activation, rates, seed=7, n_threads=None, sizes=(5, 40, 30, 2), batch=64,
             strategy=None):
    t = Trainer(list(sizes), activation=activation, out_activation="identity",
                loss="squared_error", dtype=np.float64, batch_size=batch, alpha=0.01,
                n_threads=n_threads, strategy=strategy)
    t.init_params(np.random.RandomState(0))
    t.set_dropout(rates, seed)
    return t


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "leaky_relu", "gelu",
                                        "silu"])
def test_dropout_gradients_by_finite_differences_with_the_mask_fixed(activation):
    rng = np.random.RandomState(3)
    t = _trainer(activation, [0.3, 0.5], sizes=(4, 7, 6, 1), batch=9)
    t.dropout_step = 11  # any step: loss_and_grads reuses its mask
    X, Y = rng.randn(9, 4), rng.randn(9, 1)
    t.loss_and_grads(X, Y)
    g = t.grads.copy()
    p0 = t.params.copy()
    num = np.empty_like(g)
    h = 1e-6
    for k in range(p0.size):
        t.params[:] = p0
        t.params[k] += h
        up = t.loss_and_grads(X, Y)
        t.params[k] -= 2 * h
        num[k] = (up - t.loss_and_grads(X, Y)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_dropout_mask_drops_the_rate_and_scales_the_rest():
    rng = np.random.RandomState(0)
    X, Y = rng.randn(64, 5), rng.randn(64, 2)
    plain = _trainer("identity", None)
    plain.loss_and_grads(X, Y)
    A1, A2 = plain.ws.A(1).copy(), plain.ws.A(2).copy()
    t = _trainer("identity", [0.25, 0.0])  # per layer: the second hidden layer keeps all
    masks = []
    for step in range(3):
        t.dropout_step = step
        t.loss_and_grads(X, Y)
        a1 = t.ws.A(1)  # after backprop: A * mask (the scale is undone once spent)
        kept = a1 != 0
        masks.append(kept.copy())
        np.testing.assert_allclose(a1[kept], A1[kept], rtol=1e-12)
        assert np.count_nonzero(t.ws.A(2)) == A2.size
    kept = np.array(masks)
    # 3 * 64 * 40 units: the dropped fraction is 0.25 within 4 standard deviations
    assert abs((~kept).mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / kept.size)
    assert not (kept[0] == kept[1]).all()  # a new mask each step
    t.dropout_step = 0
    t.loss_and_grads(X, Y)
    np.testing.assert_array_equal(t.ws.A(1) != 0, masks[0])  # the same one for the same step


def test_dropout_forward_epilogue_scales_what_it_keeps():
    rng = np.random.RandomState(2)
    Z0, b = rng.randn(50, 30), rng.randn(30)
    ref = Z0 + b
    Z, P = Z0.copy(), np.empty_like(Z0)
    key = K.dropout_key(np.uint64(12345 << 32 | 6), 0)
    K.bias_activate_keep(Z, P, b, K.IDENTITY, 0.01, 0.4, key, 0)
    kept = Z != 0
    np.testing.assert_allclose(Z[kept], ref[kept] / 0.6, rtol=1e-14)
    # the mask is that of the rows' positions: rows 10.. computed alone give the same
    Z2 = Z0[10:].copy()
    K.bias_activate_keep(Z2, P[10:], b, K.IDENTITY, 0.01, 0.4, key, 10)
    np.testing.assert_array_equal(Z2, Z[10:])


def test_dropout_mask_does_not_depend_on_threads():
    rng = np.random.RandomState(1)
    X, Y = rng.randn(64, 5), rng.randn(64, 2)
    grads = []
    # one thread, and two: the whole batch on BLAS's threads, or row blocks per thread
    for n_threads, strategy in ((1, None), (2, "blas"), (2, "split")):
        for activation in ("tanh", "gelu"):
            t = _trainer(activation, [0.5, 0.2], n_threads=n_threads, strategy=strategy)
            t.dropout_step = 3
            t.loss_and_grads(X, Y)
            assert strategy is None or t.plan.strategy == strategy
            grads.append(t.grads.copy())
    for i in (2, 4):
        np.testing.assert_allclose(grads[i], grads[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grads[i + 1], grads[1], rtol=1e-12, atol=1e-14)


def test_dropout_reproducible_and_off_by_default():
    Xt, yt, _, _ = classification()
    fit = lambda **kw: MLPClassifier(**dict(SMALL, max_iter=5, **kw)).fit(Xt, yt).coefs_[0]
    np.testing.assert_array_equal(fit(dropout=0.3), fit(dropout=0.3))
    assert not np.array_equal(fit(dropout=0.3), fit(dropout=0.3, random_state=1))
    assert not np.array_equal(fit(dropout=0.3), fit())
    np.testing.assert_array_equal(fit(dropout=0.0), fit())
    np.testing.assert_array_equal(fit(dropout=[0.0]), fit())
    with pytest.raises(ValueError, match="one per hidden layer"):
        MLPClassifier(hidden_layer_sizes=(4, 4), dropout=[0.5]).fit(Xt, yt)
    with pytest.raises(ValueError, match="sgd' or 'adam"):
        MLPClassifier(solver="lbfgs", dropout=0.5).fit(Xt, yt)
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(dropout=1.0).fit(Xt, yt)


def test_dropout_reduces_overfitting_on_a_small_data_set():
    # 200 noisy training rows (20% of labels flipped), a network that can memorise them
    X, y = make_classification(2200, 20, n_informative=5, flip_y=0.2, random_state=0)
    Xt, yt, Xv, yv = X[:200], y[:200], X[200:], y[200:]
    kw = dict(hidden_layer_sizes=(64, 64), random_state=0, max_iter=60, alpha=0.0,
              learning_rate_init=0.01)
    plain = MLPClassifier(**kw).fit(Xt, yt)
    dropped = MLPClassifier(**kw, dropout=0.5).fit(Xt, yt)
    # memorised without dropout: training loss near 0, held-out loss far above it
    train = [log_loss(yt, m.predict_proba(Xt)) for m in (plain, dropped)]
    held = [log_loss(yv, m.predict_proba(Xv)) for m in (plain, dropped)]
    assert held[1] < 0.8 * held[0]
    assert held[1] - train[1] < held[0] - train[0]


# -- fastmlp.MLP and the command line ---------------------------------------------------------
def test_mlp_options_dropout_slope_weights_and_an_exact_resume(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.randn(300, 4)
    Y = (X[:, :1] > 0).astype(float)
    kw = dict(activation="gelu", out_activation="sigmoid", dropout=[0.3, 0.1], random_state=0,
              dtype="float64")
    full = fastmlp.MLP((4, 16, 8, 1), **kw).fit(X, Y, epochs=6, batch_size=32)
    half = fastmlp.MLP((4, 16, 8, 1), **kw).fit(X, Y, epochs=3, batch_size=32)
    half.save(tmp_path / "m.npz")
    again = fastmlp.load(tmp_path / "m.npz").partial_fit(X, Y, epochs=3, batch_size=32)
    np.testing.assert_array_equal(again.predict(X), full.predict(X))  # the masks resume too
    plain = fastmlp.MLP((4, 16, 8, 1), **dict(kw, dropout=None)).fit(X, Y, epochs=6,
                                                                     batch_size=32)
    assert not np.array_equal(plain.predict(X), full.predict(X))
    # leaky ReLU's slope is kept by model files; sample weights are weighted means
    m = fastmlp.MLP((4, 8, 1), activation="leaky_relu", leaky_relu_slope=0.2, random_state=0)
    m.fit(X, Y, epochs=2)
    m.save(tmp_path / "l.npz")
    assert fastmlp.load(tmp_path / "l.npz").leaky_relu_slope == 0.2
    a = fastmlp.MLP((4, 8, 1), random_state=0, dtype="float64").fit(
        X, Y, epochs=2, sample_weight=np.full(300, 3.0))
    b = fastmlp.MLP((4, 8, 1), random_state=0, dtype="float64").fit(X, Y, epochs=2)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-12)
    with pytest.raises(ValueError, match="one per hidden layer"):
        fastmlp.MLP((4, 8, 1), dropout=[0.1, 0.2])


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastmlp.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    rs = np.random.RandomState(0)
    X = rs.randn(400, 4)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["y"] = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * rs.randn(400)
    frame[:150].to_csv(d / "train.csv", index=False)
    frame[150:250].to_csv(d / "val.csv", index=False)
    cls = frame[["a", "b", "c", "d"]].copy()
    cls["kind"] = np.where(X[:, 0] + 0.5 * rs.randn(400) > 1.2, "rare", "common")
    cls.to_csv(d / "cls.csv", index=False)
    return d


def test_cli_early_stopping_keeps_the_best_epoch(tables, tmp_path):
    r = _cli("train", tables / "train.csv", "--val-data", tables / "val.csv",
             "--early-stopping", 5, "--hidden", 64, "--lr", 0.01, "--epochs", 300,
             "--out", tmp_path / "m.npz", "--json", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_train"] == 150 and out["n_held_out"] == 100  # every DATA row trains
    model, meta = fastmlp.persistence.load_with_metadata(tmp_path / "m.npz")
    scores = meta["extra"]["cli"]["history"]["val_score"]
    assert len(scores) < 300 and len(scores) - 1 - int(np.argmax(scores)) == 5
    assert out["held_out"] == pytest.approx(max(scores), rel=1e-6)  # its weights are kept
    s = meta["extra"]["cli"]["settings"]
    assert s["early_stopping"] == 5 and s["val_data"] == str(tables / "val.csv")
    r = _cli("evaluate", tmp_path / "m.npz", tables / "val.csv", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["score"] == pytest.approx(max(scores), rel=1e-5)


def test_cli_alpha_dropout_class_weight_and_activations_reach_the_model(tables, tmp_path):
    r = _cli("train", tables / "train.csv", "--alpha", 0.5, "--dropout", "0.2,0.1",
             "--hidden", "16,8", "--activation", "silu", "--epochs", 3,
             "--out", tmp_path / "r.npz", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    model = fastmlp.load(tmp_path / "r.npz")
    assert model.alpha == 0.5 and model.activation == "silu"
    np.testing.assert_array_equal(model.dropout, [0.2, 0.1])
    outs = {}
    for extra in ((), ("--class-weight", "balanced")):
        r = _cli("train", tables / "cls.csv", "--epochs", 20, "--json", "--quiet",
                 "--out", tmp_path / "c.npz", *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outs[extra] = fastmlp.persistence.load_with_metadata(tmp_path / "c.npz")
    (plain, _), (weighted, meta) = outs.values()
    assert meta["extra"]["cli"]["settings"]["class_weight"] == "balanced"
    assert not np.array_equal(plain.coefs_[0], weighted.coefs_[0])


@pytest.mark.parametrize("args, needle", [
    (("--early-stopping", 5, "--val-fraction", 0), "--early-stopping needs validation rows"),
    (("--dropout", "0.5", "--solver", "lbfgs"), "--dropout needs --solver sgd or adam"),
    (("--dropout", "1.5"), "expected rates in [0, 1)"),
    (("--dropout", "0.1,0.2"), "one per hidden layer"),
    (("--class-weight", "balanced"), "--class-weight is for classification"),
    (("--val-data", "nowhere.csv"), "nowhere.csv"),
    (("--val-data", "train.csv", "--val-fraction", "0.3"), "give one of them"),
    (("--alpha", "-1"), "--alpha"),
])
def test_cli_refuses_bad_new_options(tables, tmp_path, args, needle):
    args = [tables / a if a == "train.csv" else a for a in args]
    r = _cli("train", tables / "train.csv", "--epochs", 2, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: ") and needle in lines[0]
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())


# -- scikit-learn's estimator checks with the extensions switched on -------------------------
def _expected_failures(est):
    out = {}
    if est.get_params().get("dropout") is not None:
        reason = ("dropout's masks follow the rows: a row repeated twice gets two masks, a "
                  "row of weight 2 one")
        out.update(check_sample_weight_equivalence_on_dense_data=reason,
                   check_sample_weight_equivalence_on_sparse_data=reason)
    if est.get_params().get("class_weight") == "balanced":
        reason = "'balanced' weights follow the class counts, which repeating rows changes"
        out.update(check_sample_weight_equivalence_on_dense_data=reason,
                   check_sample_weight_equivalence_on_sparse_data=reason)
        reason = "class_weight='balanced' is refused by partial_fit (as SGDClassifier's)"
        out.update(check_fit_score_takes_y=reason, check_n_features_in_after_fitting=reason,
                   check_estimators_partial_fit_n_features=reason)
    return out


@parametrize_with_checks([
    MLPClassifier(max_iter=50, activation="gelu", dropout=0.1, scoring="loss"),
    MLPRegressor(max_iter=50, activation="leaky_relu", leaky_relu_slope=0.1, dropout=[0.2],
                 restore_best_weights=True),
    MLPClassifier(max_iter=50, activation="silu", class_weight="balanced"),
], expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks_with_extensions(estimator, check):
    check(estimator)
