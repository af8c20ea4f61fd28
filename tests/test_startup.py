"""A fresh process's fixed costs: what ``import fastmlp`` loads, and the garbage collector's
window around the import and Numba's set-up (fastmlp._startup).  Nothing here is timed."""
import ast
import gc
import subprocess
import sys
import weakref

import pytest

from fastmlp._startup import young_objects_only

OPTIONAL = ("dask", "distributed", "matplotlib", "onnx", "skl2onnx", "onnxruntime", "torch",
            "tqdm")
NOT_AT_IMPORT = ("fastmlp.backend", "fastmlp._engine", "fastmlp.dask", "fastmlp.cli",
                 "fastmlp.patch", "fastmlp._onnx", "fastmlp.bench")


def _run(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


def test_import_loads_no_optional_library_nor_the_low_level_faces():
    """The estimators' path needs neither the optional libraries nor ``backend``'s Engine;
    ``fastmlp.backend`` is still there on first use (and every public name)."""
    loaded, public, backend = _run(
        "import sys, fastmlp\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r} "
        f"or m in {NOT_AT_IMPORT!r})\n"
        "public = sorted(n for n in fastmlp.__all__ if getattr(fastmlp, n, None) is None)\n"
        "print((loaded, public, fastmlp.backend.Engine.__module__))")
    assert loaded == []
    assert public == []
    assert backend == "fastmlp._engine"


def _old_garbage():
    """An unreachable reference cycle (only the collector frees it) and a weak reference to
    it."""
    class Node:
        pass
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_the_window_keeps_collections_off_the_existing_objects():
    if not gc.isenabled() or gc.get_freeze_count():
        pytest.skip("the collector is off or objects are frozen in this process")
    old = _old_garbage()
    with young_objects_only():
        young = _old_garbage()
        gc.collect()
        assert old() is not None  # made before the block: not walked
        assert young() is None    # made inside it: collected as usual
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old() is None           # and collected after it


def test_the_window_leaves_the_users_frozen_objects_and_switched_off_collector_alone():
    assert _run(
        "import gc\n"
        "from fastmlp._startup import young_objects_only\n"
        "gc.freeze(); frozen = gc.get_freeze_count()\n"
        "with young_objects_only(): pass\n"
        "kept = gc.get_freeze_count() == frozen\n"
        "gc.unfreeze(); gc.disable()\n"
        "with young_objects_only(): inside = gc.get_freeze_count()\n"
        "print((frozen > 0, kept, inside, gc.isenabled()))") == (True, True, 0, False)


def test_import_and_numba_set_up_collect_only_their_own_objects():
    """Every full collection during fastmlp's import and Numba's one-time set-up (before the
    first kernel call) runs with the process's older objects frozen, and nothing stays frozen
    after them or after a fit.  The collector runs often here, so that some do run."""
    during_import, during_setup, frozen_after, fitted = _run(
        "import gc, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import numpy as np, sklearn.base\n"
        "seen = []\n"
        "def watch(phase, info):\n"
        "    if phase == 'start' and info['generation'] == 2:\n"
        "        seen.append((where, gc.get_freeze_count() > 0))\n"
        "gc.callbacks.append(watch)\n"
        "gc.set_threshold(50, 1, 1)\n"
        "where = 'import'\n"
        "import fastmlp\n"
        "from fastmlp import _threads\n"
        "where = None\n"
        "frozen = gc.get_freeze_count()\n"
        "where = 'setup'\n"
        "_threads.numba_ready()\n"
        "where = None\n"
        "frozen += gc.get_freeze_count()\n"
        "gc.set_threshold(700, 10, 10)\n"
        "X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)\n"
        "m = fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(X, y)\n"
        "frozen += gc.get_freeze_count()\n"
        "print(([f for w, f in seen if w == 'import'], [f for w, f in seen if w == 'setup'],"
        " frozen, m.n_iter_))")
    # the import's collections before its window (the import system's own work) may walk
    # everything; from the window on, none does
    assert during_import and during_import[-1]
    assert during_import == sorted(during_import)
    assert during_setup and all(during_setup)
    assert frozen_after == 0
    assert fitted == 2
