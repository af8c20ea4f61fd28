"""Run unchanged scikit-learn code on fastmlp: :func:`patch_sklearn` / :func:`unpatch_sklearn`,
and ``python -m fastmlp.patch script.py [args]`` (or ``-m module [args]``) to run a program with
the patch on.

After :func:`patch_sklearn`, ``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor`` (also
reached through ``sklearn.neural_network._multilayer_perceptron``) are classes that train and
predict on fastmlp with scikit-learn's numbers.  Each patched class derives from fastmlp's
estimator and is registered as a (virtual) subclass of scikit-learn's original class, so

* ``isinstance(est, <scikit-learn's original class>)`` holds (scikit-learn's MLP classes are
  abstract base classes: ``register`` is their documented way to admit a subclass whose
  ``__init__`` chain differs);
* scikit-learn's private methods that fastmlp does not implement (``_loss_grad_lbfgs``,
  ``_backprop``, ``_forward_pass``, ...) run scikit-learn's own code, on the estimator's
  fitted state -- a fallback, never a failure;
* the patch follows the program into joblib's process workers (``n_jobs`` with the default
  loky backend, as in ``GridSearchCV``): a patched estimator sent to a worker arrives there as
  a patched estimator and patches that worker, so that its fits run on fastmlp too (only
  loky's pickler does this; the ``multiprocessing`` backend's workers run scikit-learn's
  code, threads share the patch);
* a pickle of a patched estimator names scikit-learn's class and holds only NumPy and
  scikit-learn objects: it loads as a patched estimator where the patch is on, and as
  scikit-learn's own estimator anywhere else, fastmlp installed or not (the stochastic
  optimizer's state travels as plain arrays: the pickled state is the model file's,
  ``_get_state``, see :mod:`fastmlp._estimator_state`).

Set the environment variable ``FASTMLP_PATCH_LOG=1`` to get a log line (logger
``fastmlp.patch``, on stderr) saying which code ran: fastmlp's fit, or scikit-learn's fallback.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import Optional, Sequence

__all__ = ["patch_sklearn", "unpatch_sklearn", "is_patched"]

_NAMES = ("MLPClassifier", "MLPRegressor")
_MODULES = ("sklearn.neural_network", "sklearn.neural_network._multilayer_perceptron")
# The scikit-learn versions fastmlp's estimators reproduce (the pin in pyproject.toml).
SUPPORTED = ((1, 9),)

_logger = logging.getLogger("fastmlp.patch")
_originals: dict = {}   # name -> scikit-learn's class, while patched
_patched: dict = {}     # name -> the patched class (built once)
_ever_patched = False   # whether patch_sklearn() patched this process once
_depth = threading.local()  # nesting of scikit-learn fallback calls (log the outermost)


def _log(message: str) -> None:
    """One line on the ``fastmlp.patch`` logger when FASTMLP_PATCH_LOG asks for it."""
    if os.environ.get("FASTMLP_PATCH_LOG", "").strip().lower() in ("", "0", "false", "no"):
        return
    if not _logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        _logger.addHandler(handler)
        _logger.setLevel(logging.INFO)
        _logger.propagate = False
    _logger.info(message)


def _sklearn_version():
    import sklearn
    parts = []
    for p in sklearn.__version__.split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts), sklearn.__version__


def _indptr(est):
    """scikit-learn's packing bookkeeping (set by its _fit_lbfgs), from coefs_' shapes."""
    coef_indptr, intercept_indptr, start = [], [], 0
    for c in est.coefs_:
        end = start + c.shape[0] * c.shape[1]
        coef_indptr.append((start, end, c.shape))
        start = end
    for c in est.coefs_:
        intercept_indptr.append((start, start + c.shape[1]))
        start += c.shape[1]
    return coef_indptr, intercept_indptr


def _fallback(name, method):
    """scikit-learn's own ``method``, with a log line and the state it expects."""

    def run(self, *args, **kwargs):
        depth = getattr(_depth, "value", 0)
        if depth == 0:  # the outermost fallback only, not the calls it makes
            _log(f"{type(self).__name__}.{name} runs scikit-learn's code (not accelerated)")
        if hasattr(self, "coefs_") and "_coef_indptr" not in self.__dict__:
            self._coef_indptr, self._intercept_indptr = _indptr(self)
        _depth.value = depth + 1
        try:
            return method(self, *args, **kwargs)
        finally:
            _depth.value = depth

    run.__name__ = run.__qualname__ = name
    run.__doc__ = method.__doc__
    run.__wrapped__ = method
    return run


