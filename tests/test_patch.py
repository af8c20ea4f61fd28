"""fastmlp.patch_sklearn(): scikit-learn's MLP names run on fastmlp, with scikit-learn's numbers;
isinstance, fallbacks to scikit-learn's private methods, warnings for what cannot be patched,
portable pickles, the log line and ``python -m fastmlp.patch``.  (CI also runs scikit-learn's
own neural_network tests and its common checks under the patch.)"""
import os
import pickle
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest
import sklearn
import sklearn.neural_network as nn
import sklearn.neural_network._multilayer_perceptron as mlp_module

import fastmlp
from fastmlp import patch

ORIGINAL = {"MLPClassifier": mlp_module.MLPClassifier, "MLPRegressor": mlp_module.MLPRegressor}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def patched():
    assert not patch.is_patched()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # this module bound the originals
        assert fastmlp.patch_sklearn() is True
    try:
        yield
    finally:
        fastmlp.unpatch_sklearn()
    assert nn.MLPClassifier is ORIGINAL["MLPClassifier"]


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int), X @ [1.0, -2.0, 0.5, 0.0]


def test_patch_replaces_both_module_names_and_unpatch_restores(patched):
    for name, original in ORIGINAL.items():
        for module in (nn, mlp_module):
            cls = getattr(module, name)
            assert cls is not original and cls._fastmlp_patched
            assert issubclass(cls, getattr(fastmlp, name))
    from sklearn.neural_network import MLPClassifier  # a later import gets the patch
    assert MLPClassifier is nn.MLPClassifier
    assert patch.is_patched() and fastmlp.patch_sklearn() is True  # idempotent


def test_patched_estimators_are_instances_of_sklearns_classes(patched):
    X, y, t = _data()
    clf = nn.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3).fit(X, y)
    reg = nn.MLPRegressor(hidden_layer_sizes=(5,), max_iter=3).fit(X, t)
    assert isinstance(clf, ORIGINAL["MLPClassifier"])
    assert isinstance(reg, ORIGINAL["MLPRegressor"])
    assert isinstance(reg, mlp_module.BaseMultilayerPerceptron)
    assert not isinstance(reg, ORIGINAL["MLPClassifier"])
    assert sklearn.base.is_classifier(clf) and sklearn.base.is_regressor(reg)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_patched_fit_gives_scikit_learns_numbers(patched, solver):
    X, y, _ = _data()
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=15, random_state=0,
              learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = nn.MLPClassifier(**kw).fit(X, y)
        theirs = ORIGINAL["MLPClassifier"](**kw).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7)


def test_private_methods_fall_back_to_scikit_learns_code(patched):
    """_loss_grad_lbfgs is scikit-learn's (fastmlp has no such method); on a patched
    estimator fitted by fastmlp it returns what scikit-learn's own estimator returns."""
    X, y, _ = _data()
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = nn.MLPClassifier(**kw).fit(X, y)
        theirs = ORIGINAL["MLPClassifier"](**kw).fit(X, y)
    theirs.coefs_, theirs.intercepts_ = ours.coefs_, ours.intercepts_
    theta = np.hstack([p.ravel() for p in ours.coefs_ + ours.intercepts_])
    Y = y.reshape(-1, 1).astype(float)

    def buffers():
        units = [4, 5, 1]
        acts = [X] + [np.empty((60, u)) for u in units[1:]]
        return (acts, [np.empty_like(a) for a in acts[1:]],
                [np.empty((a, b)) for a, b in zip(units[:-1], units[1:])],
                [np.empty(b) for b in units[1:]])

    got = ours._loss_grad_lbfgs(theta.copy(), X, Y, None, *buffers())
    want = theirs._loss_grad_lbfgs(theta.copy(), X, Y, None, *buffers())
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10)
    assert type(ours)._loss_grad_lbfgs.__wrapped__ is ORIGINAL["MLPClassifier"]._loss_grad_lbfgs


