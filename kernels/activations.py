"""Activations, fused with the bias add that precedes them, and their derivatives.

Codes are resolved from strings once, in Python (``fastmlp._validation``).  The leaves
(:func:`activate_block`, :func:`preactivate_block`, :func:`dactivation_block`, and dropout's
:func:`drop_row`) are chosen when Numba types the call: a kernel specialised on its codes (see
``network.train_kernels``) compiles the one activation it uses; a code known only at run time
dispatches once per block, never per element.

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
from numba import njit, types
from numba.extending import overload

from ._config import JIT, JIT_INLINED, JIT_INNER, JIT_OVERLOAD
from .expfn import vdgelu, vdsilu, vexp, vgelu, vsigmoid, vsilu, vtanh

IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX, EXP, LEAKY_RELU, GELU, SILU = range(9)


_U32 = np.uint64(0xFFFFFFFF)


@njit(**JIT_INNER)
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


@njit(**JIT_INNER)
def dropout_kept(key, index, threshold):
    """Whether the unit at ``index`` (row * n + column in its layer) is kept: a hash of
    (key, index) at least threshold = rate * 2^32."""
    return _mix32(_mix32(np.uint64(index) ^ key) + key) >= threshold


@njit(**JIT_INNER)
def _threshold(rate):
    return np.uint64(rate * 4294967296.0)


@njit(**JIT)
def keeps_preactivation(act):
    """Whether backprop through ``act`` needs the pre-activation (GELU, SiLU), not A."""
    return act == GELU or act == SILU


# -- the per-activation leaves -------------------------------------------------------------
# Each leaf is a stub whose implementation Numba chooses when it types the call: for a literal
# activation code (a constant of a specialised kernel, see ``network.train_kernels``) the one
# function of that activation, so nothing else is compiled; for a code known only at run time
# (a generic kernel called from Python) a dispatch over all of them, once per block.  A leaf
# takes a whole (N, n) block, not a row: a call between two kernels is not inlined, and one
# per row cost more than the row's work (100 x 100 ReLU: 1.65 us through row calls, 0.69 us
# in one loop nest; its backward epilogue 3.2 us against 1.2 us, measured).


def activate_block(Z, b, act, slope):
    """Z (N, n) <- f(Z + b), f the activation ``act``; slope leaky ReLU's.  Kernels only."""
    raise NotImplementedError("activate_block is only callable from Numba kernels")


def preactivate_block(Z, P, b, act):
    """GELU/SiLU in training: P (N, n) <- Z + b, then Z (N, n) <- f(P).  Kernels only."""
    raise NotImplementedError("preactivate_block is only callable from Numba kernels")


def dactivation_block(D, A, s, act, slope):
    """D (N, n) <- D * f'(A) (f' from the output A) and s (n,) += the column sums of the new
    D; for GELU/SiLU D <- A * f'(D) (D holds the pre-activation, A the incoming gradient).
    Kernels only."""
    raise NotImplementedError("dactivation_block is only callable from Numba kernels")


# Elementwise activations: the element's function, jitted (a scalar call is inlined, and the
# loop around it vectorises), and one block leaf made from it by a factory.

@njit(**JIT_INNER)
def _logistic_of(v, slope):
    return vsigmoid(v)


@njit(**JIT_INNER)
def _tanh_of(v, slope):
    return vtanh(v)


@njit(**JIT_INNER)
def _relu_of(v, slope):
    return v if v > 0 else v * 0  # keeps NaN; max(v, 0) would drop it


@njit(**JIT_INNER)
def _leaky_relu_of(v, slope):
    return v if v > 0 else v * slope


@njit(**JIT_INLINED)  # GELU and its pieces inlined: see _config.JIT_INLINED
def _gelu_of(v, slope):
    return vgelu(v)


@njit(**JIT_INNER)
def _silu_of(v, slope):
    return vsilu(v)


@njit(**JIT_INNER)
def _exp_of(v, slope):
    return vexp(v)


@njit(**JIT_INNER)
def _identity_of(v, slope):
    return v


