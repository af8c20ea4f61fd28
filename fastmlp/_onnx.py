"""ONNX export of fastmlp's models through skl2onnx (the optional ``onnx`` extra).

``MLPClassifier`` goes through skl2onnx's own MLP classifier converter (it reads only
``coefs_``, ``intercepts_``, ``n_layers_``, ``activation``, ``out_activation_``, ``classes_``
and the label binarizer, which fastmlp's estimator has with scikit-learn's meaning), except a
multilabel one: skl2onnx's graph declares its label output 1-D and thresholds with a
Binarizer node that onnxruntime implements for float32 only, so fastmlp builds that graph
itself (label = probabilities > 0.5, both (n_samples, n_labels)).
``MLPRegressor`` and :class:`fastmlp.MLP` use a converter of fastmlp's, written with
skl2onnx's public algebra API: one MatMul + Add + activation per layer, which also covers the
``exp`` output of the Poisson loss and several outputs (skl2onnx's regressor converter knows
neither).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ._validation import SKLEARN_ACTIVATIONS as _SKL2ONNX_ACTIVATIONS  # what skl2onnx knows

if TYPE_CHECKING:
    from onnx import ModelProto

    from .estimators import MLPClassifier, MLPRegressor
    from .model import MLP

__all__ = ["to_onnx"]

_MULTILABEL = (
    "a multilabel MLPClassifier converts with zipmap=False only: ZipMap makes one dictionary "
    "of class probabilities per row, which assumes one class per row")
_registered: set = set()  # classes skl2onnx knows how to convert
_INSTALL = ("ONNX export needs the optional dependencies skl2onnx, onnx and onnxruntime: "
            "pip install 'fastmlp[onnx]'")


def _skl2onnx():
    try:
        import skl2onnx
    except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
        raise ImportError(_INSTALL) from exc
    return skl2onnx


def _network(model):
    """(coefs, intercepts, hidden activation, output activation) of a fitted model."""
    from .model import MLP
    if isinstance(model, MLP):
        coefs = model.coefs_  # NotFittedError before the first fit
        return coefs, model.intercepts_, model.activation, model.out_activation
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(model, "coefs_")
    return model.coefs_, model.intercepts_, model.activation, model.out_activation_


def _shape_network_output(operator):
    """[N, n_inputs] float/double -> [N, n_outputs] of the same type."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    coefs = _network(operator.raw_operator)[0]
    kind = operator.inputs[0].type
    cls = DoubleTensorType if isinstance(kind, DoubleTensorType) else FloatTensorType
    N = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = cls([N, coefs[-1].shape[1]])


def _network_graph(operator, container):
    """A[l+1] = f(A[l] @ W[l] + b[l]) in the input's precision: the last layer's node, and
    the element type."""
    from skl2onnx.algebra import onnx_ops as ops
    from skl2onnx.common.data_types import guess_numpy_type
    coefs, intercepts, act, out_act = _network(operator.raw_operator)
    dtype = guess_numpy_type(operator.inputs[0].type)
    if dtype not in (np.float32, np.float64):
        dtype = np.float32
    opv = container.target_opset
    slope = float(getattr(operator.raw_operator, "leaky_relu_slope", 0.01))

    def gelu(z):  # the exact (erf) form fastmlp computes: z * Phi(z)
        u = ops.OnnxMul(z, np.array([np.sqrt(0.5)], dtype), op_version=opv)
        if dtype == np.float64:  # onnxruntime's Erf is float32 only: ~1e-7, not 1e-16
            erf = ops.OnnxCast(ops.OnnxErf(ops.OnnxCast(u, to=np.float32, op_version=opv),
                                           op_version=opv), to=np.float64, op_version=opv)
        else:
            erf = ops.OnnxErf(u, op_version=opv)
        phi = ops.OnnxAdd(erf, np.array([1.0], dtype), op_version=opv)
        return ops.OnnxMul(ops.OnnxMul(z, np.array([0.5], dtype), op_version=opv), phi,
                           op_version=opv)

    layers = {"identity": lambda z: ops.OnnxIdentity(z, op_version=opv),
              "logistic": lambda z: ops.OnnxSigmoid(z, op_version=opv),
              "sigmoid": lambda z: ops.OnnxSigmoid(z, op_version=opv),
              "tanh": lambda z: ops.OnnxTanh(z, op_version=opv),
              "relu": lambda z: ops.OnnxRelu(z, op_version=opv),
              # z if z > 0 else slope * z, as fastmlp computes it (onnxruntime's LeakyRelu
              # has no float64 kernel)
              "leaky_relu": lambda z: ops.OnnxWhere(
                  ops.OnnxGreater(z, np.array([0.0], dtype), op_version=opv), z,
                  ops.OnnxMul(z, np.array([slope], dtype), op_version=opv), op_version=opv),
              "gelu": gelu,
              "silu": lambda z: ops.OnnxMul(z, ops.OnnxSigmoid(z, op_version=opv),
                                            op_version=opv),
              "exp": lambda z: ops.OnnxExp(z, op_version=opv),
              "softmax": lambda z: ops.OnnxSoftmax(z, axis=1, op_version=opv)}
    A = ops.OnnxCast(operator.inputs[0], to=dtype, op_version=opv)
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = ops.OnnxAdd(ops.OnnxMatMul(A, np.asarray(W, dtype), op_version=opv),
                        np.asarray(b, dtype).reshape(1, -1), op_version=opv)
        A = layers[out_act if l == len(coefs) - 1 else act](Z)
    return A, dtype


