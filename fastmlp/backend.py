"""fastmlp's backend: the network as a reusable engine and as plain functions.

:class:`Engine` is built once for a network shape and called many times on a flat parameter
vector, writing into caller-owned outputs without allocating (see ``fastmlp._engine``).
:func:`forward` and :func:`loss_and_grads` take ``coefs`` (a list of ``(n_in, n_out)`` arrays,
as in scikit-learn) and ``intercepts`` and return new arrays; they validate and convert their
inputs (``fastmlp._validation``) and run on an Engine kept per thread for each network
configuration, so repeated calls do not rebuild buffers.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp

from ._engine import Engine
from ._threads import resolve_n_threads
from ._validation import (FORWARD_CONSTRAINTS, LOSS_AND_GRADS_CONSTRAINTS, check_hyperparams,
                          check_finite_result, check_params, check_sample_weight, check_X,
                          check_Y, resolve)
from ._workspace import PREDICT_CHUNK

__all__ = ["Engine", "forward", "loss_and_grads"]

# Engines the functional API reuses: per thread (an Engine's buffers serve one call at a
# time), a few configurations each, every one holding at most PREDICT_CHUNK rows of buffers
# (larger inputs run in chunks).
_CACHE_SIZE = 4

ArrayLike = Union[np.ndarray, sp.spmatrix, sp.sparray, Sequence]
_local = threading.local()


def _engine_for(sizes, dtype, activation, out_activation, loss, n_threads):
    resolve(activation, out_activation, loss)  # a clear error before the strings become a key
    n_threads = resolve_n_threads(n_threads)
    cache = getattr(_local, "engines", None)
    if cache is None:
        cache = _local.engines = OrderedDict()
    key = (tuple(sizes), dtype.str, activation, out_activation, loss, n_threads)
    eng = cache.get(key)
    if eng is None:
        eng = Engine(sizes, activation=activation, out_activation=out_activation, loss=loss,
                     dtype=dtype, max_rows=PREDICT_CHUNK, n_threads=n_threads)
        cache[key] = eng
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return eng


def forward(coefs: Sequence[np.ndarray], intercepts: Sequence[np.ndarray], X: ArrayLike,
            activation: str = "logistic", out_activation: str = "identity",
            n_threads: Optional[int] = None) -> np.ndarray:
    """The network's output for X: ``A[l+1] = f(A[l] @ W[l] + b[l])``.

    Parameters
    ----------
    coefs : list of ndarray of shape (n_in, n_out)
        ``W[l]`` per layer, all float32 or all float64 (scikit-learn's ``coefs_``).
    intercepts : list of ndarray of shape (n_out,)
        ``b[l]`` per layer, of the coefs' dtype.
    X : {array-like, sparse matrix} of shape (n_samples, n_in)
        Inputs, dense, CSR or CSC; converted to the parameters' dtype (duplicate sparse
        entries are summed, as SciPy does).
    activation : {'logistic', 'sigmoid', 'tanh', 'relu', 'identity'}, default='logistic'
        ``f`` of the hidden layers.
    out_activation : {'identity', 'logistic', 'sigmoid', 'tanh', 'relu', 'softmax', 'exp'}, \
