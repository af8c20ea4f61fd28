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
before the first of them is restored when the last one ends (also in a forked child), from
whichever Python thread runs the call (``_set_blas_threads``).

The CPU budget (``cpu_budget``): the cores this process may use -- its CPU affinity, a
container's cgroup CPU quota and LOKY_MAX_CPU_COUNT, as joblib counts them, and in a Dask
worker's task the worker's own thread count -- not the host's core count.  No call asks Numba or
BLAS for more threads than the budget, whatever ``n_threads`` says (a larger request is capped,
with one warning).  Calls running at the same time from several Python threads share it: a call
with ``n_threads=None`` takes ``budget // (Python threads inside fastmlp calls)``, at least 1,
counting the threads inside one now and the live threads that left one less than
RECENT_SECONDS ago (``_enter_call``).

Fork: ``os.fork()`` while another thread is inside a kernel hung the parent (OpenBLAS's pre-fork
handler waits for its busy threads; region threads then spin on a BLAS pool that is gone).
Every kernel call runs inside ``kernel_section()``; a ``before`` fork handler holds new kernel
calls at their start and waits (at most FORK_WAIT_SECONDS) until no other thread is inside one;
the held calls go on once the fork has returned in the parent.
"""
import functools
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext

import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's OpenBLAS so threadpoolctl sees it)
from threadpoolctl import ThreadpoolController

from ._environment import (SettingError, numba_num_threads_problem, set_aside,
                           threading_layer_error)
from ._startup import young_objects_only

# NUMBA_NUM_THREADS below 1 fails Numba's own import: Numba is imported with it set aside, and
# the first call raises a SettingError that names it (see fastmlp._environment)
_numba_env_problem = None if "numba" in sys.modules else numba_num_threads_problem()
with set_aside("NUMBA_NUM_THREADS" if _numba_env_problem else None):
    import numba
    from numba.np.ufunc import parallel as _numba_parallel

_blas_controllers = None  # threadpoolctl's controllers of the BLAS libraries (_blas_libs)
_blas_lock = threading.Lock()   # guards the two below; never held while kernels run
_blas_requests = {}             # {token: BLAS threads asked for} of the calls running now
_blas_saved = None              # [(lib controller, threads)] found before the first of them
_region_lock = threading.RLock()  # serialises fastmlp's own parallel regions (workqueue only)
_forked_after_openmp = False    # this process is a child forked after GNU OpenMP ran


_budget_cache = None  # (this process's affinity count, joblib's cpu_count) when last counted


def _affinity_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def _joblib_cpu_count():
    import joblib
    try:
        return joblib.cpu_count(only_physical_cores=False)
    except ValueError as exc:  # LOKY_MAX_CPU_COUNT not an integer (joblib's int() of it)
        raw = os.environ.get("LOKY_MAX_CPU_COUNT")
        if raw is None:
            raise
        raise SettingError(f"LOKY_MAX_CPU_COUNT={raw!r} is not a CPU count: set it to a "
                           f"positive integer or unset it") from None


def _process_budget():
    """Cores this process may use: joblib's (loky's) count -- affinity, the cgroup v1/v2 CPU
    quota, LOKY_MAX_CPU_COUNT.  The quota is read once per affinity (reading it costs ~40 us;
    the affinity, read every time, costs nothing)."""
    global _budget_cache
    affinity = _affinity_count()
    cached = _budget_cache
    if cached is None or cached[0] != affinity:
        cached = _budget_cache = (affinity, int(_joblib_cpu_count()))
    return max(1, min(affinity, cached[1]))


def _dask_worker_threads():
    """The thread count of the Dask worker running the current task, or None (not in a task;
    ``distributed`` is never imported here)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker
        worker = get_worker()
    except Exception:  # noqa: BLE001 -- not in a worker's task
        return None
    n = getattr(getattr(worker, "state", None), "nthreads", None)
    if n is None:
        n = getattr(worker, "nthreads", None)
    try:
        return max(1, int(n))
    except (TypeError, ValueError):
        return None


def cpu_budget():
    """The number of cores this process may use: its affinity and its container's CPU quota
    (as ``joblib.cpu_count(only_physical_cores=False)`` counts them), and, in a Dask worker's
    task, at most the worker's thread count.  At least 1."""
    budget = _process_budget()
    worker = _dask_worker_threads()
    return budget if worker is None else min(budget, worker)


def max_threads():
    """Threads fastmlp may use at most: Numba's pool (NUMBA_NUM_THREADS) within the CPU
    budget (``cpu_budget``)."""
    return max(1, min(numba.config.NUMBA_NUM_THREADS, cpu_budget()))


_calls_lock = threading.Lock()
_calls = {}             # {Python thread id: depth} of the threads inside thread_limits now
_recent = {}            # {Python thread id: (its Thread, when it left its last call)}
_warned = set()         # (n_threads asked, budget) already warned about

