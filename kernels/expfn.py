"""Vectorisable exp, log, sigmoid, tanh, and the GELU/SiLU pieces, for float32 and float64.

Numba's ``math.exp``/``np.exp`` lower to scalar libm calls (no SVML since Numba 0.62) and
``math.tanh`` is ~40x slower than ``np.tanh``, so the activations use these instead: Cephes'
range reduction ``exp(x) = 2**k * exp(r)``, ``|r| <= ln2/2``, a polynomial (float32) or Pade
form (float64) for ``exp(r)``, and ``2**k`` built directly in the exponent bits. Inputs are
clamped so that ``2**k`` stays a normal number: no overflow, no inf, and +-inf saturate
cleanly. NaN propagates. ``log`` is Cephes' too: ``log(x) = k ln2 + log(m)``, m in [sqrt(1/2),
sqrt(2)), k and m read from the bits, a polynomial (float32) or rational form (float64) for
log(m); the log loss calls it on every output entry, where libm's log ran once per entry,
unvectorised (100 x 10 log-loss rows took 5.8 us, measured). Every function here is branch-free
in the value, so LLVM vectorises loops that call it.
"""
import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from ._config import JIT, JIT_STRICT, JIT_STRICT_INLINED


# int32 <-> float32 and int64 <-> float64: the same bits read as the other kind
_BITCAST = {types.int32: types.float32, types.float32: types.int32,
            types.int64: types.float64, types.float64: types.int64}


@intrinsic
def _bitcast(typingctx, x):
    """Reinterpret x's bits as the same-width type of the other kind (int32 <-> float32,
    int64 <-> float64): a bitcast, no conversion."""
    to = _BITCAST.get(x)
    if to is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(to))
    return to(x), codegen


_LOG2E = 1.4426950408889634
# The clamping ranges: 2**k stays a normal number (k in [-126, 127] / [-1022, 1023]).
EXP32_RANGE = (-87.3, 88.3)
EXP64_RANGE = (-708.0, 709.0)


