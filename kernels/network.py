"""The whole network over flat buffers: forward pass, backprop, and the pieces between.

Storage (allocated once by ``fastmlp.backend.Workspace``; see the legend in __init__):
  params  (P,)  all W[l] raveled C-order, then all b[l]   (scikit-learn's L-BFGS packing)
  grads   (P,)  dW[l] and db[l], same layout as params (raw batch sums after
                forward_backward; ``finish_grads`` scales them to the gradient)
  acts    (B * sum(sizes[1:]),)  A[1..L], each a (B, n_l) block; A[0] is the input batch
  deltas  (B * sum(sizes[1:]),)  delta[1..L] = dLoss/dZ[l], same blocks as acts
For a batch of N <= B rows every (N, n_l) view is the leading, contiguous part of its block.

Threads, two ways (chosen per network by ``fastmlp._planner``; see ``fastmlp._threads``):
  blas   forward_backward / forward_pass: the products on BLAS's threads (``np.dot`` -> SciPy's
         OpenBLAS), every epilogue serial on the calling thread.
  split  train_kernels(...).split_steps / split_forward: one parallel region per step; thread
         t takes a contiguous block of the batch's rows, gathers them, and runs the forward
         pass, the loss and backprop on them with single-threaded BLAS.  Every thread writes
         its own rows of acts/deltas (so they hold the same batch-wide A[l]/delta[l] as the
         blas way) and its own gradient sums; the sums are added in thread order
         (bit-identical run to run for a thread count), by the calling thread for small
         networks, else in a second region where each thread adds and updates its span of
         the parameters.

Specialised kernels.  The entry points that run a step or a prediction are made once per
(activation, output activation, loss, dropout) by :func:`train_kernels` and
:func:`forward_kernels`, with those codes as constants of a closure: Numba types them as
literals, every function below is compiled for those literals, and the per-activation and
per-loss leaves are chosen from them at typing time, so a fit compiles only the code of its own
activation and loss (cold start-up; see ``_config``), cached on disk per specialisation.  The
generic functions of the same names (codes as arguments) look the specialised kernel up and
call it; the building blocks called from Python with a code known at run time compile a
dispatch over every activation instead.
"""
import functools
import threading
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ._config import JIT, JIT_EXACT, JIT_INNER, PJIT
from .activations import (IDENTITY, GELU, SILU, bias_activate, bias_activate_keep,
                          _dactivation_colsum, layer_key)
from .losses import SQUARED_ERROR, output_delta_loss
from .optim import apply_update, apply_update_span
from .prefetch import PREFETCH_AHEAD, prefetch_row


@njit(**JIT_INNER)
def coef_view(params, sizes, l):
    """W[l] (sizes[l], sizes[l+1]) as a view of params (P,)."""
    off = 0
    for k in range(l):
        off += sizes[k] * sizes[k + 1]
    return params[off:off + sizes[l] * sizes[l + 1]].reshape(sizes[l], sizes[l + 1])


@njit(**JIT_INNER)
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


# no dropout: (0,) rates, a global so that Numba bakes it in as a constant (no allocation)
_NO_RATES = np.zeros(0)


@njit(**JIT_INNER)
def row_block(buf, sizes, capacity, l, r0, r1):
    """Rows r0..r1 of A[l] or delta[l], l >= 1: a contiguous (r1 - r0, sizes[l]) view of buf."""
    off = 0
    for k in range(1, l):
        off += capacity * sizes[k]
    return buf[off + r0 * sizes[l]:off + r1 * sizes[l]].reshape(r1 - r0, sizes[l])


