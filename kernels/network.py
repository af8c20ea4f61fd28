"""The whole network over flat buffers: forward pass, backprop, and the pieces between.

Storage (allocated once by ``fastmlp.backend.Workspace``; see the legend in __init__):
  params  (P,)  all W[l] raveled C-order, then all b[l]   (scikit-learn's L-BFGS packing)
  grads   (P,)  dW[l] and db[l], same layout as params (raw batch sums after
                forward_backward; ``finish_grads`` scales them to the gradient)
  acts    (B * sum(sizes[1:]),)  A[1..L], each a (B, n_l) block; A[0] is the input batch
  deltas  (B * sum(sizes[1:]),)  delta[1..L] = dLoss/dZ[l], same blocks as acts
For a batch of N <= B rows every (N, n_l) view is the leading, contiguous part of its block.

Threads: the matrix products go to BLAS (``np.dot`` -> SciPy's OpenBLAS), the elementwise
epilogues to Numba's pool; they run one after the other, never at once (see fastmlp._threads).
"""
import numpy as np
from numba import njit

from ._config import JIT
from .activations import (IDENTITY, bias_activate, bias_activate_keep, dactivation_colsum,
                          dpreactivation_colsum, dropout_key, keeps_preactivation)
from .losses import SQUARED_ERROR, output_delta_loss


@njit(**JIT)
def coef_view(params, sizes, l):
    """W[l] (sizes[l], sizes[l+1]) as a view of params (P,)."""
    off = 0
    for k in range(l):
        off += sizes[k] * sizes[k + 1]
    return params[off:off + sizes[l] * sizes[l + 1]].reshape(sizes[l], sizes[l + 1])


@njit(**JIT)
def intercept_view(params, sizes, l):
    """b[l] (sizes[l+1],) as a view of params (P,)."""
    off = 0
    for k in range(sizes.shape[0] - 1):
        off += sizes[k] * sizes[k + 1]
    for k in range(l):
        off += sizes[k + 1]
    return params[off:off + sizes[l + 1]]


@njit(**JIT)
def layer_view(buf, sizes, capacity, l, n):
    """A[l] or delta[l], l >= 1, for the first n rows: (n, sizes[l]) view of buf."""
    off = 0
    for k in range(1, l):
        off += capacity * sizes[k]
    return buf[off:off + n * sizes[l]].reshape(n, sizes[l])


@njit(**JIT)
def forward_pass(params, acts, X, sizes, capacity, act, out_act, slope=0.01):
    """A[l+1] = f(A[l] @ W[l] + b[l]) for every layer (overwrites acts); returns A[L] (N, n_out).
    params (P,), acts (B * sum(sizes[1:]),), X (N, sizes[0]) with N <= B, sizes (L+1,);
    slope leaky ReLU's."""
    n = X.shape[0]
    L = sizes.shape[0] - 1
    A = X
    for l in range(L):
        Z = layer_view(acts, sizes, capacity, l + 1, n)
        np.dot(A, coef_view(params, sizes, l), Z)
        bias_activate(Z, intercept_view(params, sizes, l), out_act if l == L - 1 else act,
                      slope)
        A = Z
    return A


@njit(**JIT)
def _forward_train(params, acts, deltas, X, sizes, capacity, act, out_act, slope, dropout,
                   seed):
    # forward_pass for a training step: each hidden layer's Z + b kept in its delta block
    # when backprop needs it (GELU/SiLU), and dropout applied to the hidden layers
    n = X.shape[0]
    L = sizes.shape[0] - 1
    A = X
    for l in range(L):
        Z = layer_view(acts, sizes, capacity, l + 1, n)
        np.dot(A, coef_view(params, sizes, l), Z)
        b = intercept_view(params, sizes, l)
        if l < L - 1:
            rate = 0.0
            if dropout is not None:
                rate = dropout[l]
            bias_activate_keep(Z, layer_view(deltas, sizes, capacity, l + 1, n), b, act, slope,
                               rate, dropout_key(seed, l), 0)
        else:
            bias_activate(Z, b, out_act, slope)
        A = Z
    return A


@njit(**JIT)
def scale_grads(grads, params, n_coef, scale, l2):
    """grads <- scale * grads + l2 * params on the first n_coef entries (the W part: L2 does
    not touch intercepts), grads <- scale * grads on the rest.  grads, params (P,).
    Serial: a memory-bound pass that one core nearly saturates."""
    for k in range(grads.shape[0]):
        if k < n_coef:
            grads[k] = scale * grads[k] + l2 * params[k]
        else:
            grads[k] = scale * grads[k]


@njit(**JIT)
def sum_squares(x, n):
    """sum(x[:n] ** 2) accumulated in float64.  x (P,)."""
    s = 0.0
    for k in range(n):
        s += x[k] * x[k]
    return s