@njit(**JIT_STRICT)
def exp32(x):
    """exp(x) for float32; max relative error ~2 ulp on [-87.3, 88.3], clamped outside."""
    xc = min(max(x, np.float32(EXP32_RANGE[0])), np.float32(EXP32_RANGE[1]))
    k = np.floor(np.float32(_LOG2E) * xc + np.float32(0.5))
    r = xc - k * np.float32(0.693359375)
    r = r - k * np.float32(-2.12194440e-4)
    r2 = r * r
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * r2 + r + np.float32(1.0)
    scale = _bitcast(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
    y = y * scale
    return x if x != x else y


@njit(**JIT_STRICT)
def exp64(x):
    """exp(x) for float64; max relative error ~2 ulp on [-708, 709], clamped outside."""
    xc = min(max(x, EXP64_RANGE[0]), EXP64_RANGE[1])
    k = np.floor(_LOG2E * xc + 0.5)
    r = xc - k * 6.93145751953125e-1
    r = r - k * 1.42860682030941723212e-6
    r2 = r * r
    p = ((1.26177193074810590878e-4 * r2 + 3.02994407707441961300e-2) * r2
         + 9.99999999999999999910e-1) * r
    q = (((3.00198505138664455042e-6 * r2 + 2.52448340349684104192e-3) * r2
          + 2.27265548208155028766e-1) * r2 + 2.00000000000000000009e0)
    y = 1.0 + 2.0 * (p / (q - p))
    scale = _bitcast(np.int64((np.int64(k) + np.int64(1023)) << np.int64(52)))
    y = y * scale
    return x if x != x else y


_SQRTH = 0.70710678118654752440
# log(2) split as Cephes does: a short high part (exact in products with k) and the rest
_LN2_HI = 0.693359375
_LN2_LO = -2.121944400546905827679e-4


@njit(**JIT_STRICT)
def log32(x):
    """log(x) for float32 (Cephes' logf); max error ~1 ulp.  Subnormals are scaled up first;
    log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN propagates."""
    sub = x < np.float32(1.17549435e-38)
    xs = x * np.float32(33554432.0) if sub else x  # 2**25
    bits = _bitcast(xs)
    k = ((bits >> np.int32(23)) & np.int32(0xFF)) - np.int32(126)
    k = k - np.int32(25) if sub else k
    m = _bitcast(np.int32((bits & np.int32(0x007FFFFF)) | np.int32(0x3F000000)))  # [0.5, 1)
    low = m < np.float32(_SQRTH)
    fk = np.float32(k - np.int32(1)) if low else np.float32(k)
    t = (m + m - np.float32(1.0)) if low else (m - np.float32(1.0))
    z = t * t
    p = np.float32(7.0376836292e-2) * t - np.float32(1.1514610310e-1)
    p = p * t + np.float32(1.1676998740e-1)
    p = p * t - np.float32(1.2420140846e-1)
    p = p * t + np.float32(1.4249322787e-1)
    p = p * t - np.float32(1.6668057665e-1)
    p = p * t + np.float32(2.0000714765e-1)
    p = p * t - np.float32(2.4999993993e-1)
    p = p * t + np.float32(3.3333331174e-1)
    y = p * t * z
    y = y + np.float32(_LN2_LO) * fk
    y = y - np.float32(0.5) * z
    r = t + y
    r = r + np.float32(_LN2_HI) * fk
    r = np.float32(-np.inf) if x == 0 else r
    r = np.float32(np.nan) if x < 0 else r
    return r if x < np.float32(np.inf) else x


@njit(**JIT_STRICT)
def log64(x):
    """log(x) for float64 (Cephes' log, its |k| <= 2 form for every k); max error ~1 ulp.
    Subnormals are scaled up first; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN
    propagates."""
    sub = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if sub else x  # 2**54
    bits = _bitcast(xs)
    k = ((bits >> np.int64(52)) & np.int64(0x7FF)) - np.int64(1022)
    k = k - np.int64(54) if sub else k
    m = _bitcast(np.int64((bits & np.int64(0x000FFFFFFFFFFFFF))
                          | np.int64(0x3FE0000000000000)))
    low = m < _SQRTH
    fk = np.float64(k - np.int64(1)) if low else np.float64(k)
    t = (m + m - 1.0) if low else (m - 1.0)
    z = t * t
    p = ((((1.01875663804580931796e-4 * t + 4.97494994976747001425e-1) * t
           + 4.70579119878881725854e0) * t + 1.44989225341610930846e1) * t
         + 1.79368678507819816313e1) * t + 7.70838733755885391666e0
    q = (((((t + 1.12873587189167450590e1) * t + 4.52279145837532221105e1) * t
           + 8.29875266912776603211e1) * t + 7.11544750618563894466e1) * t
         + 2.31251620126765340583e1)
    y = t * (z * p / q)
    y = y + _LN2_LO * fk
    y = y - 0.5 * z
    r = t + y
    r = r + _LN2_HI * fk
    r = -np.inf if x == 0 else r
    r = np.nan if x < 0 else r
    return r if x < np.inf else x


@njit(**JIT_STRICT)
def sigmoid32(x):
    """1 / (1 + exp(-x)) in float32; -inf -> 0, +inf -> 1."""
    return np.float32(1.0) / (np.float32(1.0) + exp32(-x))


@njit(**JIT_STRICT)
def sigmoid64(x):
    """1 / (1 + exp(-x)) in float64; -inf -> 0, +inf -> 1."""
    return 1.0 / (1.0 + exp64(-x))


@njit(**JIT_STRICT)
def tanh32(x):
    """tanh in float32: Cephes' odd polynomial for |x| <= 0.625 (keeps relative accuracy near
    0, where ``1 - 2/(e+1)`` would cancel), ``1 - 2 / (exp(2|x|) + 1)`` above, saturating."""
    z = abs(x)
    s = z * z
    small = ((((np.float32(-5.70498872745e-3) * s + np.float32(2.06390887954e-2)) * s
               - np.float32(5.37397155531e-2)) * s + np.float32(1.33314422036e-1)) * s
             - np.float32(3.33332819422e-1)) * s * x + x
    big = np.float32(1.0) - np.float32(2.0) / (exp32(np.float32(2.0) * z) + np.float32(1.0))
    big = big if x >= 0 else -big
    return small if z <= np.float32(0.625) else big


@njit(**JIT_STRICT)
def tanh64(x):
    """tanh in float64: Cephes' rational form for |x| <= 0.625, ``1 - 2/(exp(2|x|)+1)`` above."""
    z = abs(x)
    s = z * z
    p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s - 1.61468768441708447952e3
    q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s \
        + 4.84406305325125486048e3
    small = x + x * s * (p / q)
    big = 1.0 - 2.0 / (exp64(2.0 * z) + 1.0)
    big = big if x >= 0 else -big
    return small if z <= 0.625 else big


def _by_dtype(f32, f64, inline="never"):
    """A generic scalar function that resolves to f32/f64 at compile time (``inline``:
    Numba's option for the choice, see ``_config.JIT_INLINED``)."""
    def generic(x):
        raise NotImplementedError("only callable from jitted code")

    @overload(generic, jit_options=JIT, inline=inline)
    def _ol(x):
        if x == types.float32:
            return lambda x: f32(x)
        if x == types.float64:
            return lambda x: f64(x)
    return generic


# -- the standard normal CDF and density, for GELU ---------------------------------------------
# exp(x^2) erfc(x) = t * Q(2t - 1), t = 3 / (3 + x), x >= 0: Q is smooth on [-1, 1] (it tends
# to 1 / (3 sqrt(pi)) as x -> inf) and these are its Chebyshev interpolants, computed once
# with mpmath at 40 digits: degree 21 (relative error 6e-16) and degree 10 (2e-8, below
# float32's half ulp), below.  Only exp(-x^2) and a division are left: branch-free, vectorisable.
# The GELU pieces are inlined into their callers by Numba (``_config.JIT_STRICT_INLINED``,
# and the float32/float64 choice, vgelu/vdgelu): the same values bit for bit as calls.
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
# |z| beyond which exp(-z^2 / 2) is below the clamped exp's range: there z * pdf(z) is
# taken as 0 (it is below 1e-36 / 1e-306), so that +-inf give GELU's limits, not NaN.
GELU32_CUTOFF = 13.2
GELU64_CUTOFF = 37.6


@njit(**JIT_STRICT_INLINED)
def _erfcx_q64(u):
    # sum c[k] T_k(u), Clenshaw's recurrence written out: a loop over the coefficients
    # keeps LLVM from vectorising the caller's loop over elements (measured 30x slower)
    two_u = u + u
    b2 = u * 0
    b1 = u * 0 + 1.2784639792516257e-15
    b2, b1 = b1, two_u * b1 - b2 + -2.2435903282370242e-15
    b2, b1 = b1, two_u * b1 - b2 + -2.3352408381248295e-14
    b2, b1 = b1, two_u * b1 - b2 + 8.193330663693558e-14
    b2, b1 = b1, two_u * b1 - b2 + 4.191038567085997e-13
    b2, b1 = b1, two_u * b1 - b2 + -2.3303146109393766e-12
    b2, b1 = b1, two_u * b1 - b2 + -8.124557552760212e-12
    b2, b1 = b1, two_u * b1 - b2 + 6.247441303463793e-11
    b2, b1 = b1, two_u * b1 - b2 + 1.9473354700894127e-10
    b2, b1 = b1, two_u * b1 - b2 + -1.676835721248468e-09
    b2, b1 = b1, two_u * b1 - b2 + -6.398408385575485e-09
    b2, b1 = b1, two_u * b1 - b2 + 4.415991899223785e-08
    b2, b1 = b1, two_u * b1 - b2 + 2.7464800479702846e-07
    b2, b1 = b1, two_u * b1 - b2 + -8.809283582853514e-07
    b2, b1 = b1, two_u * b1 - b2 + -1.301447369924135e-05
    b2, b1 = b1, two_u * b1 - b2 + -2.143022238105315e-05
    b2, b1 = b1, two_u * b1 - b2 + 0.00045985238787654427
    b2, b1 = b1, two_u * b1 - b2 + 0.004871757757605546
    b2, b1 = b1, two_u * b1 - b2 + 0.028362346699695153
    b2, b1 = b1, two_u * b1 - b2 + 0.11803603344749546
    b2, b1 = b1, two_u * b1 - b2 + 0.37715894969156577
    return u * b1 - b2 + 0.4711460746602906


@njit(**JIT_STRICT_INLINED)
def _erfcx_q32(u):
    # sum c[k] T_k(u), Clenshaw's recurrence written out: a loop over the coefficients
    # keeps LLVM from vectorising the caller's loop over elements (measured 30x slower)
    two_u = u + u
    b2 = u * 0
    b1 = u * 0 + np.float32(4.583675471348627e-08)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(2.74453271250019e-07)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(-8.809908326983838e-07)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(-1.3014465574683794e-05)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(-2.1430220050738586e-05)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(0.0004598523874574405)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(0.004871757757523613)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(0.028362346699718502)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(0.11803603344749769)
    b2, b1 = b1, two_u * b1 - b2 + np.float32(0.37715894969156455)
    return u * b1 - b2 + np.float32(0.4711460746602906)


@njit(**JIT_STRICT_INLINED)
def normal_cdf_pdf32(z):
    """(Phi(z), phi(z)) in float32: the standard normal CDF and density, from one exp."""
    x = abs(z) * np.float32(_INV_SQRT2)
    t = np.float32(3.0) / (np.float32(3.0) + x)
    e = exp32(-x * x)
    tail = np.float32(0.5) * e * t * _erfcx_q32(np.float32(2.0) * t - np.float32(1.0))
    return (tail if z < 0 else np.float32(1.0) - tail), e * np.float32(_INV_SQRT_2PI)


@njit(**JIT_STRICT_INLINED)
def normal_cdf_pdf64(z):
    """(Phi(z), phi(z)) in float64: the standard normal CDF and density, from one exp."""
    x = abs(z) * _INV_SQRT2
    t = 3.0 / (3.0 + x)
    e = exp64(-x * x)
    tail = 0.5 * e * t * _erfcx_q64(2.0 * t - 1.0)
    return (tail if z < 0 else 1.0 - tail), e * _INV_SQRT_2PI


@njit(**JIT_STRICT_INLINED)
def gelu32(z):
    """GELU z * Phi(z) (the exact, erf form) in float32; -inf -> 0, NaN propagates."""
    p, _ = normal_cdf_pdf32(z)
    return z * p if p != 0 else p


@njit(**JIT_STRICT_INLINED)
def gelu64(z):
    """GELU z * Phi(z) (the exact, erf form) in float64; -inf -> 0, NaN propagates."""
    p, _ = normal_cdf_pdf64(z)
    return z * p if p != 0 else p


@njit(**JIT_STRICT_INLINED)
def dgelu32(z):
    """GELU'(z) = Phi(z) + z phi(z) in float32."""
    p, d = normal_cdf_pdf32(z)
    return p + (z * d if abs(z) < np.float32(GELU32_CUTOFF) else p * 0)


@njit(**JIT_STRICT_INLINED)
def dgelu64(z):
    """GELU'(z) = Phi(z) + z phi(z) in float64."""
    p, d = normal_cdf_pdf64(z)
    return p + (z * d if abs(z) < GELU64_CUTOFF else p * 0)


# -- SiLU (swish): z * sigmoid(z) -------------------------------------------------------------
# Below EXP*_RANGE[0] the sigmoid is clamped (not 0), so z * s would be -inf at -inf: there
# SiLU is taken as 0 (it is below 1e-36 / 1e-305) and its derivative as 0 (1 above -that).
@njit(**JIT_STRICT)
def silu32(z):
    """SiLU z * sigmoid(z) in float32; -inf -> 0, NaN propagates."""
    s = sigmoid32(z)
    return z * s if z >= np.float32(EXP32_RANGE[0]) else s * 0


@njit(**JIT_STRICT)
def silu64(z):
    """SiLU z * sigmoid(z) in float64; -inf -> 0, NaN propagates."""
    s = sigmoid64(z)
    return z * s if z >= EXP64_RANGE[0] else s * 0


@njit(**JIT_STRICT)
def dsilu32(z):
    """SiLU'(z) = s (1 + z (1 - s)), s = sigmoid(z), in float32."""
    s = sigmoid32(z)
    d = s * (np.float32(1.0) + z * (np.float32(1.0) - s))
    inside = abs(z) <= -np.float32(EXP32_RANGE[0])
    return d if inside else (s if z > 0 else s * 0)


@njit(**JIT_STRICT)
def dsilu64(z):
    """SiLU'(z) = s (1 + z (1 - s)), s = sigmoid(z), in float64."""
    s = sigmoid64(z)
    d = s * (1.0 + z * (1.0 - s))
    inside = abs(z) <= -EXP64_RANGE[0]
    return d if inside else (s if z > 0 else s * 0)


vexp = _by_dtype(exp32, exp64)
vlog = _by_dtype(log32, log64)
vsigmoid = _by_dtype(sigmoid32, sigmoid64)
vtanh = _by_dtype(tanh32, tanh64)
vgelu = _by_dtype(gelu32, gelu64, inline="always")
vdgelu = _by_dtype(dgelu32, dgelu64, inline="always")
vsilu = _by_dtype(silu32, silu64)
vdsilu = _by_dtype(dsilu32, dsilu64)
