"""fastmlp.dask: data-parallel training on a 2-worker LocalCluster (processes, one thread each).

The ladder: per-step raw sums add up to the full-batch gradient (L-BFGS equals scikit-learn);
synchronous SGD/Adam equals single-process training on the same global batches (bitwise with
one worker); dask arrays, DataFrames and NumPy input; a worker killed mid-fit changes nothing;
a cluster that cannot continue raises and keeps the last completed step.
"""
import json
import os
import pickle
import re
import signal
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("distributed", reason="fastmlp.dask needs dask and distributed: "
                    "pip install 'fastmlp[dask]'")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
import pandas as pd  # noqa: E402
import sklearn.neural_network as sknn  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import dask as fdask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """One 2-worker process cluster for the module (starting one costs seconds)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def one_worker():
    """A 1-worker in-process cluster: the data-parallel fit must equal fastmlp's bit for bit."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(n=301, d=6, k=3, seed=0):
    rs = np.random.RandomState(seed)
    X = rs.normal(size=(n, d))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8)
    if k == 2:
        y = (y > 0).astype(int)
    return X, y


def _max_rel(a_list, b_list):
    return max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(a_list, b_list))


def _params(est):
    return est.coefs_ + est.intercepts_


def _uneven(X, y, chunks=(50, 120, 31, 100)):
    return (da.from_array(X, chunks=(chunks, X.shape[1])), da.from_array(y, chunks=(chunks,)))


# -- full batch: the gradient is the exact sum of the shards' raw sums -------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_lbfgs_classifier_equals_sklearn(client, k):
    X, y = _data(k=k)
    dX, dy = _uneven(X, y)
    kw = dict(hidden_layer_sizes=(7,), solver="lbfgs", alpha=1e-3, random_state=0,
              max_iter=40)
    ref = sknn.MLPClassifier(**kw).fit(X, y)
    est = fdask.MLPClassifier(**kw, client=client).fit(dX, dy)
    assert est.n_iter_ == ref.n_iter_
    assert _max_rel(_params(est), _params(ref)) < 1e-6
    assert est.loss_ == pytest.approx(ref.loss_, rel=1e-6)
    np.testing.assert_array_equal(est.classes_, ref.classes_)


def test_lbfgs_regressor_weighted_numpy_equals_sklearn(client):
    X, _ = _data()
    rs = np.random.RandomState(1)
    y = np.c_[X @ rs.normal(size=6), np.sin(X[:, 0])]
    sw = rs.uniform(0.1, 2, size=len(X))
    kw = dict(hidden_layer_sizes=(5, 4), activation="tanh", solver="lbfgs", alpha=1e-2,
              random_state=3, max_iter=30)
    ref = sknn.MLPRegressor(**kw).fit(X, y, sample_weight=sw)
    est = fdask.MLPRegressor(**kw, client=client).fit(X, y, sample_weight=sw)
    assert _max_rel(_params(est), _params(ref)) < 1e-6
    assert est.cluster_stats_["n_workers"] == 2


def test_full_batch_raw_sums_add_up_to_the_gradient():
    """The engines' sums over two shards, finished on the driver, are the one-batch
    gradient; adding the L2 term per shard would count it twice."""
    X, y = _data(n=40)
    Y = np.eye(3)[y]
    spec = dict(sizes=[6, 5, 3], activation="relu", out_activation="softmax",
                loss="log_loss", dtype="float64", n_rows=40, batch_size=None, shuffle=False,
                binarizer=None)
    rs = np.random.RandomState(0)
    params = rs.normal(size=6 * 5 + 5 * 3 + 5 + 3) * 0.3
    parts = [fdask._ShardEngine(X[a:b], Y[a:b], None, dict(spec, lo=a)).full(params)
             for a, b in [(0, 13), (13, 40)]]
    alpha = 0.1
    grads = sum(p[2] for p in parts) + np.r_[alpha * params[:45], np.zeros(8)]
    n = sum(p[1] for p in parts)
    loss = (sum(p[0] for p in parts) + 0.5 * alpha * params[:45] @ params[:45]) / n
    coefs = [params[:30].reshape(6, 5), params[30:45].reshape(5, 3)]
    ref_loss, gc, gi = fastmlp.backend.loss_and_grads(
        coefs, [params[45:50], params[50:]], X, Y, activation="relu",
        out_activation="softmax", loss="log_loss", alpha=alpha)
    assert n == 40
    assert loss == pytest.approx(ref_loss, rel=1e-14)
    np.testing.assert_allclose(grads / n, np.r_[gc[0].ravel(), gc[1].ravel(), gi[0], gi[1]],
                               rtol=1e-12, atol=1e-15)


# -- synchronous SGD/Adam: single-process training on the same global batches ------------------
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_stochastic_equals_single_process(client, solver, shuffle):
    X, y = _data()
    dX, dy = _uneven(X, y)
    kw = dict(hidden_layer_sizes=(8,), solver=solver, batch_size=32, alpha=1e-3,
              learning_rate_init=0.05, random_state=7, max_iter=4, shuffle=shuffle)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y)
    est = fdask.MLPClassifier(**kw, client=client).fit(dX, dy)
    assert est.n_iter_ == ref.n_iter_ == 4
    assert _max_rel(_params(est), _params(ref)) < 1e-12
    np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=1e-12)
    # one step per global batch: ceil(301 / 32) = 10 per epoch
    assert est.cluster_stats_["steps"] == 40


