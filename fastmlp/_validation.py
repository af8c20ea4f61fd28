"""Validation at the Python edge: option strings resolved to kernel codes, arrays checked and
converted once.  Every front-end and the functional API call these; kernels trust their inputs.
Errors are ``ValueError`` naming the argument and the problem."""
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array

from . import kernels as K

ACTIVATIONS = {"identity": K.IDENTITY, "logistic": K.LOGISTIC, "sigmoid": K.LOGISTIC,
               "tanh": K.TANH, "relu": K.RELU}
OUT_ACTIVATIONS = dict(ACTIVATIONS, softmax=K.SOFTMAX, exp=K.EXP)
LOSSES = {"squared_error": K.SQUARED_ERROR, "log_loss": K.LOG_LOSS,
          "binary_log_loss": K.BINARY_LOG_LOSS, "poisson": K.POISSON}
# The output activation each log-likelihood loss is exact for (its delta is A - Y).
_CANONICAL = {"log_loss": ("softmax", "logistic"), "binary_log_loss": ("logistic",),
              "poisson": ("exp",)}
DTYPES = (np.float32, np.float64)


def _choose(name, value, table):
    if not isinstance(value, str) or value not in table:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}")
    return table[value]


def resolve(activation, out_activation, loss):
    """Strings -> kernel codes, once.  Returns (act, out_act, loss) codes.

    ``log_loss`` with a logistic output is the binary log loss (as in scikit-learn)."""
    act = _choose("activation", activation, ACTIVATIONS)
    out = _choose("out_activation", out_activation, OUT_ACTIVATIONS)
    code = _choose("loss", loss, LOSSES)
    allowed = _CANONICAL.get(loss)
    if out_activation == "sigmoid":
        out_activation = "logistic"
    if allowed is not None and out_activation not in allowed:
        raise ValueError(f"loss={loss!r} needs out_activation in {allowed}, "
                         f"got {out_activation!r}")
    if loss == "squared_error" and out_activation == "softmax":
        raise ValueError("loss='squared_error' with out_activation='softmax' is not supported; "
                         "use loss='log_loss'")
    if loss == "log_loss" and out_activation == "logistic":
        code = K.BINARY_LOG_LOSS
    return act, out, code


def check_dtype(dtype):
    """'float32'/'float64' (or the numpy types) -> np.dtype; anything else is an error."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


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
    dtype = coefs[0].dtype
    if dtype.type not in DTYPES:
        raise ValueError(f"parameters must be float32 or float64, got {dtype}")
    sizes = [coefs[0].shape[0] if coefs[0].ndim == 2 else -1]
    for l, (c, b) in enumerate(zip(coefs, intercepts)):
        if c.ndim != 2:
            raise ValueError(f"coefs[{l}] must be 2-D (n_in, n_out), got shape {c.shape}")
        if c.shape[0] != sizes[-1]:
            raise ValueError(f"coefs[{l}] has {c.shape[0]} rows but layer {l} has "
                             f"{sizes[-1]} units")
        if b.shape != (c.shape[1],):
            raise ValueError(f"intercepts[{l}] must have shape ({c.shape[1]},), got {b.shape}")
        if c.dtype != dtype or b.dtype != dtype:
            raise ValueError(f"all parameters must share one dtype; coefs[0] is {dtype}, "
                             f"layer {l} has {c.dtype}/{b.dtype}")
        if not (np.isfinite(c).all() and np.isfinite(b).all()):
            raise ValueError(f"parameters of layer {l} contain NaN or infinity")
        sizes.append(c.shape[1])
    return sizes, dtype


def check_X(X, dtype, n_features=None, accept_sparse=False, name="X"):
    """Validate X -> C-contiguous (N, n_features) array of dtype (or CSR), finite, non-empty.
    Never modifies X; copies only when its dtype or layout must change."""
    X = check_array(X, accept_sparse=["csr", "csc"] if accept_sparse else False, dtype=dtype,
                    order="C", input_name=name)
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_sorted_indices:
            X = X.sorted_indices()
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but the network expects "
                         f"{n_features}")
    return X


def check_Y(Y, dtype, n_samples, n_outputs=None, name="Y"):
    """Validate targets -> C-contiguous (N, n_outputs); 1-D targets become one column."""
    Y = check_array(Y, dtype=dtype, order="C", ensure_2d=False, input_name=name)
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {Y.ndim} dimensions")
    if Y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but {name} has {Y.shape[0]}")
    if n_outputs is not None and Y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {Y.shape[1]} columns, but the network has {n_outputs} "
                         f"outputs")
    return Y


def check_sample_weight(sample_weight, n_samples, dtype):
    """None stays None; otherwise a finite, non-negative (N,) array of dtype."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        return np.full(n_samples, sample_weight, dtype=dtype)
    sw = check_array(sample_weight, ensure_2d=False, dtype=dtype, order="C",
                     input_name="sample_weight")
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {sw.shape}")
    if (sw < 0).any():
        raise ValueError("sample_weight must not contain negative values")
    return sw
