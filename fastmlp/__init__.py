"""fastmlp: fast multi-layer perceptrons on the CPU."""
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

__all__ = ["MLP", "MLPClassifier", "MLPRegressor", "backend", "__version__"]
