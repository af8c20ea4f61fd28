"""fastmlp.to_onnx: onnxruntime's predictions equal fastmlp's for every model kind, activation,
output and precision (skipped when the optional ``onnx`` extra is not installed)."""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import fastmlp

MISSING = "the optional 'onnx' extra is not installed (pip install 'fastmlp[onnx]')"
pytest.importorskip("skl2onnx", reason=MISSING)
ort = pytest.importorskip("onnxruntime", reason=MISSING)

# float32 graphs compute in float32: a few ulps of the outputs
TOL = {np.float32: 2e-6, np.float64: 1e-13}
GELU64_TOL = 1e-6  # onnxruntime's Erf is float32 only: a float64 GELU graph uses it


def _tol(dtype, act):
    return GELU64_TOL if (act == "gelu" and dtype == np.float64) else TOL[dtype]


def _run(onx, X):
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(70, 4))


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["identity", "logistic", "tanh", "relu", "leaky_relu", "gelu",
                                 "silu"])
@pytest.mark.parametrize("target", ["binary", "multiclass", "strings", "multilabel"])
def test_classifier_labels_and_probabilities_equal_fastmlps(dtype, act, target):
    rng, X = _data()
    y = {"binary": (X[:, 0] > 0).astype(int), "multiclass": rng.integers(0, 3, 70),
         "strings": np.array(["ant", "bee", "cat"])[rng.integers(0, 3, 70)],
         "multilabel": (rng.random((70, 3)) > 0.5).astype(int)}[target]
    est = _fit(fastmlp.MLPClassifier(hidden_layer_sizes=(6, 5), activation=act, max_iter=30,
                                     random_state=0, leaky_relu_slope=0.3), X, y)
    label, proba = _run(fastmlp.to_onnx(est, X[:1].astype(dtype)), X.astype(dtype))
    np.testing.assert_array_equal(label, est.predict(X))
    assert proba.dtype == dtype
    np.testing.assert_allclose(proba, est.predict_proba(X), rtol=0, atol=_tol(dtype, act))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,n_out", [("squared_error", 1), ("squared_error", 3),
                                        ("poisson", 1)])
@pytest.mark.parametrize("act", ["tanh", "leaky_relu", "gelu", "silu"])
def test_regressor_equals_fastmlp_including_poisson_and_several_outputs(dtype, loss, n_out,
                                                                        act):
    rng, X = _data(1)
    y = (np.exp(X @ [0.3, 0.2, 0.0, -0.1]) if loss == "poisson"
         else X[:, :n_out] * 2 + 1)
    if loss != "poisson" and n_out == 1:
        y = y.ravel()
    est = _fit(fastmlp.MLPRegressor(loss=loss, hidden_layer_sizes=(7,), activation=act,
                                    max_iter=30, random_state=0, leaky_relu_slope=0.3), X, y)
    (out,) = _run(fastmlp.to_onnx(est, X[:1].astype(dtype)), X.astype(dtype))
    assert out.shape == (70, n_out) and out.dtype == dtype
    pred = est.predict(X).reshape(70, n_out)
    np.testing.assert_allclose(out, pred, rtol=_tol(dtype, act) * 5, atol=_tol(dtype, act))


@pytest.mark.parametrize("model_dtype", ["float32", "float64"])
@pytest.mark.parametrize("out,loss", [("identity", "squared_error"), ("tanh", "squared_error"),
                                      ("relu", "squared_error"), ("logistic", "log_loss"),
                                      ("softmax", "log_loss"), ("exp", "poisson")])
def test_mlp_network_output_equals_predict(model_dtype, out, loss):
    rng, X = _data(2)
    Y = {"softmax": np.eye(3)[rng.integers(0, 3, 70)], "logistic": (rng.random((70, 3)) > .5),
         "exp": rng.poisson(1.0, (70, 3))}.get(out, rng.normal(size=(70, 3)))
    model = fastmlp.MLP((4, 8, 3), activation="relu", out_activation=out, loss=loss,
                        dtype=model_dtype, random_state=0)
    model.fit(X, Y.astype(float), epochs=2, batch_size=16)
    dtype = np.dtype(model_dtype).type
    (got,) = _run(fastmlp.to_onnx(model, X[:1].astype(dtype)), X.astype(dtype))
    np.testing.assert_allclose(got, model.predict(X), rtol=TOL[dtype] * 5, atol=TOL[dtype])


def test_patched_estimators_convert():
    rng, X = _data(3)
    y = rng.integers(0, 2, 70)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fastmlp.patch_sklearn()
    try:
        from sklearn.neural_network import MLPClassifier
        est = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0), X, y)
    finally:
        fastmlp.unpatch_sklearn()
    label, proba = _run(fastmlp.to_onnx(est, X[:1]), X)
    np.testing.assert_array_equal(label, est.predict(X))
    np.testing.assert_allclose(proba, est.predict_proba(X), atol=1e-13)