@njit(**JIT_INNER)
def forward_rows(params, acts, deltas, X, sizes, capacity, r0, act, out_act, slope,
                 rates, seed, train, dropout):
    """A[l+1] = f(A[l] @ W[l] + b[l]) for batch rows r0..r0+N of every layer (overwrites those
    rows of acts); returns their A[L] (N, n_out).  X (N, sizes[0]) holds those rows of A[0];
    slope leaky ReLU's.  With ``train`` (a training step), each hidden layer's Z + b is kept in
    those rows of its delta block when backprop needs it (GELU/SiLU), and with ``dropout``
    the ``rates`` ((L-1,)) and the step's mask ``seed`` (uint64) drop hidden units; the mask
    of a unit depends on its batch row, not on r0's block (so every way of splitting a batch
    draws the same mask).  ``train``/``dropout`` are constants in the specialised kernels."""
    n = X.shape[0]
    L = sizes.shape[0] - 1
    A = X
    for l in range(L - 1):
        Z = row_block(acts, sizes, capacity, l + 1, r0, r0 + n)
        np.dot(A, coef_view(params, sizes, l), Z)
        b = intercept_view(params, sizes, l)
        if train:
            rate = rates[l] if dropout else 0.0
            bias_activate_keep(Z, row_block(deltas, sizes, capacity, l + 1, r0, r0 + n), b,
                               act, slope, rate, layer_key(seed, l, dropout), r0, dropout)
        else:
            bias_activate(Z, b, act, slope)
        A = Z
    Z = row_block(acts, sizes, capacity, L, r0, r0 + n)
    np.dot(A, coef_view(params, sizes, L - 1), Z)
    bias_activate(Z, intercept_view(params, sizes, L - 1), out_act, slope)
    return Z


@njit(**JIT_INNER)
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
def backprop_rows(grads, params, acts, deltas, X, Y, sw, sizes, capacity, r0,
                  act, out_act, loss, slope, rates, seed, dropout):
    """Forward pass, loss and backprop for batch rows r0..r0+N (X, Y, sw hold those rows).
    Overwrites those rows of acts and deltas, and grads with the rows' RAW sums
    ``A[l].T @ delta[l+1]`` and ``sum_rows(delta[l+1])``.  Returns the rows' loss sum (weighted,
    no L2 term).  grads (P,); X (N, sizes[0]); Y (N, n_out); sw (N,) or (0,).

    Each delta[l] is computed once and used twice: for dW[l-1] = A[l-1].T @ delta[l] and for
    delta[l-1] = (delta[l] @ W[l-1].T) * f'(A[l-1]).  No delta is formed for the input.

    GELU/SiLU (``keeps_preactivation``): the forward pass keeps each hidden Z + b in its delta
    block, and ``delta[l] @ W[l].T`` goes into A[l]'s block, spent once dW[l] is formed; the
    fused epilogue then makes delta[l-1] from both in place.  So after such a step acts holds
    those gradients, not the activations.

    Dropout (``dropout`` True): ``rates`` (L-1,) of the hidden layers, ``seed`` (uint64) the
    step's mask seed (see ``activations``): the forward epilogue drops and scales A[l], and
    the backward epilogue recomputes the same mask for delta[l]."""
    n = X.shape[0]
    L = sizes.shape[0] - 1
    out = forward_rows(params, acts, deltas, X, sizes, capacity, r0, act, out_act, slope,
                       rates, seed, True, dropout)
    D = row_block(deltas, sizes, capacity, L, r0, r0 + n)
    total = output_delta_loss(D, out, Y, sw, loss)
    # the output delta's epilogue: f'(A) for a non-canonical pair, and db[L-1] either way
    if loss == SQUARED_ERROR:
        _dactivation_colsum(D, out, out_act, slope, intercept_view(grads, sizes, L - 1), 0.0,
                            np.uint64(0), 0, False)
    else:
        _dactivation_colsum(D, out, IDENTITY, slope, intercept_view(grads, sizes, L - 1), 0.0,
                            np.uint64(0), 0, False)
    for l in range(L - 1, 0, -1):
        A_prev = row_block(acts, sizes, capacity, l, r0, r0 + n)
        np.dot(A_prev.T, D, coef_view(grads, sizes, l))
        D_prev = row_block(deltas, sizes, capacity, l, r0, r0 + n)
        rate = rates[l - 1] if dropout else 0.0
        key = layer_key(seed, l - 1, dropout)
        if act == GELU or act == SILU:  # D_prev holds Z + b; A_prev's block takes delta @ W.T
            np.dot(D, coef_view(params, sizes, l).T, A_prev)
            _dactivation_colsum(D_prev, A_prev, act, slope * 0,
                                intercept_view(grads, sizes, l - 1), rate, key, r0, dropout)
        else:
            np.dot(D, coef_view(params, sizes, l).T, D_prev)
            _dactivation_colsum(D_prev, A_prev, act, slope,
                                intercept_view(grads, sizes, l - 1), rate, key, r0, dropout)
        D = D_prev
    # the input layer: its weight gradient only (X may be a read-only view of the data)
    np.dot(X.T, D, coef_view(grads, sizes, 0))
    return total


