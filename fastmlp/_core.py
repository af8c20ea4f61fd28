"""The training core: :class:`Trainer` owns the flat parameters and gradients and one
preallocated :class:`~fastmlp._workspace.Workspace`, and runs epochs of minibatch gradient
descent through the kernels.  Every front-end (``fastmlp.MLP``, the scikit-learn estimators,
the command line) trains through it; inputs arrive validated (``fastmlp._validation``).

A step runs one of two ways, ``blas`` or ``split`` (``fastmlp._planner`` says which and why;
``fastmlp._threads`` how the thread pools are kept out of each other's way)."""
import time
from contextlib import ExitStack, contextmanager, nullcontext

import numpy as np
import scipy.sparse as sp

from . import _blocks, _contention, _planner
from . import kernels as K
from ._threads import (blas_threads, blas_versions, kernel_call, kernel_section, max_threads,
                       parallel_regions_allowed, region_guard, resolve_n_threads, thread_limits,
                       threading_layer)
from ._validation import kernel_codes
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


class _Session:
    """A trainer's thread settings held across epochs: the budget ``n_threads``, the stack
    ``held`` of the way's settings, and ``way`` = (split, threads) they are for (None: none)."""

    def __init__(self, n_threads, held):
        self.n_threads, self.held, self.way = n_threads, held, None


