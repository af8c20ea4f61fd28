"""fastmlp: fast multi-layer perceptrons on the CPU."""
from importlib.metadata import PackageNotFoundError, version as _version

from . import _threads  # noqa: F401  (chooses Numba's threading layer before any kernel runs)
from . import backend
from .model import MLP

try:
    __version__ = _version("fastmlp")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["MLP", "backend", "__version__"]
