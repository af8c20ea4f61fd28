"""Activations, fused with the bias add that precedes them, and their derivatives.

Codes are resolved from strings once, in Python (``fastmlp.backend``); kernels branch on the
code once per row, never per element.  Every derivative is written from the activation's
OUTPUT A (as scikit-learn does), so the forward pass's A[l] is all backprop needs.

Shapes: Z, A, D are (N, n) row-major; b is (n,).
"""
import numpy as np
from numba import njit, prange

from ._config import JIT, PJIT, PARALLEL_MIN_ELEMENTS
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


@njit(**PJIT)
def bias_activate(Z, b, act):
    """Z <- f(Z + b) in place (overwrites).  Z (N, n), b (n,), act an activation code.

    Parallel over rows; serial below PARALLEL_MIN_ELEMENTS."""
    n, m = Z.shape
    if n * m < PARALLEL_MIN_ELEMENTS:
        _bias_activate_rows(Z, b, act, 0, n)
        return
    for i in prange(n):  # Numba splits the rows into one contiguous block per thread
        _bias_activate_rows(Z, b, act, i, i + 1)


@njit(**JIT)
def _mul_dactivation_rows(D, A, act, r0, r1):
    # D (N, n) in/out, A (N, n): rows r0..r1 of D <- D * f'(A), f' written from the output A
    m = D.shape[1]
    for i in range(r0, r1):
        d = D[i]
        a = A[i]
        if act == LOGISTIC:
            for j in range(m):
                d[j] *= a[j] * (1 - a[j])
        elif act == TANH:
            for j in range(m):
                d[j] *= 1 - a[j] * a[j]
        elif act == RELU:
            for j in range(m):
                d[j] = d[j] if a[j] > 0 else d[j] * 0
        elif act == EXP:
            for j in range(m):
                d[j] *= a[j]


@njit(**PJIT)
def mul_dactivation(D, A, act):
    """D <- D * f'(A) in place, with f' taken from the activation output A.
    D (N, n), A (N, n).  Identity leaves D as it is; softmax is not elementwise and is only
    used through the fused output deltas of ``losses``."""
    n, m = D.shape
    if act == IDENTITY:
        return
    if n * m < PARALLEL_MIN_ELEMENTS:
        _mul_dactivation_rows(D, A, act, 0, n)
        return
    for i in prange(n):
        _mul_dactivation_rows(D, A, act, i, i + 1)
