"""Threads: fastmlp leaves Numba's threading layer alone, keeps one pool busy at a time,
restores every setting, runs from several Python threads at once and survives a fork; every
way of running a step gives the same numbers (checked in subprocesses where a process-wide
choice is involved)."""
import json
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastmlp
from fastmlp import _planner, _threads
from fastmlp._core import Trainer
from fastmlp.optimizers import SGD, Adam

# variables that would change the thread counts or the layer a subprocess sees
_THREAD_ENV = ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
               "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "FASTMLP_STRATEGY")


def _run(code, timeout=600, **env):
    full = {k: v for k, v in os.environ.items() if k not in _THREAD_ENV}
    full.update(env, NUMBA_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=timeout)


def _json(out):
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = r"""
import json, numba, numpy as np
layer_before = numba.config.THREADING_LAYER
import fastmlp
from fastmlp import _threads
layer_after_import = numba.config.THREADING_LAYER
X = np.random.default_rng(0).normal(size=(600, 8)); Y = X[:, :2] ** 2
m = fastmlp.MLP([8, 300, 2], dtype="float64", random_state=0)
m.fit(X, Y, epochs=1, batch_size=600)
with _threads.thread_limits(None) as n:
    inside = numba.get_num_threads()
print(json.dumps({"config_before": layer_before, "config_after": layer_after_import,
                  "config_end": numba.config.THREADING_LAYER,
                  "layer": numba.threading_layer(), "inside": inside, "n": n,
                  "after": numba.get_num_threads()}))
"""


def test_import_and_fit_leave_the_threading_layer_to_numba():
    r = _json(_run(PROBE))
    assert r["config_before"] == r["config_after"] == r["config_end"] == "default"
    try:  # Numba's own default order: tbb, then omp, then workqueue
        import numba.np.ufunc.tbbpool  # noqa: F401
        expect = "tbb"
    except ImportError:
        try:
            import numba.np.ufunc.omppool  # noqa: F401
            expect = "omp"
        except ImportError:
            expect = "workqueue"
    assert r["layer"] == expect
    assert r["inside"] == 2 and r["n"] == 2 and r["after"] == 2


def test_openblas_num_threads_in_the_environment_is_respected():
    r = _json(_run(PROBE, OPENBLAS_NUM_THREADS="1"))
    assert r["n"] == 1 and r["inside"] == 1 and r["after"] == 2


def test_the_users_choice_of_layer_stands():
    r = _json(_run(PROBE, NUMBA_THREADING_LAYER="workqueue"))
    assert r["layer"] == "workqueue" and r["config_end"] == "workqueue"


USER_PARALLEL = r"""
import threading, numpy as np
from numba import njit, prange
import fastmlp
X = np.random.default_rng(0).normal(size=(3000, 20)); Y = X[:, :3].copy()
fastmlp.MLP([20, 64, 3], dtype="float64", random_state=0).fit(X, Y, epochs=1, batch_size=100)

@njit(parallel=True)
def user_sum(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += x[i] * 2
    return s

x = np.ones(200000)
bad = []
def work():
    for _ in range(300):
        if user_sum(x) != 400000.0:
            bad.append(1)
ts = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
print("ok", len(bad))
"""


def test_users_parallel_numba_code_from_two_threads_keeps_working_after_import():
    out = _run(USER_PARALLEL)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["ok", "0"]