def _forward(f):
    """The block leaf Z <- f(Z + b) of the elementwise activation f(v, slope)."""
    def block(Z, b, act, slope):
        for i in range(Z.shape[0]):
            z = Z[i]
            for j in range(z.shape[0]):
                z[j] = f(z[j] + b[j], slope)
    return block


def _softmax(Z, b, act, slope):
    # exp(z - rowmax) / rowsum, as scikit-learn computes it, in three passes over the block
    # (shift, exp, scale): fused into one row's loops, a row of a few outputs did not
    # vectorise (100 x 10: 5.5 us, against 1.3 us, measured)
    for i in range(Z.shape[0]):
        z = Z[i]
        zmax = z[0] + b[0]
        for j in range(z.shape[0]):
            zmax = max(zmax, z[j] + b[j])
        for j in range(z.shape[0]):
            z[j] = (z[j] + b[j]) - zmax
    for i in range(Z.shape[0]):
        z = Z[i]
        for j in range(z.shape[0]):
            z[j] = vexp(z[j])
    for i in range(Z.shape[0]):
        z = Z[i]
        s = z[0] * 0
        for j in range(z.shape[0]):
            s += z[j]
        inv = 1 / s
        for j in range(z.shape[0]):
            z[j] *= inv


_identity = _forward(_identity_of)


def _any_activation(Z, b, act, slope):
    if act == LOGISTIC:
        activate_block(Z, b, LOGISTIC, slope)
    elif act == TANH:
        activate_block(Z, b, TANH, slope)
    elif act == RELU:
        activate_block(Z, b, RELU, slope)
    elif act == LEAKY_RELU:
        activate_block(Z, b, LEAKY_RELU, slope)
    elif act == GELU:
        activate_block(Z, b, GELU, slope)
    elif act == SILU:
        activate_block(Z, b, SILU, slope)
    elif act == EXP:
        activate_block(Z, b, EXP, slope)
    elif act == SOFTMAX:
        activate_block(Z, b, SOFTMAX, slope)
    else:
        activate_block(Z, b, IDENTITY, slope)


def _preactivation(f):
    """The block leaf P <- Z + b, then Z <- f(P), of GELU or SiLU (f their vgelu/vsilu)."""
    def block(Z, P, b, act):
        for i in range(Z.shape[0]):
            z = Z[i]
            p = P[i]
            for j in range(z.shape[0]):
                p[j] = z[j] + b[j]
            for j in range(z.shape[0]):
                z[j] = f(p[j])
    return block


def _pre_none(Z, P, b, act):
    pass


def _any_preactivation(Z, P, b, act):
    if act == GELU:
        preactivate_block(Z, P, b, GELU)
    elif act == SILU:
        preactivate_block(Z, P, b, SILU)


# Derivatives: the new delta of one element from its incoming d and the activation output a
# (GELU/SiLU: d holds the pre-activation, a the incoming gradient).

@njit(**JIT_INNER)
def _dlogistic_of(d, a, slope):
    return d * (a * (1 - a))


@njit(**JIT_INNER)
def _dtanh_of(d, a, slope):
    return d * (1 - a * a)


@njit(**JIT_INNER)
def _drelu_of(d, a, slope):
    return d if a > 0 else d * 0


@njit(**JIT_INNER)
def _dleaky_relu_of(d, a, slope):
    return d if a > 0 else d * slope


@njit(**JIT_INLINED)  # see _gelu_of
def _dgelu_of(d, a, slope):
    return a * vdgelu(d)


@njit(**JIT_INNER)
def _dsilu_of(d, a, slope):
    return a * vdsilu(d)


@njit(**JIT_INNER)
def _dexp_of(d, a, slope):
    return d * a


def _backward(df):
    """The block leaf D <- df(D, A), s += the column sums of the new D."""
    def block(D, A, s, act, slope):
        for i in range(D.shape[0]):
            d = D[i]
            a = A[i]
            for j in range(d.shape[0]):
                v = df(d[j], a[j], slope)
                d[j] = v
                s[j] += v
    return block


def _didentity(D, A, s, act, slope):
    # the column sums alone (also softmax's: its delta is fused with the loss)
    for i in range(D.shape[0]):
        d = D[i]
        for j in range(d.shape[0]):
            s[j] += d[j]


