"""Choosing how a training step runs -- which way, on how many threads -- and keeping the choice.

Two ways compute the same step (see ``fastmlp.kernels.network``):

``blas``
    the matrix products on BLAS's threads, everything else serial.  Wins for big layers, whose
    products BLAS parallelises well.
``split``
    one parallel region per step: every thread runs its block of the batch's rows with
    single-threaded BLAS, then the gradient sums are added in thread order.  Wins for small
    layers, where a product is too small to share and per-call overhead dominates.

A plan is one of the candidates ``blas`` on 1 thread, and ``split`` or ``blas`` on 2, 4, 8, ...
threads and on the whole budget (the threads the call may use): more threads than a network
can use are slower, not faster, so the thread count is part of the choice.

How a plan is made, first found first used:

1. forced: ``FASTMLP_STRATEGY=blas|split`` (or the training core's ``strategy``) runs that way
   on every thread of the budget, no trial; a budget of one thread runs ``blas``; networks
   whose whole epoch is a few milliseconds run ``blas`` ('small': no parallel kernel to
   compile);
2. this process's plans (one per key, see below);
3. the plan file on disk (``source='disk'``): one small JSON file per key in ``plan_dir()``,
   next to Numba's cache, written atomically.  A file that cannot be read, is not valid JSON,
   holds another key or names no valid candidate is ignored (and overwritten by the next
   trial); its content is never used for anything but choosing among the valid candidates.
   ``FASTMLP_PLAN_CACHE=0`` turns the files off; any other value is the folder to use.  A
   trial taken while the machine is busy (:func:`fastmlp._contention.worth_saving`) is not
   written, nor its probe;
4. a trial (``source='timed'``): a few training steps of each candidate on scratch copies of
   the parameters and optimizer state (the training is untouched), about ``TRIAL_SECONDS``
   in all, in an order that keeps OpenBLAS's spinning threads (after a threaded call they
   busy-wait ~0.1 s) from slowing the ways timed after them: every split candidate and
   ``blas`` on one thread first, the threaded ``blas`` candidates last; each candidate
   keeps its fastest step over ``ROUNDS`` rounds; the fastest candidate wins, and among
   candidates within ``TIE`` of it the one with fewest threads.

The key: the CPU model, the thread budget, the layer sizes, the batch size, the dtype, the
kernel codes (activation, output, loss, dropout), the optimizer, the threading layer, and
the versions of fastmlp and Numba.

The epochs are watched (:class:`Watch`): when a plan's epochs run much slower than the
plan's estimate (``SLOW_FACTOR``, ``SLOW_EPOCHS`` in a row: a trial taken in a quiet spell, a
machine that became busy), the next epoch runs the next-best candidate, and the faster of
the two is kept (``source='watched'``).  Each plan (way and thread count) gives
bit-identical results run to run; force a way to get bit-identical results across processes
and machines.  ``logging.getLogger("fastmlp")`` reports each plan made, at DEBUG level.
"""
import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import stat
import tempfile
import threading
import time
from typing import NamedTuple, Optional

from . import _contention
from ._environment import SettingError

STRATEGIES = ("blas", "split")
ENV_VAR = "FASTMLP_STRATEGY"
CACHE_ENV_VAR = "FASTMLP_PLAN_CACHE"
FORMAT = 1  # the plan files' format version (part of the key)

log = logging.getLogger("fastmlp")

# Below this many FLOP per epoch a fit takes milliseconds: timing (and compiling the parallel
# kernel) would cost more than any choice could save.
MIN_PLANNED_FLOP = 2e8


class Plan(NamedTuple):
    """How a training step runs: ``strategy`` ('blas' or 'split') on ``threads`` threads;
    ``source`` says why: 'forced', 'one thread', 'small', 'unavailable', 'timed' (a trial in
    this process), 'disk' (a plan file made by an earlier process), 'watched' (the epochs
    were slower than planned and another candidate ran faster); ``seconds``: the trial's
    fastest step of each candidate ('split/4': seconds) when timed, else empty."""
    strategy: str
    source: str
    seconds: dict
    threads: int = 1

    @property
    def label(self):
        return label(self.strategy, self.threads)