FORK = r"""
import os, sys, threading, time, numpy as np
import fastmlp
X = np.random.default_rng(0).normal(size=(4000, 30)); Y = X[:, :2] ** 2
way = os.environ["FASTMLP_STRATEGY"]
for w in ("blas", way):  # both ways compiled before the race (the child runs the blas way)
    os.environ["FASTMLP_STRATEGY"] = w
    fastmlp.MLP([30, 16, 2], dtype="float64", random_state=0).fit(X[:200], Y[:200], epochs=1,
                                                                  batch_size=50)
inside = threading.Event()
def train():
    m = fastmlp.MLP([30, 64, 2], dtype="float64", random_state=0)
    inside.set()
    m.fit(X, Y, epochs=40, batch_size=20)
t = threading.Thread(target=train); t.start()
inside.wait(); time.sleep(0.3)
pid = os.fork()
if pid == 0:
    m = fastmlp.MLP([30, 16, 2], dtype="float64", random_state=0)
    m.fit(X[:200], Y[:200], epochs=2, batch_size=50)
    print("child ok", flush=True)
    os._exit(0 if np.isfinite(m.predict(X[:5])).all() else 3)
import signal
def hung(signum, frame):  # a watchdog, not a timing: a child still running after 240 s hangs
    os.kill(pid, 9); print("child hung", flush=True); os._exit(1)
signal.signal(signal.SIGALRM, hung); signal.alarm(240)
_, status = os.waitpid(pid, 0)
signal.alarm(0)
t.join()
print("parent ok", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("strategy", ["blas", "split"])
def test_fork_while_another_thread_is_inside_a_call(strategy):
    out = _run(FORK, FASTMLP_STRATEGY=strategy)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "child ok" in out.stdout and out.stdout.split()[-3:] == ["parent", "ok", "0"]


def test_default_respects_limits_already_in_force():
    """n_threads=None inside threadpoolctl's limits (as in a joblib worker) or after
    numba.set_num_threads uses the smaller count, and changes nothing on exit."""
    with threadpool_limits(1, user_api="blas"):
        with _threads.thread_limits(None) as n:
            assert n == 1
            assert numba.get_num_threads() == 1
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with _threads.thread_limits(None) as n:
            assert n == 1
    finally:
        numba.set_num_threads(before)
    with _threads.thread_limits(2) as n:  # an explicit count is obeyed
        assert n == 2 and numba.get_num_threads() == min(2, _threads.max_threads())
    assert numba.get_num_threads() == before


def _blas_counts():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "blas")


def test_blas_requests_are_shared_and_the_users_value_comes_back():
    with threadpool_limits(2, user_api="blas"):
        before = _blas_counts()
        with _threads.blas_threads(2):
            with _threads.blas_threads(1):  # the smallest request is in force
                assert {k for _, k in _blas_counts()} == {1}
            assert {k for _, k in _blas_counts()} == {2}
        assert _blas_counts() == before


@pytest.mark.parametrize("strategy", ["blas", "split"])
def test_thread_settings_are_restored(strategy, monkeypatch):
    """Settings unlike the ones a fit uses (1 thread everywhere around a 2-thread fit) are
    all back when the fit returns."""
    monkeypatch.setenv("FASTMLP_STRATEGY", strategy)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(3000, 64)), rng.normal(size=(3000, 2))
    before_numba = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            before_blas = _blas_counts()
            m = fastmlp.MLP([64, 256, 2], dtype="float64", n_threads=2, random_state=0)
            m.fit(X, Y, epochs=1, batch_size=512)
            assert m.workspace_.plan.strategy == strategy
            assert numba.get_num_threads() == 1
            assert _blas_counts() == before_blas
    finally:
        numba.set_num_threads(before_numba)


def _data(n=2400, n_in=40, n_out=3, dtype="float64"):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, n_in)).astype(dtype)
    Y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, n)]
    return X, Y


def _train(strategy, dtype="float64", n_threads=2, opt=Adam, sw=None, sparse=False,
           epochs=2, batch_size=128, sizes=(40, 32, 16, 3), activation="tanh", per_call=None,
           dropout=None):
    X, Y = _data(dtype=dtype)
    if sparse:
        import scipy.sparse as sp
        X = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0).astype(dtype))
    t = Trainer(list(sizes), activation=activation, out_activation="softmax",
                loss="log_loss", dtype=dtype, batch_size=batch_size, alpha=1e-3,
                n_threads=n_threads, strategy=strategy)
    t.init_params(np.random.RandomState(0))
    t.steps_per_call = per_call
    if dropout is not None:
        t.set_dropout(dropout, seed=5)
    o = opt()
    state = o.init(t.params)
    order = np.random.RandomState(1).permutation(X.shape[0]).astype(np.int64)
    losses = [t.run_epoch(X, Y, o, state, order=order if e % 2 == 0 else None,
                          sample_weight=sw)[0] for e in range(epochs)]
    full = t.loss_and_grads(X[:batch_size], Y[:batch_size])
    return t, np.array(losses + [full]), t.params.copy(), t.grads.copy()


@pytest.mark.parametrize("case", [dict(), dict(dtype="float32"), dict(opt=SGD),
                                  dict(sw=np.linspace(0.5, 2, 2400)), dict(sparse=True),
                                  dict(batch_size=7, epochs=1), dict(activation="relu"),
                                  dict(activation="gelu"), dict(sizes=(40, 300, 250, 3))],
                         ids=["f64", "f32", "sgd", "weights", "csr", "tiny-batch", "relu",
                              "gelu", "parallel-reduction"])
def test_every_strategy_gives_the_same_numbers(case):
    out = {s: _train(s, **case) for s in _planner.STRATEGIES}
    t, losses, params, grads = out["split"]
    assert t.plan.strategy == "split" and t.ws.thread_grads.shape[0] == 1
    tol = 2e-4 if case.get("dtype") == "float32" else 1e-9
    for s, (_, l2, p2, g2) in out.items():
        np.testing.assert_allclose(l2, losses, rtol=tol)
        np.testing.assert_allclose(p2, params, rtol=tol, atol=tol)
        np.testing.assert_allclose(g2, grads, rtol=tol, atol=tol)


@pytest.mark.parametrize("strategy", _planner.STRATEGIES)
@pytest.mark.parametrize("case", [dict(), dict(dtype="float32", opt=lambda: SGD(0.1, 0.9, True)),
                                  dict(sw=np.linspace(0.5, 2, 2400)), dict(dropout=[0.2, 0.1]),
                                  dict(batch_size=7, epochs=1), dict(sizes=(40, 300, 250, 3)),
                                  dict(sizes=(40, 300, 250, 3), opt=lambda: SGD(0.1, 0.9, True),
                                       dtype="float32")],
                         ids=["f64-adam", "f32-nesterov", "weights", "dropout", "tiny-batch",
                              "parallel-update-adam", "parallel-update-nesterov"])
def test_many_steps_per_call_equal_one_step_per_call(strategy, case):
    """run_epoch's multi-step kernel calls (auto: here the whole epoch in a few calls; 5 steps)
    take exactly the steps of one call per batch: same losses, parameters, optimizer state."""
    runs = [_train(strategy, per_call=k, **case) for k in (1, 5, None)]
    for t, losses, params, grads in runs[1:]:
        assert t._steps_per_call() > 1
        np.testing.assert_array_equal(losses, runs[0][1])
        np.testing.assert_array_equal(params, runs[0][2])
        np.testing.assert_array_equal(grads, runs[0][3])


def test_a_stop_request_is_seen_between_kernel_calls():
    X, Y = _data()
    t = Trainer([40, 32, 3], activation="relu", out_activation="softmax", loss="log_loss",
                dtype="float64", batch_size=100, n_threads=1)
    t.init_params(np.random.RandomState(0))
    t.steps_per_call = 4
    o = Adam()
    state = o.init(t.params)
    t._steps_done = lambda k: setattr(t, "stop_requested", True)
    total, done = t.run_epoch(X, Y, o, state)
    assert done == 400 and state.count[0] == 4  # one call of 4 batches, then the stop


@pytest.mark.parametrize("strategy", _planner.STRATEGIES)
def test_each_strategy_is_bit_identical_run_to_run(strategy):
    a = _train(strategy)
    b = _train(strategy)
    assert a[0].plan.strategy == strategy
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


def test_split_deltas_hold_the_whole_batch():
    """Under the split way every thread writes its rows of A[l] and delta[l]: the workspace
    holds the same batch-wide values as the blas way."""
    X, Y = _data()
    ws = {}
    for s in _planner.STRATEGIES:
        t = Trainer([40, 32, 3], activation="relu", out_activation="softmax", loss="log_loss",
                    dtype="float64", batch_size=100, n_threads=2, strategy=s)
        t.init_params(np.random.RandomState(0))
        t.loss_and_grads(X[:100], Y[:100])
        ws[s] = ([t.ws.A(l).copy() for l in (1, 2)], [t.ws.delta(l).copy() for l in (1, 2)],
                 t.grads.copy())
    for a, b in zip(ws["blas"][0] + ws["blas"][1], ws["split"][0] + ws["split"][1]):
        assert a.shape[0] == 100
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ws["blas"][2], ws["split"][2], rtol=1e-10, atol=1e-14)


def test_planner_times_once_per_process_and_shows_its_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTMLP_STRATEGY", raising=False)
    monkeypatch.setenv("FASTMLP_PLAN_CACHE", str(tmp_path))  # no plan file yet
    _planner.clear()
    X, Y = _data(n=4000, n_in=100)
    m = fastmlp.MLP([100, 100, 3], dtype="float64", n_threads=2, random_state=0)
    m.fit(X, Y, epochs=1, batch_size=200)
    plan = m.workspace_.plan
    assert plan.source == "timed" and plan.strategy in _planner.STRATEGIES
    assert set(plan.seconds) == {_planner.label(w, k) for w, k in _planner.candidates(2)}
    assert plan.label == _planner.choose(plan.seconds)
    m2 = fastmlp.MLP([100, 100, 3], dtype="float64", n_threads=2, random_state=0)
    m2.fit(X, Y, epochs=1, batch_size=200)
    assert m2.workspace_.plan is plan  # kept for the process
    # the trial runs on scratch gradients: the fit equals a fit forced to the chosen way
    monkeypatch.setenv("FASTMLP_STRATEGY", plan.strategy)
    m3 = fastmlp.MLP([100, 100, 3], dtype="float64", n_threads=plan.threads, random_state=0)
    m3.fit(X, Y, epochs=1, batch_size=200)
    np.testing.assert_array_equal(m3.coefs_[0], m.coefs_[0])
    # tiny fits are not worth a trial (nor compiling the parallel kernel)
    small = fastmlp.MLP([100, 4, 3], random_state=0, n_threads=2)
    monkeypatch.delenv("FASTMLP_STRATEGY")
    small.fit(X[:50], Y[:50], epochs=1)
    assert small.workspace_.plan.source == "small"


def test_planner_trial_order_rounds_and_choice():
    """time_candidates on a scripted clock: the split candidates and blas on one thread run
    before any threaded blas candidate (whose OpenBLAS threads spin afterwards), each in
    ROUNDS rounds; a candidate keeps its fastest step, so one slow round (a noisy machine)
    does not decide; a round is one untimed call and MIN_RUNS timed ones (one once the timed
    calls took SLOW_ROUND shares); a candidate PRUNE times slower than the fastest is not
    timed again; among candidates within TIE of the fastest, the fewest threads win."""
    clock = [0.0]
    calls = []
    step = {"split/4": lambda r: 6e-3 if r == 0 else 1e-3, "split/2": lambda r: 1.02e-3,
            "blas/1": lambda r: 9e-3, "blas/2": lambda r: 2e-3, "blas/4": lambda r: 3e-3}
    rounds = {lb: -1 for lb in step}

    def runner(lb):
        def run():
            if not calls or calls[-1] != lb:
                rounds[lb] += 1
            calls.append(lb)
            clock[0] += step[lb](rounds[lb])
        return run

    labels = [_planner.label(w, k) for w, k in _planner.candidates(4)]
    assert labels == ["split/4", "split/2", "blas/1", "blas/2", "blas/4"]
    share = _planner.TRIAL_SECONDS / (_planner.ROUNDS * len(labels))
    assert 9e-3 >= _planner.SLOW_ROUND * share > 6e-3
    assert 9e-3 > _planner.PRUNE * 1.02e-3 > 6e-3
    best = _planner.time_candidates({lb: runner(lb) for lb in labels}, clock=lambda: clock[0])
    runs = [lb for i, lb in enumerate(calls) if i == 0 or calls[i - 1] != lb]
    assert runs == ["split/4", "split/2", "blas/1", "split/4", "split/2",
                    "blas/2", "blas/4", "blas/2", "blas/4"]
    # blas/1: one timed call after its untimed one (that took SLOW_ROUND shares), and 8.8x
    # the fastest step: no second round
    assert calls.count("blas/1") == 2
    assert best == pytest.approx({lb: step[lb](1) for lb in labels})
    assert _planner.choose(best) == "split/2"  # within TIE of split/4, on fewer threads
    assert _planner.ranking(best)[:3] == ["split/2", "split/4", "blas/2"]
    assert _planner.thread_counts(12) == [1, 2, 4, 8, 12]
    assert _planner.candidates(1) == [("blas", 1)]


def test_a_first_call_that_loads_a_kernel_does_not_rule_a_candidate_out():
    """In the first round a candidate's untimed call may load (or compile) its kernel: however
    long it takes, the candidate's timed steps decide.  After the first round a hopeless
    untimed call still skips the timed ones."""
    clock = [0.0]
    seen = {}

    def runner(lb, first, then):
        def run():
            seen[lb] = seen.get(lb, 0) + 1
            clock[0] += first if seen[lb] == 1 else then
        return run

    runners = {"split/2": runner("split/2", 1e-3, 1e-3),
               "blas/1": runner("blas/1", 50e-3, 0.6e-3),  # a 50 ms load, then fastest
               "blas/2": runner("blas/2", 2e-3, 2e-3)}
    best = _planner.time_candidates(runners, clock=lambda: clock[0])
    assert best["blas/1"] == pytest.approx(0.6e-3)
    assert _planner.choose(best) == "blas/1"


def test_numba_num_threads_below_one_is_named_by_the_first_call_not_the_import():
    """Numba's own import refuses NUMBA_NUM_THREADS=0 without naming it: fastmlp imports, the
    user's environment stays as it was, and the first call raises a SettingError (a
    ValueError) that names the variable."""
    code = (
        "import os, numpy as np\n"
        "import fastmlp\n"
        "from fastmlp._environment import SettingError\n"
        "assert os.environ['NUMBA_NUM_THREADS'] == '0'\n"
        "m = fastmlp.MLP([3, 4, 1], random_state=0)\n"
        "try:\n"
        "    m.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=1)\n"
        "except SettingError as e:\n"
        "    assert isinstance(e, ValueError)\n"
        "    print('refused:', e)\n")
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_ENV}
    env["NUMBA_NUM_THREADS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "refused: NUMBA_NUM_THREADS='0' is not a thread count" in out.stdout


def test_an_unknown_threading_layer_is_named(monkeypatch):
    """Numba's refusal to start a layer the user asked for comes back naming the variable."""
    from fastmlp._environment import SettingError, threading_layer_error
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "bogus")
    err = threading_layer_error(ValueError("The threading layer requested 'bogus' is\nunknown"))
    assert isinstance(err, SettingError)
    assert str(err).startswith("NUMBA_THREADING_LAYER='bogus': The threading layer requested "
                               "'bogus' is unknown (")
    monkeypatch.delenv("NUMBA_THREADING_LAYER")
    assert threading_layer_error(ValueError("other")) is None  # Numba's own error stands


