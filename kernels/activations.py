"""Activations, fused with the bias add that precedes them, and their derivatives.

Codes are resolved from strings once, in Python (``fastmlp._validation``); kernels branch on
the code once per row, never per element.

What backprop reads.  Identity, logistic, tanh, ReLU, leaky ReLU and exp have derivatives
written from the activation's OUTPUT A (as scikit-learn does), so the forward pass's A[l] is
all backprop needs.  GELU and SiLU do not (neither is invertible), so for them the training
forward pass keeps the pre-activation P = Z + b in the layer's delta block (which is free until
backprop reaches that layer) with :func:`bias_activate_keep`; backprop computes
``delta[l] @ W[l].T`` into the A block (free once dW[l] is formed) and the fused epilogue
:func:`dpreactivation_colsum` turns P into delta in place.  Either way the derivative is one
pass fused with the bias-gradient column sums, and nothing is allocated.

Leaky ReLU's slope (>= 0, so that the sign of A is the sign of Z) is a kernel argument, 0.01
(PyTorch's and scikit-learn-contrib's usual default) when not given.

Shapes: Z, A, D, P, G are (N, n) row-major; b is (n,).
"""
import numpy as np
from numba import njit

from ._config import JIT
from .expfn import vdgelu, vdsilu, vexp, vgelu, vsigmoid, vsilu, vtanh

IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX, EXP, LEAKY_RELU, GELU, SILU = range(9)


@njit(**JIT)
def keeps_preactivation(act):
    """Whether backprop through ``act`` needs the pre-activation (GELU, SiLU), not A."""
    return act == GELU or act == SILU


@njit(**JIT)
def _bias_activate_rows(Z, P, b, act, slope, r0, r1):
    # Z (N, n) in/out, P (N, n) or (0, 0), b (n,): rows r0..r1 of Z <- f(Z + b), and
    # P <- Z + b first when P has rows (the pre-activation, kept for GELU/SiLU's backprop)
    m = Z.shape[1]
    keep = P.shape[0] > 0
    for i in range(r0, r1):
        z = Z[i]
        if keep:
            p = P[i]
            for j in range(m):
                p[j] = z[j] + b[j]
            if act == GELU:
                for j in range(m):
                    z[j] = vgelu(p[j])
            else:  # SILU
                for j in range(m):
                    z[j] = vsilu(p[j])
        elif act == LOGISTIC:
            for j in range(m):
                z[j] = vsigmoid(z[j] + b[j])
        elif act == TANH:
            for j in range(m):
                z[j] = vtanh(z[j] + b[j])
        elif act == RELU:
            for j in range(m):
                v = z[j] + b[j]
                z[j] = v if v > 0 else v * 0  # keeps NaN; max(v, 0) would drop it
        elif act == LEAKY_RELU:
            for j in range(m):
                v = z[j] + b[j]
                z[j] = v if v > 0 else v * slope
        elif act == GELU:
            for j in range(m):
                z[j] = vgelu(z[j] + b[j])
        elif act == SILU:
            for j in range(m):
                z[j] = vsilu(z[j] + b[j])
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
def bias_activate(Z, b, act, slope=0.01):
    """Z <- f(Z + b) in place (overwrites).  Z (N, n), b (n,), act an activation code, slope
    leaky ReLU's (ignored by the others).

    Serial: the threads of a training step each run it on their own rows (see
    ``network.split_step``); a pass of its own would cost a thread-pool launch."""
    _bias_activate_rows(Z, Z[:0], b, act, slope, 0, Z.shape[0])


@njit(**JIT)
def bias_activate_keep(Z, P, b, act, slope=0.01):
    """P <- Z + b, then Z <- f(P) (overwrites both): the training forward pass of an
    activation whose derivative needs the pre-activation (``keeps_preactivation(act)``).
    Z, P (N, n), b (n,).  Any other act is plain :func:`bias_activate` (P untouched)."""
    if keeps_preactivation(act):
        _bias_activate_rows(Z, P, b, act, slope, 0, Z.shape[0])
    else:
        _bias_activate_rows(Z, Z[:0], b, act, slope, 0, Z.shape[0])


@njit(**JIT)
def _dactivation_cols(D, A, act, slope, db, c0, c1):
    # D (N, n) in/out, A (N, n), db (n,) out: for columns c0..c1,
    # D <- D * f'(A) (f' from the output A) and db <- the column sums of the new D; for
    # GELU/SiLU, D <- A * f'(D): D holds the pre-activation P and A the incoming gradient G.
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
        elif act == LEAKY_RELU:
            for j in range(d.shape[0]):
                v = d[j] if a[j] > 0 else d[j] * slope
                d[j] = v
                s[j] += v
        elif act == GELU:
            for j in range(d.shape[0]):
                v = a[j] * vdgelu(d[j])
                d[j] = v
                s[j] += v
        elif act == SILU:
            for j in range(d.shape[0]):
                v = a[j] * vdsilu(d[j])
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
def dactivation_colsum(D, A, act, db, slope=0.01):
    """The fused backward delta's epilogue: D <- D * f'(A) in place (f' from the activation
    output A), and db <- sum over rows of the new D (overwrites db): the bias gradient comes
    out of the same pass instead of a second read of D.
    D (N, n), A (N, n), db (n,); slope leaky ReLU's.  Softmax is not elementwise: it only
    appears in the fused output deltas of ``losses``; GELU/SiLU use
    :func:`dpreactivation_colsum`.  Serial, as bias_activate."""
    _dactivation_cols(D, A, act, slope, db, 0, D.shape[1])


@njit(**JIT)
def dpreactivation_colsum(P, G, act, db):
    """The same epilogue from the pre-activation, for GELU/SiLU: P <- G * f'(P) in place
    (P held the pre-activation, it now holds delta), and db <- sum over rows of the new P.
    P (N, n), G (N, n) the incoming gradient ``delta[l+1] @ W[l].T``, db (n,)."""
    _dactivation_cols(P, G, act, 0.0, db, 0, P.shape[1])
