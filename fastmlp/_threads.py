"""Thread pools: one busy at a time, and safe next to the user's own threads.

fastmlp runs a training step in one of two ways (``fastmlp._planner`` picks one per network):

* ``blas``: the matrix products on OpenBLAS's threads, every other kernel serial on the
  calling thread; Numba's pool is never woken;
* ``split``: one Numba parallel region per step, each thread working on its share of the
  batch's rows with single-threaded BLAS (and, from 4096 parameters on, a second region in
  which each thread adds and updates its span of the parameters); OpenBLAS's pool is never
  woken.

So the two pools never alternate.  That matters because the OpenMP layer's workers busy-wait
after a region (GOMP_SPINCOUNT, 300000 spins by default) and took the cores OpenBLAS's threads
wanted next: 10x slower per epoch on 2 cores, 24x when the machine was busy.

fastmlp does not choose Numba's threading layer: Numba's own default order (tbb, then omp, then
workqueue) or the user's NUMBA_THREADING_LAYER stands, so importing fastmlp changes nothing for
the process's other Numba code.  tbb and omp run parallel regions from several Python threads
at once, so concurrent fits and predictions need no lock.  The workqueue layer cannot (two
regions at once abort the process): there, fastmlp's own regions take a lock, region by region.
GNU OpenMP must not be used in a child forked after it ran: such a child falls back to the
``blas`` way, which runs no parallel region.

Thread counts: Numba's (``numba.set_num_threads``) is per Python thread and is set for the
duration of a call.  BLAS's is one setting for the whole process, so it is shared: while
fastmlp calls are running it is the smallest count any of them asked for, and the value found
before the first of them is restored when the last one ends (also in a forked child).
"""
import os
import threading
from contextlib import contextmanager, nullcontext

import numba
import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's OpenBLAS so threadpoolctl sees it)
from numba.np.ufunc import parallel as _numba_parallel
from threadpoolctl import ThreadpoolController

_controller = None
_blas_lock = threading.Lock()   # guards the two below; never held while kernels run
_blas_requests = {}             # {token: BLAS threads asked for} of the calls running now
_blas_saved = None              # [(lib controller, threads)] found before the first of them
_region_lock = threading.RLock()  # serialises fastmlp's own parallel regions (workqueue only)
_forked_after_openmp = False    # this process is a child forked after GNU OpenMP ran


def max_threads():
    """Threads fastmlp uses when n_threads is None: all of Numba's (one per core)."""
    return numba.config.NUMBA_NUM_THREADS


_layer = None
_start_lock = threading.Lock()

# GNU OpenMP's workers spin GOMP_SPINCOUNT times (300000 by default, milliseconds) before they
# sleep, after every region and at its closing barrier.  On a machine busier than its cores
# that spinning takes the time slices the step's other thread needs (the split way measured
# several times slower per epoch under load).  10000 spins still cover the gap between two
# steps' regions, so an idle machine keeps the spin's fast hand-over.
POOL_SPINCOUNT = "10000"