def test_one_thread_runs_the_blas_way():
    t = _train(None, n_threads=1, epochs=1)[0]
    assert t.plan == _planner.Plan("blas", "one thread", {})


def test_bad_strategy_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="strategy must be one of"):
        Trainer([3, 2, 1], strategy="fast")
    monkeypatch.setenv("FASTMLP_STRATEGY", "fastest")
    t = Trainer([3, 2, 1], n_threads=2)
    with pytest.raises(ValueError, match="FASTMLP_STRATEGY must be one of"):
        t.loss_and_grads(np.zeros((2, 3), np.float32), np.zeros((2, 1), np.float32))


@pytest.mark.parametrize("strategy", _planner.STRATEGIES)
def test_concurrent_fits_and_predicts_from_threads(strategy, monkeypatch):
    """Four Python threads fit and predict at once: nothing aborts, nothing waits for the
    others' epochs to end, and every result equals the same call run alone."""
    monkeypatch.setenv("FASTMLP_STRATEGY", strategy)
    X, Y = _data(n=1200)

    def job(seed):
        m = fastmlp.MLP([40, 24, 3], dtype="float64", n_threads=2, random_state=seed)
        m.fit(X, Y, epochs=3, batch_size=64)
        return m.predict(X)

    alone = [job(s) for s in range(4)]
    results = [None] * 4

    def run(s):
        results[s] = job(s)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for a, b in zip(alone, results):
        np.testing.assert_array_equal(a, b)