def _build(name, original):
    """The patched class: fastmlp's estimator, plus scikit-learn's methods it does not define,
    registered as a subclass of scikit-learn's class."""
    from . import estimators

    ours = getattr(estimators, name)

    def _fit(self, *args, **kwargs):
        _log(f"{name}.fit runs on fastmlp (solver={self.solver!r})")
        return ours._fit(self, *args, **kwargs)

    def __reduce_ex__(self, protocol):
        reduced = ours.__reduce_ex__(self, protocol)
        module = sys.modules.get(original.__module__)
        if getattr(module, name, None) is original and isinstance(reduced, tuple):
            # unpatched since this estimator was created: scikit-learn's name is scikit-learn's
            # class again, so the pickle (which names it) makes scikit-learn's estimator, as
            # pickles made while patched load where the patch is off.  copyreg._reconstructor
            # (what protocols 0 and 1 use) builds an object of a class other than this one.
            import copyreg
            reduced = (copyreg._reconstructor, (original, object, None)) + reduced[2:]
        return reduced

    def __copy__(self):  # copies keep the patched class (a pickle names scikit-learn's)
        new = type(self).__new__(type(self))
        new.__setstate__(self.__getstate__())
        return new

    def __deepcopy__(self, memo):
        import copy
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return new

    namespace = {
        "__module__": original.__module__,  # pickles name scikit-learn's class
        "__qualname__": original.__qualname__,
        # scikit-learn's documentation (its parameters and attributes are this class's)
        "__doc__": (original.__doc__ or "") + (
            "\n    Notes\n    -----\n    Patched by ``fastmlp.patch_sklearn()``: trains and "
            "predicts on fastmlp.\n" if "Notes\n" not in (original.__doc__ or "") else ""),
        "_fit": _fit, "__reduce_ex__": __reduce_ex__, "__copy__": __copy__, "__deepcopy__": __deepcopy__,
        "_fastmlp_patched": True,
    }
    # scikit-learn's methods that fastmlp's class does not define: its own code, logged
    for klass in original.__mro__:
        if not klass.__module__.startswith("sklearn.neural_network"):
            continue
        for attr, value in vars(klass).items():
            if (callable(value) and attr.startswith("_") and not attr.startswith("__")
                    and attr not in namespace and not hasattr(ours, attr)):
                namespace[attr] = _fallback(attr, value)
    patched = type(name, (ours,), namespace)
    original.register(patched)
    return patched


def _installed_dirs():
    """The folders installed libraries live in (site-packages and the standard library)."""
    import site
    import sysconfig
    dirs = set()
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        dirs.add(sysconfig.get_paths().get(key))
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - a virtualenv's old site module
        pass
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def _reduce_for_worker(est):
    """How joblib's loky process workers receive a patched estimator (and send it back): as
    a patched estimator, built by :func:`_rebuild_in_worker`, which patches the worker as the
    sender is patched.  Only loky's pickler uses this; ``pickle.dumps`` keeps naming
    scikit-learn's class (see ``__reduce_ex__``)."""
    return _rebuild_in_worker, (type(est).__name__, est.__getstate__(), is_patched())


def _rebuild_in_worker(name, state, patch):
    """A patched estimator from its state, in a process that may not be patched yet (a fresh
    loky worker): patch it as the sender was, so that the fit runs on fastmlp there too."""
    if patch and not _ever_patched:  # a fresh worker; never a process that unpatched
        with warnings.catch_warnings():  # the worker's modules are the library's, not user's
            warnings.simplefilter("ignore", UserWarning)
            patch_sklearn()
        _log(f"patched in worker process {os.getpid()}")
    if name not in _patched:  # the sender had unpatched: its estimators still run fastmlp
        import importlib
        _patched[name] = _build(name, getattr(importlib.import_module(_MODULES[-1]), name))
        _follow_into_workers()
    cls = _patched[name]
    est = cls.__new__(cls)
    est.__setstate__(state)
    return est


def _follow_into_workers():
    """Register the patched classes with loky's pickler (joblib's default process backend)."""
    try:
        from joblib.externals.loky.backend import reduction
    except ImportError:  # pragma: no cover - scikit-learn requires joblib
        return
    for cls in _patched.values():
        reduction.register(cls, _reduce_for_worker)


def _stale_bindings(originals):
    """Names outside scikit-learn and fastmlp still bound to scikit-learn's classes (a
    ``from sklearn.neural_network import MLPClassifier`` that ran before the patch), in the
    user's own modules: an installed library's (skl2onnx keeps scikit-learn's classes in its
    converter table, on purpose) is logged only, since the user cannot change it."""
    found, libraries = [], []
    targets = {id(c): n for n, c in originals.items()}
    installed = _installed_dirs()
    for mod_name, module in list(sys.modules.items()):
        if module is None or mod_name.split(".")[0] in ("sklearn", "fastmlp"):
            continue
        path = getattr(module, "__file__", None)
        in_library = bool(path) and os.path.realpath(path).startswith(installed)
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in items:
            if id(value) in targets and value is originals[targets[id(value)]]:
                (libraries if in_library else found).append(f"{mod_name}.{attr}")
    if libraries:
        _log("installed libraries keep scikit-learn's own classes: "
             + ", ".join(sorted(libraries)))
    return found