def _any_dactivation(D, A, s, act, slope):
    if act == LOGISTIC:
        dactivation_block(D, A, s, LOGISTIC, slope)
    elif act == TANH:
        dactivation_block(D, A, s, TANH, slope)
    elif act == RELU:
        dactivation_block(D, A, s, RELU, slope)
    elif act == LEAKY_RELU:
        dactivation_block(D, A, s, LEAKY_RELU, slope)
    elif act == GELU:
        dactivation_block(D, A, s, GELU, slope)
    elif act == SILU:
        dactivation_block(D, A, s, SILU, slope)
    elif act == EXP:
        dactivation_block(D, A, s, EXP, slope)
    else:
        dactivation_block(D, A, s, IDENTITY, slope)


_FORWARD = {LOGISTIC: _forward(_logistic_of), TANH: _forward(_tanh_of),
            RELU: _forward(_relu_of), LEAKY_RELU: _forward(_leaky_relu_of),
            GELU: _forward(_gelu_of), SILU: _forward(_silu_of), EXP: _forward(_exp_of),
            SOFTMAX: _softmax, IDENTITY: _identity}
_PRE = {GELU: _preactivation(vgelu), SILU: _preactivation(vsilu)}
_BACKWARD = {LOGISTIC: _backward(_dlogistic_of), TANH: _backward(_dtanh_of),
             RELU: _backward(_drelu_of), LEAKY_RELU: _backward(_dleaky_relu_of),
             GELU: _backward(_dgelu_of), SILU: _backward(_dsilu_of), EXP: _backward(_dexp_of)}


def _choose(act, table, generic, default):
    # the implementation for the type of ``act``: one activation's for a literal code
    if isinstance(act, types.IntegerLiteral):
        return table.get(act.literal_value, default)
    return generic


@overload(activate_block, prefer_literal=True, jit_options=JIT_OVERLOAD)
def _activate_block_typed(Z, b, act, slope):
    return _choose(act, _FORWARD, _any_activation, _identity)


@overload(preactivate_block, prefer_literal=True, jit_options=JIT_OVERLOAD)
def _preactivate_block_typed(Z, P, b, act):
    return _choose(act, _PRE, _any_preactivation, _pre_none)


@overload(dactivation_block, prefer_literal=True, jit_options=JIT_OVERLOAD)
def _dactivation_block_typed(D, A, s, act, slope):
    return _choose(act, _BACKWARD, _any_dactivation, _didentity)


def drop_row(z, rate, key, base, dropout):
    """Inverted dropout of one row: z (n,) <- z * mask / (1 - rate) when rate > 0, the mask of
    units base..base+n (see the module's note).  ``dropout`` a literal False (a specialised
    kernel without dropout) compiles to nothing.  Kernels only."""
    raise NotImplementedError("drop_row is only callable from Numba kernels")


def _drop(z, rate, key, base, dropout):
    if rate > 0:
        threshold = _threshold(rate)
        scale = z.dtype.type(1 / (1 - rate))
        for j in range(z.shape[0]):
            z[j] = z[j] * scale if dropout_kept(key, base + j, threshold) else z[j] * 0


def _no_drop(z, rate, key, base, dropout):
    pass


@overload(drop_row, prefer_literal=True, jit_options=JIT_OVERLOAD)
def _drop_row_typed(z, rate, key, base, dropout):
    if isinstance(dropout, types.BooleanLiteral) and not dropout.literal_value:
        return _no_drop
    return _drop


def layer_key(seed, layer, dropout):
    """The dropout mask key of ``layer`` in the step of ``seed`` (:func:`dropout_key`); 0
    without any compiled code for a literal ``dropout`` False.  Kernels only."""
    raise NotImplementedError("layer_key is only callable from Numba kernels")


def _key(seed, layer, dropout):
    return dropout_key(seed, layer)


def _no_key(seed, layer, dropout):
    return np.uint64(0)


@overload(layer_key, prefer_literal=True, jit_options=JIT_OVERLOAD)
def _layer_key_typed(seed, layer, dropout):
    if isinstance(dropout, types.BooleanLiteral) and not dropout.literal_value:
        return _no_key
    return _key


