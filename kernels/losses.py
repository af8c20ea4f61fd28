"""The output delta and the loss, for the (output activation, loss) pairs fastmlp trains.

``delta = dLoss/dZ`` for one sample, times its weight.  For the canonical pairs
(identity + squared error, logistic + binary log loss, softmax + log loss, exp + Poisson) that
is exactly ``A - Y``; squared error with another elementwise output activation multiplies by
f'(A) afterwards (``dactivation_colsum``).  As in scikit-learn, the squared-error delta is NOT
divided by the number of outputs although the reported loss is a mean over them
(scikit-learn issue #8349): gradients are those of ``n_outputs * loss``.

Each kernel returns the weighted SUM over the batch; the caller divides by the weight sum.
Shapes: D, A, Y are (N, n_out); sw is (N,) or (0,) for unit weights.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from ._config import JIT, JIT_INLINED, JIT_INNER, JIT_OVERLOAD
from .expfn import vlog

SQUARED_ERROR, LOG_LOSS, BINARY_LOG_LOSS, POISSON = 0, 1, 2, 3


@njit(**JIT_INNER)
def _xlogy(x, y):
    # scipy.special.xlogy: 0 where x == 0, x * log(y) elsewhere.  LLVM evaluates both sides
    # of the select for every entry, so the log must be the vectorisable one (expfn.vlog):
    # libm's log here cost ~6 us a step at scikit-learn's default shapes, measured
    return x * vlog(y) if x != 0 else x * 0


def loss_block(A, Y, sw, loss):
    """The weighted loss summed over the rows of A (N, n_out) against Y (N, n_out), sw (N,)
    or (0,) (squared error not yet halved and averaged).  A whole block per call (a call
    between kernels is not inlined: one per row cost more than a row's work).  The
    implementation of ``loss`` alone is compiled when ``loss`` is a literal code (a
    specialised kernel).  Kernels only."""
    raise NotImplementedError("loss_block is only callable from Numba kernels")


# Each loss is the element's term, summed by one block leaf made from it: over each row's
# outputs in order, then over the rows weighted.  The terms are inlined into the leaf by Numba
# (``_config.JIT_INLINED``).

@njit(**JIT_INLINED)
def _squared_error_of(a, y, eps):
    return (a - y) * (a - y)


@njit(**JIT_INLINED)
def _poisson_of(a, y, eps):
    return _xlogy(y, y / a) - y + a


@njit(**JIT_INLINED)
def _log_loss_of(a, y, eps):
    # -xlogy(y, p) with the branch taken: a one-hot row takes one log, not n_out (the same
    # numbers: where y == 0, xlogy gives y * 0 = 0)
    return -(y * vlog(min(max(a, eps), 1 - eps))) if y != 0 else y * 0


@njit(**JIT_INLINED)
def _binary_log_loss_of(a, y, eps):
    p = min(max(a, eps), 1 - eps)
    return -(_xlogy(y, p) + _xlogy(1 - y, 1 - p))


def _summed(term):
    """The block leaf of the loss whose element term is ``term(a, y, eps)``."""
    def block(A, Y, sw, loss):
        eps = np.finfo(A.dtype).eps
        total = 0.0
        for i in range(A.shape[0]):
            a = A[i]
            y = Y[i]
            row = 0.0
            for j in range(a.shape[0]):
                row += term(a[j], y[j], eps)
            total += sw[i] * row if sw.shape[0] > 0 else row
        return total
    return block


def _any_loss(A, Y, sw, loss):
    if loss == SQUARED_ERROR:
        return loss_block(A, Y, sw, SQUARED_ERROR)
    elif loss == POISSON:
        return loss_block(A, Y, sw, POISSON)
    elif loss == LOG_LOSS:
        return loss_block(A, Y, sw, LOG_LOSS)
    return loss_block(A, Y, sw, BINARY_LOG_LOSS)


_LOSSES = {SQUARED_ERROR: _summed(_squared_error_of), POISSON: _summed(_poisson_of),
           LOG_LOSS: _summed(_log_loss_of), BINARY_LOG_LOSS: _summed(_binary_log_loss_of)}


@overload(loss_block, prefer_literal=True, jit_options=JIT_OVERLOAD)
def _loss_block_typed(A, Y, sw, loss):
    if isinstance(loss, types.IntegerLiteral):
        return _LOSSES[loss.literal_value]
    return _any_loss


@njit(**JIT)
def output_delta_loss(D, A, Y, sw, loss):
    """D <- (A - Y) * sw (overwrites); returns the weighted loss summed over the batch.
    D (N, n_out), A (N, n_out), Y (N, n_out), sw (N,) or (0,), loss a loss code.

    Serial: the output layer is narrow (n_out columns), and a loss reduction in a parallel
    region would need per-thread partial sums for a pass that is ~1% of a step."""
    n, m = A.shape
    weighted = sw.shape[0] > 0
    # the delta and the loss in separate passes: with a few outputs a row, one fused row loop
    # did not vectorise (100 x 10 log loss: 3.8 us, against 1.1 us, measured)
    for i in range(n):
        w = sw[i] if weighted else A.dtype.type(1)
        d = D[i]
        a = A[i]
        y = Y[i]
        for j in range(m):
            d[j] = (a[j] - y[j]) * w
    total = loss_block(A, Y, sw, loss)
    if loss == SQUARED_ERROR:
        total *= 0.5 / m
    return total
