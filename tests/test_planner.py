"""The planner's plans: kept on disk and reused by a fresh process without a trial, a bad plan
file ignored, the thread count within the budget, and epochs that run much slower than planned
make the trainer try the next candidate (a scripted clock: nothing here is timed)."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from fastmlp import _contention, _planner, _threads
from fastmlp._core import Trainer
from fastmlp.optimizers import Adam

SIZES = [100, 64, 3]


def _data(n=8000):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, SIZES[0]))
    Y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], n)]
    return X, Y


def _trainer(n_threads=2):
    t = Trainer(SIZES, activation="relu", out_activation="softmax", loss="log_loss",
                dtype="float64", batch_size=200, n_threads=n_threads)
    t.init_params(np.random.RandomState(0))
    return t


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No plan in this process, an empty plan folder, no forced way, an idle machine."""
    monkeypatch.delenv("FASTMLP_STRATEGY", raising=False)
    monkeypatch.setattr(_contention, "machine_busy", lambda: False)
    monkeypatch.setattr(_contention, "run_queue_wait", lambda: None)
    monkeypatch.setattr(_contention, "BLAS_SPIN_SECONDS", 0.0)  # (tested on its own below)
    monkeypatch.setenv("FASTMLP_PLAN_CACHE", str(tmp_path))
    _planner.clear()
    yield tmp_path
    _planner.clear()


@pytest.fixture
def saved(monkeypatch):
    """The plans written to disk, as (label, probed), instead of writing them."""
    out = []
    monkeypatch.setattr(_planner, "save",
                        lambda key, plan, probed=False: out.append((plan.label, probed)))
    return out


def _fake_trial(seconds, calls):
    """A time_candidates that times nothing: the seconds given for the candidates asked."""
    def fake(runners, setup=None, **kw):
        calls.append(list(runners))
        return {lb: seconds.get(lb, 1.0) for lb in runners}
    return fake


FIT = r"""
import json, sys, numpy as np
from fastmlp import _contention, _planner
from fastmlp.estimators import MLPClassifier
_contention.machine_busy = lambda: False  # (the test machine's load must not decide)
_contention.run_queue_wait = lambda: None
if sys.argv[1] == "no-trial":
    def refuse(*a, **k):
        raise AssertionError("a trial ran")
    _planner.time_candidates = refuse
rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 100)); y = rng.integers(0, 10, 4000)
m = MLPClassifier(max_iter=1, random_state=0).fit(X, y)
p = m._trainer.plan
print(json.dumps({"source": p.source, "label": p.label}))
"""


def _fit_in_a_fresh_process(mode, folder):
    env = dict(os.environ, FASTMLP_PLAN_CACHE=str(folder), NUMBA_NUM_THREADS="2")
    for name in ("FASTMLP_STRATEGY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):  # a thread limit would make it plan for one thread
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", FIT, mode], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_plan_on_disk_is_reused_by_a_fresh_process_without_a_trial(tmp_path):
    first = _fit_in_a_fresh_process("trial", tmp_path)
    assert first["source"] == "timed"
    files = list(tmp_path.glob("plan-*.json"))
    assert len(files) == 1 and not list(tmp_path.glob(".plan-*"))  # renamed into place
    second = _fit_in_a_fresh_process("no-trial", tmp_path)
    assert second == {"source": "disk", "label": first["label"]}


def test_plan_files_are_off_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMLP_PLAN_CACHE", "0")
    assert _planner.plan_dir() is None
    monkeypatch.delenv("FASTMLP_PLAN_CACHE")
    monkeypatch.setattr(_planner.os, "environ", {"XDG_CACHE_HOME": str(tmp_path)})
    import numba
    monkeypatch.setattr(numba.config, "CACHE_DIR", "", raising=False)
    assert _planner.plan_dir() == os.path.join(str(tmp_path), "fastmlp", "plans")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "nb"), raising=False)
    assert _planner.plan_dir() == os.path.join(str(tmp_path / "nb"), "fastmlp-plans")