def test_options_pass_through_to_skl2onnx():
    rng, X = _data(4)
    est = _fit(fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=10), X,
               rng.integers(0, 3, 70))
    onx = fastmlp.to_onnx(est, X[:1].astype(np.float32), options={"zipmap": True},
                          target_opset=17)
    assert any(n.op_type == "ZipMap" for n in onx.graph.node)
    assert {o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")} == {17}
    label, proba = _run(onx, X.astype(np.float32))
    assert isinstance(proba, list) and set(proba[0]) == {0, 1, 2}


def test_what_does_not_convert_says_why():
    rng, X = _data(5)
    with pytest.raises(ValueError, match="converts fastmlp.MLPClassifier"):
        from sklearn.linear_model import LinearRegression
        fastmlp.to_onnx(LinearRegression().fit(X, X[:, 0]), X[:1])
    with pytest.raises(NotFittedError):
        fastmlp.to_onnx(fastmlp.MLPRegressor(), X[:1])
    with pytest.raises(NotFittedError):
        fastmlp.to_onnx(fastmlp.MLP((4, 2)), X[:1])
    multilabel = _fit(fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5), X,
                      (rng.random((70, 2)) > 0.5).astype(int))
    with pytest.raises(ValueError, match="zipmap=False only"):
        fastmlp.to_onnx(multilabel, X[:1], options={"zipmap": True})


@pytest.mark.parametrize("act", ["relu", "tanh", "logistic", "identity", "gelu"])
@pytest.mark.parametrize("classes", [[0, 2 ** 40], [-(2 ** 62), 7, 2 ** 40], [3, 2 ** 63 - 1]],
                         ids=["binary", "multiclass", "int64-max"])
def test_integer_labels_beyond_int32_come_out_whole(act, classes):
    """skl2onnx's MLP converter stores numeric classes as int32 (2**40 became 0): such
    labels go through fastmlp's graph, which gathers them from an int64 tensor."""
    rng, X = _data(6)
    classes = np.array(classes, dtype=np.int64)
    y = classes[np.arange(70) % len(classes)]
    est = _fit(fastmlp.MLPClassifier(hidden_layer_sizes=(5,), activation=act, max_iter=30,
                                     random_state=0), X, y)
    for dtype in (np.float32, np.float64):
        label, proba = _run(fastmlp.to_onnx(est, X[:1].astype(dtype)), X.astype(dtype))
        assert label.dtype == np.int64
        np.testing.assert_array_equal(label, est.predict(X))
    # ZipMap's keys too (ZipMap takes float32 only)
    onx = fastmlp.to_onnx(est, X[:1].astype(np.float32), options={"zipmap": True})
    label, proba = _run(onx, X.astype(np.float32))
    np.testing.assert_array_equal(label, est.predict(X))
    assert sorted(proba[0]) == sorted(classes.tolist())


def test_labels_beyond_int64_are_refused():
    rng, X = _data(7)
    for classes in (np.array([0, 2 ** 63 + 5], dtype=np.uint64),):
        est = _fit(fastmlp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=3),
                   X, classes[np.arange(70) % 2])
        with pytest.raises(ValueError, match="does not fit ONNX's int64 label.*LabelEncoder"):
            fastmlp.to_onnx(est, X[:1])


def test_x_sample_is_checked_and_defaults_to_the_models_width_and_precision():
    rng, X = _data(8)
    est = _fit(fastmlp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=3), X,
               rng.integers(0, 3, 70))
    with pytest.raises(ValueError, match="X_sample has 3 features, but the model takes 4"):
        fastmlp.to_onnx(est, X[:1, :3])
    with pytest.raises(ValueError, match=r"must be 2-D .*got shape \(4,\); pass a row as X\[:1\]"):
        fastmlp.to_onnx(est, X[0])
    with pytest.raises(ValueError, match="must be numeric"):
        fastmlp.to_onnx(est, np.array([["a"] * 4]))
    mlp = fastmlp.MLP((4, 3), dtype="float32", random_state=0)
    mlp.fit(X, X[:, :3], epochs=1)
    for model, dtype in ((est, np.float64), (mlp, np.float32)):
        onx = fastmlp.to_onnx(model)  # X_sample=None: (n, 4) in the weights' precision
        out = _run(onx, X.astype(dtype))
        np.testing.assert_allclose(out[-1], model.predict_proba(X) if model is est
                                   else model.predict(X), atol=TOL[dtype])
        assert out[-1].dtype == dtype


def test_scikit_learns_own_estimator_is_named_in_full():
    from sklearn.neural_network import MLPClassifier
    rng, X = _data(9)
    theirs = _fit(MLPClassifier(hidden_layer_sizes=(3,), max_iter=3), X, rng.integers(0, 2, 70))
    with pytest.raises(ValueError, match=r"got sklearn\.neural_network\._multilayer_perceptron"
                                         r"\.MLPClassifier; .*skl2onnx\.to_onnx.*fastmlp\."
                                         r"MLPClassifier"):
        fastmlp.to_onnx(theirs, X[:1])