def test_unsupported_scikit_learn_version_leaves_it_alone(monkeypatch):
    monkeypatch.setattr(sklearn, "__version__", "1.10.0")
    with pytest.warns(UserWarning, match="scikit-learn 1.10.0 is not a version fastmlp"):
        assert fastmlp.patch_sklearn() is False
    assert not patch.is_patched()
    assert nn.MLPClassifier is ORIGINAL["MLPClassifier"]


def test_names_imported_before_the_patch_are_reported(monkeypatch):
    stale = types.ModuleType("user_code_imported_early")
    stale.MLPRegressor = ORIGINAL["MLPRegressor"]
    monkeypatch.setitem(sys.modules, stale.__name__, stale)
    try:
        with pytest.warns(UserWarning, match="user_code_imported_early.MLPRegressor"):
            fastmlp.patch_sklearn()
    finally:
        fastmlp.unpatch_sklearn()


def test_pickles_name_scikit_learn_and_keep_the_optimizer_state(patched):
    X, y, _ = _data()
    est = nn.MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    blob = pickle.dumps(est)
    proba = est.predict_proba(X)
    assert b"fastmlp." not in blob  # no fastmlp module in it (a subprocess test loads it)
    again = pickle.loads(blob)
    assert type(again) is nn.MLPClassifier  # the patch is on: a patched estimator
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    # Adam's moments travelled: partial_fit continues exactly as without the round trip
    est.partial_fit(X, y)
    again.partial_fit(X, y)
    np.testing.assert_array_equal(again.coefs_[0], est.coefs_[0])
    fastmlp.unpatch_sklearn()
    plain = pickle.loads(blob)  # unpatched: scikit-learn's own estimator and code
    assert type(plain) is ORIGINAL["MLPClassifier"]
    np.testing.assert_allclose(plain.predict_proba(X), proba, rtol=1e-12)
    plain.partial_fit(X, y)  # scikit-learn starts a fresh optimizer: it runs, not fails
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fastmlp.patch_sklearn()  # for the fixture's teardown


def _run(args, **env):
    full = dict(os.environ, PYTHONPATH=ROOT)
    full.update(env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full,
                          timeout=300)