def test_unshuffled_batches_are_spread_over_every_worker(monkeypatch):
    """shuffle=False: each global batch is dealt out over the engines (each its part, within
    one row of the others'), not left on the one engine whose block of rows holds it -- and
    the fit is still the single process's (NumPy and dask input, weighted rows)."""
    seen = []
    step = fdask._ShardEngine.step

    def recording(self, params, b, key=0):
        out = step(self, params, b, key)
        seen.append((id(self), b, out[1]))
        return out
    monkeypatch.setattr(fdask._ShardEngine, "step", recording)
    X, y = _data(n=301)
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=64, random_state=0,
              max_iter=2, shuffle=False, learning_rate_init=0.05)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y)
    sw = np.random.RandomState(3).uniform(0.5, 2.0, size=len(X))
    ref_w = fastmlp.MLPRegressor(**kw).fit(X, X[:, :2], sample_weight=sw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as c:
        for args in [(X, y), _uneven(X, y)]:
            seen.clear()
            est = fdask.MLPClassifier(**kw, client=c).fit(*args)
            assert _max_rel(_params(est), _params(ref)) < 1e-12
            np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=1e-12)
            shares = {}
            for engine, b, rows in seen:
                shares.setdefault(b, {})[engine] = rows
            assert sorted(shares) == list(range(5))
            for b, per_engine in shares.items():
                n_rows = min(64, 301 - 64 * b)
                assert sorted(per_engine.values()) == [n_rows // 2, n_rows - n_rows // 2]
        est = fdask.MLPRegressor(**kw, client=c).fit(
            da.from_array(X, chunks=(70, 6)), da.from_array(X[:, :2], chunks=(70, 2)),
            sample_weight=da.from_array(sw, chunks=70))
        assert _max_rel(_params(est), _params(ref_w)) < 1e-12


def test_worker_engines_use_their_workers_threads(client):
    """An engine's kernels run with its worker's thread count, Numba's and BLAS's: N workers
    of k threads on one host use N*k cores."""
    X, _ = _data(n=20)
    spec = dict(sizes=[6, 4, 1], activation="relu", out_activation="identity",
                loss="squared_error", dtype="float64", n_rows=20, batch_size=None,
                shuffle=False, binarizer=None, lo=0)

    def counts(c):
        workers = sorted(c.scheduler_info(n_workers=-1)["workers"])
        engines = [c.submit(fdask._ShardEngine, X, X[:, 0], None, spec, actor=True,
                            pure=False, workers=[w]) for w in workers]
        return [f.result().threads().result() for f in engines]
    for numba_threads, blas in counts(client):
        assert numba_threads == 1 and blas and set(blas) == {1}
    if len(os.sched_getaffinity(0)) >= 2:
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                          dashboard_address=None) as cluster, \
                Client(cluster, set_as_default=False) as c:
            [(numba_threads, blas)] = counts(c)
            assert numba_threads == 2 and set(blas) == {2}


def test_local_workers_are_capped_at_the_cpu_budget(monkeypatch, capsys):
    """``--dask local:N`` starts at most one worker a core this process may use (each has
    one thread: more only take turns on the cores, and every step waits for the slowest),
    said in one line as ``--threads`` is; ``local:3`` on a budget of 1 started 3."""
    from fastmlp import _threads
    from fastmlp.cli import cluster
    monkeypatch.setattr(_threads, "cpu_budget", lambda: 1)
    with cluster._client("local:3") as c:
        assert len(c.scheduler_info()["workers"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fastmlp: --dask local:3 is more than the 1 CPU core this process may use "
                   "(its CPU affinity, container quota or Dask worker threads): using 1"]


def test_a_network_beyond_the_drivers_memory_is_one_clear_error(client, monkeypatch):
    """The driver's weights, best copy, summed gradients and optimizer state beyond its
    memory: one MemoryError naming the network, before the weights are drawn, as the local
    estimator says it (hidden_layer_sizes=(10**9,) failed inside the random draw)."""
    from fastmlp import _state
    monkeypatch.setattr(_state, "available_memory", lambda: 10 ** 5)  # the driver's only
    X, y = _data()
    est = fdask.MLPClassifier((500,), max_iter=1, client=client)
    with pytest.raises(MemoryError, match=r"training a network 6-500-3 \(float64\) on this "
                                          r"driver needs .* more than the 97\.7 KB of memory"):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")


def test_fewer_rows_than_workers_fits_as_locally(client, capfd):
    """One row on two workers (and batches smaller than the workers): no empty shard, no
    worker error; the fit is the local estimator's."""
    X1, y1 = np.array([[0.5, -1.0]]), np.array([2.0])
    X5 = np.random.RandomState(0).normal(size=(5, 2))
    y5 = X5[:, 0] - X5[:, 1]
    capfd.readouterr()
    for X, y, extra in [(X1, y1, dict(solver="lbfgs")), (X1, y1, dict(solver="adam")),
                        (X5, y5, dict(solver="sgd", batch_size=1, shuffle=False))]:
        kw = dict(hidden_layer_sizes=(3,), random_state=0, max_iter=5, **extra)
        ref = fastmlp.MLPRegressor(**kw).fit(X, y)
        for args in [(X, y), (da.from_array(X, chunks=1), da.from_array(y, chunks=1))]:
            est = fdask.MLPRegressor(**kw, client=client).fit(*args)
            assert _max_rel(_params(est), _params(ref)) < 1e-12
            np.testing.assert_allclose(est.predict(X), ref.predict(X), rtol=1e-12)
    err = capfd.readouterr().err
    assert "ERROR" not in err and "Compute Failed" not in err
    # an engine without rows (if it had one) adds nothing
    spec = dict(sizes=[2, 3, 1], activation="relu", out_activation="identity",
                loss="squared_error", dtype="float64", n_rows=1, batch_size=None,
                shuffle=False, binarizer=None, lo=1)
    loss, weight, grads, _ = fdask._ShardEngine(X1[:0], y1[:0], None, spec).full(
        np.ones(13))
    assert (loss, weight) == (0.0, 0.0) and not grads.any()


@pytest.mark.parametrize("with_client", [True, False])
def test_cluster_model_saves_and_loads_as_the_local_estimator(client, tmp_path, with_client):
    """The client is not part of the model: the file is a local estimator's, which predicts
    what the cluster-trained one does."""
    X, y = _data(n=120)
    extra = dict(client=client) if with_client else {}  # else: the session's default client
    for est, methods in [
            (fdask.MLPClassifier((5,), solver="adam", max_iter=3, random_state=0, **extra),
             ("predict", "predict_proba")),
            (fdask.MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5,
                                random_state=0, **extra), ("predict",))]:
        est.fit(X, y if hasattr(est, "predict_proba") else X[:, 0])
        est.save(tmp_path / "m.npz")
        back = fastmlp.load(tmp_path / "m.npz")
        assert type(back) is type(est.to_local())
        assert back.get_params() == est.to_local().get_params()
        for method in methods:
            np.testing.assert_array_equal(getattr(back, method)(X), getattr(est, method)(X))
        assert est.client is (client if with_client else None)  # the estimator is unchanged


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_one_worker_is_bitwise_fastmlp(one_worker, solver):
    X, y = _data()
    kw = dict(hidden_layer_sizes=(8,), solver=solver, batch_size=50, random_state=0,
              max_iter=3, momentum=0.8)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y)
    est = fdask.MLPClassifier(**kw, client=one_worker).fit(X, y)
    for a, b in zip(_params(est), _params(ref)):
        np.testing.assert_array_equal(a, b)
    assert est.loss_curve_ == pytest.approx(ref.loss_curve_, rel=1e-15)


def test_regressor_float32_stays_float32(client):
    X, _ = _data()
    y = np.sin(X[:, 0]) + X[:, 1]
    X32 = X.astype(np.float32)
    kw = dict(hidden_layer_sizes=(6,), solver="adam", batch_size=64, random_state=0,
              max_iter=3)
    ref = fastmlp.MLPRegressor(**kw).fit(X32, y)
    est = fdask.MLPRegressor(**kw, client=client).fit(da.from_array(X32, chunks=100),
                                                      da.from_array(y, chunks=100))
    assert est.coefs_[0].dtype == np.float32
    assert _max_rel(_params(est), _params(ref)) < 1e-5


