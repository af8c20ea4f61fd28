"""fastmlp's backend: the network as a reusable engine and as plain functions.

:class:`Engine` is built once for a network shape and called many times on a flat parameter
vector, writing into caller-owned outputs without allocating (see ``fastmlp._engine``).
:func:`forward` and :func:`loss_and_grads` take ``coefs`` (a list of ``(n_in, n_out)`` arrays,
as in scikit-learn) and ``intercepts`` and return new arrays; they validate and convert their
inputs (``fastmlp._validation``) and run on an Engine kept per thread for each network
configuration, so repeated calls do not rebuild buffers.
"""
import threading
from collections import OrderedDict

from ._core import PREDICT_CHUNK
from ._engine import Engine
from ._threads import resolve_n_threads
from ._validation import resolve, check_params, check_sample_weight, check_X, check_Y

__all__ = ["Engine", "forward", "loss_and_grads"]

# Engines the functional API reuses: per thread (an Engine's buffers serve one call at a
# time), a few configurations each, every one holding at most PREDICT_CHUNK rows of buffers
# (larger inputs run in chunks).
_CACHE_SIZE = 4
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


def forward(coefs, intercepts, X, activation="logistic", out_activation="identity",
            n_threads=None):
    """The network's output for X: ``A[l+1] = f(A[l] @ W[l] + b[l])``, f = ``activation`` for
    hidden layers and ``out_activation`` for the last.

    coefs: list of (n_in, n_out) arrays, intercepts: list of (n_out,), all float32 or all
    float64; X (N, n_in), dense or CSR/CSC, converted to the parameters' dtype.
    Returns a new (N, n_out) array.  Nothing passed in is modified."""
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    # the loss plays no part in a forward pass; pick one the output activation accepts
    loss = {"softmax": "log_loss", "exp": "poisson"}.get(out_activation, "squared_error")
    eng = _engine_for(sizes, dtype, activation, out_activation, loss, n_threads)
    return eng.forward(eng.pack(coefs, intercepts), X)


def loss_and_grads(coefs, intercepts, X, Y, activation="logistic", out_activation="identity",
                   loss="squared_error", alpha=0.0, sample_weight=None, n_threads=None):
    """Loss and gradients of one batch, with scikit-learn's definitions (it can serve as
    ``MLP._backprop``):

    * squared_error: ``0.5 * mean over samples and outputs of (A - Y)^2``; its gradient is
      that of ``n_outputs * loss`` (scikit-learn issue #8349, reproduced on purpose);
    * log_loss (softmax output), binary log loss (logistic output), poisson (exp output);
    * plus ``0.5 * alpha * sum ||W||^2 / n``; with sample weights the means are weighted and
      n is the weight sum.

    Returns ``(loss, coef_grads, intercept_grads)`` as new arrays shaped like the
    parameters.  Nothing passed in is modified."""
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    Y = check_Y(Y, dtype, X.shape[0], sizes[-1])
    sw = check_sample_weight(sample_weight, X.shape[0], dtype)
    eng = _engine_for(sizes, dtype, activation, out_activation, loss, n_threads)
    value, grads = eng.loss_and_grads(eng.pack(coefs, intercepts), X, Y, sw, alpha)
    coef_grads, intercept_grads = eng.unpack(grads)
    return value, coef_grads, intercept_grads
