"""One thread pool busy at a time, whatever the environment holds (checked in subprocesses:
the threading layer is chosen once per process)."""
import json
import os
import subprocess
import sys

import numba
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fastmlp import _threads

PROBE = r"""
import json, numba, numpy as np
import fastmlp
from fastmlp import _threads
X = np.random.default_rng(0).normal(size=(600, 8)); Y = X[:, :2] ** 2
fastmlp.MLP([8, 300, 2], dtype="float64", random_state=0).fit(X, Y, epochs=1, batch_size=600)
with _threads.thread_limits(None) as n:
    inside = numba.get_num_threads()
print(json.dumps({"layer": numba.threading_layer(), "inside": inside, "blas": n,
                  "after": numba.get_num_threads(), "max": numba.config.NUMBA_NUM_THREADS}))
"""


def _probe(**env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full.update(env, NUMBA_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_picks_the_sleeping_workqueue_layer():
    r = _probe()
    assert r["layer"] == "workqueue"
    assert r["inside"] == 2 and r["after"] == 2


def test_a_spinning_openmp_layer_runs_kernels_on_one_numba_thread():
    pytest.importorskip("numba.np.ufunc.omppool")
    r = _probe(NUMBA_THREADING_LAYER="omp")
    assert r["layer"] == "omp"
    assert r["inside"] == 1  # never the OpenMP spin fighting OpenBLAS for the cores
    assert r["after"] == 2   # and the user's setting is back afterwards


def test_a_passive_openmp_layer_keeps_its_threads():
    pytest.importorskip("numba.np.ufunc.omppool")
    r = _probe(NUMBA_THREADING_LAYER="omp", OMP_WAIT_POLICY="passive")
    assert r["layer"] == "omp" and r["inside"] == 2


def test_default_respects_limits_already_in_force():
    """n_threads=None inside threadpoolctl's limits (as in a joblib worker) or after
    numba.set_num_threads uses the smaller count, and changes nothing on exit."""
    with threadpool_limits(1, user_api="blas"):
        with _threads.thread_limits(None) as n:
            assert n == 1
            assert all(i["num_threads"] == 1 for i in threadpool_info()
                       if i["user_api"] == "blas")
            assert numba.get_num_threads() == 1
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with _threads.thread_limits(None) as n:
            assert n == 1
    finally:
        numba.set_num_threads(before)
    with _threads.thread_limits(2) as n:  # an explicit count is obeyed
        assert n == 2
    assert numba.get_num_threads() == before