# -- inputs and outputs --------------------------------------------------------------------
def test_dataframe_in_dask_arrays_out(client):
    X, y = _data(k=2)
    cols = [f"f{i}" for i in range(X.shape[1])]
    ddf = dd.from_pandas(pd.DataFrame(X, columns=cols), npartitions=3)
    ys = dd.from_pandas(pd.Series(y, name="y"), npartitions=3)
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", random_state=0, max_iter=25)
    ref = sknn.MLPClassifier(**kw).fit(X, y)
    est = fdask.MLPClassifier(**kw, client=client).fit(ddf, ys)
    assert list(est.feature_names_in_) == cols
    assert _max_rel(_params(est), _params(ref)) < 1e-6
    pred = est.predict(ddf)
    proba = est.predict_proba(ddf)
    assert isinstance(pred, da.Array) and isinstance(proba, da.Array)
    np.testing.assert_array_equal(pred.compute(), ref.predict(X))
    np.testing.assert_allclose(proba.compute(), ref.predict_proba(X), rtol=1e-6)
    assert est.score(ddf, ys) == pytest.approx(ref.score(X, y))
    # NumPy in, NumPy out
    np.testing.assert_array_equal(est.predict(pd.DataFrame(X, columns=cols)), ref.predict(X))


def test_regressor_score_on_dask_matches_numpy(client):
    X, _ = _data()
    y = np.c_[X[:, 0] - X[:, 1], X[:, 2]]
    w = np.random.RandomState(2).uniform(0.5, 1.5, len(X))
    est = fdask.MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", random_state=0,
                             max_iter=20, client=client).fit(X, y)
    dX, dy = da.from_array(X, chunks=80), da.from_array(y, chunks=80)
    assert isinstance(est.predict(dX), da.Array)
    assert est.score(dX, dy, sample_weight=w) == pytest.approx(est.score(X, y, sample_weight=w),
                                                              rel=1e-12)


def test_bad_input_is_a_clear_error(client):
    X, y = _data()
    Xn = X.copy()
    Xn[200, 3] = np.nan
    est = fdask.MLPClassifier((4,), solver="lbfgs", max_iter=2, client=client)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(da.from_array(Xn, chunks=100), da.from_array(y, chunks=100))
    with pytest.raises(ValueError, match="rows"):
        est.fit(da.from_array(X, chunks=100), da.from_array(y[:-1], chunks=100))
    with pytest.raises(ValueError, match="NaN"):
        est.fit(Xn, y)
    with pytest.raises(ValueError, match="scoring"):
        fdask.MLPClassifier(early_stopping=True, scoring="roc_auc", client=client).fit(X, y)
    with pytest.raises(ValueError, match="validation set is too small"):
        fdask.MLPClassifier(early_stopping=True, validation_fraction=0.001,
                            client=client).fit(X, y)
    with pytest.raises(ValueError, match="leaky_relu_slope"):
        fdask.MLPClassifier(leaky_relu_slope=-1, client=client).fit(X, y)
    with pytest.raises(ValueError, match="dask"):
        est.fit(X, da.from_array(y))


# -- fastmlp's parameters beyond scikit-learn's, and early stopping, on the cluster -----------
# Tolerances: L-BFGS amplifies summation-order differences over its iterations (seen: up to
# 1.2e-13 relative); sgd/adam on the same global batches stay within 1e-12 (seen: 4e-16).
@pytest.mark.parametrize("k, class_weight", [(2, "balanced"), (3, {0: 2.0, 2: 0.5})])
def test_class_weight_lbfgs_equals_local(client, k, class_weight):
    X, y = _data(k=k)
    sw = np.random.RandomState(4).uniform(0.5, 2.0, len(X))
    kw = dict(hidden_layer_sizes=(7,), solver="lbfgs", random_state=0, max_iter=30,
              class_weight=class_weight)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    plain = fastmlp.MLPClassifier(**dict(kw, class_weight=None)).fit(X, y, sample_weight=sw)
    assert _max_rel(_params(plain), _params(ref)) > 1e-3  # the weights do change the fit
    dX, dy = _uneven(X, y)
    est = fdask.MLPClassifier(**kw, client=client).fit(dX, dy, sample_weight=da.from_array(
        sw, chunks=100))
    assert est.n_iter_ == ref.n_iter_
    assert _max_rel(_params(est), _params(ref)) < 1e-10
    est = fdask.MLPClassifier(**kw, client=client).fit(X, y, sample_weight=sw)  # NumPy input
    assert _max_rel(_params(est), _params(ref)) < 1e-10


@pytest.mark.parametrize("k, extra", [
    (2, dict(solver="adam")),                                   # stratified split
    (3, dict(solver="sgd", shuffle=False, scoring="loss", learning_rate_init=0.3)),
    (3, dict(solver="adam", class_weight="balanced", restore_best_weights=False)),
])
def test_early_stopping_classifier_equals_local(client, k, extra):
    X, y = _data(n=401, k=k)
    sw = np.random.RandomState(5).uniform(0.5, 2.0, len(X))
    kw = dict(dict(hidden_layer_sizes=(7,), batch_size=32, learning_rate_init=0.02,
                   random_state=3, max_iter=40, early_stopping=True, validation_fraction=0.2,
                   n_iter_no_change=3), **extra)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    assert ref.n_iter_ < 40  # it did stop early
    dX, dy = _uneven(X, y, chunks=(50, 120, 31, 100, 100))
    for inputs in [(dX, dy, da.from_array(sw, chunks=90)), (X, y, sw)]:
        est = fdask.MLPClassifier(**kw, client=client).fit(*inputs)
        assert est.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(est.validation_scores_, ref.validation_scores_,
                                   rtol=1e-12)
        np.testing.assert_allclose(est.validation_loss_curve_, ref.validation_loss_curve_,
                                   rtol=1e-12)
        assert est.best_validation_score_ == pytest.approx(ref.best_validation_score_,
                                                           rel=1e-12)
        np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=1e-12)
        assert _max_rel(_params(est), _params(ref)) < 1e-12
        # scikit-learn's split holds out ceil(0.2 * 401) = 81 rows: 320 train, 10 steps an epoch
        assert est.cluster_stats_["steps"] == est.n_iter_ * 10


def test_early_stopping_warm_start_equals_local(client):
    """A second warm-started fit after an early-stopped one: scikit-learn's best weights
    then alias the live ones, and the cluster fit keeps that."""
    X, y = _data(n=200, k=2)
    kw = dict(hidden_layer_sizes=(5,), early_stopping=True, max_iter=3, warm_start=True,
              random_state=0)
    ref, est = fastmlp.MLPClassifier(**kw), fdask.MLPClassifier(**kw, client=client)
    for _ in range(2):
        ref.fit(X, y)
        est.fit(X, y)
    assert len(est.validation_scores_) == len(ref.validation_scores_) == 6
    assert _max_rel(_params(est), _params(ref)) < 1e-12