def label(strategy, threads):
    """'split/4': a candidate's name in ``Plan.seconds`` and the logs."""
    return f"{strategy}/{int(threads)}"


def parse_label(text):
    """'split/4' -> ('split', 4); ValueError for anything else."""
    way, _, k = str(text).partition("/")
    if way not in STRATEGIES or not k.isdigit():
        raise ValueError(f"not a candidate: {text!r}")
    return way, int(k)


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
                raise SettingError(f"{ENV_VAR} must be one of {('auto',) + STRATEGIES}, "
                                   f"got {env!r}") from None
    return s


def cached(key) -> Optional[Plan]:
    """The plan this process keeps for key, or None."""
    with _plans_lock:
        return _plans.get(key)


def store(key, plan, replace=False):
    """Keep plan for key in this process (the first one stays unless ``replace``); returns the
    plan kept."""
    with _plans_lock:
        if replace:
            _plans[key] = plan
        else:
            _plans.setdefault(key, plan)
        return _plans[key]


def clear():
    """Forget every plan of this process (the next fits read the plan files or time again)."""
    with _plans_lock:
        _plans.clear()
    with _probed_lock:
        _probed.clear()


# -- the candidates --------------------------------------------------------------------------
def thread_counts(budget):
    """1, 2, 4, ... below the budget, and the budget."""
    budget = max(1, int(budget))
    counts, k = [], 1
    while k < budget:
        counts.append(k)
        k *= 2
    return counts + [budget]


def candidates(budget, split=True):
    """The (way, threads) a plan chooses among, in trial order: the quiet ones first (split,
    and blas on one thread: no OpenBLAS thread left spinning), then threaded blas."""
    counts = [k for k in thread_counts(budget) if k > 1]
    quiet = [("split", k) for k in reversed(counts)] if split else []
    return quiet + [("blas", 1)] + [("blas", k) for k in counts]


def is_valid(strategy, threads, budget, split=True):
    """Whether (strategy, threads) is one of the candidates for budget."""
    return (strategy, threads) in candidates(budget, split)


# -- the trial -------------------------------------------------------------------------------
# The whole trial's time (the untimed first call of each candidate aside): a few training steps
# of each candidate.  A candidate always runs MIN_RUNS timed steps, so big networks (a step of
# tens of milliseconds) take longer: their plans are kept on disk, paid once per machine.
TRIAL_SECONDS = 0.02
MIN_RUNS = 2
# Each candidate is timed in ROUNDS separate rounds and keeps its fastest step: a single round
# let one slow spell decide (a trial that timed split at 0.23 ms, its usual 0.13, kept the
# blas way for a whole fit, 1.6x slower per epoch, measured).
ROUNDS = 2
# Candidates within this fraction of the fastest count as equal: the fewest threads win.
TIE = 0.05
# A round whose timed calls have taken this many shares stops after one call; a candidate
# this many times slower than the fastest so far is not timed again.
SLOW_ROUND = 4
PRUNE = 8