# -- the CPU budget ------------------------------------------------------------------------------

@pytest.fixture
def budget(monkeypatch):
    """Set this process's CPU budget as joblib (loky) reports it: budget(k)."""
    import joblib

    def set_budget(k):
        monkeypatch.setattr(joblib, "cpu_count", lambda only_physical_cores=False: k)
        monkeypatch.setattr(_threads, "_affinity_count", lambda: 64)
        monkeypatch.setattr(_threads, "_budget_cache", None)
        monkeypatch.setattr(_threads, "_warned", set())
    return set_budget


def _pools():
    """(Numba's threads for this Python thread, the largest BLAS library's threads)."""
    return numba.get_num_threads(), max(k for _, k in _blas_counts())


def test_the_budget_is_what_joblib_counts_and_the_affinity(monkeypatch):
    from joblib.externals.loky.backend import context
    monkeypatch.setattr(_threads, "_budget_cache", None)
    assert _threads.cpu_budget() == min(_threads._affinity_count(),
                                        __import__("joblib").cpu_count())
    # a container's CPU quota, read by loky's cgroup code
    monkeypatch.setattr(context, "_cpu_count_cgroup", lambda os_cpu_count: 1)
    monkeypatch.setattr(_threads, "_budget_cache", None)
    assert _threads.cpu_budget() == 1 and _threads.max_threads() == 1
    # the affinity is read every time; a new one makes the quota be read again
    monkeypatch.setattr(context, "_cpu_count_cgroup", lambda os_cpu_count: 64)
    monkeypatch.setattr(_threads, "_affinity_count", lambda: 1)
    assert _threads.cpu_budget() == 1
    monkeypatch.setattr(_threads, "_affinity_count", lambda: 3)
    assert _threads.cpu_budget() == min(3, os.cpu_count())