class Trainer:
    """The training core: flat parameters and gradients, one workspace, epochs of batches.

    ``coefs``/``intercepts`` are views of ``params``; ``grads`` has the same layout.  Nothing
    is allocated per batch: rows are gathered into the workspace (or used in place when the
    input is already contiguous and in order), and every kernel writes into preallocated
    buffers.  Set ``stop_requested`` (e.g. from a signal handler) to stop after the current
    batch.  ``strategy`` forces how a step runs ('blas' or 'split'; None or 'auto': the
    planner's way and thread count, see ``fastmlp._planner``: timed once per process or
    read from the plan files, and watched epoch by epoch through ``clock``, which a test may
    replace); the way used last is ``plan`` (and
    ``ws.plan``).
    """

    clock = staticmethod(time.perf_counter)  # times epochs for the plan's watch

    def __init__(self, sizes, *, activation="logistic", out_activation="identity",
                 loss="squared_error", dtype="float32", batch_size=200, alpha=0.0,
                 n_threads=None, training=True, leaky_relu_slope=0.01, strategy=None):
        # the front-ends (fastmlp._validation, at the edge) checked every argument: nothing
        # here checks again, it only takes the values in the core's form
        self.codes = kernel_codes(activation, out_activation, loss)
        self.slope = float(leaky_relu_slope)
        self.activation, self.out_activation, self.loss = activation, out_activation, loss
        self.dtype = np.dtype(np.dtype(dtype).type)  # native byte order
        self.layout = Layout(sizes)
        self.batch_size = int(batch_size)
        self.alpha = float(alpha)
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
        self._watch = None  # the epochs' watch of an auto plan (fastmlp._planner.Watch)
        # how long the threads waited for CPUs since the plan's trial (or its watch began)
        self._contention = None  # a _contention.Contention
        self._split_ok = None  # the BLAS allows the split way (checked once)
        self._session = None  # the thread settings held across epochs (session())
        self._identity = np.zeros(0, np.int64)  # 0..N-1, for in-order input on the split way
        self.stop_requested = False
        self.steps_per_call = None  # run_epoch's steps per kernel call (None: by FLOP)
        self.set_dropout(None)

    def set_dropout(self, rates, seed=0):
        """Dropout on the hidden layers while training: ``rates`` None (off) or one rate in
        [0, 1) per hidden layer; ``seed`` (an int < 2**32) seeds the masks, which then depend
        on the step count only: ``dropout_step``, advanced by each batch of ``run_epoch``
        (``loss_and_grads`` reuses the current step's mask)."""
        if rates is not None:  # checked at the edge (fastmlp._validation.check_dropout)
            rates = np.asarray(rates, dtype=np.float64).reshape(-1)
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

    @kernel_call  # a fork waits for it (fastmlp._threads)
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

    @kernel_call  # a fork waits for it (fastmlp._threads)
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
                 self._rates(), *self._seed_parts(), n_threads, 1, K.NO_UPDATE, _NO_HYPER,
                 ws.lr_ts, self.layout.n_coef, ws.step_losses, ws.step_wsums)
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
    def _plan_key(self, n_threads, batch, kind="pass"):
        """The key of this network's plans (see fastmlp._planner): kept per process, and on
        disk."""
        import numba

        from ._version import __version__
        return (_planner.FORMAT, _planner.cpu_model(), int(n_threads),
                tuple(int(s) for s in self.layout.sizes), int(batch), self.dtype.str,
                tuple(int(c) for c in self.codes), self.dropout is not None, kind,
                threading_layer(), __version__, numba.__version__)

    def _split_available(self):
        if self._split_ok is None:
            self._split_ok = not any(str(v).startswith(_RACY_OPENBLAS) for v in blas_versions())
        return self._split_ok and parallel_regions_allowed()

    def _make_plan(self, n_threads, X, Y, sw, order, start, optimizer=None):
        """How this call's steps run (see fastmlp._planner): forced, this process's plan, the
        plan on disk, or a trial when none is known: with an ``optimizer`` (a training epoch on
        dense input), whole training steps on consecutive batches from the call's first one,
        the update included, on scratch copies of the parameters and of the optimizer's state;
        without (L-BFGS's full batch, sparse input), the forward and backward pass of the
        first batch.  The training itself is untouched either way.  Returns (plan, key), key
        None when the plan was not chosen among candidates (nothing to watch)."""
        forced = _planner.forced_strategy(self.strategy)
        batch = min(self.batch_size, X.shape[0])
        if forced == "blas" or n_threads == 1:
            return _planner.Plan("blas", "forced" if forced else "one thread", {},
                                 n_threads), None
        if not self._split_available():
            return _planner.Plan("blas", "unavailable", {}, n_threads), None
        if forced == "split":
            return _planner.Plan("split", "forced", {}, n_threads), None
        step = optimizer is not None and not sp.issparse(X)
        kind = getattr(optimizer, "name", type(optimizer).__name__) if step else (
            "sparse" if sp.issparse(X) else "pass")
        key = self._plan_key(n_threads, batch, kind)
        plan = _planner.cached(key)
        if plan is not None:
            return plan, key
        flop = 6.0 * self.layout.n_coef * X.shape[0]
        if flop < _planner.MIN_PLANNED_FLOP or start + batch > X.shape[0]:
            # a fit of milliseconds: on one thread where row blocks make that faster than
            # threaded products (OpenBLAS's threads would then spin for ~0.1 s and take the
            # cores from whatever runs next: the first epochs of the next fit ran 1.7-9x
            # slower, measured)
            one = step and _blocks.step_blocks(self.layout.sizes, False, 1, batch,
                                               self.dtype) > 1
            return _planner.Plan("blas", "small", {}, 1 if one else n_threads), None
        plan = _planner.load(key, n_threads)
        if plan is None:
            self._release_threads()  # each candidate sets its own counts
            self.ws.ensure_split(n_threads)
            if step:
                runners = self._step_trial(n_threads, X, Y, sw, order, start, batch, optimizer)
            else:
                runners = self._pass_trial(n_threads, X, Y, sw, order, start, batch)
            t0 = time.perf_counter()
            _contention.wait_for_blas_spin()
            self._contention = _contention.Contention(n_threads)  # up to the probe's end
            seconds = _planner.time_candidates(runners, setup=self._trial_threads)
            way, k = _planner.parse_label(_planner.choose(seconds))
            plan = _planner.Plan(way, "timed", seconds, k)
            _planner.log.debug("fastmlp: plan %s for %s, batch %d, %s, %d threads: timed in "
                               "%.3f s (%s)", plan.label, list(key[3]), batch, self.dtype,
                               n_threads, time.perf_counter() - t0,
                               ", ".join(f"{lb} {s * 1e3:.3g} ms" for lb, s in seconds.items()))
            if _contention.worth_saving(self._contention):
                _planner.save(key, plan)
            else:
                _planner.log.debug("fastmlp: the machine is busy: plan %s kept for this "
                                   "process only", plan.label)
        else:
            _planner.log.debug("fastmlp: plan %s for %s, batch %d, %s, %d threads: from %s",
                               plan.label, list(key[3]), batch, self.dtype, n_threads,
                               _planner.plan_dir())
        return _planner.store(key, plan), key

    @staticmethod
    @contextmanager
    def _trial_threads(lb):
        """The thread counts a trial candidate runs with (inside the call's thread_limits)."""
        way, k = _planner.parse_label(lb)
        try:
            with thread_limits(k), blas_threads(1 if way == "split" else k):
                yield
        finally:
            if way == "blas":
                _contention.threaded_blas_done(k)

    def _pass_trial(self, n_threads, X, Y, sw, order, start, batch):
        """The planner's runners without an optimizer: forward + backward of the first batch,
        on scratch gradients; {label: runner} in the trial's order."""
        scratch = np.empty_like(self.grads)
        rows = self._identity_rows(X.shape[0]) if order is None else order
        idx = rows[start:start + batch]

        def runner(way, k):
            if way == "blas":
                return lambda: self._step(*self._batch(X, Y, sw, order, start, start + batch),
                                          grads=scratch)
            return lambda: self._split(X, Y, sw, idx, k, grads=scratch)

        return {_planner.label(w, k): runner(w, k) for w, k in _planner.candidates(n_threads)}

    def _step_trial(self, n_threads, X, Y, sw, order, start, batch, optimizer):
        """The planner's runners for a training epoch: each call is one training step (the kernels
        training runs: gather, forward, loss, backward, reduction, update) on the next batch,
        wrapping round at the end of the data, on scratch parameters and optimizer state (the
        trial's memory: 2-3 parameter vectors, freed before training starts) and the trainer's
        gradients, which every training step overwrites. A trial that repeated one batch found
        its rows in cache and left the update out: it made the two ways look alike where the
        blas way's serial gather, epilogues and update cost it 4-9% an epoch (784-512-512-10,
        batch 4096, measured).  {label: runner} in the trial's order."""
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

        def runner(way, k):
            split = way == "split"

            def run():
                self._steps_call(split, k, params, grads, s1, s2, opt, hyper, X, Y, sw, order,
                                 next_batch(), 1)
            return run

        return {_planner.label(w, k): runner(w, k) for w, k in _planner.candidates(n_threads)}

    def _set_plan(self, n_threads, X, Y, sw, order, start, optimizer=None):
        """The plan this call runs: the network's plan, or the candidate its epoch watch is
        trying (see fastmlp._planner.Watch)."""
        n_threads = max(1, min(int(n_threads), max_threads()))  # never more than the budget
        plan, key = self._make_plan(n_threads, X, Y, sw, order, start, optimizer)
        watch = self._watch
        if key is None:
            watch = None
        elif watch is None or watch.key != key:
            watch = _planner.Watch(plan, _planner.fallbacks(plan, n_threads,
                                                            self._split_available()), key)
            if plan.source != "timed" or self._contention is None:  # counted from here
                self._contention = _contention.Contention(n_threads)
        elif watch.plan != plan:  # another trainer's watch changed this process's plan
            watch.plan = plan
        self._watch = watch
        if watch is not None:
            plan = watch.plan_for_epoch()
        if plan.strategy == "split":
            self.ws.ensure_split(plan.threads)
        self.plan = self.ws.plan = plan
        return plan

    def _epoch_timed(self, seconds, steps):
        """Tell the epoch watch how long the epoch's steps took; a plan that proved faster is
        kept for this process."""
        watch = self._watch
        if watch is None:
            return
        new = watch.epoch_done(seconds, steps)
        if new is not None:
            _planner.store(watch.key, new, replace=True)
        if watch.probe_done:  # the plan stood its probe, or its runner-up won: on disk, so
            watch.probe_done = False  # that later processes neither time nor probe again
            if _contention.worth_saving(self._contention):
                _planner.save(watch.key, watch.plan, probed=True)

    @contextmanager
    def session(self):
        """Hold this trainer's thread settings from one run_epoch to the next (a fit's epoch
        loop): the thread counts are set when the first epoch starts, changed only when the
        plan changes, and restored when the block ends, instead of being set and restored
        around every epoch.  Nested sessions are one.  While the block runs, code between the
        epochs (callbacks, scoring) sees the same limits as the epochs (BLAS on one thread
        under the split way)."""
        if self._session is not None:
            yield
            return
        with thread_limits(self.n_threads) as nt, ExitStack() as held:
            self._session = _Session(nt, held)
            try:
                yield
            finally:
                self._session = None

    @staticmethod
    @contextmanager
    def _way_threads(split, k, nt):
        """Inside thread_limits(nt): Numba's and BLAS's counts for the way and its k threads."""
        try:
            with (thread_limits(k) if k < nt else nullcontext()), (
                    blas_threads(1) if split else nullcontext()):
                yield
        finally:
            if not split:
                _contention.threaded_blas_done(k)

    def _release_threads(self):
        """Restore the session's own limits (before a trial sets each candidate's)."""
        s = self._session
        if s is not None and s.way is not None:
            s.held.close()
            s.way = None

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
        rows densified batch by batch.  The epoch's time (``clock``) goes to the plan's
        watch.  Runs in a :meth:`session` (its own when none is open)."""
        if self._session is None:
            with self.session():
                return self._epoch(X, Y, optimizer, state, order, sample_weight, start)
        return self._epoch(X, Y, optimizer, state, order, sample_weight, start)

    def _epoch(self, X, Y, optimizer, state, order, sample_weight, start):
        s = self._session
        nt = s.n_threads
        plan = self._set_plan(nt, X, Y, sample_weight, order, start, optimizer)
        split, k = plan.strategy == "split", plan.threads
        if s.way != (split, k):
            s.held.close()
            s.held.enter_context(self._way_threads(split, k, nt))
            s.way = (split, k)
        t0 = self.clock()
        if sp.issparse(X):
            total, done = self._run_batches(X, Y, optimizer, state, order, sample_weight, start,
                                            split, k)
        else:
            total, done = self._run_steps(X, Y, optimizer, state, order, sample_weight, start,
                                          split, k)
        seconds = self.clock() - t0
        if done > start:
            self._epoch_timed(seconds, -(-(done - start) // self.batch_size))
        return total, done

    def _steps_per_call(self):
        if self.steps_per_call is not None:
            return max(1, int(self.steps_per_call))
        flop = 6.0 * self.layout.n_coef * self.batch_size
        return int(min(STEPS_PER_CALL, max(1, FLOP_PER_CALL // flop)))

    def _steps_done(self, n_steps):
        """Called after each kernel call of run_epoch with the steps it took (a hook)."""

    @kernel_call  # a fork waits for it (fastmlp._threads)
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
        blocks = _blocks.step_blocks(self.layout.sizes, split, nt, min(B, N), self.dtype)
        # per-thread sums, and a scratch per thread for more than one row block: allocated
        # by the first call (a trial's, or the epoch's)
        ws.ensure_split((nt if split else 1) * (2 if blocks > 1 else 1))
        ws.row_blocks = blocks
        if split:
            with region_guard():
                return self._kernels().split_steps(
                    grads, ws.thread_grads, ws.partial, ws.X, ws.Y, ws.sw, params, s1, s2,
                    ws.acts, ws.deltas, X, Y, sw, order, pos, N, B, n, sizes, ws.capacity,
                    self.alpha, slope, rates, seed_hi, step0, nt, blocks, opt, hyper,
                    ws.lr_ts, self.layout.n_coef, ws.step_losses, ws.step_wsums)
        steps = K.steps_kernel(*self.codes, self.dropout is not None, opt)
        return steps(params, grads, ws.thread_grads, s1, s2, ws.acts, ws.deltas, ws.X, ws.Y,
                     ws.sw, X, Y, sw, order, pos, N, B, n, sizes, ws.capacity, self.alpha, slope,
                     rates, seed_hi, step0, blocks, hyper, ws.lr_ts, self.layout.n_coef,
                     ws.step_losses, ws.step_wsums)

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
            k = plan.threads
            if plan.strategy == "split":
                with thread_limits(k), blas_threads(1):
                    value, n = self._split(X, Y, sample_weight, self._identity_rows(n_rows), k)
            else:
                with thread_limits(k):
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
            if split:
                nt = max(2, min(nt, self.plan.threads))
            slope = self.dtype.type(self.slope)
            with blas_threads(1 if split else nt):
                for start in range(0, n, B):
                    stop = min(start + B, n)
                    xb = self._rows(ws, X, None, start, stop)
                    if split:
                        with kernel_section(), region_guard():
                            K.split_forward(out[start:stop], self.params, ws.acts, xb,
                                            self.layout.sizes, B, act, out_act, slope, nt)
                    else:
                        with kernel_section():
                            out[start:stop] = K.forward_pass(self.params, ws.acts, xb,
                                                             self.layout.sizes, B, act,
                                                             out_act, slope)
        return out