@njit(**JIT)
def bias_activate(Z, b, act, slope=0.01):
    """Z <- f(Z + b) in place (overwrites).  Z (N, n), b (n,), act an activation code, slope
    leaky ReLU's (ignored by the others).  Serial."""
    activate_block(Z, b, act, slope)


@njit(**JIT)
def bias_activate_keep(Z, P, b, act, slope=0.01, rate=0.0, key=np.uint64(0), row0=0,
                       dropout=True):
    """The training forward epilogue of a hidden layer: Z <- f(Z + b), keeping P <- Z + b
    first when backprop needs the pre-activation (``keeps_preactivation(act)``; P untouched
    otherwise), then, with rate > 0, inverted dropout: Z <- Z * mask / (1 - rate), the mask
    that of batch rows row0.. with ``key`` (see the module docstring).  Overwrites Z (and P).
    Z, P (N, n), b (n,); rate in [0, 1); key from :func:`dropout_key`; ``dropout`` False
    (a constant in a specialised kernel) leaves the dropout code out, whatever the rate."""
    if act == GELU or act == SILU:
        preactivate_block(Z, P, b, act)
    else:
        activate_block(Z, b, act, slope)
    if dropout:
        m = Z.shape[1]
        for i in range(Z.shape[0]):
            drop_row(Z[i], rate, key, (row0 + i) * m, dropout)


@njit(**JIT_INNER)
def _dactivation_colsum(D, A, act, slope, db, rate, key, row0, dropout):
    # D (N, n) in/out, A (N, n), db (n,) out: D <- D * f'(A) (f' from the output A) and
    # db <- the column sums of the new D; for GELU/SiLU, D <- A * f'(D): D holds the
    # pre-activation P and A the incoming gradient G.  With dropout (rate > 0) the incoming
    # gradient is first masked and scaled as the forward epilogue did, and A (dropped and
    # scaled there) is scaled back: both are spent after this.  Inner loops run from 0 over
    # row views: no negative-index wraparound, so they vectorise.
    n = D.shape[0]
    m = D.shape[1]
    if dropout and rate > 0:
        for i in range(n):
            d = D[i]
            a = A[i]
            if act == GELU or act == SILU:
                drop_row(a, rate, key, (row0 + i) * m, dropout)
            else:
                drop_row(d, rate, key, (row0 + i) * m, dropout)
                unscale = d.dtype.type(1 - rate)
                for j in range(m):
                    a[j] *= unscale
    db[:] = 0
    dactivation_block(D, A, db, act, slope)


@njit(**JIT)
def dactivation_colsum(D, A, act, db, slope=0.01, rate=0.0, key=np.uint64(0), row0=0,
                       dropout=True):
    """The fused backward delta's epilogue: D <- D * f'(A) in place (f' from the activation
    output A), and db <- sum over rows of the new D (overwrites db): the bias gradient comes
    out of the same pass instead of a second read of D.
    D (N, n), A (N, n), db (n,); slope leaky ReLU's.  Softmax is not elementwise: it only
    appears in the fused output deltas of ``losses``; GELU/SiLU use
    :func:`dpreactivation_colsum`.  Serial, as bias_activate.

    With dropout on the layer (rate > 0, the forward epilogue's key and row0): D is the
    incoming gradient, masked and scaled here, and A the dropped, scaled activation (both
    overwritten).  ``dropout`` False (a constant in a specialised kernel) leaves that code
    out."""
    _dactivation_colsum(D, A, act, slope, db, rate, key, row0, dropout)


@njit(**JIT)
def dpreactivation_colsum(P, G, act, db, rate=0.0, key=np.uint64(0), row0=0, dropout=True):
    """The same epilogue from the pre-activation, for GELU/SiLU: P <- G * f'(P) in place
    (P held the pre-activation, it now holds delta), and db <- sum over rows of the new P.
    P (N, n), G (N, n) the incoming gradient ``delta[l+1] @ W[l].T`` (masked and scaled
    here with dropout, as in :func:`dactivation_colsum`), db (n,)."""
    _dactivation_colsum(P, G, act, 0.0, db, rate, key, row0, dropout)