def test_a_budget_of_one_reaches_both_pools(budget):
    budget(1)
    with threadpool_limits(2, user_api="blas"):
        with _threads.thread_limits(None) as n:
            assert n == 1 and _pools() == (1, 1)


def test_a_request_above_the_budget_is_capped_with_one_warning(budget, monkeypatch):
    budget(2)
    with threadpool_limits(2, user_api="blas"):
        with pytest.warns(RuntimeWarning, match=r"n_threads=8 .* 2 CPU cores .* using 2"):
            with _threads.thread_limits(8) as n:
                assert n == 2 and _pools() == (min(2, numba.config.NUMBA_NUM_THREADS), 2)
        with _threads.blas_threads(8):  # BLAS's own requests too
            assert _pools()[1] == 2
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process and value
            with _threads.thread_limits(8) as n:
                assert n == 2


@pytest.mark.parametrize("strategy", ["blas", "split"])
def test_a_fit_asking_for_more_threads_than_the_budget_gets_the_budget(budget, strategy,
                                                                       monkeypatch):
    budget(1)
    monkeypatch.setenv("FASTMLP_STRATEGY", strategy)
    seen = []
    monkeypatch.setattr(Trainer, "_steps_done", lambda self, k: seen.append(_pools()))
    X, Y = _data(n=600)
    m = fastmlp.MLP([40, 16, 3], dtype="float64", n_threads=8, random_state=0)
    with threadpool_limits(2, user_api="blas"), pytest.warns(RuntimeWarning, match="using 1"):
        m.fit(X, Y, epochs=1, batch_size=100)
    assert seen and set(seen) == {(1, 1)}


