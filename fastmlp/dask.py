"""Data-parallel training on a Dask cluster: ``fastmlp.dask.MLPClassifier`` and
``fastmlp.dask.MLPRegressor``.

The estimators take the parameters of :class:`fastmlp.MLPClassifier` /
:class:`fastmlp.MLPRegressor` plus ``client`` and fit on dask arrays, dask DataFrames or NumPy
arrays.  The rows are split into one contiguous *shard* per worker (a dask input is rechunked
once, between the workers; a NumPy input is scattered once).  Each shard lives in a long-lived
*engine* on its worker (a Dask actor) that holds the rows and a preallocated workspace; after
that, only parameters and gradients travel.

One training step (the protocol, identical for L-BFGS evaluations and SGD/Adam batches)::

    driver --params (P numbers)--> every engine        one round trip, direct to the workers
    engine: raw sums of its rows   (loss sum, gradient sums (P,), weight sum; no L2 term)
    driver <--raw sums (P + 2)---- every engine
    driver: adds the shards' sums in shard order, adds the L2 term once, takes the step

So a step moves ``2 * P * itemsize`` bytes per worker and costs one round trip, whatever the
number of rows: communication does not grow with the data, and per-worker work per step
(rows per worker x network size) must be large for it to pay -- see the README section
"Training on a cluster".  Dask has no allreduce; the sum runs on the driver.

Equality.  Full-batch L-BFGS sums the exact per-shard raw sums, so the model equals
scikit-learn's ``solver="lbfgs"`` up to floating-point summation order.  SGD/Adam follow
scikit-learn's random draws: the initial weights come from ``random_state`` on the driver, and
each epoch every engine applies the same ``RandomState.shuffle`` to the global row order (the
driver sends the generator's state, a few kB), so the global batches are those of a single
process; each engine computes the sums of the rows of the batch that it holds.  With one
worker the fit equals :class:`fastmlp.MLPClassifier` bit for bit; with more, to summation
order.  To reproduce a fit locally, fit the fastmlp (or scikit-learn) estimator with the same
parameters on the rows in the same order (``X.compute()``).

Faults.  A worker that dies mid-fit is replaced: its shard is recomputed from the dask graph (or
re-sent from the driver's NumPy array) on a live worker, a new engine replays the epoch
shuffles, and the interrupted step is repeated with the same parameters -- the result does not
change.  When no worker is left, :class:`ClusterLostError` is raised and the estimator keeps
the parameters of the last completed step.

Why one module of ~900 lines: the driver's loop, the worker-side engine (actor), the fault
handling that rebuilds a lost shard and the two estimator front-ends share one protocol (the
shard layout, the step numbering, the replayed shuffles); keeping them together keeps that
protocol readable in one place.  Dask itself is imported lazily: ``import fastmlp`` never
loads it.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import time
import warnings
import numpy as np
import scipy.optimize
from sklearn.base import _clone_parametrized
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import check_is_fitted

from . import kernels as K
from ._engine import Engine
from ._workspace import Layout
from .estimators import _STOCHASTIC_SOLVERS
from .estimators import MLPClassifier as _LocalClassifier
from .estimators import MLPRegressor as _LocalRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "ClusterLostError"]

INSTALL_HINT = "fastmlp.dask needs dask and distributed: pip install 'fastmlp[dask]'"
# Rows per kernel call when an engine sums its whole shard (L-BFGS): bounds its workspace.
FULL_BATCH_CHUNK = 8192
# Seconds to wait for a live worker after losing one before giving up.
RECOVERY_TIMEOUT = 60.0
MAX_RECOVERIES = 20
# Seconds between checks that a worker still exists while waiting for its result.
POLL_SECONDS = 2.0


class ClusterLostError(RuntimeError):
    """The cluster cannot continue the fit (no worker left, or a shard that cannot be
    rebuilt).  The estimator keeps the parameters of the last completed step."""


def _import_distributed():
    try:
        import dask  # noqa: F401
        import dask.array  # noqa: F401
        import distributed
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return distributed


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------
class _RawSums:
    """The one adapter between an engine and fastmlp's compute core
    (:class:`fastmlp.backend.Engine`): the raw sums of a batch.

    ``__call__(params, X, Y, sw, out)`` writes the raw gradient sums of the rows of X into
    ``out`` (P,) and returns ``(loss_sum, weight_sum)`` -- no L2 term.  X (N, n_in), Y
    (N, n_out), sw (N,) or None: C-contiguous arrays of the engine's dtype.  Rows beyond
    ``max_rows`` are processed in chunks whose sums are added.  Nothing is allocated per call.
    """

    def __init__(self, sizes, activation, out_activation, loss, dtype, max_rows, n_threads):
        self._engine = Engine(sizes, activation=activation, out_activation=out_activation,
                              loss=loss, dtype=dtype, max_rows=max_rows, n_threads=n_threads)

    def __call__(self, params, X, Y, sw, out):
        if X.shape[0] == 0:  # a global batch with none of this shard's rows
            out[:] = 0
            return 0.0, 0.0
        return self._engine.raw_sums(params, X, Y, sw, out=out)


def _worker_threads():
    try:
        from distributed import get_worker
        return int(get_worker().state.nthreads)
    except Exception:  # not on a worker (threads of an in-process cluster, tests)
        return None


class _ShardEngine:
    """One shard's rows and workspace, living on a worker as a Dask actor.

    Rows ``lo .. lo + n`` of the global data: X (n, n_in), Y (n, n_out), sw (n,) or None, in
    the training dtype.  ``spec`` describes the network and the batching; ``rng_states`` are
    the epoch shuffles applied so far (a replacement engine replays them).
    """

    def __init__(self, X, y, sw, spec, rng_states=()):
        dtype = np.dtype(spec["dtype"])
        X = np.ascontiguousarray(X, dtype)
        if X.ndim != 2 or X.shape[1] != spec["sizes"][0]:
            raise ValueError(f"a partition of X has shape {X.shape}; expected "
                             f"(rows, {spec['sizes'][0]})")
        if not np.isfinite(X).all():
            raise ValueError("Input X contains NaN or infinity.")
        y = np.asarray(y)
        if spec["binarizer"] is not None:
            y = spec["binarizer"].transform(y)
        elif not np.isfinite(y.astype(np.float64, copy=False)).all():
            raise ValueError("Input y contains NaN or infinity.")
        Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype)
        if Y.shape != (X.shape[0], spec["sizes"][-1]):
            raise ValueError(f"a partition of y has {Y.shape[0]} rows and {Y.shape[1]} "
                             f"outputs; expected {X.shape[0]} and {spec['sizes'][-1]}")
        if sw is not None:
            sw = np.ascontiguousarray(sw, dtype).ravel()
            if sw.shape[0] != X.shape[0] or not np.isfinite(sw).all():
                raise ValueError("sample_weight must be finite, one weight per row")
        self.X, self.Y, self.sw = X, Y, sw
        self.lo, self.n, self.n_total = int(spec["lo"]), X.shape[0], int(spec["n_rows"])
        B = spec["batch_size"]
        cap = max(1, min(self.n, B if B else FULL_BATCH_CHUNK))
        self.sums = _RawSums(spec["sizes"], spec["activation"], spec["out_activation"],
                             spec["loss"], dtype, cap, _worker_threads())
        P = Layout(spec["sizes"]).n_params
        self.params = np.zeros(P, dtype)
        self.grads = np.zeros(P, dtype)
        self.batch_size = B
        self.seconds = 0.0
        if B:
            self.xb = np.zeros((cap, X.shape[1]), dtype)
            self.yb = np.zeros((cap, Y.shape[1]), dtype)
            self.swb = None if sw is None else np.zeros(cap, dtype)
            n_batches = -(-self.n_total // B)
            self.bounds = np.minimum(np.arange(n_batches + 1, dtype=np.int64) * B, self.n_total)
            self.order = (np.arange(self.n_total, dtype=np.int64) if spec["shuffle"]
                          else None)
            self.local = None
            self.offsets = np.clip(self.bounds - self.lo, 0, self.n)
            rs = np.random.RandomState()
            for state in rng_states:
                rs.set_state(state)
                rs.shuffle(self.order)
            if rng_states:
                self._locate()

    def _locate(self):
        """This shard's rows in the epoch's global order: ``local`` (its row indices, in global
        order) and ``offsets`` (where each global batch starts in ``local``)."""
        positions = np.flatnonzero((self.order >= self.lo) & (self.order < self.lo + self.n))
        self.local = self.order[positions] - self.lo
        self.offsets = np.searchsorted(positions, self.bounds)

    def begin_epoch(self, rng_state):
        """Shuffle the global order as ``RandomState.shuffle`` from ``rng_state`` does; returns
        the generator's state afterwards."""
        rs = np.random.RandomState()
        rs.set_state(rng_state)
        rs.shuffle(self.order)
        self._locate()
        return rs.get_state()

    def step(self, params, b):
        """Raw sums of this shard's rows of global batch b: (loss sum, weight sum, gradient
        sums (P,), compute seconds)."""
        t0 = time.perf_counter()
        start, stop = int(self.offsets[b]), int(self.offsets[b + 1])
        if self.local is None:  # unshuffled: the batch's rows are a contiguous range
            X, Y = self.X[start:stop], self.Y[start:stop]
            sw = None if self.sw is None else self.sw[start:stop]
        else:
            m = stop - start
            idx = self.local[start:stop]
            X, Y = self.xb[:m], self.yb[:m]
            K.gather_rows(X, self.X, idx)
            K.gather_rows(Y, self.Y, idx)
            sw = None
            if self.sw is not None:
                sw = self.swb[:m]
                K.gather_vector(sw, self.sw, idx)
        loss_sum, weight_sum = self.sums(params, X, Y, sw, self.grads)
        return loss_sum, weight_sum, self.grads, time.perf_counter() - t0

    def full(self, params):
        """Raw sums of the whole shard (a full-batch L-BFGS evaluation)."""
        t0 = time.perf_counter()
        loss_sum, weight_sum = self.sums(params, self.X, self.Y, self.sw, self.grads)
        return loss_sum, weight_sum, self.grads, time.perf_counter() - t0

    def ping(self):
        return os.getpid()


