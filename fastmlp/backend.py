"""fastmlp's functional backend: the one training core that every front-end calls.

Front-ends (``fastmlp.MLP``, the scikit-learn estimators, the command line, other projects)
call either the functional API on plain arrays -- :func:`forward` and :func:`loss_and_grads`,
W[l] shaped (n_in, n_out) as in scikit-learn -- or :class:`Trainer`, which owns the flat
parameters, a preallocated :class:`~fastmlp._workspace.Workspace` and runs epochs of
minibatch gradient descent.  Inputs are validated here; kernels trust them.
"""
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array

from . import kernels as K
from ._threads import resolve_n_threads, thread_limits
from ._workspace import Layout, Workspace

ACTIVATIONS = {"identity": K.IDENTITY, "logistic": K.LOGISTIC, "sigmoid": K.LOGISTIC,
               "tanh": K.TANH, "relu": K.RELU}
OUT_ACTIVATIONS = dict(ACTIVATIONS, softmax=K.SOFTMAX, exp=K.EXP)
LOSSES = {"squared_error": K.SQUARED_ERROR, "log_loss": K.LOG_LOSS,
          "binary_log_loss": K.BINARY_LOG_LOSS, "poisson": K.POISSON}
# The output activation each log-likelihood loss is exact for (its delta is A - Y).
_CANONICAL = {"log_loss": ("softmax", "logistic"), "binary_log_loss": ("logistic",),
              "poisson": ("exp",)}
DTYPES = (np.float32, np.float64)


def _choose(name, value, table):
    if not isinstance(value, str) or value not in table:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}")
    return table[value]


def resolve(activation, out_activation, loss):
    """Strings -> kernel codes, once.  Returns (act, out_act, loss) codes.

    ``log_loss`` with a logistic output is the binary log loss (as in scikit-learn)."""
    act = _choose("activation", activation, ACTIVATIONS)
    out = _choose("out_activation", out_activation, OUT_ACTIVATIONS)
    code = _choose("loss", loss, LOSSES)
    allowed = _CANONICAL.get(loss)
    if out_activation == "sigmoid":
        out_activation = "logistic"
    if allowed is not None and out_activation not in allowed:
        raise ValueError(f"loss={loss!r} needs out_activation in {allowed}, "
                         f"got {out_activation!r}")
    if loss == "squared_error" and out_activation == "softmax":
        raise ValueError("loss='squared_error' with out_activation='softmax' is not supported; "
                         "use loss='log_loss'")
    if loss == "log_loss" and out_activation == "logistic":
        code = K.BINARY_LOG_LOSS
    return act, out, code


def check_dtype(dtype):
    """'float32'/'float64' (or the numpy types) -> np.dtype; anything else is an error."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def check_params(coefs, intercepts):
    """Validate coefs (list of (n_in, n_out)) / intercepts (list of (n_out,)); returns
    (layer sizes, dtype)."""
    if not isinstance(coefs, (list, tuple)) or not isinstance(intercepts, (list, tuple)):
        raise ValueError("coefs and intercepts must be lists of arrays, one per layer")
    if len(coefs) == 0 or len(coefs) != len(intercepts):
        raise ValueError(f"coefs and intercepts must be non-empty lists of the same length, "
                         f"got {len(coefs)} and {len(intercepts)}")
    coefs = [np.asarray(c) for c in coefs]
    intercepts = [np.asarray(b) for b in intercepts]
    dtype = coefs[0].dtype
    if dtype.type not in DTYPES:
        raise ValueError(f"parameters must be float32 or float64, got {dtype}")
    sizes = [coefs[0].shape[0] if coefs[0].ndim == 2 else -1]
    for l, (c, b) in enumerate(zip(coefs, intercepts)):
        if c.ndim != 2:
            raise ValueError(f"coefs[{l}] must be 2-D (n_in, n_out), got shape {c.shape}")
        if c.shape[0] != sizes[-1]:
            raise ValueError(f"coefs[{l}] has {c.shape[0]} rows but layer {l} has "
                             f"{sizes[-1]} units")
        if b.shape != (c.shape[1],):
            raise ValueError(f"intercepts[{l}] must have shape ({c.shape[1]},), got {b.shape}")
        if c.dtype != dtype or b.dtype != dtype:
            raise ValueError(f"all parameters must share one dtype; coefs[0] is {dtype}, "
                             f"layer {l} has {c.dtype}/{b.dtype}")
        if not (np.isfinite(c).all() and np.isfinite(b).all()):
            raise ValueError(f"parameters of layer {l} contain NaN or infinity")
        sizes.append(c.shape[1])
    return sizes, dtype


def check_X(X, dtype, n_features=None, accept_sparse=False, name="X"):
    """Validate X -> C-contiguous (N, n_features) array of dtype (or CSR), finite, non-empty.
    Never modifies X; copies only when its dtype or layout must change."""
    X = check_array(X, accept_sparse=["csr", "csc"] if accept_sparse else False, dtype=dtype,
                    order="C", input_name=name)
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_sorted_indices:
            X = X.sorted_indices()
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but the network expects "
                         f"{n_features}")
    return X


def check_Y(Y, dtype, n_samples, n_outputs=None, name="Y"):
    """Validate targets -> C-contiguous (N, n_outputs); 1-D targets become one column."""
    Y = check_array(Y, dtype=dtype, order="C", ensure_2d=False, input_name=name)
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {Y.ndim} dimensions")
    if Y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but {name} has {Y.shape[0]}")
    if n_outputs is not None and Y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {Y.shape[1]} columns, but the network has {n_outputs} "
                         f"outputs")
    return Y


def check_sample_weight(sample_weight, n_samples, dtype):
    """None stays None; otherwise a finite, non-negative (N,) array of dtype."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        return np.full(n_samples, sample_weight, dtype=dtype)
    sw = check_array(sample_weight, ensure_2d=False, dtype=dtype, order="C",
                     input_name="sample_weight")
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {sw.shape}")
    if (sw < 0).any():
        raise ValueError("sample_weight must not contain negative values")
    return sw


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
                 n_threads=None):
        self.codes = resolve(activation, out_activation, loss)
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
        self.grads = np.zeros_like(self.params)
        self.coefs, self.intercepts = self.layout.views(self.params)
        self.coef_grads, self.intercept_grads = self.layout.views(self.grads)
        self.ws = Workspace(self.layout, self.batch_size, self.dtype)
        self.stop_requested = False

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
                                  self.ws.capacity, act, out_act, loss, self.alpha)

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
        done = start
        self.stop_requested = False
        with thread_limits(self.n_threads):
            for first in range(start, X.shape[0], B):
                stop = min(first + B, X.shape[0])
                batch_loss, n = self._step(*self._batch(X, Y, sample_weight, order, first,
                                                        stop))
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
            ws = Workspace(self.layout, min(n, PREDICT_CHUNK), self.dtype)
        B = ws.capacity
        with thread_limits(self.n_threads):
            for start in range(0, n, B):
                stop = min(start + B, n)
                xb = self._rows(ws, X, None, start, stop)
                out[start:stop] = K.forward_pass(self.params, ws.acts, xb, self.layout.sizes,
                                                 B, act, out_act)
        return out


