"""Pickles, copies, patched pickles and ``to_local`` carry the model file's state
(``_get_state``/``_set_state``), checked the same way, and training continues from them
exactly as from the original."""
import copy
import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from fastmlp import MLPClassifier, MLPRegressor


class Recorder:
    """A picklable FitCallback that counts the epochs it sees."""

    def __init__(self):
        self.ends = 0

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        pass

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, fitted_estimator=None):
        self.ends += 1
        return False


def _data(n=80):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


SMALL = dict(hidden_layer_sizes=(5,), random_state=0, batch_size=16)


def _cases():
    X, y = _data()
    quiet = warnings.catch_warnings()
    with quiet:
        warnings.simplefilter("ignore")
        yield "unfitted", MLPClassifier(**SMALL)
        yield "adam partial_fit", MLPClassifier(**SMALL).partial_fit(X, y, classes=[0, 1, 2])
        yield "sgd warm_start", MLPClassifier(**SMALL, solver="sgd", learning_rate="invscaling",
                                              warm_start=True, max_iter=3).fit(X, y)
        yield "lbfgs", MLPClassifier(**SMALL, solver="lbfgs", max_iter=5).fit(X, y)
        yield "early stopped", MLPClassifier(**SMALL, early_stopping=True, max_iter=200,
                                             n_iter_no_change=2, tol=0.5).fit(X, y)
        yield "callbacks", MLPClassifier(**SMALL, max_iter=3).set_callbacks(Recorder()).fit(X, y)
        from sklearn.metrics import accuracy_score, make_scorer
        yield "callable scoring", MLPClassifier(**SMALL, early_stopping=True, max_iter=3,
                                                scoring=make_scorer(accuracy_score)).fit(X, y)
        routed = MLPClassifier(**SMALL, max_iter=3)
        with sklearn.config_context(enable_metadata_routing=True):
            routed.set_fit_request(sample_weight=True)
        yield "metadata request", routed.fit(X, y)
        yield "RandomState", MLPRegressor(hidden_layer_sizes=(5,), batch_size=16, max_iter=3,
                                          random_state=np.random.RandomState(3)).fit(X, y * 1.)
        pd = pytest.importorskip("pandas")
        df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
        yield "feature names", MLPClassifier(**SMALL, max_iter=3, warm_start=True).fit(df, y)


def _continue(est):
    """Train on: partial_fit (stochastic solvers) or a warm-started fit; returns est."""
    X, y = _data()
    if hasattr(est, "feature_names_in_"):
        import pandas as pd
        X = pd.DataFrame(X, columns=list(est.feature_names_in_))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if est.solver == "lbfgs" or est.early_stopping:
            est.set_params(warm_start=True).fit(X, y)
        elif not hasattr(est, "coefs_"):
            est.fit(X, y)
        else:
            est.partial_fit(X, y)
            est.partial_fit(X, y)
    return est


def _same(a, b):
    assert type(a) is type(b)
    assert a.get_params().keys() == b.get_params().keys()
    for k, v in a.get_params().items():
        if not isinstance(v, np.random.RandomState):
            w = b.get_params()[k]
            assert v == w or repr(v) == repr(w), k  # a scorer: another object, the same
    for k in ("n_iter_", "t_", "loss_", "loss_curve_", "best_loss_", "validation_scores_",
              "best_validation_score_", "_no_improvement_count", "classes_",
              "feature_names_in_", "n_features_in_"):
        assert hasattr(a, k) == hasattr(b, k), k
        if hasattr(a, k):
            np.testing.assert_array_equal(np.asarray(getattr(a, k), dtype=object),
                                          np.asarray(getattr(b, k), dtype=object), k)
    assert hasattr(a, "coefs_") == hasattr(b, "coefs_")
    if hasattr(a, "coefs_"):
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_array_equal(p, q)  # bitwise
        ra, rb = a._random_state.get_state(), b._random_state.get_state()
        np.testing.assert_array_equal(ra[1], rb[1])
        assert ra[2:] == rb[2:]


def _trips():
    yield "pickle", lambda e: pickle.loads(pickle.dumps(e))
    yield "deepcopy", copy.deepcopy
    yield "copy", copy.copy


@pytest.mark.parametrize("trip", [t for t, _ in _trips()])
def test_round_trips_continue_training_exactly(trip):
    do = dict(_trips())[trip]
    for name, est in _cases():
        again = do(est)
        assert again is not est
        _same(again, est)
        if "_metadata_request" in vars(est):
            assert again._metadata_request.fit.requests["sample_weight"] is True
        if getattr(est, "_skl_callbacks", None):
            assert type(again._skl_callbacks[0]) is Recorder
        if trip != "copy":  # a shallow copy shares the arrays, as before
            _same(_continue(again), _continue(est))


def test_clone_is_unfitted_with_the_same_parameters():
    for name, est in _cases():
        twin = sklearn.clone(est)
        assert not hasattr(twin, "coefs_")
        assert twin.get_params().keys() == est.get_params().keys()


