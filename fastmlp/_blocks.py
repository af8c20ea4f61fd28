"""Row blocks: when one thread's rows of a batch run faster as several smaller products.

OpenBLAS's AVX-512 builds (its SkylakeX kernels, which it also picks for AVX-512 AMD chips)
run a product whose M * N * K is at most 1e6 through a small-matrix kernel that skips the
packing of its operands.  Just above that limit the packed path costs up to 1.5x as much a row:
single-threaded, a 100 x 100 layer's forward product took 154 ns a row at 100 rows and
231-237 ns at 110-200 rows in float64 (79 against 99-106 ns in float32), where a 64 x 128
layer's took 178 against 180-187 ns (no gain), and an AVX2 build (``OPENBLAS_CORETYPE=Haswell``)
showed none at any size (measured on this project's 2-core AMD EPYC).  Every product of a
training step for a block of r rows has M * N * K = r * n_l * n_{l+1}, so blocks of at most
1e6 / max(n_l * n_{l+1}) rows keep them all on that path.

:func:`row_blocks` says how many blocks one thread should cut its rows into: more than one only
where the network's widest layer allows blocks of at least ``MIN_ROWS`` rows and a short
calibration on this machine's BLAS (the one Numba's kernels call: SciPy's) finds the smaller
product at least ``GAIN`` times faster a row.  Each next block's gradient sums are added to
the thread's through one scratch vector a thread (``kernels.network.backprop_blocks``), so a
decision changes the last bits of a fit's numbers: it is kept for the process, and on disk
beside the plan files (``fastmlp._planner.plan_dir``; keyed by the CPU, the BLAS libraries,
the network's widths, the rows and the dtype), so that every fit of that shape on this
machine runs the same blocks, and each machine calibrates once (where the gain is near
``GAIN``, two calibrations can disagree: for 64 x 128 float64 and 100 x 100 float32 layers
they did here, where the gain measured 1.0-1.3x a row).  A calibration taken while the
machine was busy (see ``fastmlp._contention``) is kept for the process only.
"""
import logging
import threading
import time

import numpy as np
import scipy.linalg.blas

from . import _contention, _planner
from ._threads import blas_threads, blas_versions

log = logging.getLogger("fastmlp")

SMALL_MNK = 1e6   # OpenBLAS's small-matrix limit on M * N * K (SkylakeX kernels)
MIN_ROWS = 32     # below this many rows a block, the blocks' extra gradient sums cost too much
GAIN = 1.2        # per-row speed-up of the small product that pays for the blocks
_ROUNDS = 3       # calibration rounds, alternated; each keeps its fastest call
_CALLS = 4        # calls per round and size

_decided = {}
_lock = threading.Lock()


def _widest_layer(sizes):
    """(n_in, n_out) of the layer with the most weights."""
    widths = [int(s) for s in sizes]
    return max(zip(widths, widths[1:]), key=lambda w: w[0] * w[1])


def block_rows(sizes):
    """The most rows a block may have for every product of a step to stay within
    SMALL_MNK (0 when not even MIN_ROWS fit)."""
    n_in, n_out = _widest_layer(sizes)
    rows = int(SMALL_MNK // (n_in * n_out))
    return rows if rows >= MIN_ROWS else 0


def step_blocks(sizes, split, threads, batch, dtype):
    """The row blocks each thread of a dense training step runs its rows as: the split way's
    threads alike (each has about batch / threads rows); the blas way on one thread only (on
    more, OpenBLAS's threads share each product)."""
    if split:
        return row_blocks(sizes, -(-batch // threads), dtype)
    return row_blocks(sizes, batch, dtype) if threads == 1 else 1


def row_blocks(sizes, rows, dtype):
    """How many row blocks one thread runs its ``rows`` rows of a batch as (1: one product
    per layer and pass).  sizes: the layer widths (n_in, hidden..., n_out)."""
    small = block_rows(sizes)
    rows = int(rows)
    if small == 0 or rows <= small:
        return 1
    key = (tuple(int(s) for s in sizes), rows, np.dtype(dtype).str)
    with _lock:
        if key in _decided:
            return _decided[key]
    blocks = -(-rows // small)
    chosen = _load(key, blocks)
    if chosen is None:
        contention = _contention.Contention(1)
        per_row_small, per_row_whole = _per_row_seconds(sizes, rows, blocks, dtype)
        chosen = blocks if per_row_whole >= GAIN * per_row_small else 1
        log.debug("fastmlp: %d rows of %s (%s) on a thread: %d row block(s) (widest product "
                  "%.3g us a row in blocks of %d rows, %.3g us as one)", rows, list(key[0]),
                  key[2], chosen, per_row_small * 1e6, -(-rows // blocks),
                  per_row_whole * 1e6)
        if _contention.worth_saving(contention):
            _planner.write_record(_file_key(key), {"blocks": chosen}, prefix="blocks")
    with _lock:
        return _decided.setdefault(key, chosen)


def _file_key(key):
    from ._version import __version__
    # the libraries sorted: their order is the order they were loaded in
    return (_planner.FORMAT, "blocks", _planner.cpu_model(), tuple(sorted(blas_versions())),
            key, __version__)


def _load(key, blocks):
    """The decision on disk for key: 1 or ``blocks`` (anything else in the file: None)."""
    data = _planner.read_record(_file_key(key), prefix="blocks")
    value = None if data is None else data.get("blocks")
    if type(value) is int and value in (1, blocks):
        return value
    return None


def _per_row_seconds(sizes, rows, blocks, dtype):
    """The widest layer's forward product, single-threaded, as Numba's np.dot calls it (the
    transposed column-major product of C-ordered arrays): the fastest seconds a row over
    _ROUNDS alternated rounds, for one block's rows and for all ``rows`` (at most 8 blocks'
    worth)."""
    n_in, n_out = _widest_layer(sizes)
    gemm = scipy.linalg.blas.get_blas_funcs("gemm", dtype=np.dtype(dtype))
    rng = np.random.default_rng(0)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    block = -(-rows // blocks)
    rows = min(rows, 8 * block)  # as much a row beyond that: the packed path's rate
    A = rng.standard_normal((rows, n_in)).astype(dtype)
    Z = np.empty((rows, n_out), dtype)
    sizes_rows = (block, rows)
    best = [float("inf"), float("inf")]
    with blas_threads(1):
        for _ in range(_ROUNDS):
            for i, r in enumerate(sizes_rows):
                At, Zt = A[:r].T, Z[:r].T
                gemm(1.0, W.T, At, beta=0.0, c=Zt, overwrite_c=1)  # Z[:r] = A[:r] @ W, in place
                for _ in range(_CALLS):
                    t0 = time.perf_counter()
                    gemm(1.0, W.T, At, beta=0.0, c=Zt, overwrite_c=1)
                    best[i] = min(best[i], (time.perf_counter() - t0) / r)
    return best[0], best[1]


def clear():
    """Forget this process's decisions (tests)."""
    with _lock:
        _decided.clear()
