"""Data-parallel training on a Dask cluster: ``fastmlp.dask.MLPClassifier`` and
``fastmlp.dask.MLPRegressor``.

The estimators take the parameters of :class:`fastmlp.MLPClassifier` /
:class:`fastmlp.MLPRegressor` plus ``client`` and fit on dask arrays, dask DataFrames or NumPy
arrays.  The rows are split into one *shard* per worker (never more shards than rows): with
unshuffled batches (``shuffle=False``, no validation split) every global batch is dealt out as
one contiguous part per shard, so that each batch is spread over every worker; otherwise each
shard is a contiguous block of rows (a shuffled batch draws its rows from all of them).  A dask
input moves once, between the workers; a NumPy input is scattered once.  Each shard lives in a
long-lived *engine* on its worker (a Dask actor) that holds the rows and a preallocated
workspace; after that, only parameters and gradients travel.

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
process; each engine computes the sums of the rows of the batch that it holds.  A fitted
estimator saves (``save``, ``fastmlp.persistence.save``) as the local estimator it equals:
``fastmlp.load`` returns :class:`fastmlp.MLPClassifier` / :class:`fastmlp.MLPRegressor`, without
the client.  Each engine runs its kernels with its worker's thread count (``--nthreads``), so
N workers of k threads on one host use N*k cores.  With one
worker the fit equals :class:`fastmlp.MLPClassifier` bit for bit; with more, to summation
order.  To reproduce a fit locally, fit the fastmlp (or scikit-learn) estimator with the same
parameters on the rows in the same order (``X.compute()``).

Early stopping.  The driver draws scikit-learn's train/validation split over the row numbers
(``train_test_split`` with the same ``random_state``); the rows stay where they are.  Each
engine gets its rows' positions in the training order (or -1 for a held-out row): the global
batches are drawn from those positions exactly as a single process draws them from its
training set, and after each epoch every engine scores its held-out rows and returns sums
(loss, weight, accuracy's hits or R^2's squares) -- only numbers reach the driver.

Dropout.  A mask depends on the step and on the row's position in its global batch; each
engine passes its rows' offset in the batch (``row0``) to the kernels.  Where a shard's rows
are not contiguous in the batches (shuffled or split batches on more than one worker), every
engine holds every row and computes the k-th of W contiguous parts of each batch instead.

Faults.  A worker that dies mid-fit is replaced: its shard is recomputed from the dask graph (or
re-sent from the driver's NumPy array) on a live worker, a new engine replays the epoch
shuffles, and the interrupted step is repeated with the same parameters -- the result does not
change.  When no worker is left, :class:`ClusterLostError` is raised and the estimator keeps
the parameters of the last completed step.

Layout: the worker side (the engine actor) is ``fastmlp._dask_engine``.  The fitting loops
(L-BFGS, and the epochs with scikit-learn's bookkeeping) are the local estimators' own
(``fastmlp.estimators``): this module supplies them a gradient source, ``_FleetSource``, and
keeps with it the fault handling that rebuilds a lost shard and the two estimator front-ends,
as they share one protocol (the shard layout, the step numbering, the replayed shuffles).
Dask itself is imported lazily: ``import fastmlp`` never loads it.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import time
import numpy as np
from sklearn.base import _clone_parametrized
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.validation import check_is_fitted

from ._dask_engine import _ShardEngine
from ._engine import mean_loss
from ._sources import full_batch_loss_grad
from ._workspace import Layout
from .estimators import _STOCHASTIC_SOLVERS, _SubTasks
from .estimators import MLPClassifier as _LocalClassifier
from .estimators import MLPRegressor as _LocalRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "ClusterLostError"]

INSTALL_HINT = "fastmlp.dask needs dask and distributed: pip install 'fastmlp[dask]'"
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
    # its HTTP server on a free port, without a dashboard (no warning that 8787 is taken)
    with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", scheduler_kwargs={"dashboard": False}
                                  ) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _live_workers(client):
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _split_sizes(n, k):
    q, r = divmod(n, k)
    return tuple([q + 1] * r + [q] * (k - r))


def _dealt_rows(lo, hi, n, B, k, W):
    """Of the global rows lo..hi-1 (of n, in global batches of B rows), the offsets from lo
    of those that shard k of W holds when every global batch is dealt out as W contiguous
    parts (part k of a batch of L rows: its rows L*k//W .. L*(k+1)//W - 1) -- so that each
    shard holds its part of every batch.  (m,) int64, increasing."""
    rows = np.arange(lo, hi, dtype=np.int64)
    first = rows // B * B
    length = np.minimum(B, n - first)
    j = rows - first
    return np.flatnonzero((j >= length * k // W) & (j < length * (k + 1) // W))


def _deal_block(block, lo, n, B, k, W):
    """Shard k's rows of one block of rows (global rows lo..) -- on the block's worker."""
    return block[_dealt_rows(lo, lo + block.shape[0], n, B, k, W)]


class _Shard:
    def __init__(self, lo, hi, futures, source, deal=None):
        self.lo, self.hi = lo, hi  # its rows lo..hi-1, or with deal=(k, W) every row's ...
        self.deal = deal           # ... part k of W of every global batch (see _dealt_rows)
        self.futures = futures  # (X, y, sw) futures (sw may be None)
        self.source = source    # the driver's NumPy (X, y, sw) slices, or None for dask input
        self.actor = None
        self.engine = None  # the actor's future: releasing it destroys the actor
        self.extra = {}     # per-shard additions to the engines' spec
        self.val_source = self.val_futures = None  # its part of the user's validation set
        self.address = None  # the worker holding the engine


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
        return dict(self.spec, lo=shard.lo, deal=shard.deal, **shard.extra)

    def start(self, workers):
        futs = []
        for shard, worker in zip(self.shards, workers):
            futs.append(self.client.submit(_ShardEngine, *shard.futures, self._spec(shard),
                                           list(self.rng_states), shard.val_futures,
                                           actor=True, pure=False, workers=[worker],
                                           allow_other_workers=True))
        for shard, f in zip(self.shards, futs):
            shard.actor, shard.engine = f.result(), f  # the future keeps the actor alive
            shard.address = self._holder(f)

    def _holder(self, future):
        """The worker holding an engine: the scheduler's ``who_has`` for the future that
        created the actor (public API; ``distributed.Actor`` exposes no public address)."""
        holders = self.client.who_has([future]).get(future.key) or ()
        return next(iter(holders), None)

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
                if shard.address not in _live_workers(self.client):
                    raise OSError(f"worker {shard.address} left the cluster") from None

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
                if shard.val_source is not None:
                    shard.val_futures = self.client.scatter(shard.val_source, hash=False)
                f = self.client.submit(_ShardEngine, *shard.futures, self._spec(shard),
                                       list(self.rng_states), shard.val_futures, actor=True,
                                       pure=False)
                shard.actor = f.result(timeout=max(1.0, deadline - time.monotonic()))
                shard.engine = f
                shard.address = self._holder(f)
                return
            except (ValueError, TypeError):
                raise
            except Exception as exc:  # worker lost again while rebuilding, lost data, ...
                last = exc
                time.sleep(0.2)
        rows = (f"rows {shard.lo}..{shard.hi}" if shard.deal is None else
                f"part {shard.deal[0]} of {shard.deal[1]} of every batch")
        raise ClusterLostError(
            f"the cluster cannot continue: shard {i} ({rows}) could not "
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


# Parameters of the local estimators that the cluster fit does not implement, with the only
# value it accepts, and why.
_UNSUPPORTED = {}
# Parameters the cluster fit implements.  Any other parameter the local estimators gain must
# keep its default.
_IMPLEMENTED = {
    "hidden_layer_sizes", "activation", "solver", "alpha", "batch_size", "learning_rate",
    "learning_rate_init", "power_t", "max_iter", "loss", "shuffle", "random_state", "tol",
    "verbose", "warm_start", "momentum", "nesterovs_momentum", "early_stopping",
    "validation_fraction", "beta_1", "beta_2", "epsilon", "n_iter_no_change", "max_fun",
    "scoring", "restore_best_weights", "class_weight", "leaky_relu_slope", "dropout",
    "client"}


class _ClusterValidation:
    """The validation rows on the engines -- early_stopping's held-out rows (each on the
    engine that holds it) or the user's validation set (a part per engine): each evaluation
    sends the parameters and receives a few sums per engine (the loss, the weight, accuracy's
    hits or R^2's squares), never rows or predictions."""

    def __init__(self, fleet, classify):
        self.fleet, self.classify = fleet, classify
        self.mean = None
        if not classify:
            moments = fleet.call("validation_moments")
            weight = sum(m[0] for m in moments)
            total = sum(m[1] for m in moments if m[1] is not None)
            self.mean = total / weight  # np.average(y, axis=0, weights=sw), as r2_score

    def evaluate(self, params):
        """(validation loss, score) at ``params``: the mean loss without the L2 term, and
        accuracy or R^2 (scikit-learn's uniform average over outputs, with its rules for
        constant targets)."""
        results = [r for r in self.fleet.call("validate", params, self.classify, self.mean)
                   if r[2] is not None]
        loss = sum(r[0] for r in results) / sum(r[1] for r in results)
        if self.classify:
            return loss, sum(r[2][0] for r in results) / sum(r[2][1] for r in results)
        ss_res = sum(r[2][0] for r in results)
        ss_tot = sum(r[2][1] for r in results)
        if not np.isfinite(ss_res).all():
            return loss, np.nan
        r2 = np.ones(len(ss_res))
        valid = (ss_tot != 0) & (ss_res != 0)
        r2[valid] = 1 - ss_res[valid] / ss_tot[valid]
        r2[(ss_res != 0) & (ss_tot == 0)] = 0.0
        return loss, float(np.mean(r2))


class _FleetSource:
    """The gradient source of a cluster fit (what the estimators' fitting loops drive; the
    protocol is ``fastmlp._sources.TrainerSource``'s): every gradient is the sum of the
    engines' raw sums, and the driver's ``params`` (coefs_/intercepts_ are views of them)
    take the step.  ``after(steps)``, when given, runs after every step (tests use it to
    lose a worker or request a stop at a given step)."""

    def __init__(self, fleet, layout, params, alpha, shuffle, after=None):
        self.fleet, self.layout, self.params = fleet, layout, params
        self.alpha, self.shuffle, self.after = alpha, shuffle, after
        self.stop_requested = False
        self.grads = np.empty_like(params)
        self._sums = np.empty(layout.n_params, np.float64)
        self.seed = None  # dropout's: the local trainer's mask seed
        self.step = 0     # and its step count

    def set_dropout(self, rates, seed):
        self.seed = seed  # the rates are in the engines' spec

    def session(self):
        return contextlib.nullcontext()  # the engines hold their own thread settings

    def loss_grad(self, packed):
        """A full-batch evaluation: one round trip to every engine."""
        params, sums = self.params, self._sums
        np.copyto(params, packed)
        total = weight_sum = 0.0
        sums[:] = 0
        for loss_sum, w, g, _ in self.fleet.call("full", params):
            total += loss_sum
            weight_sum += w
            np.add(sums, g, out=sums)
        if self.after is not None:
            self.after(self.fleet.steps)
        return full_batch_loss_grad(params, self.layout.n_coef, self.alpha, total, sums,
                                     weight_sum, params.dtype)

    def run_epoch(self, optimizer, state, rs):
        """One epoch of global batches, each batch's gradient summed over the shards; the
        engines apply the shuffle that ``rs`` draws (its state travels, not the order)."""
        fleet, params, grads, alpha = self.fleet, self.params, self.grads, self.alpha
        n_coef = self.layout.n_coef
        if self.shuffle:
            pre = rs.get_state()
            post = fleet.call("begin_epoch", pre)[0]
            fleet.rng_states.append(pre)
            rs.set_state(post)
        B, n = fleet.spec["batch_size"], fleet.spec["n_train"]
        n_batches = -(-n // B)
        total = 0.0
        for b in range(n_batches):
            key = 0 if self.seed is None else ((self.seed << 32) | (self.step & 0xFFFFFFFF))
            self.step += 1
            loss_sum = weight_sum = 0.0
            for k, (ls, w, g, _) in enumerate(fleet.call("step", params, b, key)):
                if k == 0:
                    np.copyto(grads, g)
                else:
                    np.add(grads, g, out=grads)
                loss_sum += ls
                weight_sum += w
            batch_loss = mean_loss(params, n_coef, loss_sum, weight_sum, alpha)
            optimizer.update(state, params, grads, 1.0 / weight_sum, alpha / weight_sum, n_coef)
            done = min((b + 1) * B, n)
            total += batch_loss * (done - b * B)
            if self.after is not None:
                self.after(fleet.steps)
            if self.stop_requested and b + 1 < n_batches:
                return total, done  # request_stop(): after this batch, as locally
        return total, n

    def evaluate(self, validation, score):
        """The engines score their own validation rows (``score`` is theirs)."""
        return validation.evaluate(self.params)


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

    def _get_state(self):
        """A model file's state: the local estimator's, without ``client`` (a connection, not
        part of the model).  ``save`` writes it as a file of the local kind, so
        ``fastmlp.load`` returns :class:`fastmlp.MLPClassifier` / :class:`fastmlp.MLPRegressor`
        (the model :meth:`to_local` returns) wherever the file is read, dask or not."""
        state = super()._get_state()
        state["model"]["params"].pop("client", None)
        return state

    # -- data ---------------------------------------------------------------------------------
    def _deal_batch(self, n):
        """The batch size of a fit on n rows (``_batch_size`` without its warning)."""
        return min(200, n) if self.batch_size == "auto" else int(np.clip(self.batch_size, 1, n))

    def _shards(self, client, X, y, sample_weight, n_shards, incremental, replicate=False,
                deal=False):
        """Validate the input, set the input-dependent fitted attributes and spread the rows
        into at most n_shards shards, no more than there are rows: contiguous blocks of rows,
        or with ``deal`` (unshuffled batches) each global batch dealt out as one contiguous
        part per shard (:func:`_dealt_rows`), so that every batch is spread over every
        worker; ``replicate``: n_shards engines that each hold every row.  Returns (shards,
        n_rows, dtype, binarizer, n_out, labels): ``labels()`` computes a classifier's
        (class counts, class index of every row for a binary problem, else None) --
        reductions the class weights and the stratified validation split need."""
        if not _is_dask(X):
            if _is_dask(y) or _is_dask(sample_weight):
                raise ValueError("X is a NumPy array but y or sample_weight is a dask "
                                 "collection; pass all of them as dask or as NumPy")
            first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
            X, Y = self._validate_input(X, y, incremental, reset=first)
            if sample_weight is not None:
                from sklearn.utils.validation import _check_sample_weight
                sample_weight = _check_sample_weight(sample_weight, X)
            Y = Y.reshape(len(Y), -1)
            n = X.shape[0]
            B = self._deal_batch(n) if deal else n
            if not replicate:  # no empty shard: one row (of the first batch) at least each
                n_shards = max(1, min(n_shards, n, B))
            if replicate:  # every engine gets the same rows (sent once to every worker)
                src = (X, Y, sample_weight)
                futs = tuple(None if a is None else
                             client.scatter(a, broadcast=True, hash=False) for a in src)
                shards = [_Shard(0, n, futs, src) for _ in range(n_shards)]
            else:
                bounds = np.concatenate([[0], np.cumsum(_split_sizes(n, n_shards))])
                workers = _live_workers(client)
                shards = []
                for k in range(n_shards):
                    lo, hi = int(bounds[k]), int(bounds[k + 1])
                    rows = slice(lo, hi)
                    if deal:
                        lo, hi, rows = 0, n, _dealt_rows(0, n, n, B, k, n_shards)
                    src = (X[rows], Y[rows],
                           None if sample_weight is None else sample_weight[rows])
                    futs = tuple(None if a is None else
                                 client.scatter(a, workers=[workers[k % len(workers)]],
                                                hash=False)
                                 for a in src)
                    shards.append(_Shard(lo, hi, futs, src,
                                         (k, n_shards) if deal else None))
            # validate_data/label binarizer ran on the driver: the engines get float Y

            def labels():
                index = Y[:, 0] > 0.5 if Y.shape[1] == 1 else Y.argmax(axis=1)
                counts = np.bincount(index.astype(np.intp), minlength=max(2, Y.shape[1]))
                return counts, (index.astype(np.int8) if Y.shape[1] == 1 else None)
            return shards, n, X.dtype, None, Y.shape[1], labels
        import dask
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
        counts = None
        if hasattr(self, "_label_binarizer_for"):
            if ya.ndim != 1:
                raise ValueError("fastmlp.dask classifiers take a 1-D y (multilabel targets "
                                 "are not supported on a cluster)")
            if incremental and hasattr(self, "_label_binarizer"):
                binarizer = self._label_binarizer  # set by partial_fit's classes
            else:
                classes, counts = da.unique(ya, return_counts=True)
                classes, counts = dask.compute(classes, counts)
                binarizer = self._label_binarizer_for(classes)
                counts = counts[np.argsort(classes, kind="stable")]
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
        B = self._deal_batch(n) if deal else n
        if not replicate:  # no empty shard: one row (of the first batch) at least each
            n_shards = max(1, min(n_shards, n, B))
        workers = _live_workers(client)
        shards = []
        if deal:
            # each block's rows dealt to the shards on the block's worker; a shard's parts
            # concatenated on its own worker: every row moves once
            Xa = Xa.astype(dtype).rechunk({1: -1})
            if sw is not None:
                sw = sw.astype(dtype)
            starts = np.concatenate([[0], np.cumsum(Xa.chunks[0])[:-1]])
            ya = ya.rechunk((Xa.chunks[0],) + ya.shape[1:])
            if sw is not None:
                sw = sw.rechunk((Xa.chunks[0],))
            blocks = [a.to_delayed().ravel() if a is not None else None for a in (Xa, ya, sw)]
            for k in range(n_shards):
                futs = tuple(
                    None if bl is None else client.compute(
                        dask.delayed(np.concatenate)(
                            [dask.delayed(_deal_block)(b, int(lo), n, B, k, n_shards)
                             for b, lo in zip(bl, starts)]),
                        workers=[workers[k % len(workers)]], allow_other_workers=True)
                    for bl in blocks)
                shards.append(_Shard(0, n, futs, None, (k, n_shards)))
        else:
            sizes = _split_sizes(n, 1 if replicate else n_shards)
            # plain task-based rechunking: one block per shard, moved between the workers once
            Xa = Xa.astype(dtype).rechunk((sizes, Xa.shape[1]), method="tasks")
            ya = ya.rechunk((sizes,) + ya.shape[1:], method="tasks")
            if sw is not None:
                sw = sw.astype(dtype).rechunk((sizes,), method="tasks")
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            parts = [Xa.to_delayed().ravel(), ya.to_delayed().ravel(),
                     None if sw is None else sw.to_delayed().ravel()]
            for k in range(n_shards):
                w = workers[k % len(workers)]
                if replicate and k:  # one block, computed once, copied to each engine's worker
                    shards.append(_Shard(0, n, shards[0].futures, None))
                    continue
                futs = tuple(None if p is None else client.compute(p[k], workers=[w],
                                                                     allow_other_workers=True)
                             for p in parts)
                shards.append(_Shard(int(bounds[k]), int(bounds[k + 1]), futs, None))

        def labels():
            index = None
            if binarizer is not None and n_out == 1:
                index = (ya == binarizer.classes_[-1]).astype(np.int8).compute()
            return counts, index
        return shards, n, dtype, binarizer, n_out, labels

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Fit the model on the cluster.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features), or array-like
            The rows stay on the workers (a NumPy X is scattered once).
        y : dask array or dask Series of shape (n_samples,) (or (n_samples, n_outputs) for a
            regressor), or array-like for a NumPy X
        sample_weight : dask array, array-like of shape (n_samples,) or None
        X_val, y_val, sample_weight_val : array-like, default=None
            A validation set of one's own, as in :meth:`fastmlp.MLPClassifier.fit`
            (in-memory arrays; spread over the workers, which score it and return sums).

        Returns
        -------
        self : object
        """
        return self._fit_cluster(X, y, sample_weight, incremental=False,
                                 validation=(X_val, y_val, sample_weight_val))

    def _check_cluster_params(self, incremental):
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
        if getattr(self, "_skl_callbacks", None):
            raise ValueError("fastmlp.dask does not run scikit-learn callbacks "
                             "(set_callbacks); cluster_stats_ and loss_curve_ report the fit")
        if self.scoring not in (None, "loss"):
            raise ValueError(f"fastmlp.dask supports scoring=None (accuracy / R^2) or 'loss', "
                             f"got {self.scoring!r}: the engines score their own held-out "
                             "rows and only sums reach the driver, which a scorer cannot use")
        stochastic = self.solver in _STOCHASTIC_SOLVERS
        if incremental and stochastic and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if (incremental and isinstance(getattr(self, "class_weight", None), str)):
            raise ValueError("class_weight='balanced' is not supported by partial_fit: one "
                             "batch's class frequencies are not the data set's. Pass a dict, "
                             "e.g. from sklearn.utils.class_weight.compute_class_weight.")
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        self._dropout_rates(len(hidden))  # dropout needs sgd/adam
        return hidden

    def _class_weight_vector(self, counts):
        """``class_weight`` as one weight per class of ``classes_`` (the engines multiply
        each row's weight by its class's), or None: what
        :func:`sklearn.utils.class_weight.compute_sample_weight` gives every row of a class."""
        class_weight = getattr(self, "class_weight", None)
        if class_weight is None:
            return None
        from sklearn.utils.class_weight import compute_sample_weight
        if isinstance(class_weight, str):  # 'balanced', from the class counts
            counts = np.asarray(counts, np.float64)
            present = counts > 0
            weights = np.zeros(len(counts))
            weights[present] = counts.sum() / (present.sum() * counts[present])
            return weights
        return compute_sample_weight(class_weight, self.classes_)

    def _cluster_validation_split(self, labels, n):
        """early_stopping's held-out rows, drawn as scikit-learn draws them (its
        ``train_test_split`` with the same ``random_state``, stratified for a binary
        classifier): ``pos`` (n,), each row's position in the training order or -1 when held
        out, and the number of training rows.  Only row numbers (and a binary classifier's
        labels) are on the driver, never features."""
        from sklearn.model_selection import train_test_split
        stratify = labels()[1] if hasattr(self, "_label_binarizer_for") else None
        train, test = train_test_split(np.arange(n), random_state=self._random_state,
                                       test_size=self.validation_fraction, stratify=stratify)
        if len(test) < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        pos = np.full(n, -1, np.int64)
        pos[train] = np.arange(len(train))
        return pos, len(train)

    def _user_validation(self, client, validation, shards):
        """The user's validation set (X_val, y_val, sample_weight_val), validated on the
        driver as locally, split into one contiguous part per engine; False when none."""
        if any(_is_dask(a) for a in validation):
            raise ValueError("fastmlp.dask takes X_val, y_val and sample_weight_val as "
                             "in-memory arrays (NumPy, pandas), not dask collections")
        v = self._check_validation_set(*validation)
        if v is None:
            return False
        Xv = v.X.toarray() if hasattr(v.X, "toarray") else np.asarray(v.X)
        Yv = np.asarray(v.Y).reshape(len(Xv), -1)
        bounds = np.concatenate([[0], np.cumsum(_split_sizes(len(Xv), len(shards)))])
        for shard, lo, hi in zip(shards, bounds[:-1], bounds[1:]):
            shard.val_source = (Xv[lo:hi], Yv[lo:hi], None if v.sw is None else v.sw[lo:hi])
            shard.val_futures = client.scatter(shard.val_source, hash=False)
        return True

    def _fit_cluster(self, X, y, sample_weight, incremental, validation=(None, None, None)):
        hidden = self._check_cluster_params(incremental)
        with _client_for(self.client) as client:
            n_shards = len(_live_workers(client))
            if n_shards < 1:
                raise ClusterLostError("the cluster has no workers")
            # dropout's masks follow each row's position in its global batch: with shuffled
            # (or split) batches a shard's rows are scattered over the batch, so every
            # engine holds every row and computes one contiguous part of each batch
            split = (bool(self.early_stopping) and validation[0] is None
                     and validation[1] is None)
            replicate = (self._dropout_rates(len(hidden)) is not None and n_shards > 1
                         and (self.shuffle or split))
            # unshuffled batches over contiguous shards would each lie on one worker while
            # the others wait: deal every batch out over the shards instead
            stochastic = self.solver in _STOCHASTIC_SOLVERS
            deal = (stochastic and not self.shuffle and not split and not replicate
                    and n_shards > 1)
            shards, n, dtype, binarizer, n_out, labels = self._shards(
                client, X, y, sample_weight, n_shards, incremental, replicate, deal)
            n_shards = len(shards)
            if replicate:
                for k, shard in enumerate(shards):
                    shard.extra = dict(part=(k, n_shards))
            first_pass = not hasattr(self, "coefs_") or (not self.warm_start
                                                         and not incremental)
            layer_units = [self.n_features_in_] + hidden + [n_out]
            self._random_state = check_random_state(self.random_state)
            if first_pass or [c.shape for c in self.coefs_] != list(
                    zip(layer_units[:-1], layer_units[1:])):
                self._initialize(np.empty((0, n_out)), layer_units, dtype)
            self.n_outputs_ = n_out
            param_dtype = self.coefs_[0].dtype
            class_weight = None
            if getattr(self, "class_weight", None) is not None:
                class_weight = self._class_weight_vector(
                    labels()[0] if isinstance(self.class_weight, str) else None)
            user_val = self._user_validation(client, validation, shards)
            n_train = n
            if stochastic and self.early_stopping and not user_val:
                pos, n_train = self._cluster_validation_split(labels, n)
                for shard in shards:
                    shard.extra = dict(shard.extra, train_pos=pos[shard.lo:shard.hi])
            batch_size = self._batch_size(n_train) if stochastic else None
            dropout = self._dropout_rates(len(hidden))
            spec = dict(sizes=list(layer_units), activation=self.activation,
                        out_activation=self.out_activation_, loss=self._train_loss,
                        dtype=(np.result_type(dtype, param_dtype) if not stochastic
                               else param_dtype).name,
                        n_rows=n, n_train=n_train, batch_size=batch_size,
                        shuffle=bool(self.shuffle), binarizer=binarizer,
                        classes=(self.classes_ if incremental and binarizer is not None
                                 else None),
                        class_weight=class_weight, dropout=dropout,
                        leaky_relu_slope=float(self.leaky_relu_slope))
            fleet = _Fleet(client, shards, spec)
            workers = _live_workers(client)
            fleet.start([workers[k % len(workers)] for k in range(len(shards))])
            layout = Layout(layer_units)
            tasks = _SubTasks.none()  # callbacks were refused above
            try:
                validation = None
                if user_val or (stochastic and self.early_stopping):
                    # early_stopping's held-out rows, or the user's set: scored on the engines
                    validation = _ClusterValidation(fleet,
                                                    hasattr(self, "_label_binarizer_for"))
                if stochastic:
                    self._run_epochs(lambda: self._fleet_source(fleet, layout, param_dtype),
                                     n_train, validation, incremental, tasks, dropout)
                else:
                    self._optimizer = self._optimizer_state = None
                    self._run_lbfgs(self._fleet_source(fleet, layout, np.dtype(spec["dtype"])),
                                    validation, tasks, param_dtype)
            finally:
                self.cluster_stats_ = dict(
                    n_workers=n_shards, steps=fleet.steps, wall_seconds=fleet.wall,
                    compute_seconds=fleet.compute,
                    communication_seconds=max(0.0, fleet.wall - fleet.compute),
                    worker_losses=fleet.recoveries)
                fleet.close()
                self._stop_requested = False
        self._check_finite_weights()
        return self

    def _fleet_source(self, fleet, layout, dtype):
        """The fit's gradient source on ``fleet``: the driver's flat parameters, of
        ``dtype``, with coefs_/intercepts_ as views of them (so the estimator always holds
        the last completed step)."""
        params = layout.pack(self.coefs_, self.intercepts_, np.empty(layout.n_params, dtype))
        self.coefs_, self.intercepts_ = layout.views(params)
        return _FleetSource(fleet, layout, params, self.alpha, bool(self.shuffle),
                            getattr(self, "_after_step", None))

    def to_local(self):
        """The fitted model as fastmlp's own estimator (:class:`fastmlp.MLPClassifier` or
        :class:`fastmlp.MLPRegressor`): the same parameters without ``client`` and the same
        fitted attributes, to save (``fastmlp.persistence.save``) or to use without a cluster.

        Returns
        -------
        estimator : fastmlp.MLPClassifier or fastmlp.MLPRegressor
        """
        check_is_fitted(self)
        import copy
        local = _LocalClassifier if isinstance(self, _LocalClassifier) else _LocalRegressor
        # the state a model file or a pickle holds (without client), checked the same way
        return local._from_state(copy.deepcopy(self._get_state_with_objects()))

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
    ``predict``/``predict_proba`` return dask arrays for dask input.  ``early_stopping``
    holds out scikit-learn's rows and scores them on the workers (``scoring`` None or
    'loss'); ``class_weight`` weights rows on the workers; ``dropout`` draws the masks of
    a single process (with shuffled batches on more than one worker, every worker then
    holds all the training rows and computes a contiguous part of each global batch).

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

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """One pass (one epoch of sgd/adam) over the given rows on the cluster, as
        :meth:`fastmlp.MLPClassifier.partial_fit`: ``classes`` (all the labels across calls)
        is required on the first call; the optimizer's state is kept between calls.

        Parameters
        ----------
        X, y, sample_weight
            As in :meth:`fit` (dask or NumPy).
        classes : array-like of shape (n_classes,), default=None
        X_val, y_val, sample_weight_val : array-like, default=None
            As in :meth:`fit`: the epoch's validation score and loss are recorded.

        Returns
        -------
        self : object
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer().fit(classes)
        return self._fit_cluster(X, y, sample_weight, incremental=True,
                                 validation=(X_val, y_val, sample_weight_val))

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

    # scikit-learn's MLPRegressor.partial_fit exists for lbfgs too (a warm-started lbfgs
    # fit); fastmlp.MLPRegressor keeps that, and so does this one
    @available_if(lambda est: est._check_solver)
    def partial_fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """One pass (one epoch of sgd/adam) over the given rows on the cluster, as
        :meth:`fastmlp.MLPRegressor.partial_fit`.

        Parameters
        ----------
        X, y, sample_weight
            As in :meth:`fit` (dask or NumPy).
        X_val, y_val, sample_weight_val : array-like, default=None
            As in :meth:`fit`: the epoch's validation score and loss are recorded.

        Returns
        -------
        self : object
        """
        return self._fit_cluster(X, y, sample_weight, incremental=True,
                                 validation=(X_val, y_val, sample_weight_val))

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