def test_python_m_fastmlp_patch_runs_a_script_and_logs_the_path(tmp_path):
    X, y, _ = _data()
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import pickle, sys
        import numpy as np
        from sklearn.neural_network import MLPClassifier
        X = np.random.default_rng(0).normal(size=(40, 3))
        y = (X[:, 0] > 0).astype(int)
        est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, solver="lbfgs").fit(X, y)
        print("argv", sys.argv[1:], "patched", getattr(type(est), "_fastmlp_patched", False))
        pickle.dump((est, X, est.predict_proba(X)), open(sys.argv[1], "wb"))
    """))
    out = tmp_path / "model.pkl"
    res = _run(["-m", "fastmlp.patch", str(script), str(out)], FASTMLP_PATCH_LOG="1")
    assert res.returncode == 0, res.stderr
    assert f"argv ['{out}'] patched True" in res.stdout
    assert "fastmlp.patch: MLPClassifier.fit runs on fastmlp (solver='lbfgs')" in res.stderr
    # the pickle loads where fastmlp cannot be imported at all, as scikit-learn's estimator
    check = textwrap.dedent(f"""
        import sys, pickle, numpy as np
        sys.modules["fastmlp"] = None  # fastmlp not installed
        est, X, proba = pickle.load(open({str(out)!r}, "rb"))
        print(type(est).__module__, np.abs(est.predict_proba(X) - proba).max() < 1e-12)
    """)
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=""), timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["sklearn.neural_network._multilayer_perceptron", "True"]


def test_python_m_fastmlp_patch_usage_errors(tmp_path):
    res = _run(["-m", "fastmlp.patch", str(tmp_path / "missing.py")])
    assert res.returncode == 2
    assert "fastmlp.patch: error: no such script" in res.stderr and "Traceback" not in res.stderr
    res = _run(["-m", "fastmlp.patch"])
    assert res.returncode == 2 and "usage:" in res.stderr
    # a module that is not there: one line and status 1, as `python -m` says it
    for name, said in (("no_such_module", "No module named no_such_module"),
                       ("json", "'json' is a package and cannot be directly executed")):
        res = _run(["-m", "fastmlp.patch", "-m", name])
        assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
        assert res.stderr.startswith("fastmlp.patch: error: ") and said in res.stderr
    # an ImportError raised by the module's own code keeps its traceback
    (tmp_path / "broken_mod.py").write_text("import no_such_dependency\n")
    res = _run(["-m", "fastmlp.patch", "-m", "broken_mod"], PYTHONPATH=f"{ROOT}:{tmp_path}")
    assert res.returncode == 1 and "Traceback" in res.stderr
    assert "No module named 'no_such_dependency'" in res.stderr


def test_an_estimator_created_while_patched_pickles_after_unpatch():
    X, y, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fastmlp.patch_sklearn()
        try:
            est = nn.MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, random_state=0)
            est.fit(X, y)
            while_patched = pickle.dumps(est)
        finally:
            fastmlp.unpatch_sklearn()
    proba = est.predict_proba(X)
    blob = pickle.dumps(est)  # was a PicklingError ("not the same object")
    assert b"fastmlp." not in blob
    for data in (blob, while_patched):  # both load as scikit-learn's estimator now
        plain = pickle.loads(data)
        assert type(plain) is ORIGINAL["MLPClassifier"]
        np.testing.assert_allclose(plain.predict_proba(X), proba, rtol=1e-12)
    import copy
    for twin in (copy.copy(est), copy.deepcopy(est), sklearn.clone(est)):
        assert type(twin) is type(est)  # copies stay patched, as the estimator does
    twin = copy.deepcopy(est)
    est.partial_fit(X, y)
    twin.partial_fit(X, y)  # the optimizer's state was copied too
    np.testing.assert_array_equal(twin.coefs_[0], est.coefs_[0])


def test_libraries_holding_scikit_learns_classes_are_not_warned_about():
    """skl2onnx keeps scikit-learn's classes in its converter table: the user cannot change
    that, so patch_sklearn() does not warn about it (FASTMLP_PATCH_LOG logs it)."""
    pytest.importorskip("skl2onnx")
    code = "import skl2onnx, fastmlp; fastmlp.patch_sklearn()"
    res = _run(["-W", "error", "-c", code])
    assert res.returncode == 0 and res.stderr == "", res.stderr
    res = _run(["-c", code], FASTMLP_PATCH_LOG="1")
    assert "installed libraries keep scikit-learn's own classes: skl2onnx" in res.stderr


def test_the_patch_follows_into_joblibs_process_workers(tmp_path):
    """GridSearchCV(n_jobs=2) fits in loky worker processes: there too the fits run on
    fastmlp (a scorer, run in the worker, reports the fitted estimator's class)."""
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent("""
        import os, warnings
        import numpy as np
        from sklearn.neural_network import MLPClassifier
        from sklearn.model_selection import GridSearchCV
        X = np.random.default_rng(0).normal(size=(80, 4))
        y = (X[:, 0] > 0).astype(int)
        def ran_fastmlp(est, X, y):
            return float(getattr(type(est), "_fastmlp_patched", False))
        def pid(est, X, y):
            return float(os.getpid())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search = GridSearchCV(MLPClassifier(hidden_layer_sizes=(4,), max_iter=10),
                                  {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2, refit="fastmlp",
                                  scoring={"fastmlp": ran_fastmlp, "pid": pid}).fit(X, y)
        res = search.cv_results_
        print("fastmlp", res["mean_test_fastmlp"].tolist())
        pids = {p for k in ("split0_test_pid", "split1_test_pid") for p in res[k]}
        print("workers", len(pids), os.getpid() not in pids)
    """))
    res = _run(["-m", "fastmlp.patch", str(script)], FASTMLP_PATCH_LOG="1")
    assert res.returncode == 0, res.stderr
    assert "fastmlp [1.0, 1.0]" in res.stdout  # scikit-learn's code in the workers gave 0.0
    assert "True" in res.stdout.split("workers")[1]  # the fits ran in other processes
    assert "fastmlp.patch: patched in worker process" in res.stderr