def is_patched() -> bool:
    """Whether scikit-learn's MLP classes are currently fastmlp's."""
    return bool(_originals)


def patch_sklearn() -> bool:
    """Make scikit-learn's ``MLPClassifier`` and ``MLPRegressor`` run on fastmlp.

    Later ``from sklearn.neural_network import MLPClassifier`` lines (and the same through
    ``sklearn.neural_network._multilayer_perceptron``) get the patched classes.  Names bound
    before the call cannot be changed: a ``UserWarning`` lists them (patch first, then import).
    With a scikit-learn version fastmlp does not reproduce, nothing is patched: a warning
    says so and scikit-learn's own code keeps running.

    Returns
    -------
    bool
        True when scikit-learn is patched after the call.

    Examples
    --------
    >>> import fastmlp
    >>> fastmlp.patch_sklearn()
    True
    >>> from sklearn.neural_network import MLPRegressor
    >>> MLPRegressor._fastmlp_patched
    True
    >>> fastmlp.unpatch_sklearn()
    >>> hasattr(__import__("sklearn.neural_network").neural_network.MLPRegressor,
    ...         "_fastmlp_patched")
    False
    """
    global _ever_patched
    if _originals:
        return True
    version, text = _sklearn_version()
    if version not in SUPPORTED:
        supported = ", ".join("%d.%d" % v for v in SUPPORTED)
        warnings.warn(f"fastmlp.patch_sklearn(): scikit-learn {text} is not a version fastmlp "
                      f"reproduces ({supported}); nothing was patched, scikit-learn's own "
                      "MLPs run.", UserWarning, stacklevel=2)
        _log(f"scikit-learn {text} unsupported: not patched")
        return False
    import importlib
    modules = [importlib.import_module(m) for m in _MODULES]
    originals = {n: getattr(modules[-1], n) for n in _NAMES}
    for n, original in originals.items():
        if getattr(original, "_fastmlp_patched", False):  # patched by another copy
            return True
        if n not in _patched:
            _patched[n] = _build(n, original)
    stale = _stale_bindings(originals)
    for module in modules:
        for n in _NAMES:
            setattr(module, n, _patched[n])
    _originals.update(originals)
    _ever_patched = True
    _follow_into_workers()
    _log("scikit-learn's MLPClassifier and MLPRegressor now run on fastmlp")
    if stale:
        warnings.warn("fastmlp.patch_sklearn(): these names were imported before the patch and "
                      "still refer to scikit-learn's own classes: " + ", ".join(sorted(stale))
                      + ". Call patch_sklearn() before importing them (or run the program "
                      "with `python -m fastmlp.patch`).", UserWarning, stacklevel=2)
    return True


def unpatch_sklearn() -> None:
    """Undo :func:`patch_sklearn`: scikit-learn's own classes are back in its modules.
    Estimators created while patched keep running on fastmlp."""
    if not _originals:
        return
    import importlib
    for m in _MODULES:
        module = importlib.import_module(m)
        for n in _NAMES:
            setattr(module, n, _originals[n])
    _originals.clear()
    _log("scikit-learn's own MLPClassifier and MLPRegressor restored")


_USAGE = """usage: python -m fastmlp.patch script.py [args...]
       python -m fastmlp.patch -m module [args...]

Run a Python program with scikit-learn's MLPClassifier/MLPRegressor running on fastmlp
(fastmlp.patch_sklearn() first).  FASTMLP_PATCH_LOG=1 logs which code each fit ran."""


def _module_problem(name):
    """Why ``python -m name`` cannot run (in `python -m`'s words), or None.  Checked before
    running it, so that an ImportError raised by the module's own code keeps its traceback."""
    import importlib.util
    if not name.strip():
        return "-m needs a module name"
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:  # a package
            main_spec = importlib.util.find_spec(name + ".__main__")
            if main_spec is None:
                return (f"No module named {name}.__main__; {name!r} is a package and cannot "
                        "be directly executed")
    except (ImportError, ValueError) as exc:  # a missing parent package, an empty name
        return str(exc) or f"No module named {name}"
    return None if spec is not None else f"No module named {name}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m fastmlp.patch``: patch, then run the script or module as ``__main__``."""
    import runpy
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "-m" and len(argv) < 2:
        print("fastmlp.patch: error: -m needs a module name", file=sys.stderr)
        return 2
    if argv[0] != "-m" and not os.path.isfile(argv[0]):
        print(f"fastmlp.patch: error: no such script: {argv[0]}", file=sys.stderr)
        return 2
    patch_sklearn()
    if argv[0] == "-m":
        problem = _module_problem(argv[1])
        if problem:  # one line and status 1, as `python -m` says it
            print(f"fastmlp.patch: error: {problem}", file=sys.stderr)
            return 1
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    # run the imported module's main, so that fastmlp.patch_sklearn and this share one state
    from fastmlp.patch import main as _main
    sys.exit(_main())
