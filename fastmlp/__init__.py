"""fastmlp: fast multi-layer perceptrons on the CPU."""
import importlib.util as _ilu
import os as _os
import sys as _sys


class _CheckoutFolders:
    """Imports ``fastmlp.kernels`` and ``fastmlp.bench`` from a source checkout.

    Both live in top-level folders of the source tree, ``kernels/`` and ``benchmarks/``
    (``benchmarks/`` is also the asv suite, which asv imports as a package of its own); an
    install maps them into the package (``[tool.setuptools.package-dir]``).  Running from a
    checkout -- installed in editable mode or not installed at all -- this finder, first on
    ``sys.meta_path``, loads the folders beside this package when they are first imported, so
    that a checkout always runs its own kernels and harness, and ``import fastmlp`` never loads
    the benchmark harness.  An installed wheel has both folders inside the package and does not
    use it.
    """

    _FOLDERS = {"fastmlp.kernels": "kernels", "fastmlp.bench": "benchmarks"}

    def __init__(self, root):
        self.root = root

    def find_spec(self, name, path=None, target=None):
        folder = self._FOLDERS.get(name)
        if folder is None:
            return None
        folder = _os.path.join(self.root, folder)
        return _ilu.spec_from_file_location(name, _os.path.join(folder, "__init__.py"),
                                            submodule_search_locations=[folder])

    @classmethod
    def install(cls):
        here = _os.path.dirname(_os.path.abspath(__file__))
        root = _os.path.dirname(here)
        if not (_os.path.isfile(_os.path.join(root, "pyproject.toml"))
                and _os.path.isfile(_os.path.join(root, "kernels", "__init__.py"))
                and not _os.path.isdir(_os.path.join(here, "kernels"))):
            return  # an installed package
        if not any(type(f).__name__ == cls.__name__ and getattr(f, "root", None) == root
                   for f in _sys.meta_path):
            _sys.meta_path.insert(0, cls(root))


_CheckoutFolders.install()

from ._startup import young_objects_only as _young_objects_only

# Numba's and fastmlp's modules are tens of thousands of new objects: imported with the
# process's existing objects out of the garbage collector's way (see fastmlp._startup)
with _young_objects_only():
    from . import _threads  # noqa: F401  (Numba's pool and BLAS's threads: see its note)
    from .model import MLP
    from .persistence import load
    from .estimators import MLPClassifier, MLPRegressor
    from ._version import __version__


def __getattr__(name: str):
    # imported on first use: ``python -m fastmlp.patch`` must find fastmlp.patch not yet
    # imported, the ONNX extra is optional, and the estimators do not use the low-level
    # ``backend`` (nor its Engine)
    if name == "backend":
        import importlib
        return importlib.import_module(".backend", __name__)
    if name in ("patch_sklearn", "unpatch_sklearn"):
        from . import patch
        return getattr(patch, name)
    if name == "to_onnx":
        from ._onnx import to_onnx
        return to_onnx
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


__all__ = ["MLP", "MLPClassifier", "MLPRegressor", "backend", "patch_sklearn",
           "unpatch_sklearn", "__version__"]