def test_a_dask_worker_task_has_the_workers_threads(budget, monkeypatch):
    distributed = pytest.importorskip("distributed")
    budget(8)
    assert _threads.cpu_budget() == 8
    worker = type("W", (), {"state": type("S", (), {"nthreads": 1})()})()
    monkeypatch.setattr(distributed, "get_worker", lambda: worker)
    assert _threads.cpu_budget() == 1
    with _threads.thread_limits(None) as n:
        assert n == 1 and numba.get_num_threads() == 1


def test_calls_running_at_once_share_the_budget(budget):
    budget(2)
    alone = min(2, numba.config.NUMBA_NUM_THREADS)
    with threadpool_limits(2, user_api="blas"):
        with _threads.thread_limits(None) as n:
            assert n == alone
            with _threads.thread_limits(None) as inner:  # a nested call counts once
                assert inner == alone
        both_in = threading.Barrier(2)
        seen = []

        def call():
            with _threads.thread_limits(None) as n:
                both_in.wait(timeout=60)
                seen.append((n, numba.get_num_threads()))
                both_in.wait(timeout=60)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        # whichever started first, the second saw two threads in: it took half
        assert sorted(seen)[0] == (1, 1)
        with _threads.thread_limits(None) as n:  # both gone: the whole budget again
            assert n == alone