@pytest.mark.parametrize("extra", [
    dict(solver="adam", early_stopping=True, n_iter_no_change=2, max_iter=30),
    dict(solver="sgd", max_iter=5, restore_best_weights=True, scoring="loss"),
    dict(solver="lbfgs", max_iter=15, restore_best_weights=True),
])
def test_user_validation_set_equals_local(client, extra):
    """fit(X_val=, y_val=, sample_weight_val=): spread over the engines, scored there each
    epoch (each L-BFGS iteration), the same scores, losses and kept weights as locally."""
    X, y = _data()
    Xv, yv = _data(n=77, seed=9)
    swv = np.random.RandomState(6).uniform(0.5, 2.0, len(Xv))
    kw = dict(hidden_layer_sizes=(8,), batch_size=40, random_state=3, **extra)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y, X_val=Xv, y_val=yv, sample_weight_val=swv)
    est = fdask.MLPClassifier(**kw, client=client).fit(*_uneven(X, y), X_val=Xv, y_val=yv,
                                                       sample_weight_val=swv)
    assert est.n_iter_ == ref.n_iter_
    assert len(est.validation_scores_) == len(ref.validation_scores_) > 1
    np.testing.assert_allclose(est.validation_scores_, ref.validation_scores_, rtol=1e-12)
    np.testing.assert_allclose(est.validation_loss_curve_, ref.validation_loss_curve_,
                               rtol=1e-12 if extra["solver"] != "lbfgs" else 1e-10)
    assert _max_rel(_params(est), _params(ref)) < 1e-10
    with pytest.raises(ValueError, match="y_val was not provided"):
        est.fit(X, y, X_val=Xv)
    with pytest.raises(ValueError, match="in-memory arrays"):
        est.fit(X, y, X_val=da.from_array(Xv), y_val=yv)


def test_early_stopping_regressor_equals_local(client):
    X, _ = _data(n=301)
    y = np.c_[X[:, 0] - X[:, 1], np.sin(X[:, 2])]
    kw = dict(hidden_layer_sizes=(6,), solver="adam", batch_size=32, random_state=0,
              max_iter=60, early_stopping=True, n_iter_no_change=3, learning_rate_init=0.01)
    ref = fastmlp.MLPRegressor(**kw).fit(X, y)
    est = fdask.MLPRegressor(**kw, client=client).fit(da.from_array(X, chunks=70),
                                                      da.from_array(y, chunks=70))
    assert est.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(est.validation_scores_, ref.validation_scores_, rtol=1e-12)
    np.testing.assert_allclose(est.validation_loss_curve_, ref.validation_loss_curve_,
                               rtol=1e-12)
    assert _max_rel(_params(est), _params(ref)) < 1e-12


def test_leaky_relu_slope_equals_local(client):
    X, y = _data()
    kw = dict(hidden_layer_sizes=(8,), activation="leaky_relu", leaky_relu_slope=0.3,
              solver="adam", batch_size=40, random_state=0, max_iter=3)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y)
    other = fastmlp.MLPClassifier(**dict(kw, leaky_relu_slope=0.01)).fit(X, y)
    assert _max_rel(_params(other), _params(ref)) > 1e-3
    est = fdask.MLPClassifier(**kw, client=client).fit(*_uneven(X, y))
    assert _max_rel(_params(est), _params(ref)) < 1e-12
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))


def test_engine_dropout_row0_shards_add_up_to_the_batch():
    """Engine.raw_sums with dropout: two contiguous parts of a batch, each given its row
    offset, draw the whole batch's masks (their sums add up to the batch's); without the
    offset the second part draws other masks."""
    Engine = fastmlp.backend.Engine
    rs = np.random.RandomState(0)
    X, Y = rs.normal(size=(50, 4)), rs.normal(size=(50, 2))
    eng = Engine([4, 9, 7, 2], activation="relu", max_rows=50)
    params = rs.normal(size=eng.n_params) * 0.4
    rates, key = np.array([0.4, 0.25]), (12345 << 32) | 7
    whole = np.empty(eng.n_params)
    loss, n = eng.raw_sums(params, X, Y, out=whole, dropout=rates, dropout_key=key)
    parts, shifted = np.empty(eng.n_params), np.empty(eng.n_params)
    l1, n1 = eng.raw_sums(params, X[:20], Y[:20], out=parts, dropout=rates, dropout_key=key)
    l2, n2 = eng.raw_sums(params, X[20:], Y[20:], out=shifted, dropout=rates,
                          dropout_key=key, row0=20)
    np.testing.assert_allclose(parts + shifted, whole, rtol=1e-12, atol=1e-14)
    assert (l1 + l2, n1 + n2) == (pytest.approx(loss, rel=1e-13), n)
    eng.raw_sums(params, X[20:], Y[20:], out=shifted, dropout=rates, dropout_key=key)
    assert np.abs(parts + shifted - whole).max() > 1e-3
    plain = np.empty(eng.n_params)
    eng.raw_sums(params, X, Y, out=plain)
    assert np.abs(plain - whole).max() > 1e-3  # the masks do drop units
    with pytest.raises(ValueError, match="row0"):
        eng.raw_sums(params, X[20:], Y[20:], out=shifted, dropout=rates, row0=21)
    with pytest.raises(ValueError, match="dropout must be"):
        eng.raw_sums(params, X, Y, out=shifted, dropout=[0.5])


@pytest.mark.parametrize("solver, activation, extra", [
    ("adam", "gelu", dict(shuffle=False)),  # contiguous shards: each its rows' offset
    ("sgd", "relu", dict(shuffle=True)),    # shuffled: replicated rows, a part of each batch
    ("adam", "relu", dict(shuffle=True, early_stopping=True, n_iter_no_change=1,
                          max_iter=10)),
])
def test_dropout_equals_local(client, solver, activation, extra):
    """Two workers: each engine draws, at its rows' positions in the global batch, the masks
    one process draws."""
    X, y = _data()
    kw = dict(dict(hidden_layer_sizes=(8, 5), solver=solver, activation=activation,
                   batch_size=64, random_state=0, max_iter=3, dropout=[0.3, 0.2],
                   learning_rate_init=0.05), **extra)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y)
    plain = fastmlp.MLPClassifier(**dict(kw, dropout=None)).fit(X, y)
    assert _max_rel(_params(plain), _params(ref)) > 1e-3
    est = fdask.MLPClassifier(**kw, client=client).fit(*_uneven(X, y))
    assert est.n_iter_ == ref.n_iter_
    assert _max_rel(_params(est), _params(ref)) < 1e-12
    np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=1e-12)
    if kw.get("early_stopping"):
        np.testing.assert_allclose(est.validation_scores_, ref.validation_scores_,
                                   rtol=1e-12)
    with pytest.raises(ValueError, match="dropout needs solver"):
        fdask.MLPClassifier(**dict(kw, solver="lbfgs"), client=client).fit(X, y)