def time_candidates(runners, seconds=TRIAL_SECONDS, rounds=ROUNDS, clock=time.perf_counter,
                    setup=None):
    """{label: fastest timed call of runner()} for runners {label: runner} given in trial
    order (``candidates``).  The threaded blas candidates run after all the others, so that
    OpenBLAS's threads, which spin after each threaded call, never share the cores with
    another candidate's steps.  In each round a candidate runs once untimed (its first call
    may load a kernel, and its thread pool wakes), then timed calls in a row, as training
    runs them, until its share of ``seconds`` has passed (at least MIN_RUNS, but only one
    once SLOW_ROUND shares have passed: on a busy machine a threaded call can take 100 ms).
    A candidate over PRUNE times the fastest so far skips its later rounds (and, after the
    first round, its timed calls, when its untimed call alone took that long and SLOW_ROUND
    shares: in the first round that call may be loading or compiling the candidate's kernel,
    which says nothing of its speed -- a blas/1 kernel's load from the cache, 13.6 ms against
    its 1.1 ms steps, once had the way judged hopeless without a timed step).  ``setup``,
    when given, is called with a label and returns a context manager that each of that
    candidate's rounds runs in (its thread counts)."""
    labels = list(runners)
    loud = [lb for lb in labels if parse_label(lb)[0] == "blas" and parse_label(lb)[1] > 1]
    quiet = [lb for lb in labels if lb not in loud]
    share = seconds / max(1, rounds * len(labels))
    best = {lb: math.inf for lb in labels}
    for group in (quiet, loud):
        for r in range(rounds):
            for lb in group:
                if r > 0 and best[lb] > PRUNE * min(best.values()):
                    continue
                run = runners[lb]
                with (setup(lb) if setup is not None else contextlib.nullcontext()):
                    t0 = clock()
                    run()
                    start = clock()
                    if r > 0 and start - t0 >= SLOW_ROUND * share and (
                            start - t0 > PRUNE * min(best.values())):
                        # hopeless: its first call alone took PRUNE times the fastest step
                        best[lb] = min(best[lb], start - t0)
                        continue
                    runs = 0
                    while True:
                        t0 = clock()
                        run()
                        t1 = clock()
                        best[lb] = min(best[lb], t1 - t0)
                        runs += 1
                        if t1 - start >= share and (runs >= MIN_RUNS
                                                    or t1 - start >= SLOW_ROUND * share):
                            break
    return best


def choose(seconds):
    """The label to run: the fastest, or among those within TIE of it the fewest threads."""
    fastest = min(seconds.values())
    near = [lb for lb, s in seconds.items() if s <= fastest * (1 + TIE)]
    return min(near, key=lambda lb: (parse_label(lb)[1], seconds[lb]))


def ranking(seconds):
    """Labels from the one ``choose`` picks to the slowest."""
    first = choose(seconds)
    return [first] + sorted((lb for lb in seconds if lb != first), key=seconds.get)


# -- plans on disk ---------------------------------------------------------------------------
_cpu_model = None


def cpu_model():
    """The CPU's model name (the plan files' key): /proc/cpuinfo's, else the platform's."""
    global _cpu_model
    if _cpu_model is None:
        name = ""
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.lower().startswith(("model name", "cpu model", "hardware")):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        _cpu_model = f"{platform.machine()} {name or platform.processor()}".strip()
    return _cpu_model


def plan_dir():
    """The folder of the plan files, or None when they are off (FASTMLP_PLAN_CACHE=0): the
    variable's folder if set, else ``fastmlp-plans`` in Numba's cache folder
    (NUMBA_CACHE_DIR) if set, else ``$XDG_CACHE_HOME/fastmlp/plans`` (``~/.cache``)."""
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    if env.lower() in ("0", "off", "false", "no", "none"):
        return None
    if env:
        return os.path.abspath(os.path.expanduser(env))
    import numba
    numba_dir = getattr(numba.config, "CACHE_DIR", "") or ""
    if numba_dir:
        return os.path.join(os.path.abspath(numba_dir), "fastmlp-plans")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastmlp", "plans")


def _path(key, prefix="plan"):
    folder = plan_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    return os.path.join(folder, f"{prefix}-{digest}.json")


