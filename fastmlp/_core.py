"""The training core: :class:`Trainer` owns the flat parameters and gradients and one
preallocated :class:`~fastmlp._workspace.Workspace`, and runs epochs of minibatch gradient
descent through the kernels.  Every front-end (``fastmlp.MLP``, the scikit-learn estimators,
the command line) trains through it; inputs arrive validated (``fastmlp._validation``)."""
import numpy as np
import scipy.sparse as sp

from . import kernels as K
from ._threads import resolve_n_threads, thread_limits
from ._validation import check_dtype, check_leaky_relu_slope, resolve
from ._workspace import Layout, Workspace

# Rows per chunk when a whole data set goes through the network (prediction; L-BFGS on
# sparse input): bounds the workspace, and sparse input is densified one chunk at a time.
PREDICT_CHUNK = 4096


def glorot_uniform(layout, rs, dtype, activation):
    """scikit-learn's initialisation, draw for draw: per layer coef then intercept from
    U(-b, b), b = sqrt(6 / (fan_in + fan_out)) (sqrt(2 / ...) for a logistic network)."""
    factor = 2.0 if activation in ("logistic", "sigmoid") else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in layout.coef_shapes:
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(rs.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
        intercepts.append(rs.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
    return coefs, intercepts


class Trainer:
    """The training core: flat parameters and gradients, one workspace, epochs of batches.

    ``coefs``/``intercepts`` are views of ``params``; ``grads`` has the same layout.  Nothing
    is allocated per batch: rows are gathered into the workspace (or used in place when the
    input is already contiguous and in order), and every kernel writes into preallocated
    buffers.  Set ``stop_requested`` (e.g. from a signal handler) to stop after the current
    batch.
    """

    def __init__(self, sizes, *, activation="logistic", out_activation="identity",
                 loss="squared_error", dtype="float32", batch_size=200, alpha=0.0,
                 n_threads=None, training=True, leaky_relu_slope=0.01):
        self.codes = resolve(activation, out_activation, loss)
        self.slope = check_leaky_relu_slope(leaky_relu_slope)
        self.activation, self.out_activation, self.loss = activation, out_activation, loss
        self.dtype = check_dtype(dtype)
        self.layout = Layout(sizes)
        if self.layout.n_layers < 1 or (self.layout.sizes < 1).any():
            raise ValueError(f"layer sizes must be positive integers, got {list(sizes)}")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.alpha = float(alpha)
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
        self.n_threads = resolve_n_threads(n_threads)
        self.params = np.zeros(self.layout.n_params, self.dtype)
        # an inference-only trainer (training=False) has no gradients and no deltas
        self.grads = np.zeros(self.layout.n_params if training else 0, self.dtype)
        self.coefs, self.intercepts = self.layout.views(self.params)
        self.coef_grads, self.intercept_grads = (self.layout.views(self.grads) if training
                                                 else ([], []))
        self.ws = Workspace(self.layout, self.batch_size, self.dtype, training=training)
        self.stop_requested = False
        self.set_dropout(None)

    def set_dropout(self, rates, seed=0):
        """Dropout on the hidden layers while training: ``rates`` None (off) or one rate in
        [0, 1) per hidden layer; ``seed`` (an int < 2**32) seeds the masks, which then depend
        on the step count only: ``dropout_step``, advanced by each batch of ``run_epoch``
        (``loss_and_grads`` reuses the current step's mask)."""
        if rates is not None:
            rates = np.asarray(rates, dtype=np.float64).reshape(-1)
            if rates.shape != (self.layout.n_layers - 1,) or not (
                    (rates >= 0) & (rates < 1)).all():
                raise ValueError(f"dropout must be one rate in [0, 1) per hidden layer "
                                 f"({self.layout.n_layers - 1}), got {rates.tolist()}")
            if not rates.any():
                rates = None
        self.dropout = rates
        self.dropout_seed = int(seed) & 0xFFFFFFFF
        self.dropout_step = 0

    @classmethod
    def for_inference(cls, coefs, intercepts, *, activation, out_activation, dtype,
                      n_rows, n_threads=None, leaky_relu_slope=0.01):
        """A trainer that only predicts: ``coefs``/``intercepts`` (validated) copied into its
        parameters, a workspace of ``min(n_rows, PREDICT_CHUNK)`` rows, no gradient or delta
        buffers."""
        sizes = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        # the loss plays no part in a forward pass; pick one the output activation accepts
        loss = {"softmax": "log_loss", "exp": "poisson"}.get(out_activation, "squared_error")
        t = cls(sizes, activation=activation, out_activation=out_activation, loss=loss,
                dtype=dtype, batch_size=max(1, min(n_rows, PREDICT_CHUNK)),
                n_threads=n_threads, training=False, leaky_relu_slope=leaky_relu_slope)
        t.layout.pack(coefs, intercepts, t.params)
        return t

    # -- parameters -------------------------------------------------------------------------
    def init_params(self, rs):
        """Glorot-uniform initialisation from RandomState rs (scikit-learn's draws)."""
        self.layout.pack(*glorot_uniform(self.layout, rs, self.dtype, self.activation),
                         self.params)

    # -- batches ----------------------------------------------------------------------------
    @staticmethod
    def _rows(ws, X, order, start, stop):
        """Rows order[start:stop] (or start:stop) of X, dense: a view of X when it is dense and
        in order, else copied into ws.X (CSR is densified one batch at a time)."""
        if order is None and not sp.issparse(X):
            return X[start:stop]
        xb = ws.X[:stop - start]
        if order is None:
            K.csr_slice_to_dense(xb, X.data, X.indices, X.indptr, start)
        elif sp.issparse(X):
            K.gather_csr_rows(xb, X.data, X.indices, X.indptr, order[start:stop])
        else:
            K.gather_rows(xb, X, order[start:stop])
        return xb

    def _batch(self, X, Y, sw, order, start, stop):
        """The (X, Y, sw) of rows order[start:stop] (or start:stop): views when possible,
        else gathered into the workspace."""
        ws = self.ws
        xb = self._rows(ws, X, order, start, stop)
        if order is None:
            return xb, Y[start:stop], ws.no_sw if sw is None else sw[start:stop]
        m = stop - start
        idx = order[start:stop]
        yb = ws.Y[:m]
        K.gather_rows(yb, Y, idx)
        swb = ws.no_sw
        if sw is not None:
            swb = ws.sw[:m]
            K.gather_vector(swb, sw, idx)
        return xb, yb, swb

    def _step(self, xb, yb, swb):
        """Forward + backprop of one batch: (batch loss, weight sum); grads holds raw sums."""
        act, out_act, loss = self.codes
        self.ws.n_rows = xb.shape[0]
        return K.forward_backward(self.params, self.grads, self.ws.acts, self.ws.deltas,
                                  xb, yb, swb, self.layout.sizes,
                                  self.ws.capacity, act, out_act, loss, self.alpha,
                                  self.dtype.type(self.slope), self.dropout,
                                  np.uint64((self.dropout_seed << 32)
                                            | (self.dropout_step & 0xFFFFFFFF)))

    def run_epoch(self, X, Y, optimizer, state, order=None, sample_weight=None, start=0):
        """One pass over the rows of X (in ``order`` if given, an int64 (N,) permutation),
        from row ``start`` of that order (to resume an interrupted epoch):
        forward, backprop and an optimizer step per batch.  X is a validated (N, n_in) array
        or CSR matrix of the trainer's dtype, Y (N, n_out).  Returns the sum over batches of
        batch loss * batch rows, and the position reached in the order (N unless
        ``stop_requested`` was set during the epoch)."""
        B = self.batch_size
        n_coef = self.layout.n_coef
        total = 0.0
        done = start  # a stop request is cleared by the front-end that honours it, never here
        with thread_limits(self.n_threads):
            for first in range(start, X.shape[0], B):
                stop = min(first + B, X.shape[0])
                batch_loss, n = self._step(*self._batch(X, Y, sample_weight, order, first,
                                                        stop))
                self.dropout_step += 1
                optimizer.update(state, self.params, self.grads, 1.0 / n, self.alpha / n,
                                 n_coef)
                total += batch_loss * (stop - first)
                done = stop
                if self.stop_requested:
                    break
        return total, done

    def loss_and_grads(self, X, Y, sample_weight=None):
        """Full-batch loss; gradients left in ``grads`` (flat) / ``coef_grads`` etc.
        Needs batch_size >= N."""
        if X.shape[0] > self.ws.capacity:
            raise ValueError(f"{X.shape[0]} rows exceed the workspace ({self.ws.capacity})")
        with thread_limits(self.n_threads):
            value, n = self._step(*self._batch(X, Y, sample_weight, None, 0, X.shape[0]))
            K.finish_grads(self.grads, self.params, self.layout.sizes, n, self.alpha)
            return value

    def forward(self, X):
        """Network output for every row of X (validated, the trainer's dtype): a new (N, n_out)
        array, computed in chunks of at least the workspace's capacity.  When the training
        batch is small (say 1), the chunks use a temporary inference workspace of up to
        ``PREDICT_CHUNK`` rows instead of one kernel call per training-batch of rows."""
        n = X.shape[0]
        out = np.empty((n, int(self.layout.sizes[-1])), self.dtype)
        act, out_act, _ = self.codes
        ws = self.ws
        if ws.capacity < min(n, PREDICT_CHUNK):
            ws = Workspace(self.layout, min(n, PREDICT_CHUNK), self.dtype, training=False)
        B = ws.capacity
        with thread_limits(self.n_threads):
            for start in range(0, n, B):
                stop = min(start + B, n)
                xb = self._rows(ws, X, None, start, stop)
                out[start:stop] = K.forward_pass(self.params, ws.acts, xb, self.layout.sizes,
                                                 B, act, out_act, self.dtype.type(self.slope))
        return out