@njit(**JIT)
def backprop_blocks(g, scratch, params, acts, deltas, X, Y, sw, sizes, capacity, r0,
                    n_blocks, act, out_act, loss, slope, rates, seed, dropout):
    """:func:`backprop_rows` for rows r0..r0+N run as n_blocks row blocks in turn (see
    ``fastmlp._blocks``): the first block's raw sums go into g, each next block's into
    scratch and are then added to g, so g ends with the rows' sums.  Returns the rows' loss
    sum (the blocks' added in order).  g, scratch (P,) (scratch unused for one block: it may
    be g); X (N, sizes[0]), Y (N, n_out), sw (N,) or (0,) hold the rows."""
    n = X.shape[0]
    B = max(1, min(n_blocks, n))
    total = 0.0
    for j in range(B):
        a = n * j // B
        b = n * (j + 1) // B
        gj = g if j == 0 else scratch
        total += backprop_rows(gj, params, acts, deltas, X[a:b], Y[a:b],
                               sw[a:b] if sw.shape[0] > 0 else sw, sizes, capacity, r0 + a,
                               act, out_act, loss, slope, rates, seed, dropout)
        if j > 0:
            for k in range(g.shape[0]):
                g[k] += scratch[k]
    return total


@njit(**JIT)
def weight_sum(sw, n):
    """The batch's weight sum: sum(sw) in float64, or n without weights (sw of shape (0,))."""
    if sw.shape[0] == 0:
        return np.float64(n)
    s = 0.0
    for i in range(sw.shape[0]):
        s += sw[i]
    return s


@njit(**JIT_INNER)
def batch_loss(total, wsum, params, sizes, alpha):
    """scikit-learn's batch loss from a loss sum: total / n + alpha / (2 n) * sum(W ** 2)."""
    value = total / wsum
    if alpha > 0:
        value += 0.5 * alpha * sum_squares(params, n_coef(sizes)) / wsum
    return value


_LOW32 = np.uint64(0xFFFFFFFF)


@njit(**JIT_INNER)
def step_seed(seed_hi, step):
    """The dropout mask seed of training step ``step``: seed_hi (uint64, the fit's seed in its
    high 32 bits) | the step count's low 32 bits."""
    return seed_hi | (np.uint64(step) & _LOW32)


# Below this many parameters the split way's calling thread adds the per-thread sums and
# applies the optimizer update alone, keeping the step to one parallel region; from it on, a
# second region does both over spans of the parameters (Adam costs ~2.4 ns a float64
# parameter on one core: 27 of a 165 us step at scikit-learn's default shapes, measured,
# against a few microseconds for the second region's launch and barrier).
_PARALLEL_UPDATE_MIN = 4096


@njit(**JIT_INNER)
def finish_step(k, total, wsum, opt, params, grads, s1, s2, hyper, lr_ts, sizes, alpha, n_coef,
                losses, wsums):
    """The end of step k of a multi-step kernel: losses[k] <- the batch loss from the loss sum
    ``total`` and weight sum ``wsum`` (L2 term included), wsums[k] <- wsum, then the optimizer
    update ``opt`` (see ``optim.apply_update``; a literal opt compiles that optimizer only)."""
    losses[k] = batch_loss(total, wsum, params, sizes, alpha)
    wsums[k] = wsum
    apply_update(opt, params, grads, s1, s2, hyper, lr_ts[k], 1.0 / wsum, alpha / wsum, n_coef)