def _convert_network_output(scope, operator, container):
    from skl2onnx.algebra import onnx_ops as ops
    A, _ = _network_graph(operator, container)
    ops.OnnxIdentity(A, op_version=container.target_opset,
                     output_names=operator.outputs[:1]).add_to(scope, container)


def _multilabel(model):
    # one logistic output per class: multilabel (binary has a single output column)
    return model.out_activation_ == "logistic" and model.n_outputs_ > 1


def _shape_classifier(operator):
    """skl2onnx's classifier shapes; a multilabel one: label and probabilities both
    [N, n_labels]."""
    if not _multilabel(operator.raw_operator):
        from skl2onnx.shape_calculators.linear_classifier import (
            calculate_linear_classifier_output_shapes)
        return calculate_linear_classifier_output_shapes(operator)
    from skl2onnx.common.data_types import Int64TensorType
    _shape_network_output(operator)
    probabilities = operator.outputs[0].type
    operator.outputs[1].type = probabilities
    operator.outputs[0].type = Int64TensorType(list(probabilities.shape))


def _fits_int32(classes):
    """Whether skl2onnx's MLP converter keeps these labels: it stores numeric classes as an
    int32 tensor, so that 2**40 would come out as 0 (strings it keeps)."""
    classes = np.asarray(classes)
    if classes.dtype.kind not in "biuf":
        return True
    info = np.iinfo(np.int32)
    return bool(np.all((classes >= info.min) & (classes <= info.max)))


def _check_labels(model):
    """A classifier's numeric classes must be int64 values: ONNX's label output is int64."""
    from .estimators import MLPClassifier
    if not isinstance(model, MLPClassifier) or _multilabel(model):
        return
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iuf":  # strings and booleans convert as they are
        return
    # Python compares ints and floats exactly: 2**63 and 1e19 are out, 2**63 - 1 is in
    bad = [c for c in classes.tolist() if not -2 ** 63 <= c < 2 ** 63]
    if bad:
        raise ValueError(
            f"to_onnx: the class label {bad[0]!r} does not fit ONNX's int64 label output "
            "(-2**63 to 2**63 - 1); relabel the classes (e.g. "
            "sklearn.preprocessing.LabelEncoder) or use string labels")

def _convert_classifier(scope, operator, container):
    """skl2onnx's MLP classifier converter where it applies; fastmlp's graph for a multilabel
    classifier (probabilities = the logistic outputs, label = probabilities > 0.5 as int64,
    scikit-learn's threshold) and for the activations skl2onnx does not know (leaky_relu,
    gelu, silu: the probabilities, then argmax and the class of that column)."""
    model = operator.raw_operator
    multilabel = _multilabel(model)
    if (not multilabel and model.activation in _SKL2ONNX_ACTIVATIONS
            and _fits_int32(model.classes_)):
        from skl2onnx.operator_converters.multilayer_perceptron import (
            convert_sklearn_mlp_classifier)
        return convert_sklearn_mlp_classifier(scope, operator, container)
    from skl2onnx.algebra import onnx_ops as ops
    opv = container.target_opset
    A, dtype = _network_graph(operator, container)
    if multilabel:
        proba = A
        label = ops.OnnxCast(ops.OnnxGreater(A, np.array([0.5], dtype), op_version=opv),
                             to=np.int64, op_version=opv, output_names=operator.outputs[:1])
    else:
        classes = np.asarray(model.classes_)
        if len(classes) == 2:  # one logistic output: P(classes_[1])
            proba = ops.OnnxConcat(ops.OnnxSub(np.array([1.0], dtype), A, op_version=opv),
                                   A, axis=1, op_version=opv)
        else:
            proba = A
        if classes.dtype.kind in "biuf":  # skl2onnx's label type for numeric classes
            classes = classes.astype(np.int64)
        else:
            classes = np.array([str(c) for c in classes], dtype=object)
        index = ops.OnnxArgMax(proba, axis=1, keepdims=0, op_version=opv)
        label = ops.OnnxGather(classes, index, axis=0, op_version=opv,
                               output_names=operator.outputs[:1])
    ops.OnnxIdentity(proba, op_version=opv,
                     output_names=operator.outputs[1:2]).add_to(scope, container)
    label.add_to(scope, container)