@pytest.mark.slow
def test_worker_killed_with_replicated_rows_changes_nothing(client):
    X, y = _data(n=300)
    kw = dict(hidden_layer_sizes=(5,), solver="adam", batch_size=50, random_state=2,
              max_iter=2, dropout=0.3, client=client)
    ref = fdask.MLPClassifier(**kw).fit(X, y)
    client.wait_for_workers(2, timeout=60)
    est = fdask.MLPClassifier(**kw)
    est._after_step = _kill_one_worker_at(client, 4)
    est.fit(X, y)
    assert est.cluster_stats_["worker_losses"] >= 1
    for a, b in zip(_params(est), _params(ref)):
        np.testing.assert_array_equal(a, b)
    client.wait_for_workers(2, timeout=60)


def test_dropout_one_worker_shuffled_is_bitwise(one_worker):
    X, y = _data()
    kw = dict(hidden_layer_sizes=(8,), solver="adam", batch_size=50, random_state=0,
              max_iter=3, dropout=0.4)
    ref = fastmlp.MLPClassifier(**kw).fit(X, y)
    est = fdask.MLPClassifier(**kw, client=one_worker).fit(X, y)
    for a, b in zip(_params(est), _params(ref)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_request_stop_stops_after_the_current_step(one_worker, solver):
    X, y = _data()
    est = fdask.MLPClassifier((4,), solver=solver, batch_size=30, max_iter=20,
                              random_state=0, client=one_worker)
    est._after_step = lambda step: est.request_stop() if step == 5 else None
    if solver == "adam":
        with pytest.warns(UserWarning, match="interrupted by user"):
            est.fit(X, y)
        assert (est.cluster_stats_["steps"], est.n_iter_) == (5, 0)
    else:
        est.fit(X, y)
        assert est.cluster_stats_["steps"] < 10 and est.n_iter_ <= 5
    est._after_step = None
    est.fit(X, y)  # the request was used up
    assert est.n_iter_ == 20


def test_keyboard_interrupt_keeps_the_last_epoch_as_locally(one_worker):
    """Ctrl-C (KeyboardInterrupt) during a cluster fit ends it as it ends a local fit: a
    warning, and the estimator keeps the parameters of the last completed step."""
    X, y = _data()
    est = fdask.MLPClassifier((4,), solver="adam", batch_size=30, max_iter=20,
                              random_state=0, client=one_worker)
    seen = {}

    def after_step(step):  # 11 steps an epoch: step 25 is in the third
        if step == 25:
            seen["params"] = [p.copy() for p in _params(est)]
            raise KeyboardInterrupt
    est._after_step = after_step
    with pytest.warns(UserWarning, match="interrupted by user"):
        est.fit(X, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    for a, b in zip(_params(est), seen["params"]):
        np.testing.assert_array_equal(a, b)


def test_cluster_fits_run_the_local_loops(one_worker, monkeypatch, capsys):
    """One fitting loop: the cluster estimators drive the local estimators' L-BFGS driver and
    epoch loop with the cluster's gradient source, and so print what they print."""
    from fastmlp import estimators as fe
    calls = []
    for name in ("_run_lbfgs", "_run_epochs"):
        original = getattr(fe._BaseMLP, name)

        def spy(self, source, *args, _original=original, _name=name):
            calls.append((_name, source))
            return _original(self, source, *args)
        monkeypatch.setattr(fe._BaseMLP, name, spy)
    X, y = _data()
    est = fdask.MLPClassifier((4,), solver="lbfgs", max_iter=5, verbose=True,
                              random_state=0, client=one_worker).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("Iteration ")]
    assert [line.split(", loss = ")[0] for line in lines] == [
        f"Iteration {i}" for i in range(1, 6)]
    assert est.n_iter_ == 5 and isinstance(calls[0][1], fdask._FleetSource)
    est.set_params(solver="sgd", verbose=False).fit(X, y)
    assert [name for name, _ in calls] == ["_run_lbfgs", "_run_epochs"]
    assert not hasattr(fdask, "_DriverTrainer") and not hasattr(fdask, "_ParamsView")


def test_partial_fit_equals_local(client):
    X, y = _data(n=300)
    kw = dict(hidden_layer_sizes=(6,), solver="adam", batch_size=32, random_state=0,
              class_weight={0: 2.0})
    ref, est = fastmlp.MLPClassifier(**kw), fdask.MLPClassifier(**kw, client=client)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    for i, (a, b) in enumerate([(0, 100), (100, 200), (200, 300)]):
        ref.partial_fit(X[a:b], y[a:b], classes=[0, 1, 2])
        if i % 2:  # later calls may leave classes out
            est.partial_fit(*_uneven(X[a:b], y[a:b], chunks=(40, 60)))
        else:
            est.partial_fit(X[a:b], y[a:b], classes=[0, 1, 2])
        assert est.t_ == ref.t_ == b and est.n_iter_ == ref.n_iter_
        assert _max_rel(_params(est), _params(ref)) < 1e-12
    np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=1e-12)
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(*_uneven(X[:100], y[:100] + 5, chunks=(40, 60)))
    with pytest.raises(ValueError, match="early_stopping"):
        fdask.MLPClassifier(early_stopping=True, client=client).partial_fit(
            X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="balanced"):
        fdask.MLPClassifier(class_weight="balanced", client=client).partial_fit(
            X, y, classes=[0, 1, 2])
    assert not hasattr(fdask.MLPClassifier(solver="lbfgs"), "partial_fit")
    reg = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", random_state=0,
                               batch_size=50)
    dreg = fdask.MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", random_state=0,
                              batch_size=50, client=client)
    for _ in range(2):
        reg.partial_fit(X, X[:, 0])
        dreg.partial_fit(da.from_array(X, chunks=70), da.from_array(X[:, 0], chunks=70))
    assert _max_rel(_params(dreg), _params(reg)) < 1e-12


def test_callbacks_are_refused_not_ignored(one_worker):
    class Callback:
        def setup(self, *args, **kwargs):
            pass

        def teardown(self, *args, **kwargs):
            pass

        def on_fit_task_begin(self, *args, **kwargs):
            pass

        def on_fit_task_end(self, *args, **kwargs):
            pass
    X, y = _data(n=60)
    est = fdask.MLPClassifier((3,), max_iter=2, client=one_worker)
    est.set_callbacks(Callback())
    with pytest.raises(ValueError, match="callbacks"):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    X, y = _data(n=20)
    with pytest.raises(ImportError, match=r"pip install 'fastmlp\[dask\]'"):
        fdask.MLPClassifier((3,), max_iter=1).fit(X, y)


