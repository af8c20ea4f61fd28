"""fastmlp's version, in a module of its own, so that the file format and the command line
read it without importing the package face."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__: str = _version("fastmlp")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