@njit(**JIT)
def forward_backward(params, grads, acts, deltas, X, Y, sw, sizes, capacity,
                     act, out_act, loss, alpha, slope=0.01, dropout=None, seed=np.uint64(0)):
    """One batch: forward pass, loss, and backprop.  Overwrites grads, acts and deltas.

    params, grads (P,); acts, deltas (B * sum(sizes[1:]),); X (N, sizes[0]);
    Y (N, n_out); sw (N,) sample weights or (0,); sizes (L+1,) int64; N <= capacity B.

    Returns (batch loss, n): the loss with scikit-learn's definition (L2 term included) and n,
    the batch's weight sum (its row count without weights).  grads holds the RAW sums
    ``A[l].T @ delta[l+1]`` and ``sum_rows(delta[l+1])``: the gradient of the batch loss is
    ``grads / n`` plus ``alpha / n * W`` -- ``finish_grads`` forms it in place, and the
    optimizer kernels form it on the fly (one pass over the parameters instead of two).

    Each delta[l] is computed once and used twice: for dW[l-1] = A[l-1].T @ delta[l] and for
    delta[l-1] = (delta[l] @ W[l-1].T) * f'(A[l-1]).  No delta is formed for the input.

    GELU/SiLU (``keeps_preactivation``): the forward pass keeps each hidden Z + b in its delta
    block, and ``delta[l] @ W[l].T`` goes into A[l]'s block, spent once dW[l] is formed; the
    fused epilogue then makes delta[l-1] from both in place.  So after such a step acts holds
    those gradients, not the activations.

    Dropout: ``dropout`` None or (L-1,) rates of the hidden layers, ``seed`` (uint64) the
    step's mask seed (see ``activations``): the forward epilogue drops and scales A[l], and
    the backward epilogue recomputes the same mask for delta[l]."""
    n = X.shape[0]
    L = sizes.shape[0] - 1
    keep = keeps_preactivation(act)
    out = _forward_train(params, acts, deltas, X, sizes, capacity, act, out_act, slope,
                         dropout, seed)
    D = layer_view(deltas, sizes, capacity, L, n)
    total = output_delta_loss(D, out, Y, sw, loss)
    # the output delta's epilogue: f'(A) for a non-canonical pair, and db[L-1] either way
    dactivation_colsum(D, out, out_act if loss == SQUARED_ERROR else IDENTITY,
                       intercept_view(grads, sizes, L - 1), slope)
    weight_sum = np.float64(n)
    if sw.shape[0] > 0:
        weight_sum = 0.0
        for i in range(n):
            weight_sum += sw[i]
    for l in range(L - 1, -1, -1):
        A_prev = X if l == 0 else layer_view(acts, sizes, capacity, l, n)
        np.dot(A_prev.T, D, coef_view(grads, sizes, l))
        if l > 0:
            D_prev = layer_view(deltas, sizes, capacity, l, n)
            rate = 0.0
            if dropout is not None:
                rate = dropout[l - 1]
            key = dropout_key(seed, l - 1)
            if keep:  # D_prev holds Z + b; A_prev's block takes delta @ W.T
                np.dot(D, coef_view(params, sizes, l).T, A_prev)
                dpreactivation_colsum(D_prev, A_prev, act, intercept_view(grads, sizes, l - 1),
                                      rate, key, 0)
            else:
                np.dot(D, coef_view(params, sizes, l).T, D_prev)
                dactivation_colsum(D_prev, A_prev, act, intercept_view(grads, sizes, l - 1),
                                   slope, rate, key, 0)
            D = D_prev
    batch_loss = total / weight_sum
    if alpha > 0:
        batch_loss += 0.5 * alpha * sum_squares(params, n_coef(sizes)) / weight_sum
    return batch_loss, weight_sum


@njit(**JIT)
def n_coef(sizes):
    """Number of weight entries (the W part of the flat parameters)."""
    total = 0
    for l in range(sizes.shape[0] - 1):
        total += sizes[l] * sizes[l + 1]
    return total


@njit(**JIT)
def finish_grads(grads, params, sizes, weight_sum, alpha):
    """Raw sums from forward_backward -> the gradient: grads / n + alpha / n * W (in place)."""
    scale_grads(grads, params, n_coef(sizes), 1.0 / weight_sum, alpha / weight_sum)


@njit(**JIT)
def _copy_row(out, X, i, r):
    # element by element: a slice assignment may copy through a temporary when it cannot
    # rule out overlap
    for j in range(out.shape[1]):
        out[i, j] = X[r, j]


@njit(**JIT)
def gather_rows(out, X, idx):
    """out[i] = X[idx[i]] (overwrites).  out (N, n), X (M, n), idx (N,) int64.
    Serial: a memory-bound copy (see optim.py's note)."""
    for i in range(out.shape[0]):
        _copy_row(out, X, i, idx[i])


@njit(**JIT)
def _csr_row(out, data, indices, indptr, i, r):
    row = out[i]
    row[:] = 0
    for k in range(indptr[r], indptr[r + 1]):
        row[indices[k]] = data[k]


@njit(**JIT)
def gather_csr_rows(out, data, indices, indptr, idx):
    """out[i] = dense row idx[i] of a CSR matrix (overwrites); the batch is densified, never
    the whole matrix.  out (N, n); data, indices (nnz,); indptr (M+1,); idx (N,) int64."""
    for i in range(out.shape[0]):
        _csr_row(out, data, indices, indptr, i, idx[i])


@njit(**JIT)
def csr_slice_to_dense(out, data, indices, indptr, start):
    """out[i] = dense row start + i of a CSR matrix (overwrites).  out (N, n); data, indices
    (nnz,); indptr (M+1,); start + N <= M."""
    for i in range(out.shape[0]):
        _csr_row(out, data, indices, indptr, i, start + i)


@njit(**JIT)
def gather_vector(out, x, idx):
    """out[i] = x[idx[i]] (overwrites).  out (N,), x (M,), idx (N,) int64."""
    for i in range(out.shape[0]):
        out[i] = x[idx[i]]