def start_pool():
    """Start Numba's pool if nobody has (the layer is Numba's choice or the user's).  When the
    user has set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, GNU OpenMP, if it is loaded by
    this start, reads a bounded spin count (POOL_SPINCOUNT); the environment is put back at
    once, so nothing else in the process or its children sees the change."""
    if _numba_parallel._is_initialized:
        return
    with _start_lock:
        env = os.environ
        here = not ("OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env)
        if here:
            env["GOMP_SPINCOUNT"] = POOL_SPINCOUNT
        try:
            numba.get_num_threads()
        finally:
            if here:
                env.pop("GOMP_SPINCOUNT", None)


def threading_layer():
    """The threading layer Numba runs parallel regions on (starts Numba's pool if needed:
    the layer is Numba's choice or the user's, never fastmlp's)."""
    global _layer
    if _layer is None:
        start_pool()
        _layer = numba.threading_layer()
    return _layer


def parallel_regions_allowed():
    """False where a Numba parallel region must not run: a child forked after GNU OpenMP ran
    in its parent (GNU OpenMP aborts there)."""
    return not _forked_after_openmp


def region_guard():
    """A lock around one parallel region on the workqueue layer (not thread-safe), nothing on
    the others."""
    return _region_lock if threading_layer() == "workqueue" else nullcontext()


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


def _blas_libs():
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.select(user_api="blas").lib_controllers


def blas_versions():
    """Versions of the loaded BLAS libraries (OpenBLAS 0.3.28/0.3.29 return wrong results
    when several threads call gemm at once: the ``split`` way is off there)."""
    return [lib.version for lib in _blas_libs()]


def _user_blas_threads():
    """The smallest thread count among the loaded BLAS libraries, as the user set it (the
    value saved before fastmlp's running calls changed it)."""
    with _blas_lock:
        counts = ([k for _, k in _blas_saved] if _blas_saved is not None
                  else [lib.num_threads for lib in _blas_libs()])
    return min(counts) if counts else max_threads()


def _apply_blas_limit():
    # called with _blas_lock held
    global _blas_saved
    if _blas_requests:
        if _blas_saved is None:
            _blas_saved = [(lib, lib.num_threads) for lib in _blas_libs()]
        k = min(_blas_requests.values())
        for lib, _ in _blas_saved:
            if lib.num_threads != k:
                lib.set_num_threads(k)
    elif _blas_saved is not None:
        for lib, k in _blas_saved:
            lib.set_num_threads(k)
        _blas_saved = None


@contextmanager
def blas_threads(k):
    """Ask for at most k BLAS threads while the block runs (shared: see the module's note)."""
    token = object()
    with _blas_lock:
        _blas_requests[token] = int(k)
        _apply_blas_limit()
    try:
        yield
    finally:
        with _blas_lock:
            del _blas_requests[token]
            _apply_blas_limit()


@contextmanager
def thread_limits(n_threads=None):
    """Run fastmlp kernels with at most n_threads threads: Numba's count for this Python
    thread is set to it and restored on exit, and n_threads BLAS threads are asked for (the
    split way asks for 1 inside, see ``blas_threads``).  Yields the thread count used.

    n_threads=None respects the limits already in force -- the BLAS libraries' thread counts (a
    ``threadpoolctl.threadpool_limits`` block, joblib's workers, OMP/OPENBLAS environment
    variables) and ``numba.set_num_threads`` -- and uses the smallest of them, so that fastmlp
    inside a parallel grid search does not oversubscribe the cores."""
    n = resolve_n_threads(n_threads)
    start_pool()
    previous = numba.get_num_threads()
    if n is None:
        n = max(1, min(previous, _user_blas_threads()))
    numba.set_num_threads(min(n, max_threads()))
    try:
        with blas_threads(n):
            yield n
    finally:
        numba.set_num_threads(previous)


def _after_fork_in_child():
    # Locks held by a thread of the parent that was inside a fastmlp call are held forever in
    # the child: make new ones.  The BLAS limit that call had set is put back.
    global _blas_lock, _region_lock, _blas_saved, _forked_after_openmp
    _blas_lock = threading.Lock()
    _region_lock = threading.RLock()
    saved, _blas_saved = _blas_saved, None
    _blas_requests.clear()
    for lib, k in saved or ():
        try:
            lib.set_num_threads(k)
        except Exception:  # noqa: BLE001 -- best effort in a fresh child
            pass
    if _numba_parallel._is_initialized:
        # Numba's get/set_num_threads take a multiprocessing RLock, one semaphore shared with
        # the parent; a child forked while a parent's thread held it keeps a copy of the
        # holder's recursion count, never posts the semaphore back, and the parent's next
        # call hangs.  The pool is started here, so the lock guards nothing: use our own.
        _numba_parallel._backend_init_process_lock = threading.RLock()
        try:
            if numba.threading_layer() == "omp":
                from numba.np.ufunc import omppool
                _forked_after_openmp = getattr(omppool, "openmp_vendor", "GNU") == "GNU"
        except ValueError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
