"""Validation at the Python edge, in one place for every front-end.

Hyper-parameters are checked by scikit-learn's parameter-constraint machinery
(:func:`check_hyperparams` with the constraint tables below), option strings are resolved to
kernel codes, and arrays are checked and converted once into what the kernels take
(:func:`check_X`, :func:`as_kernel_input`: C-contiguous native-endian float arrays, or CSR
matrices in canonical form).  The kernels trust their inputs.  Every error is a ``ValueError``
naming the argument and the problem.
"""
import numbers
from operator import index as operator_index
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array
from sklearn.utils._param_validation import (Interval, InvalidParameterError, StrOptions,
                                             make_constraint,
                                             validate_parameter_constraints)

from . import kernels as K
from .optimizers import OPTIMIZERS

# The one list of the names every front-end accepts (the estimators, the command line, the
# model files' records, the ONNX export and the docs derive theirs from these).
ACTIVATIONS = {"identity": K.IDENTITY, "logistic": K.LOGISTIC, "sigmoid": K.LOGISTIC,
               "tanh": K.TANH, "relu": K.RELU, "leaky_relu": K.LEAKY_RELU, "gelu": K.GELU,
               "silu": K.SILU}
# scikit-learn's own four hidden activations (what skl2onnx's MLP converters know)
SKLEARN_ACTIVATIONS: tuple[str, ...] = ("identity", "logistic", "tanh", "relu")
# the estimators' names: scikit-learn's spelling, without the "sigmoid" alias
ESTIMATOR_ACTIVATIONS: tuple[str, ...] = tuple(a for a in ACTIVATIONS if a != "sigmoid")
# GELU/SiLU backprop needs the pre-activation, which only hidden layers keep
OUT_ACTIVATIONS = dict({k: v for k, v in ACTIVATIONS.items() if k not in ("gelu", "silu")},
                       softmax=K.SOFTMAX, exp=K.EXP)
LOSSES = {"squared_error": K.SQUARED_ERROR, "log_loss": K.LOG_LOSS,
          "binary_log_loss": K.BINARY_LOG_LOSS, "poisson": K.POISSON}
# The output activation each log-likelihood loss is exact for (its delta is A - Y).
_CANONICAL = {"log_loss": ("softmax", "logistic"), "binary_log_loss": ("logistic",),
              "poisson": ("exp",)}
# the stochastic solvers (fastmlp.optimizers), then scikit-learn's full-batch L-BFGS
SOLVERS: tuple[str, ...] = (*OPTIMIZERS, "lbfgs")
DTYPES = (np.float32, np.float64)

