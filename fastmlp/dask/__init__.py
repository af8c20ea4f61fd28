"""Data-parallel training on a Dask cluster: ``fastmlp.dask.MLPClassifier`` and
``fastmlp.dask.MLPRegressor`` (see :mod:`fastmlp.dask.estimators`)."""
from . import estimators
from .engine import _ShardEngine
from .estimators import (INSTALL_HINT, ClusterLostError, MLPClassifier, MLPRegressor, _DaskMLP,
                         _FleetSource)

__all__ = ["MLPClassifier", "MLPRegressor", "ClusterLostError"]
