"""The training core: :class:`Trainer` owns the flat parameters and gradients and one
preallocated :class:`~fastmlp._workspace.Workspace`, and runs epochs of minibatch gradient
descent through the kernels.  Every front-end (``fastmlp.MLP``, the scikit-learn estimators,
the command line) trains through it; inputs arrive validated (``fastmlp._validation``).

A step runs one of two ways, ``blas`` or ``split`` (``fastmlp._planner`` says which and why;
``fastmlp._threads`` how the thread pools are kept out of each other's way)."""
import numpy as np
import scipy.sparse as sp

from . import _planner
from . import kernels as K
from ._threads import (blas_threads, blas_versions, parallel_regions_allowed, region_guard,
                       resolve_n_threads, thread_limits, threading_layer)
from ._validation import check_dtype, check_leaky_relu_slope, resolve
from ._workspace import PREDICT_CHUNK, STEPS_PER_CALL, Layout, Workspace

# OpenBLAS releases whose gemm gives wrong results when several threads call it at once (the
# split way does): fixed in 0.3.30.
_RACY_OPENBLAS = ("0.3.28", "0.3.29")

_NO_DROPOUT = np.zeros(0)  # the split way's "no dropout": (0,) rates
_NO_ORDER = np.zeros(0, np.int64)  # the kernels' "rows in order, used in place"
_NO_HYPER = np.zeros(6)  # no optimizer update (NO_UPDATE)