# -- hyper-parameters -------------------------------------------------------------------------
# One table per public callable, in scikit-learn's constraint language; checked by
# check_hyperparams.  Array arguments, dtypes and option combinations have their own checks.
_N_THREADS = [Interval(Integral, 1, None, closed="left"), None]
_ALPHA = [Interval(Real, 0, None, closed="left")]
MLP_CONSTRAINTS = {
    "layer_sizes": ["array-like"],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "out_activation": [StrOptions(set(OUT_ACTIVATIONS))],
    "loss": [StrOptions(set(LOSSES))],
    "dtype": "no_validation",  # check_dtype
    "alpha": _ALPHA,
    "random_state": ["random_state"],
    "n_threads": _N_THREADS,
    "leaky_relu_slope": [Interval(Real, 0, None, closed="left")],
    "dropout": [None, Interval(Real, 0, 1, closed="left"), "array-like"],
}
FIT_CONSTRAINTS = {
    "epochs": [Interval(Integral, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "optimizer": [StrOptions(set(SOLVERS))],  # 'lbfgs' for fit only
    "momentum": [Interval(Real, 0, 1, closed="left")],
    "shuffle": ["boolean"],
    "callback": [callable, None],
}
ENGINE_CONSTRAINTS = {"max_rows": [Interval(Integral, 1, None, closed="left"), None],
                      "n_threads": _N_THREADS}
_OPTION_CONSTRAINTS = {k: MLP_CONSTRAINTS[k] for k in ("activation", "out_activation", "loss")}
FORWARD_CONSTRAINTS = {
    "activation": MLP_CONSTRAINTS["activation"],
    "out_activation": MLP_CONSTRAINTS["out_activation"],
    "n_threads": _N_THREADS,
}
LOSS_AND_GRADS_CONSTRAINTS = {
    **FORWARD_CONSTRAINTS,
    "loss": MLP_CONSTRAINTS["loss"],
    "alpha": _ALPHA,
}


def check_hyperparams(constraints, params, caller):
    """Check ``params`` (a dict of name -> value) against ``constraints`` (name -> list of
    scikit-learn constraints); raise a ``ValueError`` naming the parameter, the caller and
    what is allowed.  Names absent from ``params`` are not checked.

    Examples
    --------
    >>> check_hyperparams(FIT_CONSTRAINTS, {"learning_rate": 0.1, "epochs": 3}, "MLP.fit")
    >>> check_hyperparams(FIT_CONSTRAINTS, {"learning_rate": -1.0}, "MLP.fit")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'learning_rate' parameter of \
MLP.fit must be a float in the range (0.0, inf). Got -1.0 instead.
    """
    try:  # the functional API is called in loops: remember settings already found valid
        key = (id(constraints), caller, tuple((k, type(v), v) for k, v in params.items()))
        if key in _VALID:
            return
    except TypeError:  # an unhashable value: check it every time
        key = None
    validate_parameter_constraints({k: constraints[k] for k in params}, params,
                                   caller_name=caller)
    for k, v in params.items():  # scikit-learn's intervals take True for 1: numbers only
        if isinstance(v, (bool, np.bool_)) and not any(
                c == "boolean" or not isinstance(c, Interval) and c is not None
                for c in constraints[k]):
            allowed = " or ".join(str(make_constraint(c)) for c in constraints[k])
            raise InvalidParameterError(f"The {k!r} parameter of {caller} must be {allowed}. "
                                        f"Got {v!r} instead.")
    if key is not None:
        if len(_VALID) >= 256:
            _VALID.clear()
        _VALID[key] = True


_VALID: dict = {}  # check_hyperparams' memory of valid settings


def check_layer_sizes(layer_sizes, name="layer_sizes"):
    """At least two positive integers (inputs, hidden layers..., outputs) -> tuple of int.

    Examples
    --------
    >>> check_layer_sizes([784, np.int64(128), 10])
    (784, 128, 10)
    >>> check_layer_sizes([4, 2.5])
    Traceback (most recent call last):
    ...
    ValueError: layer_sizes must hold at least two positive integers (inputs, hidden \
layers..., outputs), got [4, 2.5]
    """
    sizes = []
    if not isinstance(layer_sizes, (str, bytes)):
        try:
            sizes = [operator_index(s) if not isinstance(s, bool) else None
                     for s in layer_sizes]
        except TypeError:
            sizes = []
    if len(sizes) < 2 or None in sizes or min(sizes) < 1:
        raise ValueError(f"{name} must hold at least two positive integers (inputs, hidden "
                         f"layers..., outputs), got {layer_sizes!r}")
    return tuple(sizes)


def resolve(activation, out_activation, loss, caller="Trainer"):
    """Strings -> kernel codes, once.  Returns (act, out_act, loss) codes; an unknown name or
    a loss without its output activation is a ``ValueError`` (``caller`` names the public
    callable in the message).

    ``log_loss`` with a logistic output is the binary log loss (as in scikit-learn).

    Examples
    --------
    >>> resolve("relu", "softmax", "log_loss") == (K.RELU, K.SOFTMAX, K.LOG_LOSS)
    True
    """
    check_hyperparams(_OPTION_CONSTRAINTS, {"activation": activation,
                                            "out_activation": out_activation,
                                            "loss": loss}, caller)
    allowed = _CANONICAL.get(loss)
    if out_activation == "sigmoid":
        out_activation = "logistic"
    if allowed is not None and out_activation not in allowed:
        raise ValueError(f"loss={loss!r} needs out_activation in {allowed}, "
                         f"got {out_activation!r}")
    if loss == "squared_error" and out_activation == "softmax":
        raise ValueError("loss='squared_error' with out_activation='softmax' is not supported; "
                         "use loss='log_loss'")
    return kernel_codes(activation, out_activation, loss)


def kernel_codes(activation, out_activation, loss):
    """The kernel codes (act, out_act, loss) of options :func:`resolve` has already checked:
    a plain look-up, no checks (the core's way to take what the edge proved).

    >>> kernel_codes("relu", "logistic", "log_loss") == (K.RELU, K.LOGISTIC, K.BINARY_LOG_LOSS)
    True
    """
    code = LOSSES[loss]
    if loss == "log_loss" and out_activation in ("logistic", "sigmoid"):
        code = K.BINARY_LOG_LOSS
    return ACTIVATIONS[activation], OUT_ACTIVATIONS[out_activation], code


def check_leaky_relu_slope(slope):
    """Leaky ReLU's slope for negative inputs: a finite number >= 0 (the derivative is read
    from the sign of the activation, which is the input's only for slope >= 0)."""
    if (not isinstance(slope, numbers.Real) or isinstance(slope, bool)
            or not np.isfinite(slope) or slope < 0):
        raise ValueError(f"leaky_relu_slope must be a finite number >= 0, got {slope!r}")
    return float(slope)


def check_dropout(dropout, n_hidden, name="dropout"):
    """None, a rate in [0, 1) or one rate per hidden layer -> None (off) or an (n_hidden,)
    float64 array."""
    if dropout is None:
        return None
    try:
        rates = np.asarray(dropout, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        rates = None
    if rates is not None and np.ndim(dropout) == 0:
        rates = np.full(n_hidden, float(dropout))
    if rates is None or rates.shape != (n_hidden,) or not ((rates >= 0) & (rates < 1)).all():
        raise ValueError(f"{name} must be a rate in [0, 1) or one per hidden layer "
                         f"({n_hidden}), got {dropout!r}")
    return rates if rates.any() else None


def check_dtype(dtype):
    """'float32'/'float64' (or the numpy types, in any byte order) -> the native-endian
    np.dtype the kernels compute in; anything else is an error."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(dt.type)


def check_params(coefs, intercepts):
    """Validate coefs (list of (n_in, n_out)) / intercepts (list of (n_out,)); returns
    (layer sizes, dtype)."""
    if not isinstance(coefs, (list, tuple)) or not isinstance(intercepts, (list, tuple)):
        raise ValueError("coefs and intercepts must be lists of arrays, one per layer")
    if len(coefs) == 0 or len(coefs) != len(intercepts):
        raise ValueError(f"coefs and intercepts must be non-empty lists of the same length, "
                         f"got {len(coefs)} and {len(intercepts)}")
    coefs = [np.asarray(c) for c in coefs]
    intercepts = [np.asarray(b) for b in intercepts]
    if coefs[0].dtype.type not in DTYPES:
        raise ValueError(f"parameters must be float32 or float64, got {coefs[0].dtype}")
    dtype = check_dtype(coefs[0].dtype)  # byte order does not matter: they are copied
    sizes = [coefs[0].shape[0] if coefs[0].ndim == 2 else -1]
    for l, (c, b) in enumerate(zip(coefs, intercepts)):
        if c.ndim != 2:
            raise ValueError(f"coefs[{l}] must be 2-D (n_in, n_out), got shape {c.shape}")
        if c.shape[0] != sizes[-1]:
            raise ValueError(f"coefs[{l}] has {c.shape[0]} rows but layer {l} has "
                             f"{sizes[-1]} units")
        if b.shape != (c.shape[1],):
            raise ValueError(f"intercepts[{l}] must have shape ({c.shape[1]},), got {b.shape}")
        if c.dtype.type != dtype.type or b.dtype.type != dtype.type:
            raise ValueError(f"all parameters must share one dtype; coefs[0] is {dtype}, "
                             f"layer {l} has {c.dtype}/{b.dtype}")
        if not (np.isfinite(c).all() and np.isfinite(b).all()):
            raise ValueError(f"parameters of layer {l} contain NaN or infinity")
        sizes.append(c.shape[1])
    return sizes, dtype


def canonical_csr(X):
    """X (any SciPy sparse matrix or array) as CSR in canonical form: sorted column indices
    and no duplicate entries (duplicates are summed, as SciPy's arithmetic does), which is what
    the row-gathering kernels assume.  Never modifies X; copies only when X is not already
    canonical CSR.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([2, 0, 2]),
    ...                    np.array([0, 3])), shape=(1, 3))
    >>> canonical_csr(X).toarray()
    array([[2., 0., 4.]])
    >>> X.nnz  # the caller's matrix is left as it was
    3
    """
    X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()  # also sorts the indices
    return X


def as_kernel_input(X, dtype):
    """A validated X (dense or sparse) as the kernels take it: a C-contiguous array of the
    native-endian ``dtype``, or canonical CSR (:func:`canonical_csr`) of that dtype.  Copies
    only when needed; the caller's data is never modified."""
    dtype = check_dtype(dtype)
    if sp.issparse(X):
        X = canonical_csr(X)
        return X if X.dtype == dtype else X.astype(dtype)
    return np.ascontiguousarray(X, dtype=dtype)


def check_X(X, dtype, n_features=None, accept_sparse=False, name="X"):
    """Validate X -> C-contiguous (N, n_features) array of dtype (or canonical CSR), finite,
    non-empty.  Never modifies X; copies only when its dtype or layout must change."""
    dtype = check_dtype(dtype)
    X = check_array(X, accept_sparse=["csr", "csc"] if accept_sparse else False, dtype=dtype,
                    order="C", input_name=name)
    X = as_kernel_input(X, dtype)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but the network expects "
                         f"{n_features}")
    return X


def check_Y(Y, dtype, n_samples, n_outputs=None, name="Y", loss=None):
    """Validate targets -> C-contiguous (N, n_outputs); 1-D targets become one column.
    With ``loss='poisson'`` the targets must be non-negative (counts or rates)."""
    Y = check_array(Y, dtype=check_dtype(dtype), order="C", ensure_2d=False, input_name=name)
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {Y.ndim} dimensions")
    if Y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but {name} has {Y.shape[0]}")
    if n_outputs is not None and Y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {Y.shape[1]} columns, but the network has {n_outputs} "
                         f"outputs")
    if loss == "poisson" and (Y < 0).any():
        raise ValueError(f"{name} must not contain negative values with loss='poisson'")
    return Y


