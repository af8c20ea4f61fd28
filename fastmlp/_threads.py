"""Thread pools: exactly one busy at a time.

fastmlp runs matrix products on OpenBLAS's threads and elementwise epilogues on Numba's; the
two alternate, never overlap.  That is only fast if a pool's threads go to sleep when its work
ends: the OpenMP layer's workers busy-wait (GOMP_SPINCOUNT, 300000 spins by default) and take
the cores OpenBLAS wants next, which measured 10x slower per epoch on 2 cores (24x when the
machine was busy).  So:

* at import, if nobody has chosen Numba's threading layer yet (no NUMBA_THREADING_LAYER, pool
  not started), fastmlp picks ``workqueue``, whose workers sleep on a condition variable;
* if a spinning layer is in use anyway (the user chose OpenMP without OMP_WAIT_POLICY=passive
  or GOMP_SPINCOUNT=0, or TBB), fastmlp runs its elementwise kernels on one thread during
  its calls: never the 10x, at a few percent of speed;
* the workqueue layer cannot run two parallel regions at once, so fastmlp's calls hold a
  process-wide lock;
* ``n_threads`` limits both BLAS pools (threadpoolctl) and Numba's pool for the duration of a
  call, and both are restored afterwards.
"""
import os
import threading
from contextlib import contextmanager

import numba
import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's OpenBLAS so threadpoolctl sees it)
from numba.np.ufunc import parallel as _numba_parallel
from threadpoolctl import ThreadpoolController

_LOCK = threading.RLock()
_controller = None


def _choose_threading_layer():
    if os.environ.get("NUMBA_THREADING_LAYER") or _numba_parallel._is_initialized:
        return
    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"


_choose_threading_layer()


def max_threads():
    """Threads fastmlp uses when n_threads is None: all of Numba's (one per core)."""
    return numba.config.NUMBA_NUM_THREADS


def _layer_spins():
    layer = numba.threading_layer()
    if layer == "workqueue":
        return False
    if layer == "omp":
        passive = os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive"
        return not (passive or os.environ.get("GOMP_SPINCOUNT") == "0")
    return True


def resolve_n_threads(n_threads):
    """Validate n_threads (None = decided per call, see thread_limits) -> None or an int >= 1."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not hasattr(n_threads, "__index__"):
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    n = int(n_threads)
    if n < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    return n


def _blas_threads():
    """The smallest thread count among the loaded BLAS libraries (their current limits)."""
    counts = [lib.num_threads for lib in _controller.select(user_api="blas").lib_controllers]
    return min(counts) if counts else max_threads()


@contextmanager
def thread_limits(n_threads=None):
    """Run fastmlp kernels with n_threads BLAS threads and at most n_threads Numba threads;
    restore every pool's setting on exit.  Yields the thread count used.

    n_threads=None respects the limits already in force -- the BLAS libraries' current
    thread counts (a ``threadpoolctl.threadpool_limits`` block, joblib's workers, OMP/OPENBLAS
    environment variables) and ``numba.set_num_threads`` -- and uses the smallest of them,
    so that fastmlp inside a parallel grid search does not oversubscribe the cores."""
    global _controller
    n = resolve_n_threads(n_threads)
    with _LOCK:
        if _controller is None:
            _controller = ThreadpoolController()
        previous = numba.get_num_threads()  # starts Numba's pool (with the layer chosen above)
        if n is None:
            n = max(1, min(previous, _blas_threads()))
        numba_n = 1 if _layer_spins() else min(n, max_threads())
        with _controller.limit(limits=n, user_api="blas"):
            numba.set_num_threads(numba_n)
            try:
                yield n
            finally:
                numba.set_num_threads(previous)