@pytest.mark.parametrize("content", [
    b"\x00\xff not json", b"{", b"[1, 2]", b'"split/2"', b"{}",
    b'{"key": "KEY", "plan": "split/64"}',      # more threads than the budget
    b'{"key": "KEY", "plan": "split/1"}',       # not a candidate
    b'{"key": "KEY", "plan": "rm -rf /"}',
    b'{"key": "KEY", "plan": ["split", 2]}',
    b'{"key": "other", "plan": "split/2"}',     # another key's plan
    b'{"key": "KEY", "plan": "blas/2", "seconds": {"blas/2": "x"}}',  # (valid: seconds unused)
    b"[" * 100000], ids=lambda c: repr(c[:20]))
def test_a_corrupt_or_hostile_plan_file_is_ignored(fresh, content):
    X, Y = _data()
    t = _trainer()
    o = Adam()
    calls = []
    key = t._plan_key(2, 200, o.name)
    path = _planner._path(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content.replace(b"KEY", json.dumps(repr(key))[1:-1].encode()))
    trial = _fake_trial({"split/2": 1e-3, "blas/1": 3e-3, "blas/2": 2e-3}, calls)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_planner, "time_candidates", trial)
        t.run_epoch(X, Y, o, o.init(t.params))
    if b"blas/2" in content:
        assert t.plan == _planner.Plan("blas", "disk", {}, 2) and not calls
        return
    assert calls and t.plan.source == "timed" and t.plan.label == "split/2"
    with open(path) as f:  # the trial's plan replaced the bad file
        assert json.load(f)["plan"] == "split/2"
    assert _planner.load(key, 2) == _planner.Plan("split", "disk", {}, 2)
    assert _planner.load(key, 1) is None  # a budget too small for the plan on disk


def test_a_trial_on_a_busy_machine_is_not_written(fresh, monkeypatch, caplog):
    """...and the debug log says how the plan was made."""
    caplog.set_level("DEBUG", logger="fastmlp")
    X, Y = _data()
    monkeypatch.setattr(_contention, "machine_busy", lambda: True)
    calls = []
    monkeypatch.setattr(_planner, "time_candidates",
                        _fake_trial({"split/2": 1e-3, "blas/1": 3e-3, "blas/2": 2e-3}, calls))
    t = _trainer()
    o = Adam()
    t.run_epoch(X, Y, o, o.init(t.params))
    assert t.plan.source == "timed" and calls
    assert not list(fresh.glob("plan-*"))
    text = caplog.text
    assert "plan split/2 for [100, 64, 3], batch 200" in text and "timed in" in text
    assert "busy: plan split/2 kept for this process only" in text


def test_the_thread_count_never_exceeds_the_budget(fresh, monkeypatch):
    X, Y = _data()
    calls = []
    monkeypatch.setattr(_planner, "time_candidates",
                        _fake_trial({"split/2": 1e-3, "blas/1": 3e-3, "blas/2": 2e-3}, calls))
    t = _trainer(n_threads=64)
    o = Adam()
    t.run_epoch(X, Y, o, o.init(t.params))
    budget = _threads.max_threads()
    assert all(_planner.parse_label(lb)[1] <= budget for lb in calls[0])
    assert 1 <= t.plan.threads <= budget
    assert t.ws.thread_grads.shape[0] <= budget - 1
    monkeypatch.setattr(_threads, "max_threads", lambda: 1)
    monkeypatch.setattr("fastmlp._core.max_threads", lambda: 1)
    t2 = _trainer(n_threads=64)
    t2.run_epoch(X, Y, o, o.init(t2.params))
    assert t2.plan == _planner.Plan("blas", "one thread", {}, 1)


