"""In-place optimizer updates over the flat parameter vector (one pass for all layers).

The gradient arrives as raw batch sums (see ``network.forward_backward``): each kernel forms
``g = scale * grads[k] + l2 * params[k]`` (the L2 term on the first n_coef entries, the
weights, only) on the fly, so a training step makes one pass over the parameters, not two.

Shapes: params, grads and every state vector are (P,).  Scalars arrive in float64, so for
float32 parameters the update is computed in float64 and rounded once.

The kernels here are serial: the ``blas`` way runs them on the calling thread (waking Numba's
pool there would set its spinning workers against OpenBLAS's threads), and the ``split`` way
runs :func:`apply_update_span` on each thread's span of the parameters in a second parallel
region (``network.train_kernels``) once a network has enough parameters to pay for it.
Serial kernels also compile in a fraction of a parallel one's time.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from ._config import JIT, JIT_INNER, JIT_OVERLOAD


@njit(**JIT_INNER)
def _sgd_span(p, g, vel, lr, momentum, nesterov, scale, l2):
    # p, g, vel: (k,) views of one span with one L2 factor (0 for intercepts).  Loops run
    # from 0 over views: no branch on the index and no negative-index wraparound, so LLVM
    # vectorises them (3x faster than the per-element form, measured)
    if momentum == 0:
        for k in range(p.shape[0]):
            p[k] -= lr * (scale * g[k] + l2 * p[k])
    elif nesterov:
        for k in range(p.shape[0]):
            gk = scale * g[k] + l2 * p[k]
            v = momentum * vel[k] - lr * gk
            vel[k] = v
            p[k] += momentum * v - lr * gk
    else:
        for k in range(p.shape[0]):
            v = momentum * vel[k] - lr * (scale * g[k] + l2 * p[k])
            vel[k] = v
            p[k] += v


@njit(**JIT)
def sgd_update(params, grads, velocity, lr, momentum, nesterov, scale, l2, n_coef):
    """velocity <- momentum * velocity - lr * g;  params += velocity, or with Nesterov
    params += momentum * velocity - lr * g (the new velocity).  Overwrites both.  With
    momentum == 0 the velocity is neither read nor written: the update is exactly -lr * g.
    The scalars arrive in the parameters' dtype (float32 SGD is float32 arithmetic, as
    scikit-learn's NumPy code computes it with Python-float learning rates)."""
    _sgd_span(params[:n_coef], grads[:n_coef], velocity[:n_coef], lr, momentum, nesterov,
              scale, l2)
    _sgd_span(params[n_coef:], grads[n_coef:], velocity[n_coef:], lr, momentum, nesterov,
              scale, l2 * 0)


@njit(**JIT_INNER)
def _adam_span(p, g, m, v, lr_t, beta1, beta2, eps, scale, l2):
    # as _sgd_span: views, loops from 0
    for k in range(p.shape[0]):
        gk = scale * g[k] + l2 * p[k]
        mk = beta1 * m[k] + (1 - beta1) * gk
        vk = beta2 * v[k] + (1 - beta2) * (gk * gk)
        m[k] = mk
        v[k] = vk
        p[k] += -lr_t * mk / (np.sqrt(vk) + eps)


@njit(**JIT)
def adam_update(params, grads, m, v, lr_t, beta1, beta2, eps, scale, l2, n_coef):
    """Adam with the bias correction folded into lr_t = lr * sqrt(1-beta2^t) / (1-beta1^t):
    m <- beta1 m + (1-beta1) g;  v <- beta2 v + (1-beta2) g^2;  params -= lr_t m / (sqrt(v)+eps).
    Overwrites params, m, v.  Scalars are float64 (scikit-learn's lr_t is a float64 scalar)."""
    c = n_coef
    _adam_span(params[:c], grads[:c], m[:c], v[:c], lr_t, beta1, beta2, eps, scale, l2)
    _adam_span(params[c:], grads[c:], m[c:], v[c:], lr_t, beta1, beta2, eps, scale, 0.0)


# What a multi-step kernel (``network.train_kernels``) applies after each batch's gradient.
NO_UPDATE, SGD, ADAM = 0, 1, 2


def apply_update(opt, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef):
    """The optimizer step ``opt`` (NO_UPDATE, SGD or ADAM) from the raw sums in grads, as
    :func:`sgd_update` (s1 the velocity; hyper[0..2] = lr, momentum, nesterov, rounded to the
    parameters' dtype as the Python optimizer does) or :func:`adam_update` (s1, s2 = m, v;
    lr_t this step's corrected rate; hyper[3..5] = beta1, beta2, eps).  params, grads, s1,
    s2 (P,); hyper (6,) float64; scale, l2 float64.  A literal ``opt`` (a constant of a
    specialised kernel) compiles that optimizer alone.  Kernels only."""
    raise NotImplementedError("apply_update is only callable from Numba kernels")


def _sgd_step(opt, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef):
    t = params.dtype.type
    sgd_update(params, grads, s1, t(hyper[0]), t(hyper[1]), hyper[2] != 0, t(scale), t(l2),
               n_coef)


def _adam_step(opt, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef):
    adam_update(params, grads, s1, s2, lr_t, hyper[3], hyper[4], hyper[5], scale, l2, n_coef)


def _no_step(opt, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef):
    pass


def _any_step(opt, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef):
    if opt == SGD:
        apply_update(SGD, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef)
    elif opt == ADAM:
        apply_update(ADAM, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef)


@njit(**JIT_INNER)
def apply_update_span(opt, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef, lo, hi):
    """:func:`apply_update` on the parameters lo:hi only (one chunk of a parallel update: the
    update is elementwise, so any split into spans gives the same numbers).  s1, s2 shorter
    than P (SGD without momentum: never read) are sliced as far as they go."""
    c = min(max(n_coef - lo, 0), hi - lo)
    apply_update(opt, params[lo:hi], grads[lo:hi], s1[lo:hi], s2[lo:hi], hyper, lr_t, scale,
                 l2, c)


@overload(apply_update, prefer_literal=True, jit_options=JIT_OVERLOAD)
def _apply_update_typed(opt, params, grads, s1, s2, hyper, lr_t, scale, l2, n_coef):
    if isinstance(opt, types.IntegerLiteral):
        return {SGD: _sgd_step, ADAM: _adam_step}.get(opt.literal_value, _no_step)
    return _any_step