def read_record(key, prefix="plan"):
    """The JSON object on disk for key (a plan file, or another record kept beside them), or
    None (no file, files off, unreadable, or holding another key).  Every other field is
    the caller's to check: the files are untrusted."""
    path = _path(key, prefix)
    if path is None:
        return None
    try:
        # without blocking (a FIFO put in its place would wait for a writer forever), and
        # regular files only
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = json.loads(f.read(4096).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("key") != repr(key):
        return None
    return data


def write_record(key, data, prefix="plan"):
    """Write {"key": repr(key), **data} to key's file, atomically (a temporary file renamed
    over it); silent when the files are off or the folder cannot be written."""
    path = _path(key, prefix)
    if path is None:
        return
    folder = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{prefix}-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"key": repr(key), **data}, f)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        log.debug("fastmlp: %s not saved to %s: %s", prefix, folder, e)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# A probed plan file older than this is probed again (once, by the next process that runs it):
# the machine's speed has phases -- on a VM whose host took the second core for minutes, a
# trial and its probe both found two threads no faster than one and kept blas/1 for W3, 1.3-1.6x
# slower than blas/2 once the core was back, measured -- and a verdict must not stand forever.
PROBED_MAX_AGE = 24 * 3600.0


def _record_age(key, prefix="plan"):
    """Seconds since key's file was written (inf when it cannot be told, or lies ahead)."""
    path = _path(key, prefix)
    try:
        age = time.time() - os.stat(path).st_mtime
    except (OSError, TypeError):
        return math.inf
    return age if age >= 0 else math.inf


def load(key, budget, split=True) -> Optional[Plan]:
    """The plan on disk for key, or None (no file, files off, or a file that is unreadable,
    holds another key or names no valid candidate for budget)."""
    data = read_record(key)
    if data is None:
        return None
    try:
        strategy, threads = parse_label(data.get("plan"))
    except ValueError:
        return None
    if not is_valid(strategy, threads, budget, split):
        return None
    # a plan its runner-up was already probed against on this machine is not probed again,
    # for PROBED_MAX_AGE
    probed = data.get("probed") is True and _record_age(key) < PROBED_MAX_AGE
    return Plan(strategy, "probed" if probed else "disk", {}, threads)


def save(key, plan, probed=False):
    """Write plan for key to its file, atomically (a temporary file renamed over it); silent
    when the files are off or the folder cannot be written.  ``probed``: the plan stood a
    probe against its runner-up (see ``Watch``), so later processes do not probe again."""
    write_record(key, {"plan": plan.label, "probed": bool(probed),
                       "seconds": {k: float(v) for k, v in plan.seconds.items()}})


# -- watching the epochs ---------------------------------------------------------------------
# An epoch whose time per step is above SLOW_FACTOR times the plan's estimate is slow; after
# SLOW_EPOCHS slow epochs in a row the next epoch tries the next candidate.  A try that lost
# doubles the slow epochs needed before the next try (no ping-pong on a machine that is simply
# slower now).
SLOW_FACTOR = 2.5
SLOW_EPOCHS = 2
# A plan that was timed or read from disk is checked once per machine (once per process where
# plan files are off or the machine is busy) against the other way's best candidate (its
# runner-up when there is no other way): epochs PROBE_EPOCH and the next (0-based) run that
# candidate, which replaces the plan when its
# faster epoch's steps are at least PROBE_GAIN faster (the first epoch of a way after another
# wakes its thread pool and touches its buffers: split/2's first epoch measured 0.29 ms a step
# where its next ran 0.15).  A trial taken in a slow spell (a plan file written then
# included) would otherwise stay in force as long as its epochs stay as slow as they began:
# measured, a plan file whose trial had timed split/2 at 3.0 ms a step (0.15 ms idle) kept a
# 2-core machine on blas/1, 1.6x slower per epoch, for every later fit.
PROBE_EPOCH = 2
PROBE_GAIN = 0.9
PROBE_EPOCHS = 2
_probed = set()  # keys probed in this process
_probed_lock = threading.Lock()