# Rows per chunk when a whole data set goes through the network at prediction time.
PREDICT_CHUNK = 4096


def _trainer_for(coefs, intercepts, sizes, dtype, activation, out_activation, loss, alpha,
                 n_threads, capacity):
    """A Trainer holding (validated) coefs/intercepts, for one functional call."""
    t = Trainer(sizes, activation=activation, out_activation=out_activation, loss=loss,
                dtype=dtype, batch_size=capacity, alpha=alpha, n_threads=n_threads)
    t.layout.pack(coefs, intercepts, t.params)
    return t


def forward(coefs, intercepts, X, activation="logistic", out_activation="identity",
            n_threads=None):
    """The network's output for X: ``A[l+1] = f(A[l] @ W[l] + b[l])``, f = ``activation`` for
    hidden layers and ``out_activation`` for the last.

    coefs: list of (n_in, n_out) arrays, intercepts: list of (n_out,), all float32 or all
    float64; X (N, n_in), dense or CSR/CSC, converted to the parameters' dtype.
    Returns a new (N, n_out) array.  Nothing passed in is modified."""
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    # the loss plays no part in a forward pass; pick one the output activation accepts
    loss = {"softmax": "log_loss", "exp": "poisson"}.get(out_activation, "squared_error")
    t = _trainer_for(coefs, intercepts, sizes, dtype, activation, out_activation, loss, 0.0,
                     n_threads, min(X.shape[0], PREDICT_CHUNK))
    return t.forward(X)


def loss_and_grads(coefs, intercepts, X, Y, activation="logistic", out_activation="identity",
                   loss="squared_error", alpha=0.0, sample_weight=None, n_threads=None):
    """Loss and gradients of one batch, with scikit-learn's definitions (it can serve as
    ``MLP._backprop``):

    * squared_error: ``0.5 * mean over samples and outputs of (A - Y)^2``; its gradient is
      that of ``n_outputs * loss`` (scikit-learn issue #8349, reproduced on purpose);
    * log_loss (softmax output), binary log loss (logistic output), poisson (exp output);
    * plus ``0.5 * alpha * sum ||W||^2 / n``; with sample weights the means are weighted and
      n is the weight sum.

    Returns ``(loss, coef_grads, intercept_grads)`` as new arrays shaped like the
    parameters.  Nothing passed in is modified."""
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    Y = check_Y(Y, dtype, X.shape[0], sizes[-1])
    sw = check_sample_weight(sample_weight, X.shape[0], dtype)
    t = _trainer_for(coefs, intercepts, sizes, dtype, activation, out_activation, loss, alpha,
                     n_threads, X.shape[0])
    value = t.loss_and_grads(X, Y, sw)
    return (float(value), [g.copy() for g in t.coef_grads],
            [g.copy() for g in t.intercept_grads])
