"""Fixtures shared by several test files."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _plan_files_in_a_tmp_dir(tmp_path_factory):
    """The planner's plan files (fastmlp._planner) go to a folder of the test session, never
    the user's cache; subprocesses inherit it through the environment."""
    saved = os.environ.get("FASTMLP_PLAN_CACHE")
    os.environ["FASTMLP_PLAN_CACHE"] = str(tmp_path_factory.mktemp("plans"))
    yield
    if saved is None:
        os.environ.pop("FASTMLP_PLAN_CACHE", None)
    else:
        os.environ["FASTMLP_PLAN_CACHE"] = saved


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# as the session found them (a module-scoped cluster fixture sets them before any test's own
# fixtures run, so a per-test snapshot would keep its values)
_SESSION_THREAD_VARIABLES = {k: os.environ.get(k) for k in _THREAD_VARIABLES}


@pytest.fixture(autouse=True)
def _thread_variables_restored():
    """Each test ends with the thread variables of the environment the session started with:
    distributed's LocalCluster sets OMP_NUM_THREADS=1 (and the BLAS ones) in its own
    process's environment, and a later test's subprocess inherited them (its fit planned for
    one thread)."""
    yield
    for k, v in _SESSION_THREAD_VARIABLES.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def stop_after():
    """``stop_after(model, n)``: the model requests a stop after ``n`` more optimizer steps,
    as Ctrl-C does mid-epoch."""
    def arm(model, n_batches):
        t = model._trainer
        t.steps_per_call = 1  # one optimizer step per kernel call: a stop can land on any batch
        hook, calls = t._steps_done, [0]

        def counted(n_steps):
            hook(n_steps)
            calls[0] += n_steps
            if calls[0] == n_batches:
                model.request_stop()
        t._steps_done = counted
    return arm