@njit(**JIT_INNER)
def add_block_sums(grads, thread_grads, T):
    """grads += thread_grads[0] + ... + thread_grads[T-2], added in that order (the sums of
    threads 1..T-1; thread 0 summed into grads).  grads (P,), thread_grads (>= T-1, P)."""
    for t in range(1, T):
        gt = thread_grads[t - 1]
        for j in range(grads.shape[0]):
            grads[j] += gt[j]


class TrainKernels(NamedTuple):
    """A step's kernels for one (activation, output activation, loss, dropout)."""
    forward_backward: object
    split_steps: object
    rows_sums: object


class ForwardKernels(NamedTuple):
    """A prediction's kernels for one (activation, output activation)."""
    forward_pass: object
    split_forward: object


def _made_once(factory):
    """``functools.lru_cache`` whose miss is made once even when threads ask for the same new
    key at the same time: two threads of a grid search finishing their first fits together
    each made their own prediction dispatchers, and each loaded the same kernel from the disk
    cache (or compiled it).  The lock is held while the factory defines its kernels (nothing
    is compiled there: Numba compiles at the first call)."""
    made = functools.lru_cache(maxsize=None)(factory)
    lock = threading.Lock()

    @functools.wraps(factory)
    def once(*key):
        with lock:
            return made(*key)
    return once