# ---------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _client_for(client):
    """The client to fit with: the one given; else the default client of this session; else
    the scheduler named by ``DASK_SCHEDULER_ADDRESS`` (dask's ``scheduler-address``); else a
    LocalCluster of process workers (one thread each) started here and closed afterwards."""
    distributed = _import_distributed()
    if client is not None:
        yield client
        return
    try:
        yield distributed.default_client()
        return
    except ValueError:
        pass
    import dask
    address = dask.config.get("scheduler-address", None)
    if address:
        with distributed.Client(address) as c:
            yield c
        return
    n = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)
    with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _live_workers(client):
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _split_sizes(n, k):
    q, r = divmod(n, k)
    return tuple([q + 1] * r + [q] * (k - r))


class _Shard:
    def __init__(self, lo, hi, futures, source):
        self.lo, self.hi = lo, hi
        self.futures = futures  # (X, y, sw) futures (sw may be None)
        self.source = source    # the driver's NumPy (X, y, sw) slices, or None for dask input
        self.actor = None
        self.engine = None  # the actor's future: releasing it destroys the actor


def _is_dask(obj):
    import dask
    return dask.is_dask_collection(obj)


def _to_dask_array(obj, name):
    """A dask DataFrame/Series/Array -> dask array with known row chunks."""
    import dask.array as da
    if isinstance(obj, da.Array):
        arr = obj
    elif hasattr(obj, "to_dask_array"):
        arr = obj.to_dask_array(lengths=True)
    else:
        raise ValueError(f"{name} must be a dask array or DataFrame, got {type(obj).__name__}")
    if any(np.isnan(c) for c in arr.chunks[0]):
        arr = arr.compute_chunk_sizes()
    return arr