def check_sample_weight(sample_weight, n_samples, dtype):
    """None stays None; otherwise a finite, non-negative (N,) array of dtype with a positive
    sum (the weighted means divide by it).  A scalar weighs every sample alike."""
    if sample_weight is None:
        return None
    dtype = check_dtype(dtype)
    if isinstance(sample_weight, (bool, np.bool_)):
        raise ValueError(f"sample_weight must be a number or an array of shape "
                         f"({n_samples},), got {sample_weight!r}")
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight, dtype=dtype)
    sw = check_array(sample_weight, ensure_2d=False, dtype=dtype, order="C",
                     input_name="sample_weight")
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {sw.shape}")
    if (sw < 0).any():
        raise ValueError("sample_weight must not contain negative values")
    if not sw.any():
        raise ValueError("sample_weight must contain at least one positive value")
    if not np.isfinite(sw.sum(dtype=np.float64)):
        raise ValueError("sample_weight sums to infinity: scale the weights down")
    return sw


def check_class_weight(class_weight):
    """``class_weight`` unchanged when it is None, a string (checked by the estimator's
    constraints) or dicts of finite non-negative numbers; a ``ValueError`` naming the class
    otherwise (NaN, infinity or a negative weight would train to NaN)."""
    if class_weight is None or isinstance(class_weight, str):
        return class_weight
    single = isinstance(class_weight, dict)
    for i, weights in enumerate([class_weight] if single else class_weight):
        where = "class_weight" if single else f"class_weight[{i}]"
        if not isinstance(weights, dict):
            raise ValueError(f"{where} must be a dict of class -> weight, got "
                             f"{type(weights).__name__}")
        for label, w in weights.items():
            if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Real) or \
                    not np.isfinite(w) or w < 0:
                raise ValueError(f"{where}[{label!r}] must be a finite non-negative number, "
                                 f"got {w!r}")
    return class_weight