class _SlowClock:
    """Each epoch takes steps x seconds_per_step[the way the epoch runs]: two reads per epoch."""

    def __init__(self, trainer, per_step):
        self.t, self.per_step, self.now, self.started = trainer, per_step, 0.0, None

    def __call__(self):
        if self.started is None:
            self.started = self.now
        else:
            steps = -(-self.t.ws_rows // self.t.batch_size)
            self.now += steps * self.per_step[self.t.plan.label]
            self.started = None
        return self.now


def _watched_epochs(per_step, epochs, monkeypatch, trial=None):
    X, Y = _data()
    calls = []
    trial = trial or {"blas/2": 1e-4, "split/2": 2e-4, "blas/1": 3e-4}
    monkeypatch.setattr(_planner, "time_candidates", _fake_trial(trial, calls))
    t = _trainer()
    t.ws_rows = X.shape[0]
    t.clock = _SlowClock(t, per_step)
    o = Adam()
    state = o.init(t.params)
    ran = []
    for _ in range(epochs):
        t.run_epoch(X, Y, o, state)
        ran.append((t.plan.label, t.plan.source))
    return t, ran, calls


def test_a_plan_whose_epochs_are_slow_changes_course(fresh, monkeypatch):
    """The trial said blas/2 (0.1 ms a step); its epochs run 1 ms a step (a busy machine):
    after SLOW_EPOCHS slow epochs the next epoch runs the trial's second best, split/2, which
    is faster now: it is kept, for this trainer and the process's next fits."""
    t, ran, calls = _watched_epochs({"blas/2": 1e-3, "split/2": 3e-4, "blas/1": 5e-4}, 5,
                                    monkeypatch)
    assert len(calls) == 1
    assert ran[:2] == [("blas/2", "timed")] * 2
    assert ran[2:] == [("split/2", "watched")] * 3
    assert t._watch.plan.label == "split/2"
    again = _trainer()
    X, Y = _data()
    o = Adam()
    again.run_epoch(X, Y, o, o.init(again.params))
    assert again.plan.label == "split/2" and len(calls) == 1


def test_a_slow_plan_whose_alternative_is_slower_stays(fresh, monkeypatch):
    """The tried candidate was slower still: back to the plan, and the next try waits twice
    as many slow epochs."""
    t, ran, _ = _watched_epochs({"blas/2": 1e-3, "split/2": 2e-3, "blas/1": 5e-3}, 8,
                                monkeypatch)
    labels = [lb for lb, _ in ran]
    assert labels[:4] == ["blas/2", "blas/2", "split/2", "blas/2"]
    # the next try comes after 2 * SLOW_EPOCHS slow epochs, and tries the next candidate
    assert labels[4:8] == ["blas/2"] * 3 + ["blas/1"]
    assert t._watch.plan.label == "blas/2"


def test_steady_epochs_keep_the_plan_after_one_probe_of_the_runner_up(fresh, monkeypatch,
                                                                        saved):
    """Epochs as fast as the trial said: the plan stays, but for one probe of the trial's
    runner-up (split/2) for PROBE_EPOCHS epochs, not PROBE_GAIN faster here; the plan is
    written as probed, so that later processes on this machine do not probe again."""
    monkeypatch.setattr(_contention, "machine_busy", lambda: False)
    t, ran, _ = _watched_epochs({"blas/2": 1.2e-4, "split/2": 1.15e-4, "blas/1": 1e-5}, 6,
                                monkeypatch)
    p = _planner.PROBE_EPOCH
    n = _planner.PROBE_EPOCHS
    assert ran == ([("blas/2", "timed")] * p + [("split/2", "probed")] * n
                   + [("blas/2", "timed")] * (6 - p - n))
    assert t._watch.plan.label == "blas/2"
    assert saved == [("blas/2", False), ("blas/2", True)]


def test_a_probed_plan_file_is_not_probed_again(fresh, monkeypatch, tmp_path):
    """A plan file written after its probe loads as 'probed': its epochs run it from the
    first to the last, without a trial or a probe."""
    monkeypatch.setenv("FASTMLP_PLAN_CACHE", str(tmp_path))
    monkeypatch.setattr(_contention, "machine_busy", lambda: False)
    X, Y = _data()
    t = _trainer()
    t.run_epoch(X, Y, Adam(), Adam().init(t.params))  # writes the plan file (timed)
    key = t._watch.key
    plan = _planner.load(key, _threads.max_threads())
    assert plan is not None and plan.source == "disk"
    _planner.save(key, plan, probed=True)
    assert _planner.load(key, _threads.max_threads()).source == "probed"
    _planner.clear()
    monkeypatch.setattr(_planner, "time_candidates", lambda *a, **k: pytest.fail("timed"))
    again = _trainer()
    again.ws_rows = X.shape[0]
    again.clock = _SlowClock(again, {plan.label: 1e-3, "blas/1": 1e-6, "blas/2": 1e-6,
                                     "split/2": 1e-6})
    o = Adam()
    state = o.init(again.params)
    for _ in range(_planner.PROBE_EPOCH + 3):
        again.run_epoch(X, Y, o, state)
        assert again.plan == _planner.Plan(plan.strategy, "probed", {}, plan.threads)


def test_a_probed_plan_file_is_probed_again_once_old(fresh, monkeypatch, tmp_path):
    """A probed verdict stands for PROBED_MAX_AGE: an older file (or one dated in the future)
    loads as 'disk', so the next process probes its runner-up again."""
    monkeypatch.setenv("FASTMLP_PLAN_CACHE", str(tmp_path))
    key = ("a key",)
    _planner.save(key, _planner.Plan("blas", "timed", {}, 1), probed=True)
    budget = _threads.max_threads()
    assert _planner.load(key, budget).source == "probed"
    path = _planner._path(key)
    now = os.stat(path).st_mtime
    os.utime(path, (now, now - _planner.PROBED_MAX_AGE - 60))
    assert _planner.load(key, budget) == _planner.Plan("blas", "disk", {}, 1)
    os.utime(path, (now, now + 3600))
    assert _planner.load(key, budget).source == "disk"
    _planner.save(key, _planner.Plan("blas", "probed", {}, 1), probed=True)  # probed again
    assert _planner.load(key, budget).source == "probed"


def test_a_plan_that_undersells_the_machine_is_replaced_by_its_probe(fresh, monkeypatch,
                                                                      saved):
    """A trial taken in a slow spell chose blas/2 although split/2 runs 12x faster now: the
    probe epoch shows it, split/2 is kept for this trainer, for the process's next fits (no
    second probe), and written over the plan file for later processes."""
    monkeypatch.setattr(_contention, "machine_busy", lambda: False)
    t, ran, calls = _watched_epochs({"blas/2": 1.2e-4, "split/2": 1e-5, "blas/1": 1e-5}, 6,
                                    monkeypatch)
    p = _planner.PROBE_EPOCH
    assert ran == [("blas/2", "timed")] * p + [("split/2", "probed")] * (6 - p)
    assert saved[-1] == ("split/2", True)
    again = _trainer()
    again.clock = _SlowClock(again, {"blas/2": 1.2e-4, "split/2": 1e-5, "blas/1": 1e-6})
    again.ws_rows = _data()[0].shape[0]
    X, Y = _data()
    o = Adam()
    state = o.init(again.params)
    for _ in range(p + 3):  # blas/1 would be faster still: no second probe in this process
        again.run_epoch(X, Y, o, state)
        assert again.plan.label == "split/2"
    assert len(calls) == 1


@pytest.mark.parametrize("strategy", _planner.STRATEGIES)
def test_thread_settings_are_made_once_per_fit_not_per_epoch(monkeypatch, strategy):
    """The estimators' and MLP's epoch loops hold the thread settings (Trainer.session): the
    limits are set when the fit starts and restored when it ends, not around every epoch."""
    import fastmlp
    import fastmlp._core as core
    from fastmlp.estimators import MLPClassifier
    monkeypatch.setenv("FASTMLP_STRATEGY", strategy)
    entered = []
    real = core.thread_limits

    def counting(n=None):
        entered.append(n)
        return real(n)
    monkeypatch.setattr(core, "thread_limits", counting)
    X, Y = _data(n=2000)
    y = Y.argmax(1)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MLPClassifier(max_iter=6, tol=0, n_iter_no_change=100, random_state=0).fit(X, y)
    assert m.n_iter_ == 6 and len(entered) == 1
    entered.clear()
    fastmlp.MLP(SIZES, dtype="float64", n_threads=2, random_state=0).fit(X, Y, epochs=5)
    assert len(entered) == 1


def test_the_probe_runs_the_other_way_even_when_the_trial_ranked_it_last(fresh, monkeypatch):
    """A slow spell during the trial timed split/2 slowest (it ranks blas/2, blas/1, split/2):
    the probe runs split/2, the other way's best, not the runner-up blas/1, and keeps it."""
    t, ran, _ = _watched_epochs({"blas/2": 1.2e-4, "blas/1": 1.1e-4, "split/2": 1e-5}, 5,
                                monkeypatch,
                                trial={"blas/2": 1e-4, "blas/1": 2e-4, "split/2": 5e-4})
    p = _planner.PROBE_EPOCH
    assert ran == [("blas/2", "timed")] * p + [("split/2", "probed")] * (5 - p)


def test_contention_is_waiting_for_cpus_that_other_programs_took():
    """Contention: the run-queue waiting of this process's threads over the stretch's wall
    time, from two readings; contended when they waited over CONTENDED_SHARE of it while
    the process used under OWN_CPU_SHARE of its budget (else the waiting was for fastmlp's
    own threads, e.g. OpenBLAS's spinning after a threaded call); None where unknown."""
    def meter(waited_s, cpu_s, budget=2):
        clock, wait, cpu = iter([10.0, 12.0]), iter([0, int(waited_s * 1e9)]), iter([0.0, cpu_s])
        return _contention.Contention(budget, clock=lambda: next(clock),
                                   waited=lambda: next(wait), cpu=lambda: next(cpu))
    assert meter(0.6, 2.0).shares() == (pytest.approx(0.3), pytest.approx(1.0))
    assert meter(0.6, 2.0).contended()  # waited 30%, used 1 of 2 cores: another program
    assert not meter(0.6, 3.8).contended()  # used 1.9 of 2 cores: waited for its own threads
    assert not meter(0.4, 1.0).contended()  # waited 20%: an idle machine's wake-ups
    assert not meter(0.6, 1.9, budget=1).contended()  # used 0.95 of its one core
    assert _contention.Contention(waited=lambda: None).share() is None
    w = _contention.run_queue_wait()
    assert w is None or (isinstance(w, int) and w >= 0)


def test_a_trial_whose_threads_waited_for_cpus_is_not_written(fresh, monkeypatch, caplog,
                                                               saved):
    """The load average can miss a busy spell (a 2-core machine running two other programs
    shows a load of 2, not above it); the trial's own threads waiting for a CPU do not: such
    a trial is kept for the process only, and so is its probe."""
    caplog.set_level("DEBUG", logger="fastmlp")
    waited = [0]

    def waiting():  # every reading: 1 s more of waiting, far above the wall time between
        waited[0] += 10 ** 9
        return waited[0]
    monkeypatch.setattr(_contention, "run_queue_wait", waiting)
    monkeypatch.setattr(_contention, "cpu_time", lambda: 0.0)  # and no CPU time used
    t, ran, _ = _watched_epochs({"blas/2": 1.2e-4, "split/2": 1.15e-4, "blas/1": 1e-5}, 6,
                                monkeypatch)
    assert ("split/2", "probed") in ran  # the probe ran...
    assert saved == []  # ...but neither the trial nor the probe was written
    assert "waited for a CPU" in caplog.text
    monkeypatch.setattr(_contention, "run_queue_wait", lambda: 0)  # no waiting: written
    _planner.clear()
    _watched_epochs({"blas/2": 1.2e-4, "split/2": 1.15e-4, "blas/1": 1e-5}, 6, monkeypatch)
    assert saved == [("blas/2", False), ("blas/2", True)]


HOG = r"""
import os, subprocess, sys, time
from fastmlp import _contention
if _contention.run_queue_wait() is None:
    print("unknown"); sys.exit(0)
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
try:
    time.sleep(0.2)
    c = _contention.Contention(1)
    t = time.perf_counter()
    while time.perf_counter() - t < 0.4:
        pass
    print(c.contended(), *c.shares())
finally:
    hog.kill()
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_a_thread_sharing_its_cpu_with_a_busy_program_is_seen_waiting():
    """The real meter: this process and a busy program on one CPU (the program inherits the
    affinity) each get about half of it: the meter sees the process wait about half of the
    time and use about half of its one core, contended.  (On a machine busier still, more.)"""
    out = subprocess.run([sys.executable, "-c", HOG], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.returncode == 0, out.stderr
    if out.stdout.strip() == "unknown":
        pytest.skip("this kernel does not report run-queue waiting")
    contended, waited, used = out.stdout.split()
    assert contended == "True", out.stdout  # waited ~0.5 of the time, used ~0.5 of 1 core
    assert float(waited) > _contention.CONTENDED_SHARE and float(used) < _contention.OWN_CPU_SHARE


def test_split_epochs_while_openblas_spins_are_not_judged(fresh, monkeypatch):
    """After a threaded blas epoch (or a trial that timed threaded blas last) OpenBLAS's
    threads spin for ~0.1 s, and split epochs then run many times slower: the watch does not
    judge the split epochs of that window (epoch time), so it neither leaves split for blas/2
    nor lets a probe of split lose because of them."""
    monkeypatch.setattr(_contention, "BLAS_SPIN_SECONDS", 0.12)
    watch = _planner.Watch(_planner.Plan("split", "timed", {"split/2": 1e-4, "blas/2": 2e-4,
                                                           "blas/1": 3e-4}, 2),
                           ["blas/2", "blas/1"], key="k")
    watch.probe = False  # (the probe is the second half)
    for _ in range(3):  # 40 ms epochs (1 ms a step, 10x the trial's) while OpenBLAS spins
        assert watch.plan_for_epoch().label == "split/2"
        assert watch.epoch_done(0.04, 40) is None
    assert watch.slow == 0 and watch.trying is None  # 3 epochs (0.12 s) not judged...
    for _ in range(2):  # ...and slow split epochs after the window are
        watch.epoch_done(0.04, 40)
    assert watch.trying is not None and watch.trying.label == "blas/2"
    # a probe of split after blas/2 epochs: its epochs in the window do not count
    blas = _planner.Watch(_planner.Plan("blas", "timed", {"blas/2": 1e-4, "split/2": 1e-4}, 2),
                          ["split/2"], key="probe-after-blas")
    ran = []
    for epoch in range(12):
        plan = blas.plan_for_epoch()
        ran.append(plan.label)
        spinning = plan.label == "split/2" and ran.count("split/2") <= 3
        blas.epoch_done(0.04 if plan.label == "blas/2" else 0.04 if spinning else 0.002, 40)
    # epochs 0-1 blas/2; the probe (split/2) goes on past its 3 spinning epochs, wins (2 ms
    # against 40 ms) and is kept
    assert ran[:2] == ["blas/2", "blas/2"] and ran[2:7] == ["split/2"] * 5
    assert blas.plan.label == "split/2"


def test_a_trial_waits_for_openblas_threads_spinning_after_fastmlps_last_blas_call(
        monkeypatch):
    """After fastmlp's calls on several BLAS threads end, a trial first waits (at most
    BLAS_SPIN_SECONDS) for OpenBLAS's threads to stop spinning, so that they do not share the
    cores with the split candidates it times first; after one-thread calls it does not."""
    slept = []
    monkeypatch.setattr(_planner.time, "sleep", slept.append)
    monkeypatch.setattr(_contention, "_blas_spin_ends", [0.0])
    _contention.threaded_blas_done(1)
    _contention.wait_for_blas_spin()
    assert slept == []
    _contention.threaded_blas_done(2)
    _contention.wait_for_blas_spin()
    assert len(slept) == 1 and 0 < slept[0] <= _contention.BLAS_SPIN_SECONDS
    # a blas epoch of a trainer counts as such a call
    monkeypatch.setattr(_contention, "_blas_spin_ends", [0.0])
    monkeypatch.setenv("FASTMLP_STRATEGY", "blas")
    X, Y = _data()
    t = _trainer()
    o = Adam()
    t.run_epoch(X, Y, o, o.init(t.params))
    assert _contention._blas_spin_ends[0] > 0


def test_a_plan_on_fewer_threads_than_the_budget_is_probed_on_the_whole_budget_too(
        fresh, monkeypatch, saved):
    """A trial within TIE keeps the fewest threads (blas/1); the probe then runs the plan's
    way on the whole budget (blas/2) and the other way's best (split/2), PROBE_EPOCHS each,
    and keeps the fastest of them when it is PROBE_GAIN faster: here blas/2."""
    t, ran, _ = _watched_epochs({"blas/1": 1.1e-3, "blas/2": 0.66e-3, "split/2": 1.1e-3}, 10,
                                monkeypatch,
                                trial={"split/2": 1.05e-3, "blas/1": 1.07e-3, "blas/2": 1.17e-3})
    p, n = _planner.PROBE_EPOCH, _planner.PROBE_EPOCHS
    assert ran[:p] == [("blas/1", "timed")] * p
    assert ran[p:p + 2 * n] == [("blas/2", "probed")] * n + [("split/2", "probed")] * n
    assert all(r == ("blas/2", "probed") for r in ran[p + 2 * n:])
    assert t._watch.plan.label == "blas/2" and saved[-1] == ("blas/2", True)


def test_the_trials_contention_is_measured_after_its_wait_for_openblas(fresh, monkeypatch):
    """The trial's wait for OpenBLAS's spin is idle time: counted in the contention meter's
    wall time it diluted the waiting (beside a busy program a trial read 0.11-0.22 and was
    written; measured after the wait, 0.42-0.67)."""
    order = []
    real = _contention.Contention
    monkeypatch.setattr(_contention, "wait_for_blas_spin", lambda: order.append("wait"))
    monkeypatch.setattr(_contention, "Contention",
                        lambda *a, **k: order.append("meter") or real(*a, **k))
    monkeypatch.setattr(_planner, "time_candidates",
                        _fake_trial({"split/2": 1e-3, "blas/1": 3e-3, "blas/2": 2e-3}, []))
    X, Y = _data()
    t = _trainer()
    o = Adam()
    t.run_epoch(X, Y, o, o.init(t.params))
    assert order[:2] == ["wait", "meter"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_folder_in_a_plan_files_place_is_ignored_without_waiting(tmp_path,
                                                                            monkeypatch):
    # open() on a FIFO waits for a writer: a fit must neither hang on one nor read a folder
    monkeypatch.setenv("FASTMLP_PLAN_CACHE", str(tmp_path))
    key = ("a", "key")
    path = _planner._path(key)
    os.mkfifo(path)
    got = []
    reader = threading.Thread(target=lambda: got.append(_planner.read_record(key)),
                              daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # let the blocked open() return before failing
        with open(path, "wb"):
            pass
        pytest.fail("reading a FIFO in a plan file's place waited for a writer")
    assert got == [None]
    os.unlink(path)
    os.mkdir(path)
    assert _planner.read_record(key) is None
    os.rmdir(path)
    _planner.write_record(key, {"plan": "split/2"})
    assert _planner.read_record(key)["plan"] == "split/2"