def test_params_clone_pickle(client):
    est = fdask.MLPRegressor(hidden_layer_sizes=(3,), client=client)
    assert est.get_params()["client"] is client
    assert set(est.get_params()) - {"client"} == set(fastmlp.MLPRegressor().get_params())
    assert clone(est).client is client
    X, _ = _data(n=60)
    est.set_params(solver="lbfgs", max_iter=5).fit(X, X[:, 0])
    back = pickle.loads(pickle.dumps(est))
    assert back.client is None
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    local = est.to_local()
    assert type(local) is fastmlp.MLPRegressor and not hasattr(local, "client")
    assert local.get_params() == {k: v for k, v in est.get_params().items() if k != "client"}
    np.testing.assert_array_equal(local.predict(X), est.predict(X))


# -- faults -------------------------------------------------------------------------------
def _kill_one_worker_at(client, at_step):
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]

    def after_step(step):
        if step == at_step:
            os.kill(pids[victim], signal.SIGKILL)
    return after_step


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_worker_killed_mid_fit_changes_nothing(client, solver):
    X, y = _data(n=400)
    dX, dy = da.from_array(X, chunks=100), da.from_array(y, chunks=100)
    kw = dict(hidden_layer_sizes=(6,), solver=solver, batch_size=40, random_state=1,
              max_iter=3 if solver == "adam" else 15, client=client)
    ref = fdask.MLPClassifier(**kw).fit(dX, dy)
    client.wait_for_workers(2, timeout=60)
    est = fdask.MLPClassifier(**kw)
    est._after_step = _kill_one_worker_at(client, 12 if solver == "adam" else 5)
    est.fit(dX, dy)
    assert est.cluster_stats_["worker_losses"] >= 1
    assert est.cluster_stats_["steps"] == ref.cluster_stats_["steps"]
    for a, b in zip(_params(est), _params(ref)):
        np.testing.assert_array_equal(a, b)
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow
def test_worker_killed_numpy_input_is_resent(client):
    X, y = _data(n=300)
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", batch_size=60, random_state=2,
              max_iter=2, client=client)
    ref = fdask.MLPClassifier(**kw).fit(X, y)
    client.wait_for_workers(2, timeout=60)
    est = fdask.MLPClassifier(**kw)
    est._after_step = _kill_one_worker_at(client, 3)
    est.fit(X, y)
    assert est.cluster_stats_["worker_losses"] >= 1
    for a, b in zip(_params(est), _params(ref)):
        np.testing.assert_array_equal(a, b)
    client.wait_for_workers(2, timeout=60)


def test_cluster_lost_raises_and_keeps_last_step(monkeypatch):
    monkeypatch.setattr(fdask.transport, "RECOVERY_TIMEOUT", 2.0)
    X, y = _data(n=200)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as c:
        est = fdask.MLPClassifier((4,), solver="adam", batch_size=20, random_state=0,
                                  max_iter=5, client=c)
        seen = {}

        def after_step(step):
            if step == 4:
                seen["params"] = [p.copy() for p in _params(est)]
                cluster.scale(0)
                c.sync(cluster._correct_state)
        est._after_step = after_step
        with pytest.raises(fdask.ClusterLostError, match="last completed step"):
            est.fit(X, y)
    for a, b in zip(_params(est), seen["params"]):
        np.testing.assert_array_equal(a, b)