class _Fleet:
    """The engines of one fit, one per shard, and the calls to all of them, with recovery."""

    def __init__(self, client, shards, spec):
        self.client = client
        self.shards = shards
        self.spec = spec
        self.rng_states = []   # epoch shuffles applied by every engine
        self.steps = 0
        self.wall = 0.0
        self.compute = 0.0
        self.recoveries = 0

    def _spec(self, shard):
        return dict(self.spec, lo=shard.lo)

    def start(self, workers):
        futs = []
        for shard, worker in zip(self.shards, workers):
            futs.append(self.client.submit(_ShardEngine, *shard.futures, self._spec(shard),
                                           list(self.rng_states), actor=True, pure=False,
                                           workers=[worker], allow_other_workers=True))
        for shard, f in zip(self.shards, futs):
            shard.actor, shard.engine = f.result(), f  # the future keeps the actor alive

    def close(self):
        for shard in self.shards:
            shard.actor = shard.engine = shard.futures = None

    def call(self, method, *args):
        """``method(*args)`` on every engine; results in shard order.  A shard whose worker
        died is rebuilt on a live worker and called again with the same arguments."""
        t0 = time.perf_counter()
        results = [None] * len(self.shards)
        pending = list(range(len(self.shards)))
        for _ in range(MAX_RECOVERIES + 1):
            futs, failed = [], []
            for i in pending:
                try:
                    futs.append((i, getattr(self.shards[i].actor, method)(*args)))
                except (OSError, RuntimeError):  # "Worker holding Actor was lost"
                    failed.append(i)
            for i, f in futs:
                try:
                    results[i] = self._wait(f, self.shards[i])
                except OSError:  # the actor's worker is gone ("Unable to contact ...")
                    failed.append(i)
            if not failed:
                break
            for i in failed:
                self._rebuild(i)
            pending = failed
        else:
            raise ClusterLostError(f"gave up after {MAX_RECOVERIES} worker losses in one step")
        self.wall += time.perf_counter() - t0
        if method in ("step", "full"):
            self.steps += 1
            self.compute += max(r[3] for r in results)
        return results

    def _wait(self, future, shard):
        """The result of an actor call; OSError when the actor's worker left the cluster
        (a closed connection says so at once; a worker retired in-process only by its
        absence from the scheduler's list, polled every POLL_SECONDS)."""
        while True:
            try:
                return future.result(timeout=POLL_SECONDS)
            except TimeoutError:
                if shard.actor._address not in _live_workers(self.client):
                    raise OSError(f"worker {shard.actor._address} left the cluster") from None

    def _rebuild(self, i):
        """A new engine for shard i on a live worker (its rows recomputed from the dask graph
        or sent again from the driver), with the epoch shuffles replayed."""
        from distributed import TimeoutError as DaskTimeout
        shard = self.shards[i]
        self.recoveries += 1
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            try:
                self.client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
            except (DaskTimeout, TimeoutError, OSError) as exc:
                last = exc
                break
            try:
                if shard.source is not None:
                    shard.futures = tuple(
                        None if a is None else self.client.scatter(a, hash=False)
                        for a in shard.source)
                f = self.client.submit(_ShardEngine, *shard.futures, self._spec(shard),
                                       list(self.rng_states), actor=True, pure=False)
                shard.actor = f.result(timeout=max(1.0, deadline - time.monotonic()))
                shard.engine = f
                return
            except (ValueError, TypeError):
                raise
            except Exception as exc:  # worker lost again while rebuilding, lost data, ...
                last = exc
                time.sleep(0.2)
        raise ClusterLostError(
            f"the cluster cannot continue: shard {i} (rows {shard.lo}..{shard.hi}) could not "
            f"be rebuilt on a live worker within {RECOVERY_TIMEOUT:.0f} s ({last!r}); the "
            "estimator keeps the parameters of the last completed step")


