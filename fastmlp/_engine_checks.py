"""The argument checks of :class:`fastmlp._engine.Engine` (a mixin): dtype, shape, C order,
finiteness and memory overlaps, each failing with one ``ValueError`` that names the argument.
Cheap: no copies, no allocation on the success path."""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

_add_reduce = np.add.reduce
_may_share = np.may_share_memory  # bounds-based: exact for the C-contiguous arrays taken here


def _memory(a):
    """The arrays holding a dense or CSR argument's values (None: nothing)."""
    if a is None:
        return ()
    if type(a) is np.ndarray:
        return (a,)
    if sp.issparse(a):
        return a.data, a.indices, a.indptr
    return (a,)


class _EngineChecks:
    """The checks an :class:`~fastmlp._engine.Engine` runs on its arguments (it supplies
    ``dtype``, ``n_params``, ``layer_sizes``, ``loss`` and its buffers).

    ``_rows_checked``: the rows (X, Y, sample_weight) come from a caller that validated them
    once already -- a cluster shard's engine (``fastmlp.dask.engine``), whose rows were checked
    when the shard was built and whose dropout rates the driver's front-end checked -- so each
    call skips the rows' finiteness scans and the rates' check.  False for every
    Engine built by a user (:meth:`Engine._for_checked_rows` sets it)."""

    _rows_checked = False

    def _check_vector(self, a, name):
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{name} must be a NumPy array of shape ({self.n_params},), got "
                             f"{type(a).__name__}")
        if a.dtype != self.dtype:
            raise ValueError(f"{name} has dtype {a.dtype}, but the engine computes in "
                             f"{self.dtype}")
        if a.shape != (self.n_params,):
            raise ValueError(f"{name} must have shape ({self.n_params},), got {a.shape}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be contiguous; convert with np.ascontiguousarray")

    def _check_finite(self, a, name):
        # one pass and no temporary: the sum of finite values is finite unless it overflows
        # (then, and only then, the full elementwise check); the ufunc's own reduce skips
        # np.sum's Python layers
        with np.errstate(over="ignore", invalid="ignore"):
            total = _add_reduce(a, axis=None)
        if not np.isfinite(total) and not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinity")

    def _check_params(self, params):
        self._check_vector(params, "params")
        self._check_finite(params, "params")

    def _check_array(self, a, name, shape, finite=True):
        if sp.issparse(a) and name == "X":
            if a.format != "csr" or not a.has_canonical_format:
                raise ValueError("a sparse X must be CSR with sorted indices and no duplicate "
                                 "entries (X = X.tocsr(); X.sum_duplicates())")
            if a.dtype != self.dtype:
                raise ValueError(f"X has dtype {a.dtype}, but the engine computes in "
                                 f"{self.dtype}; convert with X.astype(np.{self.dtype})")
            if a.shape[1] != shape[1]:
                raise ValueError(f"X has {a.shape[1]} features, but the network expects "
                                 f"{shape[1]}")
            if finite and not self._rows_checked:
                self._check_finite(a.data, name)
            return a
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{name} must be a NumPy array (or, for X, a CSR matrix), got "
                             f"{type(a).__name__}; convert with "
                             f"np.ascontiguousarray({name}, dtype=np.{self.dtype})")
        if a.dtype != self.dtype:
            raise ValueError(f"{name} has dtype {a.dtype}, but the engine computes in "
                             f"{self.dtype}; convert with "
                             f"np.ascontiguousarray({name}, dtype=np.{self.dtype})")
        if a.ndim == 1 and len(shape) == 2 and shape[1] == 1 and name != "X":
            a = a.reshape(-1, 1)  # a view: a single-output target
        if a.ndim != len(shape):
            raise ValueError(f"{name} must be {len(shape)}-D, got shape {a.shape}")
        for axis, (got, want) in enumerate(zip(a.shape, shape)):
            if want is not None and got != want:
                what = ("rows" if axis == 0 else "columns")
                raise ValueError(f"{name} has {got} {what}, expected {want} "
                                 f"(shape {a.shape}, expected "
                                 f"{tuple('N' if s is None else s for s in shape)})")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous; convert with "
                             f"np.ascontiguousarray({name})")
        if finite and not self._rows_checked:
            self._check_finite(a, name)
        return a

    def _check_X(self, X):
        X = self._check_array(X, "X", (None, self.layer_sizes[0]))
        if X.shape[0] == 0:
            raise ValueError("X has no rows")
        return X

    def _check_targets(self, X, Y, sample_weight):
        n = X.shape[0]
        Y = self._check_array(Y, "Y", (n, self.layer_sizes[-1]))
        if self.loss == "poisson" and Y.min() < 0:
            raise ValueError("Y must be non-negative for the poisson loss")
        if sample_weight is None:
            return Y, None
        sw = self._check_array(sample_weight, "sample_weight", (n,))
        if sw.min() < 0:
            raise ValueError("sample_weight must not contain negative values")
        return Y, sw

    def _check_out(self, out, name, shape):
        if out is None:
            return np.empty(shape, self.dtype)
        out = self._check_array(out, name, shape, finite=False)
        if not out.flags.writeable:
            raise ValueError(f"{name} must be writeable")
        return out

    @staticmethod
    def _check_alpha(alpha):
        if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
                or not np.isfinite(alpha) or alpha < 0):
            raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
        return float(alpha)

    def _check_grads_out(self, out, params):
        if out is None:
            return np.empty(self.n_params, self.dtype)
        self._check_vector(out, "out")
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
        return out

    def _check_X_grad(self, X_grad, X):
        if X_grad is None:
            return None
        return self._check_out(X_grad, "X_grad", X.shape)

    def _check_overlaps(self, outputs, inputs):
        """ValueError when an output shares memory with an input, another output or the
        engine's own buffers (hidden activations it returned), or an input lies in those
        buffers: the call would overwrite what it still reads.  ``outputs`` / ``inputs``:
        (name, array, CSR matrix or None) pairs.  About 0.2 us per pair."""
        buffers = [b for b in (self._acts, self._deltas, self._xbuf, self._gsum)
                   if b is not None]
        seen = []  # (name, memory) of the arrays checked so far
        for name, a in inputs:
            for m in _memory(a):
                for b in buffers:
                    if _may_share(m, b):
                        raise ValueError(f"{name} lies in this engine's buffers (hidden "
                                         f"activations of an earlier call, which this call "
                                         f"overwrites); pass a copy")
                seen.append((name, m))
        for name, a in outputs:
            if a is None:
                continue
            for other, m in seen:
                if _may_share(a, m):
                    raise ValueError(f"{name} must not overlap {other}: the call would "
                                     f"overwrite {other} while reading it")
            for b in buffers:
                if _may_share(a, b):
                    raise ValueError(f"{name} lies in this engine's buffers (hidden "
                                     f"activations of an earlier call); pass an array of "
                                     f"your own")
            seen.append((name, a))
