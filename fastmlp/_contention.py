"""Whether the machine lets a trial or a probe speak for later fits, and OpenBLAS's spinning.

A plan timed while other programs take this process's CPUs undersells the machine, and kept on
disk it would decide every later fit there (``worth_saving``: :class:`Contention`, from the
threads' run-queue waiting and the process's CPU time; the load average where the kernel does
not say).  After a call on several BLAS threads, OpenBLAS's threads spin before they sleep and
share the cores with what runs next (``threaded_blas_done``, ``wait_for_blas_spin``,
``BLAS_SPIN_SECONDS``, which the epoch watch of :mod:`fastmlp._planner` also reads).
"""
import logging
import os
import time

log = logging.getLogger("fastmlp")


def machine_busy():
    """Whether the machine runs more threads than it has cores (the 1-minute load average
    above the core count): a trial taken then is kept for the process only, never written to
    disk, so that a busy spell does not decide for every later process.  False where the load
    average is unknown."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return load > (os.cpu_count() or 1)


def run_queue_wait():
    """Nanoseconds this process's threads have spent runnable but waiting for a CPU (the sum
    of the second field of ``/proc/self/task/*/schedstat``), or None where the kernel does
    not say (not Linux, schedstats off).  A thread waits when more threads want the CPUs
    than there are: what the planner's trials and probes must not be judged by."""
    total = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    seen = False
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
            seen = True
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total if seen else None


def cpu_time():
    """CPU seconds this process's threads have used (``time.process_time``)."""
    return time.process_time()


class Contention:
    """Whether other programs took this process's CPUs over a stretch of time (a trial and
    the epochs up to a probe's end), from two readings of the wall clock, of the time this
    process's threads waited for a CPU (``run_queue_wait``) and of the CPU time they used.

    ``share()``: the waiting summed over the threads, over the wall time (None where the
    kernel does not say).  Waiting alone does not tell other programs from fastmlp's own
    threads: after a threaded BLAS call OpenBLAS's threads spin for ~0.1 s, and the split
    way's threads then wait for them (measured on an idle 2-core machine: 0.26-0.67 of the
    wall time, while the process used 1.8-2.0 of the 2 cores).  So ``contended()`` also asks
    that the process used less than ``OWN_CPU_SHARE`` of its ``budget`` of cores (the threads
    the plan may use): beside a program that keeps a core busy it gets about one of two."""

    def __init__(self, budget=1, clock=None, waited=None, cpu=None):
        self.budget = max(1, int(budget))
        self._clock, self._waited, self._cpu = clock, waited, cpu
        self.t0, self.w0, self.c0 = self._now()

    def _now(self):
        waited = (self._waited or run_queue_wait)()
        return ((self._clock or time.perf_counter)(), waited,
                (self._cpu or cpu_time)())

    def shares(self):
        """(waiting, CPU time used) over the wall time since the first reading; the first
        None where unknown."""
        t1, w1, c1 = self._now()
        if t1 <= self.t0:
            return None, 0.0
        wall = t1 - self.t0
        waited = None if self.w0 is None or w1 is None else (w1 - self.w0) * 1e-9 / wall
        return waited, (c1 - self.c0) / wall

    def share(self):
        return self.shares()[0]

    def contended(self):
        (waited, used), budget = self.shares(), self.budget
        if waited is None or waited <= CONTENDED_SHARE or used >= OWN_CPU_SHARE * budget:
            return False
        log.debug("fastmlp: threads waited for a CPU %.0f%% of the time and used %.2f of %d "
                  "cores: plan kept for this process only", 100 * waited, used, budget)
        return True


# A stretch whose threads waited for a CPU more than CONTENDED_SHARE of its wall time (summed
# over the threads) while the process used less than OWN_CPU_SHARE of its budget of cores was
# taken on a machine busy with other programs: its plan is kept for the process only.
CONTENDED_SHARE = 0.25
OWN_CPU_SHARE = 0.75


def worth_saving(contention=None):
    """Whether a plan timed now may be written to disk: ``contention`` (a
    :class:`Contention` over the trial, or over the trial and
    the probe) did not see other programs take this process's cores; where the kernel does
    not say how long threads waited, the load average is not above the core count.  (Where
    it does, the load average is not asked: it counts fastmlp's own threads, so a fit on
    every core of an idle machine, beside anything at all, reads as busy.)"""
    if contention is not None and contention.share() is not None:
        return not contention.contended()
    return not machine_busy()


# After a call on several OpenBLAS threads, those threads spin for about 0.1 s before they
# sleep (2**28 cycles, fixed when OpenBLAS loads), and a split epoch run meanwhile shares the
# cores with them: on an idle 2-core machine split/2 steps took 1.07 ms in that window against
# 0.07-0.10 ms after it, and a watch that judged those epochs moved a fit from split/2 to
# blas/2 (measured: 2 runs of 5).  The split epochs in the first BLAS_SPIN_SECONDS (epoch time)
# after a threaded blas epoch, or after a trial that timed threaded blas last, are not judged:
# not slow, no estimate, no probe epoch.
BLAS_SPIN_SECONDS = 0.12
_blas_spin_ends = [0.0]  # when OpenBLAS's threads stop spinning after fastmlp's last use


def threaded_blas_done(threads):
    """Note that fastmlp's calls on ``threads`` BLAS threads just ended (a blas epoch, a trial
    candidate): OpenBLAS's threads spin for BLAS_SPIN_SECONDS from now."""
    if threads > 1:
        _blas_spin_ends[0] = time.perf_counter() + BLAS_SPIN_SECONDS


def wait_for_blas_spin():
    """Before a trial: wait (at most BLAS_SPIN_SECONDS) until OpenBLAS's threads, spinning
    after fastmlp's last threaded blas call, sleep, so that they do not share the cores with
    the split candidates timed first (measured: split/2 timed at 0.88-1.09 ms a step right
    after a small fit on the blas way, 0.05-0.08 otherwise)."""
    left = _blas_spin_ends[0] - time.perf_counter()
    if 0 < left <= BLAS_SPIN_SECONDS:
        time.sleep(left)
