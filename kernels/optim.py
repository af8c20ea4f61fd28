"""In-place optimizer updates over the flat parameter vector (one pass for all layers).

The gradient arrives as raw batch sums (see ``network.forward_backward``): each kernel forms
``g = scale * grads[k] + l2 * params[k]`` (the L2 term on the first n_coef entries, the
weights, only) on the fly, so a training step makes one pass over the parameters, not two.

Shapes: params, grads and every state vector are (P,).  Scalars arrive in float64, so for
float32 parameters the update is computed in float64 and rounded once.

Serial on purpose: these passes are memory-bound, one core nearly saturates the bandwidth, and
a thread-pool launch (~50-70 us with the workqueue layer) cost more than it saved at every
size measured on 2 cores.  Serial kernels also compile in a fraction of a parallel one's time.
"""
import numpy as np
from numba import njit

from ._config import JIT


@njit(**JIT)
def _grad(grads, params, k, n_coef, scale, l2):
    g = scale * grads[k]
    return g + l2 * params[k] if k < n_coef else g


@njit(**JIT)
def _sgd_one(params, grads, velocity, k, lr, momentum, nesterov, scale, l2, n_coef):
    g = _grad(grads, params, k, n_coef, scale, l2)
    if momentum == 0:  # loop-invariant: LLVM hoists the branch out of the loop
        params[k] -= lr * g
        return
    v = momentum * velocity[k] - lr * g
    velocity[k] = v
    if nesterov:
        params[k] += momentum * v - lr * g
    else:
        params[k] += v


@njit(**JIT)
def sgd_update(params, grads, velocity, lr, momentum, nesterov, scale, l2, n_coef):
    """velocity <- momentum * velocity - lr * g;  params += velocity, or with Nesterov
    params += momentum * velocity - lr * g (the new velocity).  Overwrites both.  With
    momentum == 0 the velocity is neither read nor written: the update is exactly -lr * g."""
    for k in range(params.shape[0]):
        _sgd_one(params, grads, velocity, k, lr, momentum, nesterov, scale, l2, n_coef)


@njit(**JIT)
def _adam_one(params, grads, m, v, k, lr_t, beta1, beta2, eps, scale, l2, n_coef):
    g = _grad(grads, params, k, n_coef, scale, l2)
    mk = beta1 * m[k] + (1 - beta1) * g
    vk = beta2 * v[k] + (1 - beta2) * (g * g)
    m[k] = mk
    v[k] = vk
    params[k] += -lr_t * mk / (np.sqrt(vk) + eps)


@njit(**JIT)
def adam_update(params, grads, m, v, lr_t, beta1, beta2, eps, scale, l2, n_coef):
    """Adam with the bias correction folded into lr_t = lr * sqrt(1-beta2^t) / (1-beta1^t):
    m <- beta1 m + (1-beta1) g;  v <- beta2 v + (1-beta2) g^2;  params -= lr_t m / (sqrt(v)+eps).
    Overwrites params, m, v."""
    for k in range(params.shape[0]):
        _adam_one(params, grads, m, v, k, lr_t, beta1, beta2, eps, scale, l2, n_coef)
