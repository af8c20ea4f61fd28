"""The data of a ``fastmlp.dask`` fit: the shards (rows dealt out to the engines, from dask
collections or NumPy arrays), the dask-array conversions, and prediction block by block on the
workers (see :mod:`fastmlp.dask` for the shard layout)."""
from __future__ import annotations

import numpy as np

from .transport import _workers


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
        # rows the driver validated (NumPy input): the engine does not scan them again
        self.checked = source is not None
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

class _ShardedData:
    """The input side of the cluster estimators (a mixin of ``_DaskMLP``): validating the
    rows and spreading them into shards."""

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
                workers = _workers(client)
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
        workers = _workers(client)
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
    est.__setstate__(state)  # the pickled state, checked as a model file is
    return decode(est, est._forward(block, check_input=False))