def test_random_state_object_stays_the_fit_generator():
    """check_random_state aliases a RandomState parameter and _random_state: kept so."""
    est = dict(_cases())["RandomState"]
    assert est._random_state is est.random_state
    again = pickle.loads(pickle.dumps(est))
    assert again._random_state is again.random_state


def test_hostile_state_raises_a_clear_error():
    est = dict(_cases())["adam partial_fit"]
    state = est.__getstate__()
    new = MLPClassifier.__new__(MLPClassifier)
    with pytest.raises(ValueError, match="not a pickle of this fastmlp version"):
        new.__setstate__({k: v for k, v in state.items() if k != "_fastmlp_state"})
    with pytest.raises(ValueError, match="cannot unpickle MLPClassifier: its state is list"):
        new.__setstate__([1])

    def spoiled(change):
        s = copy.deepcopy(state)
        change(s["_fastmlp_state"])
        return s

    bad = [
        (lambda s: s["arrays"].__setitem__("coefs/0", np.array([object()])), "bad arrays"),
        (lambda s: s["arrays"].pop("coefs/0"), "missing array"),
        (lambda s: s["arrays"].__setitem__("coefs/0", np.ones((3, 3))), "bad parameters"),
        (lambda s: s["model"]["attrs"].__setitem__("n_iter_", -1), "n_iter_"),
        (lambda s: s["model"]["params"].__setitem__("alpha", "x"), "alpha"),
        (lambda s: s["model"]["params"].__setitem__("alpha", object()), "not a plain value"),
        (lambda s: s["model"]["optimizer"].__setitem__("name", "rmsprop"), "optimizer"),
        (lambda s: s.__setitem__("objects", {"callbacks": [1]}), "callbacks"),
        (lambda s: s.__setitem__("evil", 1), "bad state"),
        (lambda s: s["objects"]["params"].__setitem__("scoring", s["model"]["params"].pop(
            "scoring") or 5), "'scoring' parameter"),
        (lambda s: s["objects"]["params"].__setitem__("alpha", 5), "bad estimator param"),
        (lambda s: s["objects"]["params"].__setitem__("evil", 5), "bad estimator param"),
        (lambda s: s["objects"].__setitem__("metadata_request", {}), "metadata request"),
    ]
    for change, message in bad:
        new = MLPClassifier.__new__(MLPClassifier)
        with pytest.raises(ValueError, match=message):
            new.__setstate__(spoiled(change))
        assert not vars(new)  # nothing set


def test_pickle_holds_the_model_files_state():
    est = dict(_cases())["early stopped"]
    state = est.__getstate__()
    ours = state["_fastmlp_state"]
    assert ours["model"] == est._get_state()["model"]
    assert "_optimizer" not in state and "_trainer" not in state  # fastmlp reads ours only


def test_patched_pickles_keep_sklearn_version_and_continue_exactly():
    import fastmlp
    from sklearn import neural_network as nn
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fastmlp.patch_sklearn()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = nn.MLPClassifier(**SMALL, max_iter=3).set_callbacks(Recorder()).fit(X, y)
        blob = pickle.dumps(est)
        assert b"_sklearn_version" in blob and b"fastmlp." not in blob
        again = pickle.loads(blob)
        assert type(again) is type(est)
        _same(_continue(again), _continue(est))
        state = est.__getstate__()
        state["_sklearn_version"] = "0.1"
        new = type(est).__new__(type(est))
        with pytest.warns(InconsistentVersionWarning):
            new.__setstate__(state)
        # scikit-learn's own estimator, pickled without fastmlp, loads patched: its fields
        # are read through the same checks
        fastmlp.unpatch_sklearn()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = nn.MLPClassifier(**SMALL, max_iter=3).fit(X, y)
        blob = pickle.dumps(plain)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fastmlp.patch_sklearn()
        loaded = pickle.loads(blob)
        assert getattr(type(loaded), "_fastmlp_patched", False)
        np.testing.assert_allclose(loaded.predict_proba(X), plain.predict_proba(X), rtol=1e-12)
        _continue(loaded)
    finally:
        fastmlp.unpatch_sklearn()


@pytest.mark.parametrize("name", ["adam partial_fit", "lbfgs", "early stopped", "callbacks",
                                  "feature names"])
def test_to_local_continues_exactly_and_shares_nothing(name):
    """A cluster estimator's to_local() is the local estimator rebuilt from its state
    (without client), independent of it: training either leaves the other unchanged."""
    fdask = pytest.importorskip("fastmlp.dask")
    est = dict(_cases())[name]
    cls = fdask.MLPClassifier
    cluster = cls.__new__(cls)
    cluster.__setstate__(copy.deepcopy(est.__getstate__()))  # a fitted cluster estimator, no cluster needed
    local = cluster.to_local()
    assert type(local) is MLPClassifier and "client" not in local.get_params()
    _same(local, est)
    before = [c.copy() for c in cluster.coefs_]
    _same(_continue(local), _continue(est))
    for a, b in zip(before, cluster.coefs_):
        np.testing.assert_array_equal(a, b)  # training the local copy left the cluster's be
    if name == "callbacks":
        assert type(local._skl_callbacks[0]) is Recorder
