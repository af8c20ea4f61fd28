"""A fresh process's fixed costs: importing fastmlp and Numba's one-time set-up.

Two steps of a fresh process create tens of thousands of long-lived Python objects: importing
fastmlp (Numba and llvmlite with it) and Numba's set-up before the first kernel call, where it
fills its typing and target registries (every built-in implementation, about 0.1 s, whether
the kernel is then loaded from the cache or compiled).  That many new objects make Python's
cyclic garbage collector run full collections, each of which walks every object of the
process: with scikit-learn, SciPy and pandas imported (~200000 objects) one costs 40-80 ms,
and the two steps triggered two of them (a digits grid search's whole process: 0.14-0.17 s of
full collections, 0.04-0.05 s with both steps inside ``young_objects_only``, measured).
``fastmlp/__init__.py`` imports the package inside it, and ``fastmlp._threads.numba_ready``
runs Numba's set-up inside it.

``young_objects_only`` runs a block with the process's existing objects frozen
(``gc.freeze``) and unfreezes them after it (``gc.unfreeze``): a collection during the block
walks only the objects made since it began.  Nothing is lost: a frozen object that became
garbage is collected by a later collection, as usual.  The block runs plainly where the
collector is off or where objects are already frozen (by the user or another library:
``gc.unfreeze`` would release theirs too).
"""
import gc
from contextlib import contextmanager


@contextmanager
def young_objects_only():
    """Run the block with the process's existing objects out of the collector's way (see the
    module's note); a plain block where the collector is off or objects are already frozen."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