def _dask_init(local_cls):
    """An ``__init__`` with exactly ``local_cls``'s parameters plus ``client`` (keyword-only,
    last), so that the dask estimators follow the local ones as they gain parameters;
    scikit-learn's get_params reads the ``__signature__``."""
    sig = inspect.signature(local_cls.__init__)
    params = list(sig.parameters.values())
    params.append(inspect.Parameter("client", inspect.Parameter.KEYWORD_ONLY, default=None))

    def __init__(self, *args, client=None, **kwargs):
        local_cls.__init__(self, *args, **kwargs)
        self.client = client
    __init__.__signature__ = sig.replace(parameters=params)
    __init__.__qualname__ = f"{local_cls.__name__}.__init__"
    return __init__


# Parameters of the local estimators that the cluster fit does not implement yet, with the
# only value it accepts, and why.
_UNSUPPORTED = {
    "early_stopping": (False, "the validation split would have to be drawn across the "
                              "cluster; hold out a validation set yourself"),
    "class_weight": (None, "pass the class weights as sample_weight"),
    "leaky_relu_slope": (0.01, "the cluster engines use the default slope"),
    "dropout": (None, "the engines compute exact gradient sums, without dropout masks"),
}
# Parameters the cluster fit implements (scikit-learn's, and fastmlp's that only matter with a
# validation set).  Any other parameter the local estimators gain must keep its default.
_IMPLEMENTED = {
    "hidden_layer_sizes", "activation", "solver", "alpha", "batch_size", "learning_rate",
    "learning_rate_init", "power_t", "max_iter", "loss", "shuffle", "random_state", "tol",
    "verbose", "warm_start", "momentum", "nesterovs_momentum", "early_stopping",
    "validation_fraction", "beta_1", "beta_2", "epsilon", "n_iter_no_change", "max_fun",
    "scoring", "restore_best_weights", "client"}