# A thread that left a fastmlp call this recently still counts among the calls sharing the
# budget.  In a threaded grid search each worker thread spends a few milliseconds between two
# calls (cloning, scaling, scoring); a call that began in another thread's gap took the whole
# budget, and OpenBLAS's threads then spun for ~0.1 s after its threaded products, on the cores
# the other thread's fit was using (4 of a digits search's 36 calls began in such a gap).
RECENT_SECONDS = 0.25


def _enter_call():
    """Count this Python thread among the running calls; returns how many threads share the
    budget: those inside a call now, and the live ones that left one less than RECENT_SECONDS
    ago."""
    me = threading.get_ident()
    now = time.monotonic()
    with _calls_lock:
        _calls[me] = _calls.get(me, 0) + 1
        for ident, (thread, left) in list(_recent.items()):
            if now - left >= RECENT_SECONDS or not thread.is_alive():
                del _recent[ident]
        return len(_calls) + sum(1 for ident in _recent if ident not in _calls)


def _count_out(depths, me):
    """One level less for thread ``me`` in ``depths`` ({thread: nesting depth}; the thread
    leaves it at 0); returns the depth left.  The caller holds the dict's lock."""
    depth = depths.get(me, 0) - 1
    if depth > 0:
        depths[me] = depth
    else:
        depths.pop(me, None)
    return max(depth, 0)


def _leave_call():
    me = threading.get_ident()
    with _calls_lock:
        if _count_out(_calls, me) == 0:
            _recent[me] = (threading.current_thread(), time.monotonic())


def cap_request(n, what="n_threads={n}"):
    """(n capped at the CPU budget, None or a one-line note saying so); ``what`` names the
    request (``{n}`` is replaced by n), e.g. ``"--threads {n}"`` for the command line."""
    budget = cpu_budget()
    if n <= budget:
        return n, None
    return budget, (f"{what.format(n=n)} is more than the {budget} CPU core"
                    f"{'s' if budget != 1 else ''} this process may use (its CPU affinity, "
                    f"container quota or Dask worker threads): using {budget}")


def _capped(n):
    """n capped at the CPU budget, with one warning per (n, budget) and process."""
    capped, note = cap_request(n)
    if note is not None and (n, capped) not in _warned:
        _warned.add((n, capped))
        warnings.warn(note, RuntimeWarning, stacklevel=4)
    return capped


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
        except ValueError as exc:  # an unknown or missing NUMBA_THREADING_LAYER
            error = threading_layer_error(exc)
            if error is None:
                raise
            raise error from None
        finally:
            if here:
                env.pop("GOMP_SPINCOUNT", None)


_numba_ready = False


def numba_ready():
    """Numba's one-time set-up of its CPU target -- the typing and lowering registries its first
    compilation or cache load fills, ~0.1 s -- done now, once per process, inside
    ``fastmlp._startup.young_objects_only`` (the full garbage collections it triggered walked
    the whole process: see that module).  The set-up is Numba's own (``refresh``, as its cache
    loader calls it), under its compiler lock and inside a ``kernel_section`` (a fork from
    another thread waits for it to end).  Called by ``thread_limits`` before any kernel runs;
    raises the SettingError of a NUMBA_NUM_THREADS that Numba could not start with."""
    global _numba_ready
    if _numba_ready:
        return
    if _numba_env_problem is not None:
        raise SettingError(_numba_env_problem)
    try:
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.registry import cpu_target
    except ImportError:  # another Numba layout: Numba sets itself up at the first call
        _numba_ready = True
        return
    with _KERNEL_SECTION, global_compiler_lock:
        if not _numba_ready:
            with young_objects_only():
                cpu_target.target_context.refresh()
            _numba_ready = True


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
    """The BLAS libraries' threadpoolctl controllers, found once (a fixed list: threadpoolctl
    lists the libraries loaded when its controller was made)."""
    global _blas_controllers
    if _blas_controllers is None:
        _blas_controllers = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas_controllers


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


def _set_blas_threads(lib, k):
    """Set one BLAS library's process-wide thread count to k, from whichever Python thread runs
    this (called with _blas_lock held).

    threadpoolctl >= 3.8 lets one Python thread alone set OpenBLAS's count (pthreads builds):
    the first that set it, for as long as that thread lives; a call from any other thread is
    ignored, silently.  A fit's first limit from the main thread then left every later fit in
    a worker thread (a threaded grid search, a Dask worker's task) on all the cores' BLAS
    threads: two digits fits side by side took 1.1-1.8x the time of the same two one after
    the other, measured.  fastmlp's calls already share one count (the smallest they asked
    for, and the saved value back when the last ends: see the module's note), so fastmlp takes
    control for its own set and gives it back at once; a user's ``threadpool_limits`` block,
    in this thread or another, can still set and restore its own count afterwards."""
    lib.set_num_threads(k)
    take = getattr(type(lib), "clear_controlling_thread", None)
    if take is None or lib.num_threads == k:
        return
    take(force=True)
    try:
        lib.set_num_threads(k)
    finally:
        take()  # this thread's control ends here