def check_finite_result(result, what):
    """``result`` (an array or a number computed from validated inputs) unchanged when it is
    finite; a ``ValueError`` saying that the computation overflowed otherwise (inputs,
    parameters, weights or alpha too large for the dtype), never a silent NaN or infinity."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(result)  # finite values sum to a finite value unless the sum overflows
    if not np.isfinite(total) and not np.isfinite(result).all():
        raise ValueError(f"{what} overflowed to infinity or NaN: the inputs, parameters, "
                         f"sample weights or alpha are too large for "
                         f"{np.asarray(result).dtype}; scale them down")
    return result


def one_hot_labels(binarizer, y):
    """``binarizer.transform(y).astype(bool)`` (a fitted ``LabelBinarizer``): for numeric 1-D
    labels of a multiclass or two-class binary problem, all among the binarizer's classes (a
    fit's own labels), the indicator columns directly (0.8 ms against 2.3 ms for 50,000
    labels, measured: ``label_binarize`` checks the target's type again); anything else
    through the binarizer."""
    classes, kind = binarizer.classes_, binarizer.y_type_
    if ((kind == "multiclass" or (kind == "binary" and len(classes) == 2))
            and not binarizer.sparse_output and getattr(y, "ndim", 0) == 1
            and y.dtype.kind in "iuf" and classes.dtype.kind in "iuf"):
        idx = np.searchsorted(classes, y)
        np.minimum(idx, len(classes) - 1, out=idx)
        if np.array_equal(classes[idx], y):
            if kind == "binary":
                return (idx == 1).reshape(-1, 1)
            out = np.zeros((y.shape[0], len(classes)), bool)
            out[np.arange(y.shape[0]), idx] = True
            return out
    return binarizer.transform(y).astype(bool)
