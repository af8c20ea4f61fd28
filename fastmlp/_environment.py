"""The environment variables that fastmlp's thread pools read, checked where they are read.

A value fastmlp cannot run with ends as a :class:`SettingError` (a ``ValueError``) that names
the variable and what it accepts, raised by the first call that needs it and never by
``import fastmlp``: so ``fastmlp --help`` still works and the command line reports it as one
``fastmlp: error:`` line.  Found by trying them: ``NUMBA_NUM_THREADS=0`` (or below) made
``import fastmlp`` itself fail inside Numba's import ("Number of threads specified must be > 0",
no variable named) and ``NUMBA_THREADING_LAYER=bogus`` or ``=tbb`` without TBB failed inside
Numba's pool start, and ``LOKY_MAX_CPU_COUNT=abc`` inside joblib's ``cpu_count`` (the CPU
budget's count); all reached command-line users as tracebacks.  The user's environment is
never changed: it is read, and put back where a variable is set aside for Numba's import.
"""
import os
from contextlib import contextmanager


class SettingError(ValueError):
    """An environment setting fastmlp cannot run with (the message names the variable)."""


def numba_num_threads_problem():
    """A message when NUMBA_NUM_THREADS holds an integer below 1 (Numba's import refuses it),
    else None.  A value that is not an integer at all is Numba's to handle: it warns and uses
    its default."""
    raw = os.environ.get("NUMBA_NUM_THREADS")
    if raw is None:
        return None
    try:
        n = int(raw)
    except ValueError:
        return None
    if n >= 1:
        return None
    return (f"NUMBA_NUM_THREADS={raw!r} is not a thread count: set it to a positive integer "
            f"or unset it")


@contextmanager
def set_aside(name):
    """Run the block with environment variable ``name`` unset (nothing when name is None or
    unset); its value is put back after the block, whatever happens in it."""
    if name is None or name not in os.environ:
        yield
        return
    value = os.environ.pop(name)
    try:
        yield
    finally:
        os.environ[name] = value


def threading_layer_error(exc):
    """A SettingError for Numba's refusal ``exc`` (a ValueError) to start its pool when the
    user's NUMBA_THREADING_LAYER asked for the layer, else None.  Numba's message (several
    lines for a missing TBB) is kept, on one line."""
    layer = os.environ.get("NUMBA_THREADING_LAYER")
    if layer is None:
        return None
    reason = " ".join(str(exc).split())
    return SettingError(f"NUMBA_THREADING_LAYER={layer!r}: {reason} (Numba's layers: omp, tbb, "
                        f"workqueue, or default, safe, threadsafe, forksafe)")
