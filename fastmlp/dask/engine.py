"""The worker side of ``fastmlp.dask``: the engine (a Dask actor) that holds one shard's rows
and a preallocated workspace, and answers the driver's calls with raw sums.

See :mod:`fastmlp.dask` for the protocol (the shard layout, the step numbering, the replayed
shuffles).  Nothing here imports dask: the engine is a plain class that Dask runs as an actor.
"""
import os
import time

import numpy as np

from .. import kernels as K
from .._engine import Engine
from .._threads import thread_limits
from .._workspace import Layout

# Rows per kernel call when an engine sums its whole shard (L-BFGS): bounds its workspace.
FULL_BATCH_CHUNK = 8192


class _RawSums:
    """The one adapter between an engine and fastmlp's compute core
    (:class:`fastmlp.backend.Engine`): the raw sums of a batch.

    ``__call__(params, X, Y, sw, out)`` writes the raw gradient sums of the rows of X into
    ``out`` (P,) and returns ``(loss_sum, weight_sum)`` -- no L2 term.  X (N, n_in), Y
    (N, n_out), sw (N,) or None: C-contiguous arrays of the engine's dtype.  Rows beyond
    ``max_rows`` are processed in chunks whose sums are added.  Nothing is allocated per call.
    """

    def __init__(self, sizes, activation, out_activation, loss, dtype, max_rows, n_threads,
                 slope=0.01):
        # the shard's rows were validated once, when the shard was built (_ShardEngine):
        # the engine's steps do not scan them again
        self._engine = Engine._for_checked_rows(
            sizes, activation=activation, out_activation=out_activation, loss=loss,
            dtype=dtype, max_rows=max_rows, n_threads=n_threads, leaky_relu_slope=slope)

    def __call__(self, params, X, Y, sw, out, dropout=None, key=0, row0=0):
        if X.shape[0] == 0:  # a global batch with none of this shard's rows
            out[:] = 0
            return 0.0, 0.0
        return self._engine.raw_sums(params, X, Y, sw, out=out, dropout=dropout,
                                     dropout_key=key, row0=row0)

    def forward(self, params, X):
        return self._engine.forward(params, X)

    @property
    def n_threads(self):
        return self._engine.n_threads

    @property
    def loss_code(self):
        """The kernels' code of the training loss (binary log loss for a logistic output)."""
        return self._engine.codes[2]


def _worker_threads():
    """The thread count of the Dask worker running this (its ``--nthreads``: the engine's
    whole budget, so that N workers of k threads on one host use N*k cores), or None off a
    worker (an engine built directly, in tests)."""
    try:
        from distributed import get_worker
        return int(get_worker().state.nthreads)
    except (ImportError, ValueError):  # ValueError: "No worker found"
        return None