def _apply_blas_limit():
    # called with _blas_lock held
    global _blas_saved
    if _blas_requests:
        if _blas_saved is None:
            _blas_saved = [(lib, lib.num_threads) for lib in _blas_libs()]
        k = min(_blas_requests.values())
        for lib, _ in _blas_saved:
            if lib.num_threads != k:
                _set_blas_threads(lib, k)
    elif _blas_saved is not None:
        for lib, k in _blas_saved:
            if lib.num_threads != k:
                _set_blas_threads(lib, k)
        _blas_saved = None


@contextmanager
def blas_threads(k):
    """Ask for at most k BLAS threads (never more than the CPU budget) while the block runs
    (shared: see the module's note)."""
    token = object()
    k = max(1, min(int(k), cpu_budget()))
    with _blas_lock:
        _blas_requests[token] = k
        _apply_blas_limit()
    try:
        yield
    finally:
        with _blas_lock:
            _blas_requests.pop(token, None)  # gone in a child forked inside the block
            _apply_blas_limit()


@contextmanager
def thread_limits(n_threads=None):
    """Run fastmlp kernels with at most n_threads threads: Numba's count for this Python
    thread is set to it and restored on exit, and n_threads BLAS threads are asked for (the
    split way asks for 1 inside, see ``blas_threads``).  Yields the thread count used.

    n_threads=None respects the limits already in force -- the BLAS libraries' thread counts (a
    ``threadpoolctl.threadpool_limits`` block, joblib's workers, OMP/OPENBLAS environment
    variables) and ``numba.set_num_threads`` -- and uses the smallest of them, so that fastmlp
    inside a parallel grid search does not oversubscribe the cores; and it shares the CPU
    budget with the calls running now in other Python threads: ``budget // threads``.
    An n_threads above the budget (``cpu_budget``) is capped at it, with one warning."""
    n = resolve_n_threads(n_threads)
    numba_ready()
    start_pool()
    threads_in = _enter_call()
    try:
        previous = numba.get_num_threads()
        if n is None:
            n = max(1, min(previous, _user_blas_threads(), cpu_budget() // threads_in))
        else:
            n = _capped(n)
        numba.set_num_threads(min(n, max_threads()))
        try:
            with blas_threads(n):
                yield n
        finally:
            numba.set_num_threads(previous)
    finally:
        _leave_call()


# -- fork --------------------------------------------------------------------------------------
FORK_WAIT_SECONDS = 10.0  # a fork waits at most this long for kernel calls to end

_gate = threading.Condition(threading.Lock())
_in_kernels = {}        # {Python thread id: depth} of the threads inside kernel_section now
_forks_pending = 0      # forks between their before handler and their after handler


class _KernelSection:
    """``with kernel_section():`` around a kernel call (see the module's note on fork)."""
    __slots__ = ()

    def __enter__(self):
        me = threading.get_ident()
        with _gate:
            depth = _in_kernels.get(me, 0)
            if depth == 0:
                while _forks_pending:
                    _gate.wait()
            _in_kernels[me] = depth + 1

    def __exit__(self, *exc):
        with _gate:
            if _count_out(_in_kernels, threading.get_ident()) == 0 and _forks_pending:
                _gate.notify_all()
        return False


_KERNEL_SECTION = _KernelSection()


def kernel_section():
    """A context around one kernel call (BLAS or a parallel region): a fork from another
    thread waits for it to end, and it does not start while a fork is under way."""
    return _KERNEL_SECTION


def kernel_call(method):
    """Decorator: run ``method`` inside ``kernel_section()``."""
    @functools.wraps(method)
    def gated(*args, **kwargs):
        with _KERNEL_SECTION:
            return method(*args, **kwargs)
    return gated


def _before_fork():
    global _forks_pending
    me = threading.get_ident()
    deadline = time.monotonic() + FORK_WAIT_SECONDS
    with _gate:
        _forks_pending += 1
        while any(t != me for t in _in_kernels):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _gate.wait(left)


def _after_fork_in_parent():
    global _forks_pending
    with _gate:
        _forks_pending = max(0, _forks_pending - 1)
        _gate.notify_all()


def _after_fork_in_child():
    # Locks held by a thread of the parent that was inside a fastmlp call are held forever in
    # the child: make new ones.  The BLAS limit that call had set is put back.
    global _blas_lock, _region_lock, _blas_saved, _forked_after_openmp, _calls_lock, _gate
    global _forks_pending, _in_kernels
    me = threading.get_ident()
    _blas_lock = threading.Lock()
    _region_lock = threading.RLock()
    _calls_lock = threading.Lock()
    mine = _calls.get(me)
    _calls.clear()
    _recent.clear()
    if mine:
        _calls[me] = mine
    _gate = threading.Condition(threading.Lock())
    _forks_pending = 0
    mine = _in_kernels.get(me)
    _in_kernels = {me: mine} if mine else {}
    saved, _blas_saved = _blas_saved, None
    _blas_requests.clear()
    for lib, k in saved or ():
        try:
            _set_blas_threads(lib, k)
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
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
