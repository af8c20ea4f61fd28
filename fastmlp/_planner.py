"""Choosing how a training step runs, by timing the ways on the network at hand.

Two ways compute the same step (see ``fastmlp.kernels.network``):

``blas``
    the matrix products on BLAS's threads, everything else serial.  Wins for big layers, whose
    products BLAS parallelises well.
``split``
    one parallel region per step: every thread runs its block of the batch's rows with
    single-threaded BLAS, then the gradient sums are added in thread order.  Wins for small
    layers, where a product is too small to share and per-call overhead dominates.

No single way wins everywhere, so, as FFTW and cuDNN do, the first fit of a (layer sizes,
batch size, dtype, threads) runs a few training steps each way -- the kernels training runs,
on consecutive batches, the optimizer update included, on scratch copies of the parameters and
of the optimizer's state (for L-BFGS and sparse input, one batch's forward and backward pass on
scratch gradients); the training itself is untouched -- the blas way first, then, once
OpenBLAS's threads have gone back to sleep (``BLAS_SPIN_SECONDS``), the split way, twice over
(``ROUNDS``), and the way with the fastest step is kept for that key for the rest of the
process.  Networks whose whole epoch is a few milliseconds skip the
trial (``blas``: no parallel kernel to compile).  ``FASTMLP_STRATEGY=blas|split`` or the
``strategy`` argument of the training core forces one way.

Both ways give the same numbers to rounding; each is bit-identical run to run for a given
thread count, so force a way to get bit-identical results across processes.
"""
import os
import threading
import time
from typing import NamedTuple, Optional

STRATEGIES = ("blas", "split")
ENV_VAR = "FASTMLP_STRATEGY"

# Below this many FLOP per epoch a fit takes milliseconds: timing (and compiling the parallel
# kernel) would cost more than any choice could save.
MIN_PLANNED_FLOP = 2e8
TRIAL_RUNS = 9  # timed runs of each way in a row, after one untimed (it may load or compile)


class Plan(NamedTuple):
    """How a training step runs: ``strategy`` ('blas' or 'split'), ``source`` (why: 'forced',
    'timed', 'small', 'one thread', 'unavailable') and ``seconds`` ({strategy: fastest timed
    step} when timed, else empty)."""
    strategy: str
    source: str
    seconds: dict


_plans = {}
_plans_lock = threading.Lock()


def check_strategy(strategy):
    """Validate a strategy name (None or 'auto' = choose by timing) -> None or a name."""
    if strategy is None or strategy == "auto":
        return None
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {('auto',) + STRATEGIES}, got {strategy!r}")
    return strategy


def forced_strategy(strategy=None):
    """The way forced by the argument, else by FASTMLP_STRATEGY, else None."""
    s = check_strategy(strategy)
    if s is None:
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env:
            try:
                s = check_strategy(env)
            except ValueError:
                raise ValueError(f"{ENV_VAR} must be one of {('auto',) + STRATEGIES}, "
                                 f"got {env!r}") from None
    return s


def cached(key) -> Optional[Plan]:
    """The plan this process keeps for key, or None."""
    with _plans_lock:
        return _plans.get(key)


def store(key, plan):
    with _plans_lock:
        _plans.setdefault(key, plan)
        return _plans[key]


def clear():
    """Forget every plan of this process (the next fits time again)."""
    with _plans_lock:
        _plans.clear()


# After a threaded call, OpenBLAS's idle worker threads busy-wait about 2**28 CPU cycles
# (~0.1 s; OPENBLAS_THREAD_TIMEOUT) before they sleep, and on a machine with as many cores as
# threads they take the time slices that the split way's threads need: a split step timed right
# after blas steps measured 0.5-0.8 ms instead of 0.12-0.15 ms (scikit-learn's default shapes,
# 2 cores), and the planner chose the blas way for networks where the split way trains 1.4x
# faster.  So the split way is timed after its pool has had this long to settle.
BLAS_SPIN_SECONDS = 0.15


# Each way is timed in ROUNDS separate rounds (the ways alternate: blas, split, blas, split)
# and keeps its fastest step: a single round let one slow spell decide, and it did: on
# scikit-learn's default shapes a trial that timed split at 0.23 ms (its usual 0.13) kept the
# blas way for a whole fit, 1.6x slower per epoch (measured).
ROUNDS = 2
# A round stops after this many seconds of one way's steps (but runs at least MIN_RUNS): big
# networks' steps take tens of milliseconds, and the trial's steps are not training.
ROUND_SECONDS = 0.05
MIN_RUNS = 2


def time_ways(runners, runs=TRIAL_RUNS, settle=None, rounds=ROUNDS, clock=time.perf_counter):
    """{name: fastest timed call of runner()} over ``rounds`` rounds; in each round every way
    in turn (in the order given) runs once untimed (it may load or compile kernels, and its
    thread pool wakes), then up to ``runs`` timed calls in a row (at least MIN_RUNS, and no
    more once ROUND_SECONDS have passed), as training runs steps back to back (a way's first
    step after another way's finds its thread pool asleep: the split way's first step after
    a blas step took 2.5-4x a blas step).  ``settle[name]()``, when given, runs before that
    way starts (see BLAS_SPIN_SECONDS); ``clock`` reads seconds."""
    best = {name: float("inf") for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            if settle and name in settle:
                settle[name]()
            run()
            start = clock()
            for i in range(runs):
                t0 = clock()
                run()
                t1 = clock()
                best[name] = min(best[name], t1 - t0)
                if i + 1 >= MIN_RUNS and t1 - start > ROUND_SECONDS:
                    break
    return best


def let_blas_threads_sleep():
    """Wait BLAS_SPIN_SECONDS: OpenBLAS's threads, woken by a threaded call, go back to sleep."""
    time.sleep(BLAS_SPIN_SECONDS)
