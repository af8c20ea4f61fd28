"""A reusable network engine: one network shape, built and validated once, called many times.

:class:`Engine` is the piece other projects embed: an optimiser (``scipy.optimize.minimize``),
a hand-written training loop, a data-parallel driver, or another framework's autograd.  It
works on a flat parameter vector (scikit-learn's L-BFGS packing), writes into outputs the
caller owns, and in the steady state allocates nothing: its buffers are sized once (or grow to
the largest batch seen) and every call runs the kernels ``forward_pass`` / ``forward_backward``
on them.  Each call checks what can go wrong cheaply -- dtype, shape, C order, finiteness --
and raises ``ValueError`` naming the argument; a Numba typing error never reaches the caller.
"""
from __future__ import annotations

import functools
import threading
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from . import kernels as K
from ._engine_checks import _EngineChecks, _may_share
from ._state import check_memory
from ._threads import kernel_section, resolve_n_threads, thread_limits
from ._validation import (ENGINE_CONSTRAINTS, check_dtype, check_hyperparams,
                          check_layer_sizes, check_leaky_relu_slope, resolve)
from ._workspace import Layout

__all__ = ["Engine"]


def _one_call_at_a_time(method):
    """Refuse a call while another thread runs one on the same engine (its buffers serve
    one call at a time): a non-blocking acquire, so a second thread gets a clear error
    instead of silently mixing its rows into the first one's buffers."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"this Engine is already running a call in another thread; "
                               f"an Engine's buffers serve one call at a time: build one "
                               f"Engine per thread (they are cheap)")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy.release()
    return call


def mean_loss(params, n_coef, loss_sum, weight_sum, alpha):
    """A batch's loss from its raw sums (possibly added over shards): ``loss_sum / n + 0.5 *
    alpha * sum ||W||^2 / n`` with ``n = weight_sum`` and the first ``n_coef`` entries of
    ``params`` the weights W (intercepts excluded).  What :meth:`Engine.finish` returns and
    what a data-parallel step (``fastmlp.dask``) records."""
    loss = loss_sum / weight_sum
    if alpha > 0:
        loss += 0.5 * alpha * K.sum_squares(params, n_coef) / weight_sum
    return float(loss)


class Engine(_EngineChecks):
    """Forward pass, loss and gradients of one network shape on a flat parameter vector.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_inputs, hidden_1, ..., n_outputs)``.
    activation : {"identity", "logistic", "tanh", "relu", "leaky_relu", "gelu", "silu"}, \
default="logistic"
        Activation of the hidden layers.
    out_activation : {"identity", "logistic", "tanh", "relu", "leaky_relu", "softmax", "exp"}, \
