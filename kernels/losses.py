"""Output deltas fused with the loss, for the (output activation, loss) pairs fastmlp trains.

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
from numba import njit

from ._config import JIT

SQUARED_ERROR, LOG_LOSS, BINARY_LOG_LOSS, POISSON = 0, 1, 2, 3


@njit(**JIT)
def _xlogy(x, y):
    # scipy.special.xlogy: 0 where x == 0, x * log(y) elsewhere
    return x * np.log(y) if x != 0 else x * 0


@njit(**JIT)
def output_delta_loss(D, A, Y, sw, loss):
    """D <- (A - Y) * sw (overwrites); returns the weighted loss summed over the batch.
    D (N, n_out), A (N, n_out), Y (N, n_out), sw (N,) or (0,), loss a loss code.

    Serial: the output layer is narrow (n_out columns), and a loss reduction in a parallel
    region would need per-thread partial sums for a pass that is ~1% of a step."""
    n, m = A.shape
    weighted = sw.shape[0] > 0
    eps = np.finfo(A.dtype).eps
    total = 0.0
    for i in range(n):
        w = sw[i] if weighted else A.dtype.type(1)
        row = 0.0
        for j in range(m):
            a = A[i, j]
            y = Y[i, j]
            D[i, j] = (a - y) * w
            if loss == SQUARED_ERROR:
                row += (a - y) * (a - y)
            elif loss == POISSON:
                row += _xlogy(y, y / a) - y + a
            else:
                p = min(max(a, eps), 1 - eps)
                if loss == LOG_LOSS:
                    row -= _xlogy(y, p)
                else:  # BINARY_LOG_LOSS
                    row -= _xlogy(y, p) + _xlogy(1 - y, 1 - p)
        total += w * row
    if loss == SQUARED_ERROR:
        total *= 0.5 / m
    return total