class Watch:
    """Watches the epochs of one trainer's auto plan (see the module's note).

    ``plan_for_epoch(plan)`` -> the plan the next epoch runs (the plan itself, or a candidate
    on trial); ``epoch_done(seconds, steps)`` records how long that epoch took, and returns
    the plan to keep from now on when it changed, else None.  The estimate is the trial's
    step time when there was a trial, lowered to the fastest epoch seen (per step); a plan from
    disk takes its estimate from its first epochs."""

    def __init__(self, plan, alternatives, key=None):
        self.key = key  # the plan's key (fastmlp._core.Trainer._plan_key)
        self.plan = plan
        self.alternatives = list(alternatives)  # labels, best first, the plan's own excluded
        self.estimate = plan.seconds.get(plan.label, math.inf) if plan.seconds else math.inf
        self.slow = 0
        self.needed = SLOW_EPOCHS
        self.trying = None  # the candidate the current epoch runs, when on trial
        self.last_slow = math.inf
        self.epochs = 0
        self.probe = plan.source in ("timed", "disk") and bool(self.alternatives)
        self.probing = 0  # epochs left of the probe
        self.probe_done = False  # set when a probe has just ended (the trainer saves the plan)
        self.probe_best = math.inf
        self.probe_queue = []  # the probe's candidates still to run
        self.probe_winner = (None, math.inf)  # the probe's fastest (candidate, s/step)
        # epoch seconds left of OpenBLAS's spinning after the last threaded blas epoch (the
        # trial times threaded blas last)
        self.spin_left = _contention.BLAS_SPIN_SECONDS if any(
            parse_label(lb)[0] == "blas" and parse_label(lb)[1] > 1
            for lb in plan.seconds) else 0.0

    def _after_spin(self, seconds):
        """Whether the epoch just run, on ``self.trying or self.plan``, ran while OpenBLAS's
        threads may still spin after a threaded blas epoch (a split epoch in that window:
        not to be judged); keeps the window's account."""
        ran = self.trying if self.trying is not None else self.plan
        if ran.strategy == "blas" and ran.threads > 1:
            self.spin_left = _contention.BLAS_SPIN_SECONDS
            return False
        spinning = self.spin_left > 0
        self.spin_left = max(0.0, self.spin_left - seconds)
        return spinning and ran.strategy == "split"

    @property
    def probe_pending(self):
        """Whether this watch runs, or would still run, the probe of its key in this process
        (a benchmark's warm-up runs it, so that no timed epoch runs a probe candidate)."""
        if self.trying is not None:
            return True
        with _probed_lock:
            return self.probe and self.key not in _probed

    def _claim_probe(self):
        """Whether this watch runs the probe of its key (once per process)."""
        with _probed_lock:
            if self.key in _probed:
                return False
            _probed.add(self.key)
            return True

    def _probe_candidates(self):
        """The candidates a probe runs: the other way's best (a slow spell during the trial
        inflates one way's steps, split/2 timed at 1.15 ms, 0.15 idle, and ranks it last),
        and, first, when the plan runs on fewer threads than the budget, its own way on the
        whole budget (a trial within TIE of a faster candidate keeps the fewest threads: W3
        timed split/2 1.05 ms, blas/1 1.07, blas/2 1.17 in a disturbed trial and kept blas/1,
        whose epochs ran 1.6x slower than blas/2's)."""
        valid = set(self.alternatives)
        budget = max([self.plan.threads] + [parse_label(lb)[1] for lb in self.alternatives])
        queue = []
        if self.plan.threads < budget and label(self.plan.strategy, budget) in valid:
            queue.append(label(self.plan.strategy, budget))
        other = [lb for lb in self.alternatives if parse_label(lb)[0] != self.plan.strategy]
        best_other = (other or self.alternatives)[0]
        if best_other not in queue:
            queue.append(best_other)
        return queue

    def _next_probe(self, queue):
        way, k = parse_label(queue.pop(0))
        self.probe_queue = queue
        self.trying = Plan(way, "probed", self.plan.seconds, k)
        self.probing = PROBE_EPOCHS
        self.probe_best = math.inf

    def plan_for_epoch(self):
        if self.trying is not None:
            return self.trying
        if (self.probe and self.epochs >= PROBE_EPOCH and math.isfinite(self.estimate)
                and self.slow == 0):
            self.probe = False
            if self._claim_probe():
                queue = self._probe_candidates()
                self.last_slow = self.estimate * PROBE_GAIN
                self.probe_winner = (None, math.inf)
                log.debug("fastmlp: plan %s runs %.3g ms/step: probing %s for %d epochs each",
                          self.plan.label, self.estimate * 1e3, ", ".join(queue),
                          PROBE_EPOCHS)
                self._next_probe(queue)
                return self.trying
        return self.plan

    def epoch_done(self, seconds, steps):
        if steps <= 0 or not (seconds >= 0):
            return None
        per_step = seconds / steps
        self.epochs += 1
        if self._after_spin(seconds):
            return None  # judged by the next epochs (a probe or a try goes on)
        if self.trying is not None:
            if self.probing:
                self.probing -= 1
                self.probe_best = per_step = min(self.probe_best, per_step)
                if self.probing:
                    return None  # the probe's next epoch runs the same candidate
                if per_step < self.probe_winner[1]:
                    self.probe_winner = (self.trying, per_step)
                if self.probe_queue:  # the next candidate of the probe
                    self._next_probe(self.probe_queue)
                    return None
                self.trying, per_step = self.probe_winner  # the probe's fastest candidate
                probing = True
            else:
                probing = False
            tried, self.trying = self.trying, None
            self.probe_done = probing
            if probing and per_step >= self.last_slow:
                log.debug("fastmlp: probe %s ran %.3g ms/step, not %.0f%% faster than %s: "
                          "plan kept", tried.label, per_step * 1e3, 100 * (1 - PROBE_GAIN),
                          self.plan.label)
                return None
            if per_step < self.last_slow:
                log.debug("fastmlp: plan %s ran %.3g ms/step against %.3g for %s: kept",
                          tried.label, per_step * 1e3, self.last_slow * 1e3, self.plan.label)
                old = self.plan
                self.alternatives = [lb for lb in self.alternatives if lb != tried.label]
                self.alternatives.append(old.label)
                self.plan = tried
                self.estimate = per_step
                self.slow = 0
                self.needed = SLOW_EPOCHS
                return tried
            log.debug("fastmlp: plan %s ran %.3g ms/step, no faster than %s: back",
                      tried.label, per_step * 1e3, self.plan.label)
            self.alternatives.remove(tried.label)
            self.alternatives.append(tried.label)
            self.needed *= 2
            self.slow = 0
            return None
        if per_step > SLOW_FACTOR * self.estimate:
            self.slow += 1
            self.last_slow = per_step
            if self.slow >= self.needed and self.alternatives:
                way, k = parse_label(self.alternatives[0])
                self.trying = Plan(way, "watched", self.plan.seconds, k)
                self.probe = False  # real epochs compare the two ways already
                log.debug("fastmlp: plan %s ran %.3g ms/step, %.1fx its estimate, %d epochs in "
                          "a row: trying %s", self.plan.label, per_step * 1e3,
                          per_step / self.estimate, self.slow, self.trying.label)
        else:
            self.slow = 0
            self.estimate = min(self.estimate, per_step)
        return None


def fallbacks(plan, budget, split=True):
    """The candidates an epoch watch tries instead of plan, best first: the trial's ranking
    when plan was timed; else the other way on as many threads, the split way on the whole
    budget, blas on one thread, then the rest."""
    valid = [label(w, k) for w, k in candidates(budget, split)]
    if plan.seconds:
        order = [lb for lb in ranking(plan.seconds) if lb in valid]
    else:
        other = "blas" if plan.strategy == "split" else "split"
        order = [label(other, plan.threads), label("split", budget), label("blas", 1)] + valid
    seen, out = {plan.label}, []
    for lb in order:
        if lb in valid and lb not in seen:
            seen.add(lb)
            out.append(lb)
    return out
