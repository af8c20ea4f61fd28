"""Data-parallel training on a Dask cluster: ``fastmlp.dask.MLPClassifier`` and
``fastmlp.dask.MLPRegressor``.

The estimators take the parameters of :class:`fastmlp.MLPClassifier` /
:class:`fastmlp.MLPRegressor` plus ``client`` and fit on dask arrays, dask DataFrames or NumPy
arrays.  The rows are split into one *shard* per worker (never more shards than rows): with
unshuffled batches (``shuffle=False``, no validation split) every global batch is dealt out as
one contiguous part per shard, so that each batch is spread over every worker; otherwise each
shard is a contiguous block of rows (a shuffled batch draws its rows from all of them).  A dask
input moves once, between the workers; a NumPy input is scattered once.  Each shard lives in a
long-lived *engine* on its worker (a Dask actor) that holds the rows and a preallocated
workspace; after that, only parameters and gradients travel.

One training step (the protocol, identical for L-BFGS evaluations and SGD/Adam batches)::

    driver --params (P numbers)--> every engine        one round trip, direct to the workers
    engine: raw sums of its rows   (loss sum, gradient sums (P,), weight sum; no L2 term)
    driver <--raw sums (P + 2)---- every engine
    driver: adds the shards' sums in shard order, adds the L2 term once, takes the step

So a step moves ``2 * P * itemsize`` bytes per worker and costs one round trip, whatever the
number of rows: communication does not grow with the data, and per-worker work per step
(rows per worker x network size) must be large for it to pay -- see the README section
"Training on a cluster".  Dask has no allreduce; the sum runs on the driver.

Equality.  Full-batch L-BFGS sums the exact per-shard raw sums, so the model equals
scikit-learn's ``solver="lbfgs"`` up to floating-point summation order.  SGD/Adam follow
scikit-learn's random draws: the initial weights come from ``random_state`` on the driver, and
each epoch every engine applies the same ``RandomState.shuffle`` to the global row order (the
driver sends the generator's state, a few kB), so the global batches are those of a single
process; each engine computes the sums of the rows of the batch that it holds.  A fitted
estimator saves (``save``, ``fastmlp.persistence.save``) as the local estimator it equals:
``fastmlp.load`` returns :class:`fastmlp.MLPClassifier` / :class:`fastmlp.MLPRegressor`, without
the client.  Each engine runs its kernels with its worker's thread count (``--nthreads``), so
N workers of k threads on one host use N*k cores.  With one
worker the fit equals :class:`fastmlp.MLPClassifier` bit for bit; with more, to summation
order.  To reproduce a fit locally, fit the fastmlp (or scikit-learn) estimator with the same
parameters on the rows in the same order (``X.compute()``).

Early stopping.  The driver draws scikit-learn's train/validation split over the row numbers
(``train_test_split`` with the same ``random_state``); the rows stay where they are.  Each
engine gets its rows' positions in the training order (or -1 for a held-out row): the global
batches are drawn from those positions exactly as a single process draws them from its
training set, and after each epoch every engine scores its held-out rows and returns sums
(loss, weight, accuracy's hits or R^2's squares) -- only numbers reach the driver.

Dropout.  A mask depends on the step and on the row's position in its global batch; each
engine passes its rows' offset in the batch (``row0``) to the kernels.  Where a shard's rows
are not contiguous in the batches (shuffled or split batches on more than one worker), every
engine holds every row and computes the k-th of W contiguous parts of each batch instead.

Faults.  A worker that dies mid-fit is replaced: its shard is recomputed from the dask graph (or
re-sent from the driver's NumPy array) on a live worker, a new engine replays the epoch
shuffles, and the interrupted step is repeated with the same parameters -- the result does not
change.  When no worker is left, :class:`ClusterLostError` is raised and the estimator keeps
the parameters of the last completed step.

Layout.  The fitting loops (L-BFGS, and the epochs with scikit-learn's bookkeeping) are the
local estimators' own (``fastmlp._fitting``); this package supplies them a gradient source and
the cluster around it, in five modules that share one protocol (the shard layout, the step
numbering, the replayed shuffles):

- ``estimators``: ``MLPClassifier`` / ``MLPRegressor`` (the fit, predict and score front-ends);
- ``source``: the gradient source the fitting loops drive (``_FleetSource``) and the
  validation scored on the engines (``_ClusterValidation``);
- ``data``: the shards -- dealing rows out, converting dask collections, predicting by block;
- ``transport``: the client, the fleet of engines (one actor per shard) and the fault handling
  that rebuilds a lost shard;
- ``engine``: the worker side, the engine that Dask runs as an actor (imports no dask).

Dask itself is imported lazily: ``import fastmlp`` never loads it.
"""
from .estimators import MLPClassifier, MLPRegressor, _DaskMLP
from .engine import _ShardEngine
from .source import _ClusterValidation, _FleetSource
from .transport import INSTALL_HINT, ClusterLostError

__all__ = ["MLPClassifier", "MLPRegressor", "ClusterLostError"]