def _register(cls):
    """Tell skl2onnx how to convert cls (once per class)."""
    skl2onnx = _skl2onnx()
    if cls in _registered:
        return
    from .estimators import MLPClassifier
    alias = f"Fastmlp{cls.__name__}{len(_registered)}"
    if issubclass(cls, MLPClassifier):
        skl2onnx.update_registered_converter(
            cls, alias, _shape_classifier, _convert_classifier,
            options={"zipmap": [True, False, "columns"], "output_class_labels": [False, True],
                     "nocl": [True, False]})
    else:
        skl2onnx.update_registered_converter(cls, alias, _shape_network_output,
                                             _convert_network_output)
    _registered.add(cls)


def to_onnx(model: Union[MLPClassifier, MLPRegressor, MLP],
            X_sample: Optional[np.typing.ArrayLike] = None, **options: Any) -> ModelProto:
    """Convert a fitted fastmlp model to an ONNX graph (through skl2onnx).

    Parameters
    ----------
    model : fastmlp.MLPClassifier, fastmlp.MLPRegressor or fastmlp.MLP
        Fitted.  Estimators created under ``fastmlp.patch_sklearn()`` convert too.
    X_sample : ndarray of shape (n_samples, n_features), default=None
        Fixes the input's element type and width (its values are not used): float32 input
        gives a float32 graph, float64 a float64 graph (the weights are cast to it); other
        numbers give float32.  None: the model's width in the weights' precision (float64
        for estimators fitted on float64 data).
    **options
        Passed to ``skl2onnx.to_onnx`` (``target_opset``, ``options``, ``name``, ...).  A
        classifier's default is ``options={"zipmap": False}``: probabilities come out as one
        (n_samples, n_classes) tensor rather than a list of dictionaries.

    Returns
    -------
    onnx.ModelProto
        Outputs: a classifier gives ``label`` and ``probabilities`` (as scikit-learn's
        ``predict`` and ``predict_proba``; for a binary problem both columns); a regressor or
        ``MLP`` one (n_samples, n_outputs) tensor ``variable`` (``predict``, 2-D).

    Raises
    ------
    ImportError
        Without the ``onnx`` extra (skl2onnx, onnx, onnxruntime).
    ValueError
        For what does not convert: a multilabel classifier with ``zipmap`` (one dictionary
        per row assumes one class per row), integer class labels beyond int64 (ONNX's label
        type), an ``X_sample`` that is not 2-D or not as wide as the model's input, or a
        model that is not one of the above (scikit-learn's own MLPs convert with
        ``skl2onnx.to_onnx``).

    Examples
    --------
    >>> import numpy as np, fastmlp
    >>> X = np.random.default_rng(0).normal(size=(40, 3))
    >>> reg = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=5).fit(X, X.sum(1))
    >>> onx = fastmlp.to_onnx(reg, X[:1])  # doctest: +SKIP
    """
    skl2onnx = _skl2onnx()
    from . import estimators
    from .model import MLP
    if not isinstance(model, (estimators.MLPClassifier, estimators.MLPRegressor, MLP)):
        cls = type(model)
        got = f"{cls.__module__}.{cls.__qualname__}"
        hint = ""
        if cls.__module__.startswith("sklearn.neural_network"):
            hint = (f"; for scikit-learn's own estimator call skl2onnx.to_onnx, or train "
                    f"fastmlp.{cls.__name__} (or create it after fastmlp.patch_sklearn())")
        raise ValueError("to_onnx converts fastmlp.MLPClassifier, fastmlp.MLPRegressor and "
                         f"fastmlp.MLP models, got {got}{hint}")
    coefs = _network(model)[0]  # fitted?
    cls = type(model)
    if isinstance(model, estimators.MLPClassifier):
        if _multilabel(model) and (options.get("options") or {}).get("zipmap", False):
            raise ValueError(_MULTILABEL)
        _check_labels(model)
        options.setdefault("options", {"zipmap": False})
    X_sample = _input_sample(X_sample, coefs)
    _register(cls)
    return skl2onnx.to_onnx(model, X_sample, **options)


def _input_sample(X_sample, coefs):
    """X_sample as skl2onnx takes it: 2-D, float32 or float64, the model's width; None: one
    row of zeros in the weights' precision."""
    n_features = coefs[0].shape[0]
    if X_sample is None:
        dtype = coefs[0].dtype if coefs[0].dtype in (np.float32, np.float64) else np.float32
        return np.zeros((1, n_features), dtype)
    X_sample = np.asarray(X_sample)
    if X_sample.ndim != 2:
        raise ValueError(f"to_onnx: X_sample must be 2-D (n_samples, n_features), got shape "
                         f"{X_sample.shape}; pass a row as X[:1]")
    if X_sample.shape[1] != n_features:
        raise ValueError(f"to_onnx: X_sample has {X_sample.shape[1]} features, but the model "
                         f"takes {n_features}")
    if X_sample.dtype.kind not in "biuf":
        raise ValueError(f"to_onnx: X_sample must be numeric, got dtype {X_sample.dtype}")
    if X_sample.dtype not in (np.float32, np.float64):
        X_sample = X_sample.astype(np.float32)
    return X_sample