default='identity'
        ``f`` of the last layer.
    n_threads : int or None, default=None
        Threads for BLAS and Numba during this call (None: the process's CPU budget;
        a larger value is capped at it).

    Returns
    -------
    ndarray of shape (n_samples, n_out)
        A new array of the parameters' dtype.  Nothing passed in is modified.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import backend
    >>> coefs = [np.array([[1.0, -1.0]]), np.array([[2.0], [3.0]])]
    >>> intercepts = [np.zeros(2), np.array([0.5])]
    >>> backend.forward(coefs, intercepts, [[0.0], [1.0]], activation="relu")
    array([[0.5],
           [2.5]])
    """
    check_hyperparams(FORWARD_CONSTRAINTS, {"activation": activation,
                                            "out_activation": out_activation,
                                            "n_threads": n_threads}, "forward")
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    # the loss plays no part in a forward pass; pick one the output activation accepts
    loss = {"softmax": "log_loss", "exp": "poisson"}.get(out_activation, "squared_error")
    eng = _engine_for(sizes, dtype, activation, out_activation, loss, n_threads)
    return check_finite_result(eng.forward(eng.pack(coefs, intercepts), X), "the output")


def loss_and_grads(coefs: Sequence[np.ndarray], intercepts: Sequence[np.ndarray],
                   X: ArrayLike, Y: ArrayLike, activation: str = "logistic",
                   out_activation: str = "identity", loss: str = "squared_error",
                   alpha: float = 0.0,
                   sample_weight: Union[None, float, ArrayLike] = None,
                   n_threads: Optional[int] = None
                   ) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Loss and gradients of one batch, with scikit-learn's definitions (it can serve as
    ``MLP._backprop``).

    * squared_error: ``0.5 * mean over samples and outputs of (A - Y)^2``; its gradient is
      that of ``n_outputs * loss`` (as scikit-learn computes it, on purpose);
    * log_loss (softmax output), binary log loss (logistic output), poisson (exp output);
    * plus ``0.5 * alpha * sum ||W||^2 / n``; with sample weights the means are weighted and
      n is the weight sum.

    Parameters
    ----------
    coefs : list of ndarray of shape (n_in, n_out)
        ``W[l]`` per layer, all float32 or all float64.
    intercepts : list of ndarray of shape (n_out,)
        ``b[l]`` per layer, of the coefs' dtype.
    X : {array-like, sparse matrix} of shape (n_samples, n_in)
        Inputs, dense, CSR or CSC; converted to the parameters' dtype.
    Y : array-like of shape (n_samples, n_out) or (n_samples,)
        Targets (one-hot for log_loss; non-negative for poisson).
    activation : {'logistic', 'sigmoid', 'tanh', 'relu', 'identity'}, default='logistic'
        ``f`` of the hidden layers.
    out_activation : {'identity', 'logistic', 'sigmoid', 'tanh', 'relu', 'softmax', 'exp'}, \
default='identity'
        ``f`` of the last layer; log-likelihood losses need their canonical one.
    loss : {'squared_error', 'log_loss', 'binary_log_loss', 'poisson'}, \
default='squared_error'
        The loss.
    alpha : float, default=0.0
        L2 penalty (non-negative).
    sample_weight : float or array-like of shape (n_samples,), default=None
        Non-negative weights with a positive sum; a number weighs every sample alike.
    n_threads : int or None, default=None
        Threads for BLAS and Numba during this call (None: the process's CPU budget;
        a larger value is capped at it).

    Returns
    -------
    loss : float
        The batch loss.
    coef_grads : list of ndarray
        ``dloss/dW[l]``, new arrays shaped like ``coefs``.
    intercept_grads : list of ndarray
        ``dloss/db[l]``, new arrays shaped like ``intercepts``.

    Nothing passed in is modified.

    Examples
    --------
    One linear unit, ``a = 2 x``, target 1 at ``x = 1``: loss ``0.5 (2 - 1)^2``, gradient
    ``(a - y) x = 1``.

    >>> import numpy as np
    >>> from fastmlp import backend
    >>> loss, gW, gb = backend.loss_and_grads([np.array([[2.0]])], [np.zeros(1)],
    ...                                       [[1.0]], [[1.0]], out_activation="identity")
    >>> loss, gW[0], gb[0]
    (0.5, array([[1.]]), array([1.]))
    """
    check_hyperparams(LOSS_AND_GRADS_CONSTRAINTS, {"activation": activation,
                                                   "out_activation": out_activation,
                                                   "loss": loss, "alpha": alpha,
                                                   "n_threads": n_threads}, "loss_and_grads")
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    Y = check_Y(Y, dtype, X.shape[0], sizes[-1], loss=loss)
    sw = check_sample_weight(sample_weight, X.shape[0], dtype)
    eng = _engine_for(sizes, dtype, activation, out_activation, loss, n_threads)
    value, grads = eng.loss_and_grads(eng.pack(coefs, intercepts), X, Y, sw, alpha)
    check_finite_result(value, "the loss")
    check_finite_result(grads, "the gradients")
    coef_grads, intercept_grads = eng.unpack(grads)
    return value, coef_grads, intercept_grads
