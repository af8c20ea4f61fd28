"""In-place optimizer updates over the flat parameter vector (one pass for all layers).

Shapes: params, grads and every state vector are (P,).  Scalars arrive in float64, so for
float32 parameters the update is computed in float64 and rounded once, as scikit-learn's
NumPy 2 arithmetic does.
"""
import numpy as np
from numba import njit, prange

from ._config import PJIT


@njit(**PJIT)
def sgd_update(params, grads, velocity, lr, momentum, nesterov):
    """velocity <- momentum * velocity - lr * grads; params += velocity, or with Nesterov
    params += momentum * velocity - lr * grads (the new velocity).  Overwrites both."""
    for k in prange(params.shape[0]):
        v = momentum * velocity[k] - lr * grads[k]
        velocity[k] = v
        if nesterov:
            params[k] += momentum * v - lr * grads[k]
        else:
            params[k] += v


@njit(**PJIT)
def adam_update(params, grads, m, v, lr_t, beta1, beta2, eps):
    """Adam with the bias correction folded into lr_t = lr * sqrt(1-beta2^t) / (1-beta1^t):
    m <- beta1 m + (1-beta1) g;  v <- beta2 v + (1-beta2) g^2;  params -= lr_t m / (sqrt(v)+eps).
    Overwrites params, m, v."""
    for k in prange(params.shape[0]):
        g = grads[k]
        mk = beta1 * m[k] + (1 - beta1) * g
        vk = beta2 * v[k] + (1 - beta2) * (g * g)
        m[k] = mk
        v[k] = vk
        params[k] += -lr_t * mk / (np.sqrt(vk) + eps)
