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

Dropout (inverted: kept units scaled by 1 / (1 - rate), so inference uses the weights as they
are).  The mask is never stored: unit j of batch row r in a layer is kept when a
counter-based hash of (key, r * n + j) is at least rate * 2^32, the key being one per layer and
training step (:func:`dropout_key`).  The forward epilogue applies it after the activation, and
the fused backward epilogue recomputes it, so it depends on nothing but the key and the row's
position in the batch: not on the thread count or on how rows are split between threads.

Shapes: Z, A, D, P, G are (N, n) row-major; b is (n,).
"""
import numpy as np
from numba import njit

from ._config import JIT
from .expfn import vdgelu, vdsilu, vexp, vgelu, vsigmoid, vsilu, vtanh

IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX, EXP, LEAKY_RELU, GELU, SILU = range(9)


_U32 = np.uint64(0xFFFFFFFF)


@njit(**JIT)
def _mix32(x):
    # lowbias32 (C. Wellons' integer hash; a bijection on 32 bits, strong avalanche), on uint64
    # arithmetic masked to 32 bits so that it vectorises and never mixes signed and unsigned
    x = x & _U32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & _U32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & _U32
    x ^= x >> np.uint64(16)
    return x


@njit(**JIT)
def dropout_key(seed, layer):
    """The mask key of one layer in one training step: seed (uint64) holds the fit's seed in
    its high 32 bits and the step count in its low 32 bits."""
    return _mix32(_mix32(_mix32(seed >> np.uint64(32)) ^ (seed & _U32)) ^ np.uint64(layer))


@njit(**JIT)
def dropout_kept(key, index, threshold):
    """Whether the unit at ``index`` (row * n + column in its layer) is kept: a hash of
    (key, index) at least threshold = rate * 2^32."""
    return _mix32(_mix32(np.uint64(index) ^ key) + key) >= threshold


@njit(**JIT)
def _threshold(rate):
    return np.uint64(rate * 4294967296.0)


@njit(**JIT)
def keeps_preactivation(act):
    """Whether backprop through ``act`` needs the pre-activation (GELU, SiLU), not A."""
    return act == GELU or act == SILU


@njit(**JIT)
def _bias_activate_rows(Z, P, b, act, slope, r0, r1, rate=0.0, key=np.uint64(0), row0=0):
    # Z (N, n) in/out, P (N, n) or (0, 0), b (n,): rows r0..r1 of Z <- f(Z + b), and
    # P <- Z + b first when P has rows (the pre-activation, kept for GELU/SiLU's backprop);
    # then, with rate > 0, the dropout mask of batch rows row0 + i
    m = Z.shape[1]
    keep = P.shape[0] > 0
    for i in range(r0, r1):
        z = Z[i]
        _activate_row(z, P[i] if keep else z[:0], b, act, slope)
        if rate > 0:
            threshold = _threshold(rate)
            scale = z.dtype.type(1 / (1 - rate))
            base = (row0 + i) * m
            for j in range(m):
                z[j] = z[j] * scale if dropout_kept(key, base + j, threshold) else z[j] * 0


@njit(**JIT)
def _activate_row(z, p, b, act, slope):
    # z (n,) <- f(z + b); with p of size n, p <- z + b first and z <- f(p)
    m = z.shape[0]
    keep = p.shape[0] > 0
    if keep:
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
    leaky ReLU's (ignored by the others).  Serial."""
    _bias_activate_rows(Z, Z[:0], b, act, slope, 0, Z.shape[0])


@njit(**JIT)
def bias_activate_keep(Z, P, b, act, slope=0.01, rate=0.0, key=np.uint64(0), row0=0):
    """The training forward epilogue of a hidden layer: Z <- f(Z + b), keeping P <- Z + b
    first when backprop needs the pre-activation (``keeps_preactivation(act)``; P untouched
    otherwise), then, with rate > 0, inverted dropout: Z <- Z * mask / (1 - rate), the mask
    that of batch rows row0.. with ``key`` (see the module docstring).  Overwrites Z (and P).
    Z, P (N, n), b (n,); rate in [0, 1); key from :func:`dropout_key`."""
    if keeps_preactivation(act):
        _bias_activate_rows(Z, P, b, act, slope, 0, Z.shape[0], rate, key, row0)
    else:
        _bias_activate_rows(Z, Z[:0], b, act, slope, 0, Z.shape[0], rate, key, row0)


@njit(**JIT)
def _dactivation_cols(D, A, act, slope, db, c0, c1, rate=0.0, key=np.uint64(0), row0=0):
    # D (N, n) in/out, A (N, n), db (n,) out: for columns c0..c1,
    # D <- D * f'(A) (f' from the output A) and db <- the column sums of the new D; for
    # GELU/SiLU, D <- A * f'(D): D holds the pre-activation P and A the incoming gradient G.
    # With dropout (rate > 0) the incoming gradient is first masked and scaled as the forward
    # epilogue did, and A (dropped and scaled there) is scaled back: both are spent after this.
    # Inner loops run from 0 over row views: no negative-index wraparound, so they vectorise.
    n = D.shape[0]
    m = D.shape[1]
    s = db[c0:c1]
    s[:] = 0
    pre = keeps_preactivation(act)
    for i in range(n):
        d = D[i, c0:c1]
        a = A[i, c0:c1]
        if rate > 0:
            threshold = _threshold(rate)
            scale = d.dtype.type(1 / (1 - rate))
            unscale = d.dtype.type(1 - rate)
            base = (row0 + i) * m + c0
            g = a if pre else d
            for j in range(d.shape[0]):
                g[j] = g[j] * scale if dropout_kept(key, base + j, threshold) else g[j] * 0
            if not pre:
                for j in range(d.shape[0]):
                    a[j] *= unscale
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
def dactivation_colsum(D, A, act, db, slope=0.01, rate=0.0, key=np.uint64(0), row0=0):
    """The fused backward delta's epilogue: D <- D * f'(A) in place (f' from the activation
    output A), and db <- sum over rows of the new D (overwrites db): the bias gradient comes
    out of the same pass instead of a second read of D.
    D (N, n), A (N, n), db (n,); slope leaky ReLU's.  Softmax is not elementwise: it only
    appears in the fused output deltas of ``losses``; GELU/SiLU use
    :func:`dpreactivation_colsum`.  Serial, as bias_activate.

    With dropout on the layer (rate > 0, the forward epilogue's key and row0): D is the
    incoming gradient, masked and scaled here, and A the dropped, scaled activation (both
    overwritten)."""
    _dactivation_cols(D, A, act, slope, db, 0, D.shape[1], rate, key, row0)


@njit(**JIT)
def dpreactivation_colsum(P, G, act, db, rate=0.0, key=np.uint64(0), row0=0):
    """The same epilogue from the pre-activation, for GELU/SiLU: P <- G * f'(P) in place
    (P held the pre-activation, it now holds delta), and db <- sum over rows of the new P.
    P (N, n), G (N, n) the incoming gradient ``delta[l+1] @ W[l].T`` (masked and scaled
    here with dropout, as in :func:`dactivation_colsum`), db (n,)."""
    _dactivation_cols(P, G, act, 0.0, db, 0, P.shape[1], rate, key, row0)
