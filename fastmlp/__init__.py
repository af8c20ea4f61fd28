"""fastmlp: fast multi-layer perceptrons on the CPU."""
import importlib.util as _ilu
import os as _os
import sys as _sys


def _load_kernels_from_checkout():
    """``fastmlp.kernels`` lives in the top-level ``kernels/`` folder of the source tree
    (installs map it into the package).  Running from a checkout -- installed in editable mode
    or not installed at all -- loads the ``kernels/`` beside this package, so that a checkout
    always runs its own kernels."""
    if "fastmlp.kernels" in _sys.modules:
        return
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    init = _os.path.join(root, "kernels", "__init__.py")
    if not (_os.path.isfile(init) and _os.path.isfile(_os.path.join(root, "pyproject.toml"))
            and not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "kernels"))):
        return
    spec = _ilu.spec_from_file_location(
        "fastmlp.kernels", init, submodule_search_locations=[_os.path.dirname(init)])
    module = _ilu.module_from_spec(spec)
    _sys.modules["fastmlp.kernels"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del _sys.modules["fastmlp.kernels"]
        raise


_load_kernels_from_checkout()

from importlib.metadata import PackageNotFoundError, version as _version

from . import _threads  # noqa: F401  (chooses Numba's threading layer before any kernel runs)
from . import backend
from .model import MLP
from .persistence import load
from .estimators import MLPClassifier, MLPRegressor

try:
    __version__ = _version("fastmlp")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"



def __getattr__(name):
    # imported on first use: ``python -m fastmlp.patch`` must find fastmlp.patch not yet
    # imported, and the ONNX extra is optional
    if name in ("patch_sklearn", "unpatch_sklearn"):
        from . import patch
        return getattr(patch, name)
    if name == "to_onnx":
        from ._onnx import to_onnx
        return to_onnx
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


__all__ = ["MLP", "MLPClassifier", "MLPRegressor", "backend", "patch_sklearn",
           "unpatch_sklearn", "__version__"]