def test_a_thread_between_two_calls_still_shares_the_budget(budget, monkeypatch):
    """A live thread that left a call less than RECENT_SECONDS ago still counts (a grid
    search's worker between two fits): a call starting then takes half the budget, not all of
    it; once that thread has ended, or the time has passed, the whole budget again."""
    budget(2)
    alone = min(2, numba.config.NUMBA_NUM_THREADS)
    if alone < 2:
        pytest.skip("needs 2 Numba threads")
    monkeypatch.setattr(_threads, "_recent", {})
    between, done = threading.Event(), threading.Event()

    def worker():
        with _threads.thread_limits(None):
            pass
        between.set()
        done.wait(timeout=60)

    with threadpool_limits(2, user_api="blas"):
        monkeypatch.setattr(_threads, "RECENT_SECONDS", 3600.0)
        th = threading.Thread(target=worker)
        th.start()
        assert between.wait(timeout=60)
        with _threads.thread_limits(None) as n:
            assert n == 1 and _pools() == (1, 1)
        monkeypatch.setattr(_threads, "RECENT_SECONDS", 0.0)  # its time has passed
        with _threads.thread_limits(None) as n:
            assert n == alone
        monkeypatch.setattr(_threads, "RECENT_SECONDS", 3600.0)
        with _threads.thread_limits(None) as n:  # pruned: it no longer counts
            assert n == alone
        th2 = threading.Thread(target=worker)
        done.clear(), between.clear()
        th2.start()
        assert between.wait(timeout=60)
        done.set()
        th2.join()
        th.join()
        with _threads.thread_limits(None) as n:  # it has ended
            assert n == alone


def test_blas_limits_hold_in_any_python_thread():
    """threadpoolctl >= 3.8 lets only the first Python thread that set OpenBLAS's count set it
    again while it lives (others are ignored, silently).  A fit in a worker thread, after the
    main thread has set a count, still runs BLAS on the threads it asked for; the count comes
    back when it ends; and the user's own limits, in either thread, still take effect."""
    code = r"""
import json, threading, numpy as np, threadpoolctl, fastmlp
from fastmlp import _threads
from fastmlp._core import Trainer
def blas():
    return sorted({i["num_threads"] for i in threadpoolctl.threadpool_info()
                   if i["user_api"] == "blas"})
seen, out = [], {}
Trainer._steps_done = lambda self, k: seen.append(blas())
X = np.random.default_rng(0).normal(size=(600, 8)); Y = X[:, :2] ** 2
main = threadpoolctl.threadpool_limits(2, user_api="blas")  # the main thread sets a count
def worker():
    with _threads.thread_limits(1):
        out["inside"] = blas()
    out["after"] = blas()
    fastmlp.MLP([8, 30, 2], dtype="float64", n_threads=1, random_state=0).fit(
        X, Y, epochs=2, batch_size=60)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        out["worker's own"] = blas()
th = threading.Thread(target=worker); th.start(); th.join()
out["fit"] = sorted({k for s in seen for k in s})
with threadpoolctl.threadpool_limits(1, user_api="blas"):
    out["main's own"] = blas()
main.restore_original_limits()
out["budget"] = _threads.cpu_budget()
print(json.dumps(out))
"""
    r = _json(_run(code))
    if r["budget"] < 2:
        pytest.skip("needs a CPU budget of 2 (a count of 1 would prove nothing)")
    assert r == {"inside": [1], "after": [2], "fit": [1], "worker's own": [1],
                 "main's own": [1], "budget": r["budget"]}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not hasattr(os, "fork"),
                    reason="needs CPU affinity")