class _ShardEngine:
    """One shard's rows and workspace, living on a worker as a Dask actor.

    Rows ``lo .. lo + n`` of the global data: X (n, n_in), Y (n, n_out), sw (n,) or None, in
    the training dtype.  ``spec`` describes the network and the batching; ``rng_states`` are
    the epoch shuffles applied so far (a replacement engine replays them).

    With ``spec["deal"] = (k, W)`` (unshuffled batches, no validation split) the shard's rows
    are part k of W of every global batch instead (a batch of L rows dealt out as W contiguous
    parts, part k its rows L*k//W .. L*(k+1)//W - 1), in batch order: every batch is spread
    over every engine.

    With ``spec["part"] = (k, W)`` the engine holds every row (the driver replicates them
    for dropout on shuffled batches) and computes the k-th of W contiguous parts of each
    global batch, so that its rows' dropout masks are those of their batch positions.

    The training rows.  Global batches are drawn from ``n_train`` *positions*; without a
    validation split position p is global row p, with one (``spec["train_pos"]``: this
    shard's rows' positions in the training order, -1 for a held-out row) the split's order.
    Each epoch's order permutes the positions (``RandomState.shuffle``), as a single process
    permutes the rows of its training set.  Held-out rows are scored by :meth:`validate`.
    ``val``: this engine's part of the user's validation set (X, encoded Y, weights), also
    scored by :meth:`validate`.
    ``spec["checked"]``: the driver validated the rows (NumPy input), so they are not scanned
    for finiteness again; rows of a dask collection are, here.  The engine's steps never
    rescan them (:meth:`fastmlp._engine.Engine._for_checked_rows`).
    ``spec["class_weight"]`` (per class, in ``classes_`` order) multiplies each row's weight
    by its class's, here on the worker.
    """

    def __init__(self, X, y, sw, spec, rng_states=(), val=None):
        dtype = np.dtype(spec["dtype"])
        X = np.ascontiguousarray(X, dtype)
        if X.ndim != 2 or X.shape[1] != spec["sizes"][0]:
            raise ValueError(f"a partition of X has shape {X.shape}; expected "
                             f"(rows, {spec['sizes'][0]})")
        # spec["checked"]: the driver validated these rows (NumPy input) -- not scanned again;
        # rows of a dask collection are validated here, once, where they are
        checked = bool(spec.get("checked"))
        if not checked and not np.isfinite(X).all():
            raise ValueError("Input X contains NaN or infinity.")
        y = np.asarray(y)
        if y.ndim == 1 and spec["binarizer"] is None:  # one output per row (any row count)
            y = y[:, None]
        if spec["binarizer"] is not None:
            labels = y
            if spec.get("classes") is not None:
                unknown = np.setdiff1d(labels, spec["classes"])
                if len(unknown):
                    raise ValueError(f"`y` has classes not in `self.classes_`. "
                                     f"`self.classes_` has {spec['classes']}. 'y' has "
                                     f"{unknown}.")
            y = spec["binarizer"].transform(y)
        elif not checked and not np.isfinite(y.astype(np.float64, copy=False)).all():
            raise ValueError("Input y contains NaN or infinity.")
        Y = np.ascontiguousarray(y if y.ndim == 2 else y.reshape(y.shape[0], -1), dtype)
        if Y.shape != (X.shape[0], spec["sizes"][-1]):
            raise ValueError(f"a partition of y has {Y.shape[0]} rows and {Y.shape[1]} "
                             f"outputs; expected {X.shape[0]} and {spec['sizes'][-1]}")
        if sw is not None:
            sw = np.ascontiguousarray(sw, dtype).ravel()
            if sw.shape[0] != X.shape[0] or (not checked and not np.isfinite(sw).all()):
                raise ValueError("sample_weight must be finite, one weight per row")
        cw = spec.get("class_weight")
        if cw is not None:  # sklearn.utils.class_weight.compute_sample_weight's product
            index = Y[:, 0] > 0.5 if Y.shape[1] == 1 else Y.argmax(axis=1)
            expanded = np.asarray(cw, np.float64)[index.astype(np.intp)]
            sw = np.ascontiguousarray(expanded if sw is None else sw * expanded, dtype)
        self.lo, self.n = int(spec["lo"]), X.shape[0]
        self.deal = spec.get("deal")
        self.n_train = int(spec.get("n_train", spec["n_rows"]))
        pos = spec.get("train_pos")
        self.val = None
        # replicated (dropout on shuffled batches): every engine holds every row and takes
        # part k of W of each global batch -- and of the held-out rows
        self.part = spec.get("part")
        if pos is not None:
            pos = np.asarray(pos, np.int64)
            held = np.flatnonzero(pos < 0)
            if self.part is not None:
                k, W = self.part
                held = held[len(held) * k // W:len(held) * (k + 1) // W]
            if len(held):
                self.val = (np.ascontiguousarray(X[held]), np.ascontiguousarray(Y[held]),
                            None if sw is None else np.ascontiguousarray(sw[held]))
        if val is not None:  # its part of the user's validation set (validated, Y encoded)
            Xv, Yv, swv = val
            self.val = (np.ascontiguousarray(Xv, dtype),
                        np.ascontiguousarray(np.asarray(Yv).reshape(len(Xv), -1), dtype),
                        None if swv is None else np.ascontiguousarray(swv, dtype))
            if len(Xv) == 0:
                self.val = None
        self.X, self.Y, self.sw = X, Y, sw
        B = spec["batch_size"]
        cap = max(1, min(self.n, B if B else FULL_BATCH_CHUNK))
        self.dropout = spec.get("dropout")
        # with dropout the kernels run on the batch rows' own positions (row0..): a global
        # batch's worth of buffer rows
        self.sums = _RawSums(spec["sizes"], spec["activation"], spec["out_activation"],
                             spec["loss"], dtype, B if self.dropout is not None else cap,
                             _worker_threads(), spec.get("leaky_relu_slope", 0.01))
        P = Layout(spec["sizes"]).n_params
        self.params = np.zeros(P, dtype)
        self.grads = np.zeros(P, dtype)
        self.batch_size = B
        self.seconds = 0.0
        self.order = self.local = None
        if B:
            self.xb = np.zeros((cap, X.shape[1]), dtype)
            self.yb = np.zeros((cap, Y.shape[1]), dtype)
            self.swb = None if sw is None else np.zeros(cap, dtype)
            n_batches = -(-self.n_train // B)
            self.bounds = np.minimum(np.arange(n_batches + 1, dtype=np.int64) * B,
                                     self.n_train)
            if self.deal is not None:
                if pos is not None or spec["shuffle"] or self.part is not None:
                    raise ValueError("dealt rows are for unshuffled batches without a split")
                # part k of W of batch b: rows row0[b] .. of the batch, stored in batch order
                k, W = self.deal
                length = np.diff(self.bounds)
                self.row0 = length * k // W
                self.offsets = np.concatenate(
                    [[0], np.cumsum(length * (k + 1) // W - self.row0)]).astype(np.int64)
                if self.offsets[-1] != self.n:
                    raise ValueError(f"a dealt shard has {self.n} rows; its parts of the "
                                     f"batches have {self.offsets[-1]}")
            elif pos is None and not spec["shuffle"] and self.part is None:
                # the batches' rows of this shard are a contiguous range of its rows
                self.offsets = np.clip(self.bounds - self.lo, 0, self.n)
            else:
                # row_at[p]: this shard's row at training position p, or -1
                self.row_at = np.full(self.n_train, -1, np.int64)
                if pos is None:
                    self.row_at[self.lo:self.lo + self.n] = np.arange(self.n)
                else:
                    mine = np.flatnonzero(pos >= 0)
                    self.row_at[pos[mine]] = mine
                self.order = np.arange(self.n_train, dtype=np.int64)
                rs = np.random.RandomState()
                for state in rng_states:
                    rs.set_state(state)
                    rs.shuffle(self.order)
                self._locate()

    def _locate(self):
        """This shard's rows in the epoch's order: ``local`` (its row indices, in that order)
        and ``offsets`` (where each global batch starts in ``local``)."""
        rows = self.row_at[self.order]
        positions = np.flatnonzero(rows >= 0)
        self.local = rows[positions]
        self.offsets = np.searchsorted(positions, self.bounds)
        self.positions = positions

    def begin_epoch(self, rng_state):
        """Shuffle the training order as ``RandomState.shuffle`` from ``rng_state`` does;
        returns the generator's state afterwards."""
        rs = np.random.RandomState()
        rs.set_state(rng_state)
        rs.shuffle(self.order)
        self._locate()
        return rs.get_state()

    def step(self, params, b, key=0):
        """Raw sums of this shard's rows of global batch b: (loss sum, weight sum, gradient
        sums (P,), compute seconds).  ``key``: the step's dropout mask key (with dropout)."""
        t0 = time.perf_counter()
        row0 = 0
        if self.part is not None:  # part k of W of the batch's positions
            k, W = self.part
            first, end = int(self.bounds[b]), int(self.bounds[b + 1])
            start = first + (end - first) * k // W
            stop = first + (end - first) * (k + 1) // W
            row0 = start - first
        else:
            start, stop = int(self.offsets[b]), int(self.offsets[b + 1])
        if self.deal is not None:
            row0 = int(self.row0[b])  # its part's offset in the batch
        elif self.dropout is not None and stop > start and self.part is None:
            # the batch position of this shard's first row of the batch; its rows must be
            # contiguous there (the driver allows dropout only where they are)
            first = self.lo + start if self.local is None else int(self.positions[start])
            last = (self.lo + stop - 1 if self.local is None
                    else int(self.positions[stop - 1]))
            if last - first != stop - start - 1:
                raise RuntimeError("dropout needs each shard's rows of a batch to be "
                                   "contiguous in the batch")
            row0 = first - b * self.batch_size
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
        loss_sum, weight_sum = self.sums(params, X, Y, sw, self.grads, self.dropout, key, row0)
        return loss_sum, weight_sum, self.grads, time.perf_counter() - t0

    def full(self, params):
        """Raw sums of the whole shard (a full-batch L-BFGS evaluation)."""
        t0 = time.perf_counter()
        loss_sum, weight_sum = self.sums(params, self.X, self.Y, self.sw, self.grads)
        return loss_sum, weight_sum, self.grads, time.perf_counter() - t0

    def validation_moments(self):
        """Of the held-out rows: (weight sum, weighted sum of Y per output), for R^2's
        mean."""
        if self.val is None:
            return 0.0, None
        _, Y, sw = self.val
        Y64 = Y.astype(np.float64)
        if sw is None:
            return float(Y.shape[0]), Y64.sum(axis=0)
        w = sw.astype(np.float64)
        return float(w.sum()), w @ Y64

    def validate(self, params, classify, mean):
        """Sums over the held-out rows at ``params``: (loss sum, weight sum, score sums):
        for a classifier (weighted hits, weight sum); for a regressor per output (weighted
        squared residuals, weighted squares about ``mean``) -- everything R^2 and accuracy
        need, so that only these numbers reach the driver."""
        if self.val is None:
            return 0.0, 0.0, None
        X, Y, sw = self.val
        out = self.sums.forward(params, X)
        D = np.empty_like(out)
        swk = np.zeros(0, out.dtype) if sw is None else sw
        loss_sum = float(K.output_delta_loss(D, out, Y, swk, self.sums.loss_code))
        w = np.ones(X.shape[0]) if sw is None else sw.astype(np.float64)
        weight_sum = float(X.shape[0]) if sw is None else float(w.sum())
        if classify:
            if Y.shape[1] == 1:  # LabelBinarizer's threshold for a binary problem
                hits = (out[:, 0] > 0.5) == (Y[:, 0] > 0.5)
            else:
                hits = out.argmax(axis=1) == Y.argmax(axis=1)
            return loss_sum, weight_sum, (float(w @ hits), weight_sum)
        Y64, out64 = Y.astype(np.float64), out.astype(np.float64)
        ss_res = w @ (Y64 - out64) ** 2
        ss_tot = w @ (Y64 - mean) ** 2
        return loss_sum, weight_sum, (ss_res, ss_tot)

    def threads(self):
        """(Numba's thread count, [each BLAS library's thread count]) inside this engine's
        thread limits -- what its kernels run with."""
        import numba
        from threadpoolctl import threadpool_info
        with thread_limits(self.sums.n_threads):
            return numba.get_num_threads(), [i["num_threads"] for i in threadpool_info()
                                             if i["user_api"] == "blas"]

    def ping(self):
        return os.getpid()