# A multi-step kernel call runs about this many FLOP (a few milliseconds): short enough that a
# stop request (Ctrl-C) is honoured promptly, long enough that the call's cost is nothing.
FLOP_PER_CALL = 1e9


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
    batch.  ``strategy`` forces how a step runs ('blas' or 'split'; None or 'auto': timed
    once per process, see ``fastmlp._planner``); the way used last is ``plan`` (and
    ``ws.plan``).
    """

    def __init__(self, sizes, *, activation="logistic", out_activation="identity",
                 loss="squared_error", dtype="float32", batch_size=200, alpha=0.0,
                 n_threads=None, training=True, leaky_relu_slope=0.01, strategy=None):
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
        self.strategy = _planner.check_strategy(strategy)
        self.plan = None
        self._identity = np.zeros(0, np.int64)  # 0..N-1, for in-order input on the split way
        self.stop_requested = False
        self.steps_per_call = None  # run_epoch's steps per kernel call (None: by FLOP)
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

    def _step(self, xb, yb, swb, grads=None):
        """Forward + backprop of one batch (blas way): (batch loss, weight sum); grads (default
        self.grads) holds raw sums."""
        act, out_act, loss = self.codes
        self.ws.n_rows = xb.shape[0]
        return K.forward_backward(self.params, self.grads if grads is None else grads,
                                  self.ws.acts, self.ws.deltas, xb, yb, swb, self.layout.sizes,
                                  self.ws.capacity, act, out_act, loss, self.alpha,
                                  self.dtype.type(self.slope), self.dropout,
                                  self._dropout_key())

    def _dropout_key(self):
        """The step's mask seed: the fit's seed in the high 32 bits, the step count below."""
        return np.uint64((self.dropout_seed << 32) | (self.dropout_step & 0xFFFFFFFF))

    def _split(self, X, Y, sw, idx, n_threads, grads=None):
        """Forward + backprop of the rows idx of X (split way): as _step."""
        ws = self.ws
        m = idx.shape[0]
        if sp.issparse(X):  # densify the batch's rows here; the region then copies in place
            K.gather_csr_rows(ws.X[:m], X.data, X.indices, X.indptr, idx)
            K.gather_rows(ws.Y[:m], Y, idx)
            if sw is not None:
                K.gather_vector(ws.sw[:m], sw, idx)
                sw = ws.sw[:m]
            X, Y, idx = ws.X, ws.Y, self._identity_rows(m)
        ws.n_rows = m
        kern = self._kernels().split_steps
        grads = self.grads if grads is None else grads
        with region_guard():
            kern(grads, ws.thread_grads, ws.partial, ws.X, ws.Y, ws.sw, self.params, grads, grads,
                 ws.acts, ws.deltas, X, Y, ws.no_sw if sw is None else sw, idx, 0, m, m, 1,
                 self.layout.sizes, ws.capacity, self.alpha, self.dtype.type(self.slope),
                 self._rates(), *self._seed_parts(), n_threads, K.NO_UPDATE, _NO_HYPER, ws.lr_ts,
                 self.layout.n_coef, ws.step_losses, ws.step_wsums)
        return ws.step_losses[0], ws.step_wsums[0]

    def _kernels(self):
        """The training kernels specialised on this network's codes and dropout."""
        return K.train_kernels(*self.codes, self.dropout is not None)

    def _rates(self):
        return _NO_DROPOUT if self.dropout is None else self.dropout

    def _seed_parts(self):
        """(seed_hi, step0) of the kernels' dropout seeds: the fit's seed in the high 32 bits,
        the step count (low 32 bits added per step by the kernels)."""
        return np.uint64(self.dropout_seed << 32), self.dropout_step & 0xFFFFFFFF

    def _identity_rows(self, n):
        """0..n-1 (int64), kept between calls."""
        if self._identity.shape[0] < n:
            self._identity = np.arange(n, dtype=np.int64)
        return self._identity[:n]

    # -- planning ---------------------------------------------------------------------------
    def _plan_key(self, n_threads, batch):
        return (tuple(int(s) for s in self.layout.sizes), int(batch), self.dtype.str,
                int(n_threads), self.codes, threading_layer())

    def _split_available(self):
        return parallel_regions_allowed() and not any(
            str(v).startswith(_RACY_OPENBLAS) for v in blas_versions())

    def _make_plan(self, n_threads, X, Y, sw, order, start, optimizer=None):
        """How this call's steps run (see fastmlp._planner); times the ways when the process
        has no plan for this network yet: with an ``optimizer`` (a training epoch on dense
        input), whole training steps on consecutive batches from the call's first one, the
        update included, on scratch copies of the parameters and of the optimizer's state;
        without (L-BFGS's full batch, sparse input), the forward and backward pass of the
        first batch.  The training itself is untouched either way."""
        forced = _planner.forced_strategy(self.strategy)
        batch = min(self.batch_size, X.shape[0])
        if forced == "blas" or n_threads == 1:
            return _planner.Plan("blas", "forced" if forced else "one thread", {})
        if not self._split_available():
            return _planner.Plan("blas", "unavailable", {})
        if forced == "split":
            return _planner.Plan("split", "forced", {})
        key = self._plan_key(n_threads, batch)
        plan = _planner.cached(key)
        if plan is not None:
            return plan
        flop = 6.0 * self.layout.n_coef * X.shape[0]
        if flop < _planner.MIN_PLANNED_FLOP or start + batch > X.shape[0]:
            return _planner.Plan("blas", "small", {})
        self.ws.ensure_split(n_threads)
        if optimizer is None or sp.issparse(X):
            runners = self._pass_trial(n_threads, X, Y, sw, order, start, batch)
        else:
            runners = self._step_trial(n_threads, X, Y, sw, order, start, batch, optimizer)
        seconds = _planner.time_ways(runners, settle={"split": _planner.let_blas_threads_sleep})
        best = min(seconds, key=seconds.get)
        return _planner.store(key, _planner.Plan(best, "timed", seconds))

    def _pass_trial(self, n_threads, X, Y, sw, order, start, batch):
        """The planner's runners without an optimizer: forward + backward of the first batch,
        on scratch gradients."""
        scratch = np.empty_like(self.grads)
        rows = self._identity_rows(X.shape[0]) if order is None else order
        idx = rows[start:start + batch]

        def blas():
            with blas_threads(n_threads):
                self._step(*self._batch(X, Y, sw, order, start, start + batch), grads=scratch)

        def split():
            with blas_threads(1):
                self._split(X, Y, sw, idx, n_threads, grads=scratch)

        return {"blas": blas, "split": split}

    def _step_trial(self, n_threads, X, Y, sw, order, start, batch, optimizer):
        """The planner's runners for a training epoch: each call is one training step (the kernels
        training runs: gather, forward, loss, backward, reduction, update) on the next batch,
        wrapping round at the end of the data, on scratch parameters and optimizer state (the
        trial's memory: 2-3 parameter vectors, freed before training starts) and the trainer's
        gradients, which every training step overwrites. A trial that repeated one batch found
        its rows in cache and left the update out: it made the two ways look alike where the
        blas way's serial gather, epilogues and update cost it 4-9% an epoch (784-512-512-10,
        batch 4096, measured)."""
        params = self.params.copy()
        grads = self.grads
        state = optimizer.init(params)
        opt, s1, s2, hyper = optimizer.kernel_args(state)
        N = X.shape[0]
        where = [start]

        def next_batch():
            pos = where[0] if where[0] + batch <= N else 0
            where[0] = pos + batch
            optimizer.step_rates(state, self.ws.lr_ts[:1])
            return pos

        def runner(split):
            def run():
                with blas_threads(1 if split else n_threads):
                    self._steps_call(split, n_threads, params, grads, s1, s2, opt, hyper, X, Y,
                                     sw, order, next_batch(), 1)
            return run

        return {"blas": runner(False), "split": runner(True)}

    def _set_plan(self, n_threads, X, Y, sw, order, start, optimizer=None):
        plan = self._make_plan(n_threads, X, Y, sw, order, start, optimizer)
        if plan.strategy == "split":
            self.ws.ensure_split(n_threads)
        self.plan = self.ws.plan = plan
        return plan

    def run_epoch(self, X, Y, optimizer, state, order=None, sample_weight=None, start=0):
        """One pass over the rows of X (in ``order`` if given, an int64 (N,) permutation),
        from row ``start`` of that order (to resume an interrupted epoch):
        forward, backprop and an optimizer step per batch.  X is a validated (N, n_in) array
        or CSR matrix of the trainer's dtype, Y (N, n_out).  Returns the sum over batches of
        batch loss * batch rows, and the position reached in the order (N unless
        ``stop_requested`` was set during the epoch).

        Dense input runs many steps per kernel call (``steps_kernel(...)`` /
        ``train_kernels(...).split_steps``; about FLOP_PER_CALL each, at most STEPS_PER_CALL, or
        ``steps_per_call`` when set): the same steps, bit for bit, as one call per batch, and
        a stop request is seen between two calls.  Sparse input runs one batch per call, its
        rows densified batch by batch."""
        N = X.shape[0]
        with thread_limits(self.n_threads) as nt:
            plan = self._set_plan(nt, X, Y, sample_weight, order, start, optimizer)
            split = plan.strategy == "split"
            with blas_threads(1 if split else nt):
                if sp.issparse(X):
                    return self._run_batches(X, Y, optimizer, state, order, sample_weight,
                                             start, split, nt)
                return self._run_steps(X, Y, optimizer, state, order, sample_weight, start,
                                       split, nt)

    def _steps_per_call(self):
        if self.steps_per_call is not None:
            return max(1, int(self.steps_per_call))
        flop = 6.0 * self.layout.n_coef * self.batch_size
        return int(min(STEPS_PER_CALL, max(1, FLOP_PER_CALL // flop)))

    def _steps_done(self, n_steps):
        """Called after each kernel call of run_epoch with the steps it took (a hook)."""

    def _steps_call(self, split, nt, params, grads, s1, s2, opt, hyper, X, Y, sw, order, pos,
                    n):
        """Up to n training steps from position pos of the order, in one kernel call of the
        way asked for (``split`` or the blas way's ``steps_kernel``), on the parameters,
        gradients and optimizer state given (the trainer's, or the planner's scratch copies);
        the step rates are ws.lr_ts[:n].  Returns the steps taken; their losses are in
        ws.step_losses."""
        ws, B, N = self.ws, self.batch_size, X.shape[0]
        sw = ws.no_sw if sw is None else sw
        if order is None:
            order = self._identity_rows(N) if split else _NO_ORDER
        seed_hi, step0 = self._seed_parts()
        sizes, slope, rates = self.layout.sizes, self.dtype.type(self.slope), self._rates()
        if split:
            with region_guard():
                return self._kernels().split_steps(
                    grads, ws.thread_grads, ws.partial, ws.X, ws.Y, ws.sw, params, s1, s2,
                    ws.acts, ws.deltas, X, Y, sw, order, pos, N, B, n, sizes, ws.capacity,
                    self.alpha, slope, rates, seed_hi, step0, nt, opt, hyper, ws.lr_ts,
                    self.layout.n_coef, ws.step_losses, ws.step_wsums)
        steps = K.steps_kernel(*self.codes, self.dropout is not None, opt)
        return steps(params, grads, s1, s2, ws.acts, ws.deltas, ws.X, ws.Y, ws.sw, X, Y, sw,
                     order, pos, N, B, n, sizes, ws.capacity, self.alpha, slope, rates, seed_hi,
                     step0, hyper, ws.lr_ts, self.layout.n_coef, ws.step_losses, ws.step_wsums)

    def _run_steps(self, X, Y, optimizer, state, order, sw, start, split, nt):
        ws, B, N = self.ws, self.batch_size, X.shape[0]
        opt, s1, s2, hyper = optimizer.kernel_args(state)
        per_call = self._steps_per_call()
        total, pos = 0.0, start  # a stop request is cleared by the front-end, never here
        while pos < N:
            n = min(per_call, -(-(N - pos) // B))
            optimizer.step_rates(state, ws.lr_ts[:n])
            k = self._steps_call(split, nt, self.params, self.grads, s1, s2, opt, hyper, X, Y,
                                 sw, order, pos, n)
            optimizer.advance(state, k)
            self.dropout_step += k
            for i in range(k):
                m = min(B, N - pos)
                total += float(ws.step_losses[i]) * m
                pos += m
            ws.n_rows = m
            self._steps_done(k)
            if self.stop_requested:
                break
        return total, pos

    def _run_batches(self, X, Y, optimizer, state, order, sw, start, split, nt):
        """run_epoch one batch per kernel call (sparse input)."""
        B, N, n_coef = self.batch_size, X.shape[0], self.layout.n_coef
        total, done = 0.0, start
        rows = (self._identity_rows(N) if order is None else order) if split else None
        for first in range(start, N, B):
            stop = min(first + B, N)
            if split:
                batch_loss, n = self._split(X, Y, sw, rows[first:stop], nt)
            else:
                batch_loss, n = self._step(*self._batch(X, Y, sw, order, first, stop))
            self.dropout_step += 1
            optimizer.update(state, self.params, self.grads, 1.0 / n, self.alpha / n, n_coef)
            total += float(batch_loss) * (stop - first)
            done = stop
            self._steps_done(1)
            if self.stop_requested:
                break
        return total, done

    def loss_and_grads(self, X, Y, sample_weight=None):
        """Full-batch loss; gradients left in ``grads`` (flat) / ``coef_grads`` etc.
        Needs batch_size >= N."""
        if X.shape[0] > self.ws.capacity:
            raise ValueError(f"{X.shape[0]} rows exceed the workspace ({self.ws.capacity})")
        n_rows = X.shape[0]
        with thread_limits(self.n_threads) as nt:
            plan = self._set_plan(nt, X, Y, sample_weight, None, 0)
            if plan.strategy == "split":
                with blas_threads(1):
                    value, n = self._split(X, Y, sample_weight, self._identity_rows(n_rows), nt)
            else:
                with blas_threads(nt):
                    value, n = self._step(*self._batch(X, Y, sample_weight, None, 0, n_rows))
            K.finish_grads(self.grads, self.params, self.layout.sizes, n, self.alpha)
            return value

    def forward(self, X):
        """Network output for every row of X (validated, the trainer's dtype): a new (N, n_out)
        array, computed in chunks of at least the workspace's capacity.  When the training
        batch is small (say 1), the chunks use a temporary inference workspace of up to
        ``PREDICT_CHUNK`` rows instead of one kernel call per training-batch of rows.  Runs the
        split way when training last ran it (small layers), else the blas way."""
        n = X.shape[0]
        out = np.empty((n, int(self.layout.sizes[-1])), self.dtype)
        act, out_act, _ = self.codes
        ws = self.ws
        if ws.capacity < min(n, PREDICT_CHUNK):
            ws = Workspace(self.layout, min(n, PREDICT_CHUNK), self.dtype, training=False)
        B = ws.capacity
        with thread_limits(self.n_threads) as nt:
            split = (nt > 1 and self.plan is not None and self.plan.strategy == "split"
                     and parallel_regions_allowed())
            slope = self.dtype.type(self.slope)
            with blas_threads(1 if split else nt):
                for start in range(0, n, B):
                    stop = min(start + B, n)
                    xb = self._rows(ws, X, None, start, stop)
                    if split:
                        with region_guard():
                            K.split_forward(out[start:stop], self.params, ws.acts, xb,
                                            self.layout.sizes, B, act, out_act, slope, nt)
                    else:
                        out[start:stop] = K.forward_pass(self.params, ws.acts, xb,
                                                         self.layout.sizes, B, act, out_act,
                                                         slope)
        return out
