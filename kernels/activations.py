"""Activations, fused with the bias add that precedes them, and their derivatives.

Codes are resolved from strings once, in Python (``fastmlp.backend``); kernels branch on the
code once per row, never per element.  Every derivative is written from the activation's
OUTPUT A (as scikit-learn does), so the forward pass's A[l] is all backprop needs.

Shapes: Z, A, D are (N, n) row-major; b is (n,).
"""
import numpy as np
from numba import njit

from ._config import JIT
from .expfn import vexp, vsigmoid, vtanh

IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX, EXP = 0, 1, 2, 3, 4, 5


@njit(**JIT)
def _bias_activate_rows(Z, b, act, r0, r1):
    # Z (N, n) in/out, b (n,): rows r0..r1 of Z <- f(Z + b)
    m = Z.shape[1]
    for i in range(r0, r1):
        z = Z[i]
        if act == LOGISTIC:
            for j in range(m):
                z[j] = vsigmoid(z[j] + b[j])
        elif act == TANH:
            for j in range(m):
                z[j] = vtanh(z[j] + b[j])
        elif act == RELU:
            for j in range(m):
                v = z[j] + b[j]
                z[j] = v if v > 0 else v * 0  # keeps NaN; max(v, 0) would drop it
        elif act == EXP:
            for j in range(m):
                z[j] = vexp(z[j] + b[j])
        elif act == SOFTMAX:
            # exp(z - rowmax) / rowsum, as scikit-learn computes it
            zmax = z[0] + b[0]
            for j in range(m):
                v = z[j] + b[j]
                z[j] = v
                zmax = max(zmax, v)
            s = z[0] * 0
            for j in range(m):
                e = vexp(z[j] - zmax)
                z[j] = e
                s += e
            inv = 1 / s
            for j in range(m):
                z[j] *= inv
        else:  # IDENTITY
            for j in range(m):
                z[j] += b[j]


@njit(**JIT)
def bias_activate(Z, b, act):
    """Z <- f(Z + b) in place (overwrites).  Z (N, n), b (n,), act an activation code.

    Serial: the threads of a training step each run it on their own rows (see
    ``network.split_step``); a pass of its own would cost a thread-pool launch."""
    _bias_activate_rows(Z, b, act, 0, Z.shape[0])


@njit(**JIT)
def _dactivation_cols(D, A, act, db, c0, c1):
    # D (N, n) in/out, A (N, n), db (n,) out: for columns c0..c1,
    # D <- D * f'(A) (f' from the output A) and db <- the column sums of the new D.
    # Inner loops run from 0 over row views: no negative-index wraparound, so they vectorise.
    n = D.shape[0]
    s = db[c0:c1]
    s[:] = 0
    for i in range(n):
        d = D[i, c0:c1]
        a = A[i, c0:c1]
        if act == LOGISTIC:
            for j in range(d.shape[0]):
                v = d[j] * (a[j] * (1 - a[j]))
                d[j] = v
                s[j] += v
        elif act == TANH:
            for j in range(d.shape[0]):
                v = d[j] * (1 - a[j] * a[j])
                d[j] = v
                s[j] += v
        elif act == RELU:
            for j in range(d.shape[0]):
                v = d[j] if a[j] > 0 else d[j] * 0
                d[j] = v
                s[j] += v
        elif act == EXP:
            for j in range(d.shape[0]):
                v = d[j] * a[j]
                d[j] = v
                s[j] += v
        else:  # IDENTITY: the column sums alone
            for j in range(d.shape[0]):
                s[j] += d[j]


@njit(**JIT)
def dactivation_colsum(D, A, act, db):
    """The fused backward delta's epilogue: D <- D * f'(A) in place (f' from the activation
    output A), and db <- sum over rows of the new D (overwrites db): the bias gradient comes
    out of the same pass instead of a second read of D.
    D (N, n), A (N, n), db (n,).  Softmax is not elementwise: it only appears in the fused
    output deltas of ``losses``.  Serial, as bias_activate."""
    _dactivation_cols(D, A, act, db, 0, D.shape[1])