def test_a_process_pinned_to_one_core_has_a_budget_of_one():
    """As under ``taskset -c 0``: one core, whatever NUMBA_NUM_THREADS (2 here) and
    OpenBLAS say."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n" + r"""
import json, numpy as np, threadpoolctl, fastmlp
from fastmlp import _threads
from fastmlp._core import Trainer
seen = []
Trainer._steps_done = lambda self, k: seen.append(
    (__import__("numba").get_num_threads(),
     max(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")))
X = np.random.default_rng(0).normal(size=(600, 8)); Y = X[:, :2] ** 2
with threadpoolctl.threadpool_limits(2, user_api="blas"):
    fastmlp.MLP([8, 30, 2], dtype="float64", random_state=0).fit(X, Y, epochs=1, batch_size=60)
print(json.dumps({"budget": _threads.cpu_budget(), "max": _threads.max_threads(),
                  "seen": sorted(set(seen))}))
""")
    r = _json(_run(code))
    assert r == {"budget": 1, "max": 1, "seen": [[1, 1]]}


# -- fork while another thread is inside a fit ---------------------------------------------------

def test_a_fork_waits_for_kernel_calls_and_holds_new_ones():
    inside, release = threading.Event(), threading.Event()

    def kernel():
        with _threads.kernel_section():
            inside.set()
            release.wait(timeout=60)

    k = threading.Thread(target=kernel)
    k.start()
    inside.wait(timeout=60)
    forking = threading.Thread(target=_threads._before_fork)
    forking.start()
    started = threading.Event()

    def held():
        with _threads.kernel_section():
            started.set()

    try:
        forking.join(0.3)
        assert forking.is_alive()  # waiting for the kernel call to end
        release.set()
        forking.join(timeout=60)
        k.join(timeout=60)
        assert not forking.is_alive() and not k.is_alive()
        h = threading.Thread(target=held)
        h.start()
        assert not started.wait(0.3)  # a fork is under way: the next kernel call waits
    finally:
        release.set()
        forking.join(timeout=60)
        _threads._after_fork_in_parent()
    h.join(timeout=60)
    assert started.is_set() and _threads._forks_pending == 0 and not _threads._in_kernels


FORK_PARENT = r"""
import os, threading, time, numpy as np
import fastmlp
X = np.random.default_rng(0).normal(size=(60000, 64)); Y = X[:, :2] ** 2
fastmlp.MLP([64, 128, 2], random_state=0).partial_fit(X[:3000], Y[:3000])  # compiled first
m = fastmlp.MLP([64, 128, 2], random_state=0)
done = threading.Event()
def train():
    try:
        while not done.is_set():
            m.partial_fit(X, Y)
    finally:
        done.set()
t = threading.Thread(target=train); t.start()
time.sleep(0.5)
for _ in range(6):  # each fork is a chance to catch a kernel mid-call
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.1)
done.set(); t.join()
print("parent ok", np.isfinite(m.predict(X[:5])).all())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("strategy", ["blas", "split"])
def test_a_fork_while_another_thread_fits_never_hangs_the_parent(strategy):
    """Before the fork gate the parent hung every time (either way), in fork() (OpenBLAS's
    pre-fork handler waiting for its busy threads) or spinning after it (region threads
    waiting for a BLAS pool that the handler had stopped).  The timeout is a watchdog, not a
    timing: the script takes about 15 s on 2 busy cores."""
    out = _run(FORK_PARENT, timeout=240, FASTMLP_STRATEGY=strategy)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["parent", "ok", "True"]


def test_the_command_line_says_in_one_line_that_threads_are_capped(budget, tmp_path, capsys):
    from fastmlp import cli
    budget(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[X, X[:, 0] > 0], delimiter=",", header="a,b,c,y", comments="")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model gets the capped count: no warning after
        assert cli.main(["train", str(data), "--threads", "8", "--epochs", "1", "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fastmlp: --threads 8 is more than the 1 CPU core this process may use (its "
                   "CPU affinity, container quota or Dask worker threads): using 1"]