@_made_once
def train_kernels(act, out_act, loss, dropout):
    """The training kernels specialised on the codes ``act``, ``out_act``, ``loss`` (ints) and
    ``dropout`` (bool); made once per process per specialisation, compiled on first call,
    cached on disk.

    ``forward_backward(params, grads, acts, deltas, X, Y, sw, sizes, capacity, alpha, slope,
    rates, seed)``: one batch, as the generic :func:`forward_backward` (``rates`` always
    given, (0,) without dropout).  ``rows_sums(grads, params, acts, deltas, X, Y, sw, sizes,
    capacity, r0, slope, rates, seed)``: :func:`backprop_rows` for rows r0.. of a batch (a
    shard's part of it: its dropout masks are those of its rows' places in the batch).

    ``steps(params, grads, thread_grads, s1, s2, acts, deltas, Xb, Yb, swb, X, Y, sw, order,
    first, stop, batch, n_steps, sizes, capacity, alpha, slope, rates, seed_hi, step0,
    n_blocks, hyper, lr_ts, n_coef, losses, wsums)`` (the ``blas`` way, made by
    :func:`steps_kernel` with ``opt`` a constant; it runs each batch as n_blocks row blocks in
    turn, :func:`backprop_blocks` with thread_grads[0] the scratch: one block unless the
    BLAS's small-matrix path makes smaller products faster, see ``fastmlp._blocks``) and
    ``split_steps(grads, thread_grads, partial, Xb, Yb, swb, params, s1, s2, acts, deltas, X,
    Y, sw, order, first, stop, batch, n_steps, sizes, capacity, alpha, slope, rates, seed_hi,
    step0, n_blocks, per_thread, opt, hyper, lr_ts, n_coef, losses, wsums)`` (the ``split``
    way, one parallel region per step: thread t of T = min(n_blocks, rows) takes the t-th
    contiguous block of the batch's rows, gathers them, and runs forward, loss and backprop
    into its own sums -- grads for t = 0, thread_grads[t - 1] otherwise -- as ``per_thread``
    row blocks in turn (thread_grads[T - 1 + t] the scratch when more than one), the threads'
    sums then added in thread order): up to ``n_steps``
    training steps in one call, over the batches ``[pos, min(pos + batch, stop))`` for
    pos = first, first + batch, ...; each step is forward, loss, backprop and the optimizer
    update ``opt`` (``optim.apply_update``: s1, s2 its state, hyper its scalars, lr_ts[k]
    Adam's rate of step k; NO_UPDATE leaves params alone).  The rows of a batch are
    order[pos:end], gathered into Xb, Yb, swb, or, with ``order`` of shape (0,) (blas way
    only), the contiguous rows X[pos:end] used in place.  Step k's dropout seed is
    ``seed_hi | (step0 + k)`` (low 32 bits).  losses[k], wsums[k] <- step k's batch loss (L2
    term included) and weight sum.  Returns the number of steps taken.  Shapes: params, grads,
    s1, s2 (P,); thread_grads (>= T-1, or 2T-1 with per_thread > 1, P), partial (>= T,)
    scratch; Xb (B, n_in), Yb (B, n_out),
    swb (B,) gather buffers; X (M, n_in), Y (M, n_out), sw (M,) or (0,) the data; order (M,)
    int64 or (0,); hyper (6,); lr_ts, losses, wsums (>= n_steps,) float64.  Running many
    steps per call takes the per-step Python and dispatch cost out of small networks' epochs,
    and keeps the split way's thread pool awake from one step's region to the next."""
    act, out_act, loss, dropout = int(act), int(out_act), int(loss), bool(dropout)

    @njit(**JIT)
    def fused_forward_backward(params, grads, acts, deltas, X, Y, sw, sizes, capacity, alpha,
                               slope, rates, seed):
        total = backprop_rows(grads, params, acts, deltas, X, Y, sw, sizes, capacity, 0,
                              act, out_act, loss, slope, rates, seed, dropout)
        wsum = weight_sum(sw, X.shape[0])
        return batch_loss(total, wsum, params, sizes, alpha), wsum

    @njit(**PJIT)
    def fused_split_steps(grads, thread_grads, partial, Xb, Yb, swb, params, s1, s2, acts,
                          deltas, X, Y, sw, order, first, stop, batch, n_steps, sizes, capacity,
                          alpha, slope, rates, seed_hi, step0, n_blocks, per_thread, opt,
                          hyper, lr_ts, n_coef, losses, wsums):
        P = grads.shape[0]
        k = 0
        pos = first
        while k < n_steps and pos < stop:
            end = min(pos + batch, stop)
            m = end - pos
            T = min(n_blocks, m)
            seed = step_seed(seed_hi, step0 + k)
            for t in prange(T):
                r0 = m * t // T
                r1 = m * (t + 1) // T
                rows = order[pos + r0:pos + r1]
                xb = Xb[r0:r1]
                yb = Yb[r0:r1]
                gather_rows(xb, X, rows)
                gather_rows(yb, Y, rows)
                if sw.shape[0] > 0:
                    gather_vector(swb[r0:r1], sw, rows)
                swt = swb[r0:r1] if sw.shape[0] > 0 else sw[:0]
                g = grads if t == 0 else thread_grads[t - 1]
                scratch = thread_grads[T - 1 + t] if per_thread > 1 else g
                partial[t] = backprop_blocks(g, scratch, params, acts, deltas, xb, yb, swt,
                                             sizes, capacity, r0, per_thread, act, out_act,
                                             loss, slope, rates, seed, dropout)
            total = 0.0
            for t in range(T):
                total += partial[t]
            wsum = weight_sum(swb[:m] if sw.shape[0] > 0 else sw, m)
            if T == 1 or P < _PARALLEL_UPDATE_MIN:
                # small networks: the calling thread adds the sums and updates, so that the
                # step is one parallel region (a region's launch and barrier cost more)
                add_block_sums(grads, thread_grads, T)
                finish_step(k, total, wsum, opt, params, grads, s1, s2, hyper, lr_ts, sizes,
                            alpha, n_coef, losses, wsums)
            else:
                # the loss first (its L2 term reads the parameters before the update), then a
                # second region: each thread adds the per-thread sums of its span of the
                # parameters, in thread order, and applies the update to that span
                losses[k] = batch_loss(total, wsum, params, sizes, alpha)
                wsums[k] = wsum
                for c in prange(T):  # span c of the parameters, its edges on multiples of 8
                    lo = (P * c // T) & ~7
                    hi = P if c == T - 1 else (P * (c + 1) // T) & ~7
                    g0 = grads[lo:hi]
                    for t in range(1, T):
                        gt = thread_grads[t - 1, lo:hi]
                        for j in range(g0.shape[0]):
                            g0[j] += gt[j]
                    apply_update_span(opt, params, grads, s1, s2, hyper, lr_ts[k], 1.0 / wsum,
                                      alpha / wsum, n_coef, lo, hi)
            pos = end
            k += 1
        return k

    @njit(**JIT)
    def fused_rows_sums(grads, params, acts, deltas, X, Y, sw, sizes, capacity, r0, slope,
                        rates, seed):
        return backprop_rows(grads, params, acts, deltas, X, Y, sw, sizes, capacity, r0, act,
                             out_act, loss, slope, rates, seed, dropout)

    return TrainKernels(fused_forward_backward, fused_split_steps, fused_rows_sums)


@_made_once
def steps_kernel(act, out_act, loss, dropout, opt):
    """The blas way's multi-step kernel ``steps`` (see :func:`train_kernels`) specialised on the
    optimizer too: ``opt`` (optim.SGD, ADAM or NO_UPDATE) is a constant, so only that
    optimizer's update is compiled into it, and its arguments are ``steps``'s without ``opt``.
    The kernel that small fits, which the planner skips, spend their first seconds
    compiling."""
    act, out_act, loss, dropout, opt = int(act), int(out_act), int(loss), bool(dropout), int(opt)

    @njit(**JIT)
    def fused_steps(params, grads, thread_grads, s1, s2, acts, deltas, Xb, Yb, swb, X, Y, sw,
                    order, first, stop, batch, n_steps, sizes, capacity, alpha, slope, rates,
                    seed_hi, step0, n_blocks, hyper, lr_ts, n_coef, losses, wsums):
        k = 0
        pos = first
        while k < n_steps and pos < stop:
            end = min(pos + batch, stop)
            m = end - pos
            if order.shape[0] > 0:
                # gather through the buffers' own names: xb may be unified with a read-only X
                rows = order[pos:end]
                gather_rows(Xb[:m], X, rows)
                gather_rows(Yb[:m], Y, rows)
                if sw.shape[0] > 0:
                    gather_vector(swb[:m], sw, rows)
                xb = Xb[:m]
                yb = Yb[:m]
                swt = swb[:m] if sw.shape[0] > 0 else sw[:0]
            else:
                xb = X[pos:end]
                yb = Y[pos:end]
                swt = sw[pos:end] if sw.shape[0] > 0 else sw[:0]
            scratch = thread_grads[0] if n_blocks > 1 else grads
            total = backprop_blocks(grads, scratch, params, acts, deltas, xb, yb, swt, sizes,
                                    capacity, 0, n_blocks, act, out_act, loss, slope, rates,
                                    step_seed(seed_hi, step0 + k), dropout)
            finish_step(k, total, weight_sum(swt, m), opt, params, grads, s1, s2, hyper, lr_ts,
                        sizes, alpha, n_coef, losses, wsums)
            pos = end
            k += 1
        return k

    return fused_steps


@_made_once
def forward_kernels(act, out_act):
    """The prediction kernels specialised on ``act`` and ``out_act`` (ints): the arguments of
    the generic :func:`forward_pass` and :func:`split_forward` without the codes."""
    act, out_act = int(act), int(out_act)

    @njit(**JIT)
    def fused_forward_pass(params, acts, X, sizes, capacity, slope):
        return forward_rows(params, acts, acts, X, sizes, capacity, 0, act, out_act, slope,
                            _NO_RATES, np.uint64(0), False, False)

    @njit(**PJIT)
    def fused_split_forward(out, params, acts, X, sizes, capacity, slope, n_blocks):
        m = X.shape[0]
        T = min(n_blocks, m)
        for t in prange(T):
            r0 = m * t // T
            r1 = m * (t + 1) // T
            A = forward_rows(params, acts, acts, X[r0:r1], sizes, capacity, r0, act, out_act,
                             slope, _NO_RATES, np.uint64(0), False, False)
            o = out[r0:r1]
            for i in range(r1 - r0):
                for j in range(o.shape[1]):
                    o[i, j] = A[i, j]

    return ForwardKernels(fused_forward_pass, fused_split_forward)


def _has_dropout(rates):
    return rates is not None and rates.shape[0] > 0


def forward_pass(params, acts, X, sizes, capacity, act, out_act, slope=0.01):
    """A[l+1] = f(A[l] @ W[l] + b[l]) for every layer (overwrites acts); returns A[L] (N, n_out).
    params (P,), acts (B * sum(sizes[1:]),), X (N, sizes[0]) with N <= B, sizes (L+1,);
    slope leaky ReLU's.  (The kernel specialised on act/out_act: :func:`forward_kernels`.)"""
    return forward_kernels(act, out_act).forward_pass(params, acts, X, sizes, capacity, slope)


def forward_backward(params, grads, acts, deltas, X, Y, sw, sizes, capacity,
                     act, out_act, loss, alpha, slope=0.01, dropout=None, seed=np.uint64(0)):
    """One batch: forward pass, loss, and backprop.  Overwrites grads, acts and deltas.

    params, grads (P,); acts, deltas (B * sum(sizes[1:]),); X (N, sizes[0]);
    Y (N, n_out); sw (N,) sample weights or (0,); sizes (L+1,) int64; N <= capacity B;
    slope leaky ReLU's; dropout None or (L-1,) rates of the hidden layers (or (0,): none) and
    seed (uint64) the step's mask seed.  See backprop_rows for what acts/deltas hold
    (GELU/SiLU) and for dropout.

    Returns (batch loss, n): the loss with scikit-learn's definition (L2 term included) and n,
    the batch's weight sum (its row count without weights).  grads holds the RAW sums
    ``A[l].T @ delta[l+1]`` and ``sum_rows(delta[l+1])``: the gradient of the batch loss is
    ``grads / n`` plus ``alpha / n * W`` -- ``finish_grads`` forms it in place, and the
    optimizer kernels form it on the fly (one pass over the parameters instead of two).
    (The kernel specialised on the codes: :func:`train_kernels`.)"""
    drop = _has_dropout(dropout)
    return train_kernels(act, out_act, loss, drop).forward_backward(
        params, grads, acts, deltas, X, Y, sw, sizes, capacity, alpha, slope,
        dropout if drop else _NO_RATES, seed)


def split_forward(out, params, acts, X, sizes, capacity, act, out_act, slope, n_blocks):
    """out <- the network's output for X (overwrites), in one parallel region of n_blocks row
    blocks, each running forward_rows with single-threaded BLAS.  out (N, n_out),
    X (N, sizes[0]), N <= capacity; acts as forward_pass's (overwritten)."""
    forward_kernels(act, out_act).split_forward(out, params, acts, X, sizes, capacity, slope,
                                                n_blocks)


@njit(**JIT)
def n_coef(sizes):
    """Number of weight entries (the W part of the flat parameters)."""
    total = 0
    for l in range(sizes.shape[0] - 1):
        total += sizes[l] * sizes[l + 1]
    return total


@njit(**JIT_EXACT)
def finish_grads(grads, params, sizes, weight_sum, alpha):
    """Raw sums from forward_backward -> the gradient, in place: (grads + alpha * W) / n on
    the W part, grads / n on the intercepts -- scikit-learn's operations in its order (a
    reciprocal multiply differs by an ulp, which L-BFGS amplifies).  grads, params (P,);
    sizes (L+1,) int64."""
    nc = n_coef(sizes)
    for k in range(grads.shape[0]):
        if k < nc:
            grads[k] = (grads[k] + alpha * params[k]) / weight_sum
        else:
            grads[k] = grads[k] / weight_sum


@njit(**JIT_INNER)
def _copy_row(out, X, i, r):
    # element by element: a slice assignment may copy through a temporary when it cannot
    # rule out overlap
    for j in range(out.shape[1]):
        out[i, j] = X[r, j]


@njit(**JIT)
def gather_rows(out, X, idx):
    """out[i] = X[idx[i]] (overwrites).  out (N, n), X (M, n), idx (N,) int64.
    Serial: a memory-bound copy.  Rows PREFETCH_AHEAD ahead are
    prefetched, so that several of a shuffled batch's cache misses are in flight at once."""
    n = out.shape[0]
    for i in range(min(PREFETCH_AHEAD, n)):
        prefetch_row(X, idx[i])
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            prefetch_row(X, idx[i + PREFETCH_AHEAD])
        _copy_row(out, X, i, idx[i])


@njit(**JIT_INNER)
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
