"""fastmlp's functional backend: the network as plain functions on plain arrays.

:func:`forward` and :func:`loss_and_grads` take ``coefs`` (a list of ``(n_in, n_out)`` arrays,
as in scikit-learn) and ``intercepts`` and return new arrays; other projects call them as their
compute engine.  They validate their inputs (``fastmlp._validation``) and run on the training
core (``fastmlp._core``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp

from ._core import Trainer
from ._validation import (FORWARD_CONSTRAINTS, LOSS_AND_GRADS_CONSTRAINTS, check_hyperparams,
                          check_params, check_sample_weight, check_X, check_Y)

__all__ = ["forward", "loss_and_grads"]

ArrayLike = Union[np.ndarray, sp.spmatrix, sp.sparray, Sequence]


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
        Threads for BLAS and Numba during this call (None: all cores).

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
    t = Trainer.for_inference(coefs, intercepts, activation=activation,
                              out_activation=out_activation, dtype=dtype, n_rows=X.shape[0],
                              n_threads=n_threads)
    return t.forward(X)


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
        Threads for BLAS and Numba during this call (None: all cores).

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
    t = Trainer(sizes, activation=activation, out_activation=out_activation, loss=loss,
                dtype=dtype, batch_size=X.shape[0], alpha=alpha, n_threads=n_threads)
    t.layout.pack(coefs, intercepts, t.params)
    value = t.loss_and_grads(X, Y, sw)
    return (float(value), [g.copy() for g in t.coef_grads],
            [g.copy() for g in t.intercept_grads])