class _DaskMLP:
    """The distributed fit, predict and score shared by the two estimators (a mixin over
    fastmlp's scikit-learn estimators: same parameters, bookkeeping and fitted attributes)."""

    # -- scikit-learn plumbing ----------------------------------------------------------------
    def __sklearn_clone__(self):
        # a Client cannot be deep-copied: the clone shares it
        client, self.client = self.client, None
        try:
            new = _clone_parametrized(self)
        finally:
            self.client = client
        new.client = client
        return new

    def __getstate__(self):
        state = super().__getstate__()
        state["client"] = None
        return state

    # -- data ---------------------------------------------------------------------------------
    def _shards(self, client, X, y, sample_weight, n_shards):
        """Validate the input, set the input-dependent fitted attributes and spread the rows
        into n_shards contiguous shards.  Returns (shards, n_rows, dtype, binarizer)."""
        if not _is_dask(X):
            if _is_dask(y) or _is_dask(sample_weight):
                raise ValueError("X is a NumPy array but y or sample_weight is a dask "
                                 "collection; pass all of them as dask or as NumPy")
            first = not hasattr(self, "coefs_") or not self.warm_start
            X, Y = self._validate_input(X, y, False, reset=first)
            if sample_weight is not None:
                from sklearn.utils.validation import _check_sample_weight
                sample_weight = _check_sample_weight(sample_weight, X)
            Y = Y.reshape(len(Y), -1)
            n = X.shape[0]
            sizes = _split_sizes(n, n_shards)
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            workers = _live_workers(client)
            shards = []
            for k in range(n_shards):
                lo, hi = int(bounds[k]), int(bounds[k + 1])
                src = (X[lo:hi], Y[lo:hi],
                       None if sample_weight is None else sample_weight[lo:hi])
                futs = tuple(None if a is None else
                             client.scatter(a, workers=[workers[k % len(workers)]], hash=False)
                             for a in src)
                shards.append(_Shard(lo, hi, futs, src))
            # validate_data/label binarizer ran on the driver: the engines get float Y
            return shards, n, X.dtype, None, Y.shape[1]
        import dask.array as da
        if hasattr(X, "columns"):
            names = np.asarray(X.columns, dtype=object)
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        Xa = _to_dask_array(X, "X")
        ya = _to_dask_array(y, "y")
        if Xa.ndim != 2:
            raise ValueError(f"X must be 2-D, got {Xa.ndim} dimensions")
        n = Xa.shape[0]
        if ya.shape[0] != n:
            raise ValueError(f"X has {n} rows but y has {ya.shape[0]}")
        if n < 1 or Xa.shape[1] < 1:
            raise ValueError(f"X has shape {Xa.shape}: at least one row and one feature "
                             "are needed")
        dtype = np.dtype(np.float32 if Xa.dtype == np.float32 else np.float64)
        if hasattr(self, "n_features_in_") and self.warm_start and hasattr(self, "coefs_"):
            if Xa.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {Xa.shape[1]} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input.")
        self.n_features_in_ = Xa.shape[1]
        binarizer = None
        if hasattr(self, "_label_binarizer_for"):
            if ya.ndim != 1:
                raise ValueError("fastmlp.dask classifiers take a 1-D y (multilabel targets "
                                 "are not supported on a cluster)")
            binarizer = self._label_binarizer_for(da.unique(ya).compute())
            n_out = len(binarizer.classes_) if len(binarizer.classes_) > 2 else 1
        else:
            if ya.ndim > 2:
                raise ValueError(f"y must be 1-D or 2-D, got {ya.ndim} dimensions")
            n_out = 1 if ya.ndim == 1 else ya.shape[1]
        sw = None
        if sample_weight is not None:
            sw = _to_dask_array(sample_weight, "sample_weight") if _is_dask(sample_weight) \
                else da.from_array(np.asarray(sample_weight, dtype=dtype))
            if sw.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},), got {sw.shape}")
        sizes = _split_sizes(n, n_shards)
        # plain task-based rechunking: one block per shard, moved between the workers once
        Xa = Xa.astype(dtype).rechunk((sizes, Xa.shape[1]), method="tasks")
        ya = ya.rechunk((sizes,) + ya.shape[1:], method="tasks")
        if sw is not None:
            sw = sw.astype(dtype).rechunk((sizes,), method="tasks")
        workers = _live_workers(client)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        parts = [Xa.to_delayed().ravel(), ya.to_delayed().ravel(),
                 None if sw is None else sw.to_delayed().ravel()]
        shards = []
        for k in range(n_shards):
            w = workers[k % len(workers)]
            futs = tuple(None if p is None else client.compute(p[k], workers=[w],
                                                                 allow_other_workers=True)
                         for p in parts)
            shards.append(_Shard(int(bounds[k]), int(bounds[k + 1]), futs, None))
        return shards, n, dtype, binarizer, n_out

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit the model on the cluster.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features), or array-like
            The rows stay on the workers (a NumPy X is scattered once).
        y : dask array or dask Series of shape (n_samples,) (or (n_samples, n_outputs) for a
            regressor), or array-like for a NumPy X
        sample_weight : dask array, array-like of shape (n_samples,) or None

        Returns
        -------
        self : object
        """
        self._validate_params()
        params = self.get_params(deep=False)
        for name, (allowed, why) in _UNSUPPORTED.items():
            if name in params and params[name] is not allowed and params[name] != allowed:
                raise ValueError(f"fastmlp.dask does not support {name}={params[name]!r} "
                                 f"(only {allowed!r}): {why}")
        defaults = {k: p.default for k, p in inspect.signature(type(self)).parameters.items()}
        for name in sorted(set(params) - _IMPLEMENTED - set(_UNSUPPORTED)):
            if params[name] is not defaults.get(name) and params[name] != defaults.get(name):
                raise ValueError(f"fastmlp.dask does not support {name}={params[name]!r} "
                                 f"yet (only its default, {defaults.get(name)!r})")
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        with _client_for(self.client) as client:
            n_shards = len(_live_workers(client))
            if n_shards < 1:
                raise ClusterLostError("the cluster has no workers")
            shards, n, dtype, binarizer, n_out = self._shards(client, X, y, sample_weight,
                                                              n_shards)
            first_pass = not hasattr(self, "coefs_") or not self.warm_start
            layer_units = [self.n_features_in_] + hidden + [n_out]
            self._random_state = check_random_state(self.random_state)
            if first_pass or [c.shape for c in self.coefs_] != list(
                    zip(layer_units[:-1], layer_units[1:])):
                self._initialize(np.empty((0, n_out)), layer_units, dtype)
            self.n_outputs_ = n_out
            param_dtype = self.coefs_[0].dtype
            stochastic = self.solver in _STOCHASTIC_SOLVERS
            batch_size = self._batch_size(n) if stochastic else None
            spec = dict(sizes=list(layer_units), activation=self.activation,
                        out_activation=self.out_activation_, loss=self._train_loss,
                        dtype=(np.result_type(dtype, param_dtype) if not stochastic
                               else param_dtype).name,
                        n_rows=n, batch_size=batch_size, shuffle=bool(self.shuffle),
                        binarizer=binarizer)
            fleet = _Fleet(client, shards, spec)
            workers = _live_workers(client)
            fleet.start([workers[k % len(workers)] for k in range(len(shards))])
            self._trainer = None
            try:
                if stochastic:
                    self._fit_stochastic_dask(fleet, n, layer_units, param_dtype)
                else:
                    self._optimizer = self._optimizer_state = None
                    self._fit_lbfgs_dask(fleet, layer_units, np.dtype(spec["dtype"]),
                                         param_dtype)
            finally:
                self.cluster_stats_ = dict(
                    n_workers=n_shards, steps=fleet.steps, wall_seconds=fleet.wall,
                    compute_seconds=fleet.compute,
                    communication_seconds=max(0.0, fleet.wall - fleet.compute),
                    worker_losses=fleet.recoveries)
                fleet.close()
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _live_params(self, layout, dtype):
        """The driver's flat parameters, with coefs_/intercepts_ as views of them (so the
        estimator always holds the last completed step)."""
        params = layout.pack(self.coefs_, self.intercepts_,
                             np.empty(layout.n_params, dtype))
        self.coefs_, self.intercepts_ = layout.views(params)
        return params

    def _fit_lbfgs_dask(self, fleet, layer_units, dtype, param_dtype):
        layout = Layout(layer_units)
        n_coef = layout.n_coef
        params = self._live_params(layout, dtype)
        total_grads = np.empty(layout.n_params, np.float64)

        def loss_grad(packed):
            np.copyto(params, packed)
            results = fleet.call("full", params)
            total = weight_sum = 0.0
            total_grads[:] = 0
            for loss_sum, w, g, _ in results:
                total += loss_sum
                weight_sum += w
                np.add(total_grads, g, out=total_grads)
            coefs = params[:n_coef].astype(np.float64)
            total_grads[:n_coef] += self.alpha * coefs  # the L2 term, once
            total += 0.5 * self.alpha * float(coefs @ coefs)
            after = getattr(self, "_after_step", None)
            if after is not None:
                after(fleet.steps)
            return total / weight_sum, (total_grads / weight_sum).astype(dtype)

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        opt_res = scipy.optimize.minimize(
            loss_grad, params.astype(param_dtype), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        if dtype == opt_res.x.dtype:
            np.copyto(params, opt_res.x)
        else:  # float32 evaluations, float64 result (as scikit-learn)
            self.coefs_, self.intercepts_ = layout.views(opt_res.x)

    def _fit_stochastic_dask(self, fleet, n_samples, layer_units, dtype):
        """scikit-learn's epochs of sgd/adam, each batch's gradient summed over the shards."""
        layout = Layout(layer_units)
        n_coef = layout.n_coef
        params = self._live_params(layout, dtype)
        grads = np.empty_like(params)
        opt = self._optimizer = self._make_optimizer()
        state = self._optimizer_state = opt.init(params)
        B = fleet.spec["batch_size"]
        n_batches = -(-n_samples // B)
        alpha = self.alpha
        after = getattr(self, "_after_step", None)
        rs = self._random_state
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            if self.shuffle:
                pre = rs.get_state()
                post = fleet.call("begin_epoch", pre)[0]
                fleet.rng_states.append(pre)
                rs.set_state(post)
            total = 0.0
            for b in range(n_batches):
                results = fleet.call("step", params, b)
                loss_sum = weight_sum = 0.0
                for k, (ls, w, g, _) in enumerate(results):
                    if k == 0:
                        np.copyto(grads, g)
                    else:
                        np.add(grads, g, out=grads)
                    loss_sum += ls
                    weight_sum += w
                batch_loss = loss_sum / weight_sum
                if alpha > 0:
                    batch_loss += 0.5 * alpha * K.sum_squares(params, n_coef) / weight_sum
                opt.update(state, params, grads, 1.0 / weight_sum, alpha / weight_sum, n_coef)
                total += batch_loss * (min((b + 1) * B, n_samples) - b * B)
                if after is not None:
                    after(fleet.steps)
            if self._end_epoch(total / n_samples, n_samples, None):
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                              "the optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)

    def to_local(self):
        """The fitted model as fastmlp's own estimator (:class:`fastmlp.MLPClassifier` or
        :class:`fastmlp.MLPRegressor`): the same parameters without ``client`` and the same
        fitted attributes, to save (``fastmlp.persistence.save``) or to use without a cluster.

        Returns
        -------
        estimator : fastmlp.MLPClassifier or fastmlp.MLPRegressor
        """
        check_is_fitted(self)
        local = _LocalClassifier if isinstance(self, _LocalClassifier) else _LocalRegressor
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "client"}
        est = local(**params)
        state = self.__getstate__()
        for k in ("client", "cluster_stats_", "_after_step", *params):
            state.pop(k, None)
        est.__dict__.update(state)
        return est

    def partial_fit(self, *args, **kwargs):
        raise NotImplementedError(
            "fastmlp.dask estimators do not support partial_fit; use fit (or fastmlp's "
            "estimators under dask-ml's Incremental for block-by-block training)")

    # -- prediction ---------------------------------------------------------------------------
    def _dask_forward(self, X, decode):
        """Lazy per-block ``decode(network output)`` of a dask array/DataFrame: a dask array."""
        Xa = _to_dask_array(X, "X")
        if Xa.ndim != 2 or Xa.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Xa.shape[-1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        Xa = Xa.rechunk({1: -1})
        model = self.__getstate__()
        sample = decode(self, np.zeros((1, self.n_outputs_)))
        kwargs = dict(dtype=sample.dtype, meta=np.empty((0,) * sample.ndim, sample.dtype))
        if sample.ndim == 1:
            return Xa.map_blocks(_predict_block, model, type(self), decode, drop_axis=1,
                                 **kwargs)
        return Xa.map_blocks(_predict_block, model, type(self), decode,
                             chunks=(Xa.chunks[0], (sample.shape[1],)), **kwargs)

    def predict(self, X):
        """Predictions for X: a dask array for dask input (computed on the workers, block by
        block), a NumPy array for NumPy input."""
        check_is_fitted(self)
        if _is_dask(X):
            return self._dask_forward(X, _decode_predict)
        return super().predict(X)

    def score(self, X, y, sample_weight=None):
        """Accuracy (classifier) or R^2 (regressor) of ``predict(X)`` against y; for dask input
        reduced on the workers (only the sums reach the driver)."""
        if not _is_dask(X):
            return super().score(X, y, sample_weight=sample_weight)
        import dask
        import dask.array as da
        pred = self.predict(X)
        ya = _to_dask_array(y, "y").rechunk((pred.chunks[0],) + ((-1,) if y.ndim > 1 else ()))
        w = None
        if sample_weight is not None:
            w = (_to_dask_array(sample_weight, "sample_weight") if _is_dask(sample_weight)
                 else da.from_array(np.asarray(sample_weight, np.float64)))
            w = w.rechunk((pred.chunks[0],))
        return float(dask.compute(self._dask_score(ya, pred, w))[0])


def _decode_predict(est, output):
    return est._decode(output)


def _decode_proba(est, output):
    if est.n_outputs_ == 1:
        output = output.ravel()
    if output.ndim == 1:
        return np.vstack([1 - output, output]).T
    return output


def _predict_block(block, state, cls, decode):
    """``decode(network output)`` for one block of rows, on a worker."""
    est = cls.__new__(cls)
    est.__dict__.update(state)
    return decode(est, est._forward(block, check_input=False))


class MLPClassifier(_DaskMLP, _LocalClassifier):
    """Multi-layer perceptron classifier trained data-parallel on a Dask cluster.

    The parameters, fitted attributes and numbers of :class:`fastmlp.MLPClassifier`
    (scikit-learn's ``MLPClassifier``), plus ``client``.  ``fit`` takes dask arrays, dask
    DataFrames (the rows stay on the workers) or NumPy arrays (scattered once);
    ``predict``/``predict_proba`` return dask arrays for dask input.  ``early_stopping`` and
    ``partial_fit`` are not supported.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, \
momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon, \
n_iter_no_change, max_fun
        As :class:`sklearn.neural_network.MLPClassifier`.
    client : distributed.Client or None, default=None
        The cluster to train on.  None: the session's default client if there is one, else
        the scheduler at ``DASK_SCHEDULER_ADDRESS``, else a LocalCluster of process workers
        (one per core, one thread each) started for the fit and closed after it.

    Attributes
    ----------
    cluster_stats_ : dict
        Of the last fit: ``n_workers``, ``steps`` (gradient evaluations), ``wall_seconds``,
        ``compute_seconds`` (the slowest worker's kernel time, summed over steps),
        ``communication_seconds`` (the rest) and ``worker_losses``.

    Examples
    --------
    >>> import numpy as np
    >>> from distributed import Client, LocalCluster
    >>> from fastmlp.dask import MLPClassifier
    >>> X = np.random.RandomState(0).normal(size=(200, 4)); y = X[:, 0] > 0
    >>> with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                   dashboard_address=None) as cluster, Client(cluster) as client:
    ...     clf = MLPClassifier((8,), solver="lbfgs", random_state=0, client=client)
    ...     clf = clf.fit(X, y)
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    _parameter_constraints: dict = {**_LocalClassifier._parameter_constraints,
                                    "client": "no_validation"}

    __init__ = _dask_init(_LocalClassifier)

    def _label_binarizer_for(self, classes):
        """Fit the label binarizer on the (computed) unique labels of a dask y."""
        classes = np.sort(np.asarray(classes))
        if not hasattr(self, "classes_") or not self.warm_start:
            lb = LabelBinarizer().fit(classes)
            self._label_binarizer, self.classes_ = lb, lb.classes_
        elif set(classes) != set(self.classes_):
            raise ValueError("warm_start can only be used where `y` has the same classes as "
                             f"in the previous call to fit. Previously got {self.classes_}, "
                             f"`y` has {classes}")
        return self._label_binarizer

    def predict_proba(self, X):
        """Probability estimates (n_samples, n_classes): a dask array for dask input."""
        check_is_fitted(self)
        if _is_dask(X):
            return self._dask_forward(X, _decode_proba)
        return super().predict_proba(X)

    @staticmethod
    def _dask_score(y, pred, w):
        hits = (y == pred).astype(np.float64)
        return hits.mean() if w is None else (hits * w).sum() / w.sum()


class MLPRegressor(_DaskMLP, _LocalRegressor):
    """Multi-layer perceptron regressor trained data-parallel on a Dask cluster.

    The parameters, fitted attributes and numbers of :class:`fastmlp.MLPRegressor`
    (scikit-learn's ``MLPRegressor``), plus ``client`` (see :class:`MLPClassifier` for the
    cluster, the inputs and what is not supported).

    Examples
    --------
    >>> import numpy as np
    >>> from distributed import Client, LocalCluster
    >>> from fastmlp.dask import MLPRegressor
    >>> X = np.random.RandomState(0).normal(size=(200, 3)); y = X @ [1.0, -2.0, 0.5]
    >>> with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                   dashboard_address=None) as cluster, Client(cluster) as client:
    ...     reg = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0,
    ...                        client=client)
    ...     reg = reg.fit(X, y)
    >>> bool(reg.score(X, y) > 0.9)
    True
    """

    _parameter_constraints: dict = {**_LocalRegressor._parameter_constraints,
                                    "client": "no_validation"}

    __init__ = _dask_init(_LocalRegressor)

    @staticmethod
    def _dask_score(y, pred, w):
        """R^2 averaged over outputs (scikit-learn's 'uniform_average'), weighted rows."""
        import dask.array as da
        if y.ndim == 1:
            y, pred = y[:, None], pred.reshape(-1, 1) if pred.ndim == 1 else pred
        y = y.astype(np.float64)
        ww = da.ones(y.shape[0], chunks=y.chunks[0]) if w is None else w
        mean = (y * ww[:, None]).sum(axis=0) / ww.sum()
        ss_res = (((y - pred) ** 2) * ww[:, None]).sum(axis=0)
        ss_tot = (((y - mean) ** 2) * ww[:, None]).sum(axis=0)
        r2 = da.where(ss_tot != 0, 1 - ss_res / da.where(ss_tot != 0, ss_tot, 1),
                      da.where(ss_res == 0, 1.0, 0.0))
        return r2.mean()