# -- the command line ---------------------------------------------------------------------
def _cli(*argv, cwd, capsys, monkeypatch):
    """``fastmlp ...`` in this process: (exit code, stdout, stderr)."""
    from fastmlp.cli import main
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_cli_trains_a_folder_of_parquet_on_the_cluster(client, tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyarrow")
    X, y = _data(n=600)
    for i in range(3):
        part = pd.DataFrame(X[i * 200:(i + 1) * 200], columns=[f"f{j}" for j in range(6)])
        part["label"] = y[i * 200:(i + 1) * 200]
        part.to_parquet(tmp_path / f"part{i}.parquet")
    address = client.scheduler.address
    rc, out, err = _cli("train", str(tmp_path), "--dask", address, "--epochs", "4",
                        "--batch-size", "64", "--out", "m.npz", "--json", "--quiet",
                        cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["task"] == "classify" and result["workers"] == 2
    assert result["n_train"] + result["n_val"] == 600
    assert result["epochs"] == 4 and result["train"] > 0.5
    # the model file is a local fastmlp model: predict/evaluate read it without a cluster
    model = fastmlp.load(tmp_path / "m.npz")
    assert isinstance(model, fastmlp.MLPClassifier)
    assert list(model.feature_names_in_) == [f"f{j}" for j in range(6)]
    rc, out, err = _cli("evaluate", "m.npz", str(tmp_path / "part0.parquet"), "--json",
                        cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 0, err
    assert json.loads(out)["score"] > 0.5


@pytest.mark.parametrize("data, argv, message", [
    ("d.csv", ["--dask", "local:0"], "number of local workers"),
    ("d.csv", ["--dask", "mars://x"], "expected local:N"),
    ("d.csv", ["--dask", "local:2", "--resume", "m.npz"], "--resume is not supported"),
    ("d.csv", ["--dask", "local:2", "--out", "m.npz", "--checkpoint-every", "2"],
     "--checkpoint-every is not supported"),
    ("d.csv", ["--dask", "local:2", "--val-data", "d.csv", "--val-fraction", "0.1"],
     "--val-data replaces --val-fraction"),
    ("d.csv", ["--dask", "local:2", "--val-data", "v.csv"], "are not DATA's"),
    ("d.csv", ["--dask", "local:2", "--val-data", "v.csv", "--plot", "v.csv"],
     "name it *.png"),
    ("d.csv", ["--dask", "local:2", "--val-data", "v.csv", "--out", "v.csv"],
     "would overwrite a data file"),
    ("d.csv", ["--dask", "local:2", "--early-stopping", "3"],
     "--early-stopping is not supported"),
    ("d.csv", ["--dask", "local:2", "--threads", "2"], "--threads is not supported"),
    ("d.csv", ["--dask", "local:2", "--plot", "curve.pdf"], "name it *.png"),
    ("d.csv", ["--dask", "local:2", "--out", "d.csv"], "would overwrite a data file"),
    ("d.csv", ["--dask", "local:2", "--solver", "lbfgs", "--dropout", "0.5"],
     "--dropout needs --solver sgd or adam"),
    ("d.csv", ["--dask", "local:1", "--task", "regress", "--class-weight", "balanced"],
     "--class-weight needs a classification task"),
    ("nothing/*.parquet", ["--dask", "local:1"], "no Parquet or CSV files"),
    ("d.csv", ["--dask", "local:1", "--target", "zz"], "no column 'zz'"),
])
def test_cli_dask_errors_are_one_line(tmp_path, capsys, monkeypatch, data, argv, message):
    (tmp_path / "d.csv").write_text("a,b\n1,0\n2,1\n")
    (tmp_path / "v.csv").write_text("z,b\n1,0\n2,1\n")
    rc, out, err = _cli("train", data, *argv, cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 2
    assert err.startswith("fastmlp: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "v.csv"]


def test_asv_benchmark_runs_once(client, monkeypatch):
    """The asv benchmark cannot rot: its measurement and track functions run on tiny sizes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.syspath_prepend(root)
    import importlib
    bench = importlib.import_module("benchmarks.bench_dask")
    cache = bench.measure(client, [32], [4, 8, 2], steps=2)
    b = bench.TrackDaskStep()
    b.setup(cache, 32)
    assert 0 < b.track_compute_share(cache, 32) <= 1
    assert b.track_parallel_efficiency(cache, 32) > 0
    assert b.track_communication_ms(cache, 32) >= 0
    with pytest.raises(NotImplementedError, match="fastmlp"):
        b.setup(None, 32)


def test_cli_dask_options_reach_the_cluster_fit(client, tmp_path, capsys, monkeypatch):
    """--alpha, --class-weight and --dropout train on the cluster (none silently dropped),
    --plot draws the loss curve; a bad --dropout is one error line."""
    pytest.importorskip("matplotlib")
    X, y = _data(n=300)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    frame["label"] = y
    frame.to_csv(tmp_path / "d.csv", index=False)
    seen = {}
    original = fdask.MLPClassifier.fit

    def spy(self, X, y, sample_weight=None):
        seen.update(self.get_params())
        return original(self, X, y, sample_weight)
    monkeypatch.setattr(fdask.MLPClassifier, "fit", spy)
    address = client.scheduler.address
    rc, out, err = _cli("train", "d.csv", "--dask", address, "--epochs", "2", "--alpha",
                        "0.01", "--class-weight", "balanced", "--plot", "curve.png",
                        "--quiet", "--json", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 0, err
    assert (seen["alpha"], seen["class_weight"]) == (0.01, "balanced")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["n_train"] + result["n_val"] == 300 and result["n_val"] > 0
    frame.iloc[:40].to_csv(tmp_path / "v.csv", index=False)
    rc, out, err = _cli("train", "d.csv", "--dask", address, "--epochs", "2", "--val-data",
                        "v.csv", "--json", "--quiet", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["n_train"], result["n_val"]) == (300, 40)
    assert 0 <= result["held_out"] <= 1
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, out, err = _cli("train", "d.csv", "--dask", address, "--epochs", "2", "--dropout",
                        "0.3", "--out", "m.npz", "--quiet", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 0, err
    assert seen["dropout"] == [0.3] and (tmp_path / "m.npz").exists()
    rc, out, err = _cli("train", "d.csv", "--dask", address, "--epochs", "2", "--hidden",
                        "4,4", "--dropout", "0.3,0.2,0.1", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 2 and err.startswith("fastmlp: error: --dropout: one rate")
    assert len(err.strip().splitlines()) == 1


def test_cli_dask_sigint_saves_the_last_step(client, tmp_path, capsys, monkeypatch):
    """Ctrl-C during a cluster fit stops after the current step and saves it to --out."""
    X, y = _data(n=300)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    frame["label"] = y
    frame.to_csv(tmp_path / "d.csv", index=False)

    def after_step(self, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(fdask._DaskMLP, "_after_step", after_step, raising=False)
    rc, out, err = _cli("train", "d.csv", "--dask", client.scheduler.address, "--epochs",
                        "50", "--batch-size", "32", "--val-fraction", "0", "--out", "m.npz",
                        "--quiet", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 130, err
    assert err.strip().splitlines()[-1].startswith("fastmlp: interrupted by SIGINT after 0 "
                                                   "epochs; the last completed step is saved")
    model = fastmlp.load(tmp_path / "m.npz")
    assert isinstance(model, fastmlp.MLPClassifier) and model.coefs_[0].shape == (6, 100)


def test_cli_saves_the_last_step_when_the_cluster_is_lost(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fdask.transport, "RECOVERY_TIMEOUT", 2.0)
    X, y = _data(n=300)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    frame["label"] = y
    frame.to_csv(tmp_path / "d.csv", index=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:

        def after_step(self, step):
            if step == 3:
                cluster.scale(0)
                cluster.sync(cluster._correct_state)
        monkeypatch.setattr(fdask._DaskMLP, "_after_step", after_step, raising=False)
        rc, out, err = _cli("train", "d.csv", "--dask", cluster.scheduler_address,
                            "--epochs", "3", "--batch-size", "32", "--out", "m.npz",
                            "--quiet", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 1, err
    assert err.startswith("fastmlp: error: the cluster cannot continue")
    assert "saved to m.npz" in err and len(err.strip().splitlines()) == 1
    model = fastmlp.load(tmp_path / "m.npz")
    assert isinstance(model, fastmlp.MLPClassifier) and model.coefs_[0].shape == (6, 100)


def _cli_process(*argv, cwd):
    """``python -m fastmlp.cli ...`` in a fresh process (its real stderr: warnings and the
    cluster's logs included): (exit code, stdout, stderr)."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-m", "fastmlp.cli", *argv], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def _table(n=200, seed=0):
    X, y = _data(n=n, d=3, seed=seed)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["label"] = y
    return frame


def test_cli_dask_files_with_other_columns_are_one_line(tmp_path, capsys, monkeypatch):
    frame = _table()
    (tmp_path / "data").mkdir()
    frame.iloc[:100].to_csv(tmp_path / "data" / "p0.csv", index=False)
    frame.iloc[100:].rename(columns={"b": "bb"}).to_csv(tmp_path / "data" / "p1.csv",
                                                       index=False)
    rc, out, err = _cli("train", "data", "--dask", "local:2", cwd=tmp_path, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("fastmlp: error: data/p1.csv: its columns differ from "
                          "data/p0.csv's; missing 'b'")


def test_cli_dask_val_data_with_a_class_the_training_rows_lack_is_refused(tmp_path, capsys,
                                                                          monkeypatch):
    """--dask --val-data whose target has a class DATA lacks: the local run's one line, exit 2,
    nothing written (it trained a model with an output no row teaches)."""
    frame = _table()
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.iloc[:30].assign(label=np.where(np.arange(30) % 3 == 0, 9, frame.label[:30])).to_csv(
        tmp_path / "v.csv", index=False)
    rc, out, err = _cli("train", "d.csv", "--val-data", "v.csv", "--dask", "local:1",
                        "--epochs", "1", "--quiet", "--out", "m.npz", cwd=tmp_path,
                        capsys=capsys, monkeypatch=monkeypatch)
    known = ", ".join(map(repr, sorted(set(frame.label.tolist()), key=str)))
    assert rc == 2 and err == (f"fastmlp: error: --val-data v.csv: class 9 not in DATA's "
                               f"training rows (its classes: {known})\n"), err
    assert not (tmp_path / "m.npz").exists()


def test_cli_dask_missing_value_is_the_local_runs_one_line(client, tmp_path):
    """A NaN (or an infinity) with --dask: the local run's error line (file, column, row), no
    worker log: the rows are checked before any engine gets them."""
    frame = _table()
    frame.loc[130, "b"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "parts").mkdir()
    frame.iloc[:100].to_csv(tmp_path / "parts" / "p0.csv", index=False)
    frame.iloc[100:].assign(c=np.where(np.arange(100) == 40, np.inf, frame.c[100:])).to_csv(
        tmp_path / "parts" / "p1.csv", index=False)
    rc, _, local = _cli_process("train", "d.csv", "--epochs", "1", cwd=tmp_path)
    assert rc == 2 and local.strip() == ("fastmlp: error: d.csv: feature column 'b', row 131 "
                                         "(line 132): missing value")
    rc, out, err = _cli_process("train", "d.csv", "--dask", "local:2", "--epochs", "1",
                                cwd=tmp_path)
    assert (rc, err) == (2, local)
    rc, out, err = _cli_process("train", "parts", "--dask", client.scheduler.address,
                                "--epochs", "1", cwd=tmp_path)
    assert rc == 2 and err.strip() == ("fastmlp: error: parts/p1.csv: feature column 'b', "
                                       "row 31 (line 32): missing value")


def test_cli_dask_prints_what_a_local_run_prints(client, tmp_path):
    """No scikit-learn "Iteration N" lines, no raw warning: the progress lines, the summary,
    the workers (in the singular for one)."""
    _table(n=300).to_csv(tmp_path / "d.csv", index=False)
    rc, out, err = _cli_process("train", "d.csv", "--dask", client.scheduler.address,
                                "--epochs", "3", "--batch-size", "64", "--out", "m.npz",
                                cwd=tmp_path)
    assert rc == 0, err
    assert "Iteration" not in out + err and "Warning" not in err and ".py:" not in err
    assert out.splitlines()[0].startswith("d.csv: classify 3-100-3 relu (adam, float32), 3 "
                                          "epochs in ")
    assert out.splitlines()[1].startswith("held-out accuracy: ")
    assert out.splitlines()[2] == "saved model to m.npz"
    assert re.fullmatch(r"on 2 Dask workers \(\d+ steps\)", out.splitlines()[3])
    lines = err.strip().splitlines()
    assert lines[0].startswith("epoch 1/3  loss ") and lines[1].startswith("epoch 3/3  loss ")
    assert lines[2:] == ["fastmlp: note: Stochastic Optimizer: Maximum iterations (3) reached "
                         "and the optimization hasn't converged yet."]
    rc, out, err = _cli_process("train", "d.csv", "--dask", "local:1", "--epochs", "2",
                                "--quiet", cwd=tmp_path)
    assert rc == 0 and err == "", err
    assert re.fullmatch(r"on 1 Dask worker \(\d+ steps\)", out.splitlines()[-1])


@pytest.mark.parametrize("class_weight, message", [
    ({0: float("nan"), 1: 1.0, 2: 1.0}, r"class_weight\[0\] must be a finite non-negative"),
    ({0: 1.0, 1: -1.0, 2: 1.0}, r"class_weight\[1\] must be a finite non-negative"),
    ({0: 0.0, 1: 0.0, 2: 0.0}, "class_weight gives every training sample zero weight"),
])
def test_bad_class_weight_is_refused_before_training_as_locally(one_worker, class_weight,
                                                                message):
    """A NaN, negative or all-zero class_weight is refused in one clear ValueError before a
    step runs, as the local estimator refuses it (it ended in a ZeroDivisionError, or an
    error naming sample_weight)."""
    X = np.random.default_rng(0).normal(size=(60, 4))
    y = np.arange(60) % 3
    kw = dict(hidden_layer_sizes=(5,), max_iter=3, class_weight=class_weight)
    with pytest.raises(ValueError, match=message):
        fastmlp.MLPClassifier(**kw).fit(X, y)
    est = fdask.MLPClassifier(**kw, client=one_worker)
    with pytest.raises(ValueError, match=message):
        est.fit(X, y)
    assert not getattr(est, "loss_curve_", None)  # no epoch ran


def test_a_shard_engines_steps_do_not_rescan_its_rows(one_worker, monkeypatch):
    """Issue 19: the rows are validated once (on the driver for NumPy input, on the worker
    for a dask collection); the shard engine's steps do not scan them again -- but an Engine
    built by a user still does, and a dask collection's NaN is still refused."""
    from fastmlp._engine_checks import _EngineChecks
    scan = _EngineChecks._check_finite
    scanned = []

    def refuse_rows(self, a, name):
        if name != "params":
            scanned.append(name)
            raise AssertionError(f"{name} scanned again")
        return scan(self, a, name)

    monkeypatch.setattr(_EngineChecks, "_check_finite", refuse_rows)
    X, y = _data()
    w = np.random.RandomState(2).uniform(0.5, 2, len(X))
    for solver, dropout in (("sgd", None), ("adam", 0.2), ("lbfgs", None)):
        est = fdask.MLPClassifier((4,), solver=solver, max_iter=2, random_state=0,
                                  dropout=dropout, batch_size=50, client=one_worker)
        est.fit(X, y, sample_weight=w)
        est.fit(da.from_array(X, chunks=100), da.from_array(y, chunks=100))
    assert scanned == []
    with pytest.raises(AssertionError, match="X scanned again"):
        fastmlp.backend.Engine([6, 4, 3]).forward(np.zeros(6 * 4 + 4 * 3 + 7), X)
    Xn = X.copy()
    Xn[200, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fdask.MLPClassifier((4,), max_iter=2, client=one_worker).fit(
            da.from_array(Xn, chunks=100), da.from_array(y, chunks=100))


def test_the_shard_engine_scans_rows_the_driver_did_not_check():
    """spec["checked"] (NumPy rows the driver validated) skips the worker's scan; without it
    the worker refuses a NaN as the local fit does."""
    X, y = _data(n=40)
    X[3, 1] = np.nan
    spec = dict(sizes=[6, 5, 3], activation="relu", out_activation="softmax",
                loss="log_loss", dtype="float64", n_rows=40, batch_size=None, shuffle=False,
                binarizer=None, lo=0)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fdask._ShardEngine(X, np.eye(3)[y], None, spec)
    fdask._ShardEngine(X, np.eye(3)[y], None, dict(spec, checked=True))