default="identity"
        Activation of the output layer.
    loss : {"squared_error", "log_loss", "binary_log_loss", "poisson"}, default="squared_error"
        The loss, with scikit-learn's definitions (see :meth:`loss_and_grads`).  A
        log-likelihood loss needs its canonical output (softmax or logistic for ``log_loss``,
        exp for ``poisson``).
    dtype : {"float64", "float32"}, default="float64"
        Every array passed in or out has this dtype; the engine never converts.
    max_rows : int or None, default=None
        Rows the engine's buffers hold.  ``None``: the buffers grow to the largest batch seen
        (the first call with more rows than before allocates, later ones do not).  An int:
        the buffers hold ``max_rows`` rows, allocated at construction, and a larger input is
        processed in chunks of ``max_rows`` rows whose raw sums are added -- the same loss and
        gradients as one pass up to floating-point summation order, with memory bounded by
        ``max_rows``.
    n_threads : int or None, default=None
        Threads for the matrix products and elementwise kernels during a call (``None``: the
        limits already in force, see ``fastmlp._threads.thread_limits``).
    leaky_relu_slope : float, default=0.01
        Slope of ``leaky_relu`` for negative inputs.

    Attributes
    ----------
    n_params : int
        Length of the flat parameter (and gradient) vector: every ``W[l]`` raveled in C order,
        then every ``b[l]``.
    layer_sizes : tuple of int
    dtype : numpy.dtype

    Notes
    -----
    Buffers are reused across calls, so one Engine serves one call at a time: a call made
    while another thread's call runs raises ``RuntimeError``; build one per thread (they are
    cheap).  Buffers beyond the available memory raise ``MemoryError`` before allocating.  Arrays returned as views (``unpack``, the
    hidden activations of ``forward``) stay valid only until the next call that writes them.

    Shapes: ``X`` (N, n_inputs), ``Y`` (N, n_outputs) (1-D allowed when n_outputs == 1),
    ``sample_weight`` (N,), ``params`` / gradients (n_params,).  Inputs must be C-contiguous
    NumPy arrays of the engine's dtype (``X`` may also be a CSR matrix); convert with
    ``np.ascontiguousarray(a, dtype=engine.dtype)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp.backend import Engine
    >>> eng = Engine([3, 4, 2], activation="tanh")
    >>> params = np.random.default_rng(0).normal(size=eng.n_params) * 0.1
    >>> X, Y = np.ones((5, 3)), np.zeros((5, 2))
    >>> grads = np.empty(eng.n_params)
    >>> loss, g = eng.loss_and_grads(params, X, Y, alpha=1e-4, out=grads)
    >>> g is grads
    True
    >>> coefs, intercepts = eng.unpack(params)
    >>> [c.shape for c in coefs], [b.shape for b in intercepts]
    ([(3, 4), (4, 2)], [(4,), (2,)])
    >>> eng.forward(params, X).shape
    (5, 2)
    """

    def __init__(self, layer_sizes: Sequence[int], *, activation: str = "logistic",
                 out_activation: str = "identity", loss: str = "squared_error",
                 dtype: np.typing.DTypeLike = "float64", max_rows: Optional[int] = None,
                 n_threads: Optional[int] = None, leaky_relu_slope: float = 0.01) -> None:
        sizes = list(check_layer_sizes(layer_sizes))
        self.slope = check_leaky_relu_slope(leaky_relu_slope)
        self.codes = resolve(activation, out_activation, loss, caller="Engine")
        self.activation, self.out_activation, self.loss = activation, out_activation, loss
        self.dtype = check_dtype(dtype)
        check_hyperparams(ENGINE_CONSTRAINTS, {"max_rows": max_rows, "n_threads": n_threads},
                          "Engine")
        self.max_rows = None if max_rows is None else int(max_rows)
        self.n_threads = resolve_n_threads(n_threads)
        self.layout = Layout(sizes)
        self.layer_sizes = tuple(sizes)
        self.n_params = self.layout.n_params
        self._sizes = self.layout.sizes  # int64 (L+1,) for the kernels
        self._n_w0 = sizes[0] * sizes[1]
        self._no_sw = np.zeros(0, self.dtype)
        self._capacity = 0
        self._acts = self._deltas = self._xbuf = self._gsum = None
        self._busy = threading.Lock()
        if self.max_rows is not None:
            self._reserve(self.max_rows, backward=True, sparse=False)

    @classmethod
    def _for_checked_rows(cls, layer_sizes, **options):
        """An Engine for rows its caller has validated once (internal: a cluster shard's
        engine, see ``fastmlp.dask.engine``): its calls still check the arguments' types,
        shapes and memory, and scan ``params`` for finiteness, but not the rows, nor the
        dropout rates (checked by the driver's front-end)."""
        engine = cls(layer_sizes, **options)
        engine._rows_checked = True
        return engine

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_busy"]  # a lock is not picklable; each copy gets its own
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._busy = threading.Lock()

    def __repr__(self):
        return (f"Engine({list(self.layer_sizes)}, activation={self.activation!r}, "
                f"out_activation={self.out_activation!r}, loss={self.loss!r}, "
                f"dtype={self.dtype.name!r}, max_rows={self.max_rows!r})")

    # -- parameters ---------------------------------------------------------------------------
    def pack(self, coefs: Sequence[np.typing.ArrayLike],
             intercepts: Sequence[np.typing.ArrayLike],
             out: Optional[np.ndarray] = None) -> np.ndarray:
        """Copy per-layer arrays into one flat vector (scikit-learn's packing).

        Parameters
        ----------
        coefs : list of array-like, ``coefs[l]`` of shape (layer_sizes[l], layer_sizes[l+1])
        intercepts : list of array-like, ``intercepts[l]`` of shape (layer_sizes[l+1],)
        out : ndarray of shape (n_params,), optional
            Written in place (allocated when None).

        Returns
        -------
        ndarray of shape (n_params,)
        """
        L = len(self.layer_sizes) - 1
        if len(coefs) != L or len(intercepts) != L:
            raise ValueError(f"expected {L} coefs and {L} intercepts, got {len(coefs)} and "
                             f"{len(intercepts)}")
        for l, (c, b, shape) in enumerate(zip(coefs, intercepts, self.layout.coef_shapes)):
            if np.shape(c) != shape:
                raise ValueError(f"coefs[{l}] must have shape {shape}, got {np.shape(c)}")
            if np.shape(b) != (shape[1],):
                raise ValueError(f"intercepts[{l}] must have shape ({shape[1]},), got "
                                 f"{np.shape(b)}")
        if out is None:
            out = np.empty(self.n_params, self.dtype)
        else:
            self._check_vector(out, "out")
            slots = self.layout.views(out)  # where each array goes: itself is fine there
            for what, arrays, targets in (("coefs", coefs, slots[0]),
                                          ("intercepts", intercepts, slots[1])):
                for l, (a, t) in enumerate(zip(arrays, targets)):
                    if isinstance(a, np.ndarray) and _may_share(out, a) and not (
                            a.shape == t.shape and a.strides == t.strides
                            and a.ctypes.data == t.ctypes.data):
                        raise ValueError(f"out must not overlap {what}[{l}]: it would be "
                                         f"overwritten while it is read")
        return self.layout.pack(coefs, intercepts, out)

    def unpack(self, params: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(coefs, intercepts)``: lists of views into ``params`` (no copy; writing to them
        writes ``params``).  Works for gradient vectors too."""
        self._check_vector(params, "params")
        return self.layout.views(params)

    # -- buffers -------------------------------------------------------------------------------
    def _reserve(self, n, backward, sparse):
        """Make sure the buffers exist for chunks of up to min(n, max_rows) rows; returns the
        chunk size.  Allocates only when a buffer is missing or too small."""
        rows = n if self.max_rows is None else self.max_rows
        total = int(self._sizes[1:].sum())
        if rows > self._capacity:
            # activations and deltas (and, for sparse X, the densified chunk), before
            # anything is allocated: the kernels touch every page
            need = rows * (2 * total + self.layer_sizes[0]) + self.n_params
            net = "-".join(map(str, self.layer_sizes))
            check_memory(need * self.dtype.itemsize,
                         f"Engine {net} with max_rows={rows} (pass a smaller max_rows)"
                         if self.max_rows is not None else
                         f"Engine {net} on a batch of {rows} rows (pass max_rows to "
                         f"process it in chunks)")
            self._capacity = rows
            self._acts = np.zeros(rows * total, self.dtype)
            self._deltas = None if self._deltas is None else np.zeros_like(self._acts)
            self._xbuf = None
        if backward and self._deltas is None:
            self._deltas = np.zeros_like(self._acts)
        if backward and self._gsum is None and self.max_rows is not None:
            self._gsum = np.zeros(self.n_params, self.dtype)
        if sparse and self._xbuf is None:
            self._xbuf = np.zeros((self._capacity, self.layer_sizes[0]), self.dtype)
        return self._capacity if self.max_rows is not None else max(n, 1)

    def _rows(self, X, start, stop):
        if not sp.issparse(X):
            return X if start == 0 and stop == X.shape[0] else X[start:stop]
        xb = self._xbuf[:stop - start]
        K.csr_slice_to_dense(xb, X.data, X.indices, X.indptr, start)
        return xb

    def _hidden_views(self, n):
        views, off, B = [], 0, self._capacity
        for width in self.layer_sizes[1:-1]:
            views.append(self._acts[off:off + n * width].reshape(n, width))
            off += B * width
        return views

    # -- calls ---------------------------------------------------------------------------------
    @_one_call_at_a_time
    def forward(self, params: np.ndarray, X: np.ndarray | sp.spmatrix | sp.sparray,
                out: Optional[np.ndarray] = None, hidden: bool = False
                ) -> np.ndarray | tuple[np.ndarray, list[np.ndarray]]:
        """The network's output ``A[L]`` for X, with ``A[l+1] = f(A[l] @ W[l] + b[l])``.

        Parameters
        ----------
        params : ndarray of shape (n_params,)
        X : ndarray of shape (N, n_inputs) or CSR matrix
        out : ndarray of shape (N, n_outputs), optional
            Written in place (allocated when None).
        hidden : bool, default=False
            Also return the hidden activations ``[A[1], ..., A[L-1]]``: views of the engine's
            buffers, valid until the next call.  Needs N <= max_rows when max_rows is set.

        Returns
        -------
        out : ndarray of shape (N, n_outputs)
            Or ``(out, hidden_activations)`` when ``hidden`` is true.
        """
        self._check_params(params)
        X = self._check_X(X)
        n = X.shape[0]
        out = self._check_out(out, "out", (n, self.layer_sizes[-1]))
        self._check_overlaps((("out", out),), (("params", params), ("X", X)))
        if hidden and self.max_rows is not None and n > self.max_rows:
            raise ValueError(f"hidden activations need X to fit in one chunk: {n} rows > "
                             f"max_rows={self.max_rows}")
        B = self._reserve(n, backward=False, sparse=sp.issparse(X))
        act, out_act, _ = self.codes
        with thread_limits(self.n_threads), kernel_section():
            for start in range(0, n, B):
                stop = min(start + B, n)
                A = K.forward_pass(params, self._acts, self._rows(X, start, stop),
                                   self._sizes, self._capacity, act, out_act, self.slope)
                if stop - start == n:
                    out[...] = A
                else:
                    out[start:stop] = A
        if hidden:
            return out, self._hidden_views(n)
        return out

    @_one_call_at_a_time
    def raw_sums(self, params: np.ndarray, X: np.ndarray | sp.spmatrix | sp.sparray,
                 Y: np.ndarray, sample_weight: Optional[np.ndarray] = None,
                 out: Optional[np.ndarray] = None, X_grad: Optional[np.ndarray] = None, *,
                 dropout: Optional[np.ndarray] = None, dropout_key: int = 0, row0: int = 0
                 ) -> tuple[float, float]:
        """Unnormalised sums over the rows of one batch, for data-parallel callers.

        For rows i with weights w_i (1 without ``sample_weight``) and per-row loss l_i
        (squared error: ``0.5 * mean_j (a_ij - y_ij)^2``; log losses: the negative
        log-likelihood; poisson: the deviance-like ``y log(y/a) - y + a``), this returns

        * ``loss_sum = sum_i w_i l_i`` (no L2 term),
        * ``weight_sum = sum_i w_i`` (N without weights),

        and writes into ``out`` the raw gradient sums ``dW[l] = A[l].T @ delta[l+1]``,
        ``db[l] = sum_i delta[l+1]_i`` with ``delta[L]_i = w_i (a_i - y_i) * f'`` (L2
        excluded).  Every quantity is a plain sum over rows, so shards of one batch combine
        exactly: add the shards' ``out`` vectors, loss sums and weight sums, then call
        :meth:`finish` once on the totals -- the result equals :meth:`loss_and_grads` on the
        whole batch up to floating-point summation order.  ``X_grad`` (N, n_inputs), if given,
        receives each row's raw input gradient ``delta[1] @ W[0].T`` (divide by the total
        weight sum).

        Parameters
        ----------
        params : ndarray of shape (n_params,)
        X : ndarray of shape (N, n_inputs) or CSR matrix
        Y : ndarray of shape (N, n_outputs)
        sample_weight : ndarray of shape (N,), optional
        out : ndarray of shape (n_params,), optional
            Overwritten with the raw gradient sums (allocated when None).
        X_grad : ndarray of shape (N, n_inputs), optional
            Overwritten with the raw input gradients.
        dropout : ndarray of shape (n_hidden_layers,), optional
            Inverted-dropout rates in [0, 1) of the hidden layers (a training step).
        dropout_key : int, default=0
            The step's mask key, as fastmlp's training core forms it: the fit's seed in the
            high 32 bits, the step count in the low 32.
        row0 : int, default=0
            Position in its batch of X's first row: the dropout masks are those of batch
            rows ``row0 .. row0 + N``, so that a data-parallel shard holding a contiguous
            part of a batch draws the masks one process draws for those rows.  With
            dropout, the buffers must hold ``row0 + N`` rows (``max_rows``), and ``X`` must
            be dense without ``X_grad``.

        Returns
        -------
        loss_sum : float
        weight_sum : float
            Both Python floats; ``out`` holds the gradient sums.
        """
        self._check_params(params)
        X = self._check_X(X)
        Y, sw = self._check_targets(X, Y, sample_weight)
        out = self._check_grads_out(out, params)
        X_grad = self._check_X_grad(X_grad, X)
        self._check_overlaps((("out", out), ("X_grad", X_grad)),
                             (("params", params), ("X", X), ("Y", Y), ("sample_weight", sw),
                              ("dropout", dropout if isinstance(dropout, np.ndarray)
                               else None)))
        if dropout is not None:
            return self._dropout_sums(params, X, Y, sw, out, X_grad, dropout, dropout_key,
                                      row0)
        return self._sums(params, X, Y, sw, out, X_grad)

    def _dropout_sums(self, params, X, Y, sw, grads, X_grad, rates, key, row0):
        """raw_sums of one training step with dropout: one kernel call on buffer rows
        ``row0 .. row0 + N`` (the masks' batch rows)."""
        rates = np.asarray(rates, dtype=np.float64)
        if not self._rows_checked and (rates.shape != (len(self.layer_sizes) - 2,) or not (
                (rates >= 0) & (rates < 1)).all()):
            raise ValueError(f"dropout must be one rate in [0, 1) per hidden layer "
                             f"({len(self.layer_sizes) - 2}), got {rates.tolist()}")
        row0, n = int(row0), X.shape[0]
        if row0 < 0 or (self.max_rows is not None and row0 + n > self.max_rows):
            raise ValueError(f"row0={row0} with {n} rows needs buffers of row0 + N rows "
                             f"(max_rows={self.max_rows})")
        if sp.issparse(X) or X_grad is not None:
            raise ValueError("dropout needs a dense X and no X_grad")
        self._reserve(row0 + n, backward=True, sparse=False)
        act, out_act, loss = self.codes
        no_sw = self._no_sw if sw is None else sw
        with thread_limits(self.n_threads), kernel_section():
            total = K.train_kernels(act, out_act, loss, True).rows_sums(
                grads, params, self._acts, self._deltas, X, Y, no_sw, self._sizes,
                self._capacity, row0, self.slope, np.ascontiguousarray(rates),
                np.uint64(int(key) & 0xFFFFFFFFFFFFFFFF))
        return float(total), float(K.weight_sum(no_sw, n))

    def finish(self, params: np.ndarray, grads: np.ndarray, loss_sum: float,
               weight_sum: float, alpha: float = 0.0) -> float:
        """Raw sums (from :meth:`raw_sums`, possibly added over shards) -> the batch loss and
        its gradient, in place: ``grads <- grads / n + alpha / n * W`` (intercepts get no L2
        term), and returns ``loss_sum / n + 0.5 * alpha * sum ||W||^2 / n`` with
        ``n = weight_sum``."""
        self._check_params(params)
        self._check_vector(grads, "grads")
        if not grads.flags.writeable:
            raise ValueError("grads must be writeable")
        self._check_overlaps((("grads", grads),), (("params", params),))
        return self._finish(params, grads, loss_sum, weight_sum, self._check_alpha(alpha))

    def _finish(self, params, grads, loss_sum, weight_sum, alpha):
        if not weight_sum > 0:
            raise ValueError(f"the weight sum must be positive, got {weight_sum!r} "
                             "(all sample weights zero?)")
        K.finish_grads(grads, params, self._sizes, float(weight_sum), alpha)
        return mean_loss(params, self.layout.n_coef, loss_sum, weight_sum, alpha)

    @_one_call_at_a_time
    def loss_and_grads(self, params: np.ndarray, X: np.ndarray | sp.spmatrix | sp.sparray,
                       Y: np.ndarray, sample_weight: Optional[np.ndarray] = None,
                       alpha: float = 0.0, out: Optional[np.ndarray] = None,
                       X_grad: Optional[np.ndarray] = None) -> tuple[float, np.ndarray]:
        """Loss and gradient of one batch, with scikit-learn's definitions.

        * squared_error: ``0.5 * mean over rows and outputs of (A - Y)^2``; its gradient is
          that of ``n_outputs * loss`` (scikit-learn's convention, kept on purpose);
        * log_loss (softmax or logistic output), binary_log_loss, poisson (exp output):
          mean over rows of the per-row loss;
        * plus ``0.5 * alpha * sum ||W||^2 / n`` (intercepts excluded).

        With sample weights the means are weighted and n is the weight sum.

        Parameters
        ----------
        params : ndarray of shape (n_params,)
        X : ndarray of shape (N, n_inputs) or CSR matrix
        Y : ndarray of shape (N, n_outputs)
        sample_weight : ndarray of shape (N,), optional
        alpha : float, default=0.0
            L2 penalty.
        out : ndarray of shape (n_params,), optional
            Overwritten with the gradient (allocated when None).  Must not overlap params.
        X_grad : ndarray of shape (N, n_inputs), optional
            Overwritten with dLoss/dX (same convention as the parameter gradient; zero L2
            part).  Lets the network serve as a layer of another framework.

        Returns
        -------
        loss : float
        grads : ndarray of shape (n_params,)
            ``out``.
        """
        self._check_params(params)
        X = self._check_X(X)
        Y, sw = self._check_targets(X, Y, sample_weight)
        alpha = self._check_alpha(alpha)
        out = self._check_grads_out(out, params)
        X_grad = self._check_X_grad(X_grad, X)
        self._check_overlaps((("out", out), ("X_grad", X_grad)),
                             (("params", params), ("X", X), ("Y", Y), ("sample_weight", sw)))
        loss_sum, weight_sum = self._sums(params, X, Y, sw, out, X_grad)
        loss = self._finish(params, out, loss_sum, weight_sum, alpha)
        if X_grad is not None:
            X_grad *= 1.0 / weight_sum
        return loss, out


    def _sums(self, params, X, Y, sw, grads, X_grad):
        n = X.shape[0]
        B = self._reserve(n, backward=True, sparse=sp.issparse(X))
        act, out_act, loss = self.codes
        loss_sum = weight_sum = 0.0
        W0t = params[:self._n_w0].reshape(self.layer_sizes[0], self.layer_sizes[1]).T
        with thread_limits(self.n_threads), kernel_section():
            for start in range(0, n, B):
                stop = min(start + B, n)
                whole = stop - start == n
                target = grads if start == 0 else self._gsum
                value, w = K.forward_backward(
                    params, target, self._acts, self._deltas, self._rows(X, start, stop),
                    Y if whole else Y[start:stop],
                    self._no_sw if sw is None else (sw if whole else sw[start:stop]),
                    self._sizes, self._capacity, act, out_act, loss, 0.0, self.slope)
                if w != 0:  # an all-zero-weight chunk adds nothing (its mean is 0/0)
                    loss_sum += value * w
                    weight_sum += w
                if start:
                    np.add(grads, self._gsum, out=grads)
                if X_grad is not None:
                    m = stop - start
                    D1 = self._deltas[:m * self.layer_sizes[1]].reshape(m, self.layer_sizes[1])
                    np.dot(D1, W0t, out=X_grad if whole else X_grad[start:stop])
        return float(loss_sum), float(weight_sum)
