"""The estimators of ``fastmlp.dask``: ``MLPClassifier`` and ``MLPRegressor``, fastmlp's
scikit-learn estimators fitted on a cluster (see :mod:`fastmlp.dask`)."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Optional, TypeVar, Union

import numpy as np
from sklearn.base import _clone_parametrized
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.validation import check_is_fitted

from .._state import check_memory, training_bytes
from .._validation import check_class_weight
from .._workspace import Layout
from .._fitting import _STOCHASTIC_SOLVERS, _SubTasks
from ..estimators import MLPClassifier as _LocalClassifier
from ..estimators import MLPRegressor as _LocalRegressor
from .data import (_decode_predict, _decode_proba, _is_dask, _predict_block, _ShardedData,
                   _split_sizes, _to_dask_array)
from .source import _ClusterValidation, _FleetSource
from .transport import ClusterLostError, _client_for, _Fleet, _workers

if TYPE_CHECKING:
    import dask.array
    import dask.dataframe

    # for the type check, the mixin is one of fastmlp's estimators (it always is one)
    from ..estimators import _BaseMLP as _MixinBase
    from ..model import ArrayLike

    # what the cluster methods take: dask collections, or in-memory arrays
    _Data = Union[dask.array.Array, dask.dataframe.DataFrame, dask.dataframe.Series, ArrayLike]
else:
    _MixinBase = object

__all__ = ["MLPClassifier", "MLPRegressor"]
_D = TypeVar("_D", bound="_DaskMLP")


def _dask_init(local_cls):
    """An ``__init__`` with exactly ``local_cls``'s parameters plus ``client`` (keyword-only,
    last), so that the dask estimators follow the local ones as they gain parameters;
    scikit-learn's get_params reads the ``__signature__``."""
    sig = inspect.signature(local_cls.__init__)
    params = list(sig.parameters.values())
    params.append(inspect.Parameter("client", inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation="Any"))

    def __init__(self, *args: Any, client: Any = None, **kwargs: Any) -> None:
        local_cls.__init__(self, *args, **kwargs)
        self.client = client
    __init__.__signature__ = sig.replace(parameters=params)
    __init__.__qualname__ = f"{local_cls.__name__}.__init__"
    return __init__


# Parameters of the local estimators that the cluster fit does not implement, with the only
# value it accepts, and why.
_UNSUPPORTED = {}
# Parameters the cluster fit implements.  Any other parameter the local estimators gain must
# keep its default.
_IMPLEMENTED = {
    "hidden_layer_sizes", "activation", "solver", "alpha", "batch_size", "learning_rate",
    "learning_rate_init", "power_t", "max_iter", "loss", "shuffle", "random_state", "tol",
    "verbose", "warm_start", "momentum", "nesterovs_momentum", "early_stopping",
    "validation_fraction", "beta_1", "beta_2", "epsilon", "n_iter_no_change", "max_fun",
    "scoring", "restore_best_weights", "class_weight", "leaky_relu_slope", "dropout",
    "client"}



class _DaskMLP(_ShardedData, _MixinBase):
    """The distributed fit, predict and score shared by the two estimators (a mixin over
    fastmlp's scikit-learn estimators: same parameters, bookkeeping and fitted attributes)."""

    # -- scikit-learn plumbing ----------------------------------------------------------------
    def __sklearn_clone__(self):
        # a Client cannot be deep-copied: the clone shares it
        client, self.client = self.client, None
        try:
            new = _clone_parametrized(self)
        finally:
            self.client = client
        new.client = client
        return new

    def __getstate__(self):
        state = super().__getstate__()
        state["client"] = None
        return state

    def _get_state(self):
        """A model file's state: the local estimator's, without ``client`` (a connection, not
        part of the model).  ``save`` writes it as a file of the local kind, so
        ``fastmlp.load`` returns :class:`fastmlp.MLPClassifier` / :class:`fastmlp.MLPRegressor`
        (the model :meth:`to_local` returns) wherever the file is read, dask or not."""
        state = super()._get_state()
        state["model"]["params"].pop("client", None)
        return state

    # -- fitting ------------------------------------------------------------------------------
    def fit(self: _D, X: _Data, y: _Data, sample_weight: Optional[_Data] = None, *,
            X_val: Optional[ArrayLike] = None, y_val: Optional[ArrayLike] = None,
            sample_weight_val: Optional[ArrayLike] = None) -> _D:
        """Fit the model on the cluster.

        Parameters
        ----------
        X : dask array or dask DataFrame of shape (n_samples, n_features), or array-like
            The rows stay on the workers (a NumPy X is scattered once).
        y : dask array or dask Series of shape (n_samples,) (or (n_samples, n_outputs) for a
            regressor), or array-like for a NumPy X
        sample_weight : dask array, array-like of shape (n_samples,) or None
        X_val, y_val, sample_weight_val : array-like, default=None
            A validation set of one's own, as in :meth:`fastmlp.MLPClassifier.fit`
            (in-memory arrays; spread over the workers, which score it and return sums).

        Returns
        -------
        self : object
        """
        return self._fit_cluster(X, y, sample_weight, incremental=False,
                                 validation=(X_val, y_val, sample_weight_val))

    def _check_cluster_params(self, incremental):
        self._validate_params()
        params = self.get_params(deep=False)
        for name, (allowed, why) in _UNSUPPORTED.items():
            if name in params and params[name] is not allowed and params[name] != allowed:
                raise ValueError(f"fastmlp.dask does not support {name}={params[name]!r} "
                                 f"(only {allowed!r}): {why}")
        defaults = {k: p.default for k, p in inspect.signature(type(self)).parameters.items()}
        for name in sorted(set(params) - _IMPLEMENTED - set(_UNSUPPORTED)):
            if params[name] is not defaults.get(name) and params[name] != defaults.get(name):
                raise ValueError(f"fastmlp.dask does not support {name}={params[name]!r} "
                                 f"yet (only its default, {defaults.get(name)!r})")
        if getattr(self, "_skl_callbacks", None):
            raise ValueError("fastmlp.dask does not run scikit-learn callbacks "
                             "(set_callbacks); cluster_stats_ and loss_curve_ report the fit")
        if self.scoring not in (None, "loss"):
            raise ValueError(f"fastmlp.dask supports scoring=None (accuracy / R^2) or 'loss', "
                             f"got {self.scoring!r}: the engines score their own held-out "
                             "rows and only sums reach the driver, which a scorer cannot use")
        stochastic = self.solver in _STOCHASTIC_SOLVERS
        if incremental and stochastic and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if (incremental and isinstance(getattr(self, "class_weight", None), str)):
            raise ValueError("class_weight='balanced' is not supported by partial_fit: one "
                             "batch's class frequencies are not the data set's. Pass a dict, "
                             "e.g. from sklearn.utils.class_weight.compute_class_weight.")
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        self._dropout_rates(len(hidden))  # dropout needs sgd/adam
        return hidden

    def _class_weight_vector(self, counts):
        """``class_weight`` as one weight per class of ``classes_`` (the engines multiply
        each row's weight by its class's), or None: what
        :func:`sklearn.utils.class_weight.compute_sample_weight` gives every row of a class."""
        class_weight = getattr(self, "class_weight", None)
        if class_weight is None:
            return None
        from sklearn.utils.class_weight import compute_sample_weight
        if isinstance(class_weight, str):  # 'balanced', from the class counts
            counts = np.asarray(counts, np.float64)
            present = counts > 0
            weights = np.zeros(len(counts))
            weights[present] = counts.sum() / (present.sum() * counts[present])
            return weights
        return compute_sample_weight(class_weight, self.classes_)

    def _cluster_validation_split(self, labels, n):
        """early_stopping's held-out rows, drawn as scikit-learn draws them (its
        ``train_test_split`` with the same ``random_state``, stratified for a binary
        classifier): ``pos`` (n,), each row's position in the training order or -1 when held
        out, and the number of training rows.  Only row numbers (and a binary classifier's
        labels) are on the driver, never features."""
        from sklearn.model_selection import train_test_split
        stratify = labels()[1] if hasattr(self, "_label_binarizer_for") else None
        train, test = train_test_split(np.arange(n), random_state=self._random_state,
                                       test_size=self.validation_fraction, stratify=stratify)
        if len(test) < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        pos = np.full(n, -1, np.int64)
        pos[train] = np.arange(len(train))
        return pos, len(train)

    def _user_validation(self, client, validation, shards):
        """The user's validation set (X_val, y_val, sample_weight_val), validated on the
        driver as locally, split into one contiguous part per engine; False when none."""
        if any(_is_dask(a) for a in validation):
            raise ValueError("fastmlp.dask takes X_val, y_val and sample_weight_val as "
                             "in-memory arrays (NumPy, pandas), not dask collections")
        v = self._check_validation_set(*validation)
        if v is None:
            return False
        Xv = v.X.toarray() if hasattr(v.X, "toarray") else np.asarray(v.X)
        Yv = np.asarray(v.Y).reshape(len(Xv), -1)
        bounds = np.concatenate([[0], np.cumsum(_split_sizes(len(Xv), len(shards)))])
        for shard, lo, hi in zip(shards, bounds[:-1], bounds[1:]):
            shard.val_source = (Xv[lo:hi], Yv[lo:hi], None if v.sw is None else v.sw[lo:hi])
            shard.val_futures = client.scatter(shard.val_source, hash=False)
        return True

    def _fit_cluster(self, X, y, sample_weight, incremental, validation=(None, None, None)):
        hidden = self._check_cluster_params(incremental)
        with _client_for(self.client) as client:
            n_shards = len(_workers(client))
            # dropout's masks follow each row's position in its global batch: with shuffled
            # (or split) batches a shard's rows are scattered over the batch, so every
            # engine holds every row and computes one contiguous part of each batch
            split = (bool(self.early_stopping) and validation[0] is None
                     and validation[1] is None)
            replicate = (self._dropout_rates(len(hidden)) is not None and n_shards > 1
                         and (self.shuffle or split))
            # unshuffled batches over contiguous shards would each lie on one worker while
            # the others wait: deal every batch out over the shards instead
            stochastic = self.solver in _STOCHASTIC_SOLVERS
            deal = (stochastic and not self.shuffle and not split and not replicate
                    and n_shards > 1)
            shards, n, dtype, binarizer, n_out, labels = self._shards(
                client, X, y, sample_weight, n_shards, incremental, replicate, deal)
            n_shards = len(shards)
            if replicate:
                for k, shard in enumerate(shards):
                    shard.extra = dict(part=(k, n_shards))
            first_pass = not hasattr(self, "coefs_") or (not self.warm_start
                                                         and not incremental)
            layer_units = [self.n_features_in_] + hidden + [n_out]
            # the driver holds the weights, their best copy, the summed gradients and the
            # optimizer's state (each worker's engine checks its own batch's buffers)
            check_memory(training_bytes(layer_units, 0, np.dtype(dtype).itemsize),
                         f"training a network {'-'.join(map(str, layer_units))} "
                         f"({np.dtype(dtype).name}) on this driver")
            self._random_state = check_random_state(self.random_state)
            if first_pass or [c.shape for c in self.coefs_] != list(
                    zip(layer_units[:-1], layer_units[1:])):
                self._initialize(np.empty((0, n_out)), layer_units, dtype)
            self.n_outputs_ = n_out
            param_dtype = self.coefs_[0].dtype
            class_weight = None
            if getattr(self, "class_weight", None) is not None:
                check_class_weight(self.class_weight)  # as the local fit, before any step
                counts = labels()[0]  # None where the labels are not counted
                class_weight = self._class_weight_vector(counts)
                present = None if counts is None else np.asarray(counts) > 0
                if (present is not None and present.shape == np.shape(class_weight)
                        and not np.sum(class_weight[present]) > 0):
                    raise ValueError("class_weight gives every training sample zero weight: "
                                     "at least one class present in y needs a positive "
                                     "weight")
            user_val = self._user_validation(client, validation, shards)
            n_train = n
            if stochastic and self.early_stopping and not user_val:
                pos, n_train = self._cluster_validation_split(labels, n)
                for shard in shards:
                    shard.extra = dict(shard.extra, train_pos=pos[shard.lo:shard.hi])
            batch_size = self._batch_size(n_train) if stochastic else None
            dropout = self._dropout_rates(len(hidden))
            spec = dict(sizes=list(layer_units), activation=self.activation,
                        out_activation=self.out_activation_, loss=self._train_loss,
                        dtype=(np.result_type(dtype, param_dtype) if not stochastic
                               else param_dtype).name,
                        n_rows=n, n_train=n_train, batch_size=batch_size,
                        shuffle=bool(self.shuffle), binarizer=binarizer,
                        classes=(self.classes_ if incremental and binarizer is not None
                                 else None),
                        class_weight=class_weight, dropout=dropout,
                        leaky_relu_slope=float(self.leaky_relu_slope))
            fleet = _Fleet(client, shards, spec)
            workers = _workers(client)
            fleet.start([workers[k % len(workers)] for k in range(len(shards))])
            layout = Layout(layer_units)
            tasks = _SubTasks.none()  # callbacks were refused above
            try:
                validation = None
                if user_val or (stochastic and self.early_stopping):
                    # early_stopping's held-out rows, or the user's set: scored on the engines
                    validation = _ClusterValidation(fleet,
                                                    hasattr(self, "_label_binarizer_for"))
                if stochastic:
                    self._run_epochs(lambda: self._fleet_source(fleet, layout, param_dtype),
                                     n_train, validation, incremental, tasks, dropout)
                else:
                    self._optimizer = self._optimizer_state = None
                    self._run_lbfgs(self._fleet_source(fleet, layout, np.dtype(spec["dtype"])),
                                    validation, tasks, param_dtype)
            finally:
                self.cluster_stats_ = dict(
                    n_workers=n_shards, steps=fleet.steps, wall_seconds=fleet.wall,
                    compute_seconds=fleet.compute,
                    communication_seconds=max(0.0, fleet.wall - fleet.compute),
                    worker_losses=fleet.recoveries)
                fleet.close()
                self._stop_requested = False
        self._check_finite_weights()
        return self

    def _fleet_source(self, fleet, layout, dtype):
        """The fit's gradient source on ``fleet``: the driver's flat parameters, of
        ``dtype``, with coefs_/intercepts_ as views of them (so the estimator always holds
        the last completed step)."""
        params = layout.pack(self.coefs_, self.intercepts_, np.empty(layout.n_params, dtype))
        self.coefs_, self.intercepts_ = layout.views(params)
        return _FleetSource(fleet, layout, params, self.alpha, bool(self.shuffle),
                            getattr(self, "_after_step", None))

    def to_local(self) -> Union[_LocalClassifier, _LocalRegressor]:
        """The fitted model as fastmlp's own estimator (:class:`fastmlp.MLPClassifier` or
        :class:`fastmlp.MLPRegressor`): the same parameters without ``client`` and the same
        fitted attributes, to save (``fastmlp.persistence.save``) or to use without a cluster.

        Returns
        -------
        estimator : fastmlp.MLPClassifier or fastmlp.MLPRegressor
        """
        check_is_fitted(self)
        import copy
        local = _LocalClassifier if isinstance(self, _LocalClassifier) else _LocalRegressor
        # the state a model file or a pickle holds (without client), checked the same way
        return local._from_state(copy.deepcopy(self._get_state_with_objects()))

    # -- prediction ---------------------------------------------------------------------------
    def _dask_forward(self, X, decode):
        """Lazy per-block ``decode(network output)`` of a dask array/DataFrame: a dask array."""
        Xa = _to_dask_array(X, "X")
        if Xa.ndim != 2 or Xa.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Xa.shape[-1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        Xa = Xa.rechunk({1: -1})
        model = self.__getstate__()
        sample = decode(self, np.zeros((1, self.n_outputs_)))
        kwargs = dict(dtype=sample.dtype, meta=np.empty((0,) * sample.ndim, sample.dtype))
        if sample.ndim == 1:
            return Xa.map_blocks(_predict_block, model, type(self), decode, drop_axis=1,
                                 **kwargs)
        return Xa.map_blocks(_predict_block, model, type(self), decode,
                             chunks=(Xa.chunks[0], (sample.shape[1],)), **kwargs)

    def predict(self, X: _Data) -> Any:  # np.ndarray, or a dask array for dask input
        """Predictions for X: a dask array for dask input (computed on the workers, block by
        block), a NumPy array for NumPy input."""
        check_is_fitted(self)
        if _is_dask(X):
            return self._dask_forward(X, _decode_predict)
        return super().predict(X)

    def score(self, X: _Data, y: _Data, sample_weight: Optional[_Data] = None) -> float:
        """Accuracy (classifier) or R^2 (regressor) of ``predict(X)`` against y; for dask input
        reduced on the workers (only the sums reach the driver)."""
        if not _is_dask(X):
            return super().score(X, y, sample_weight=sample_weight)
        import dask
        import dask.array as da
        pred = self.predict(X)
        ya = _to_dask_array(y, "y")
        ya = ya.rechunk((pred.chunks[0],) + ((-1,) if ya.ndim > 1 else ()))
        w = None
        if sample_weight is not None:
            w = (_to_dask_array(sample_weight, "sample_weight") if _is_dask(sample_weight)
                 else da.from_array(np.asarray(sample_weight, np.float64)))
            w = w.rechunk((pred.chunks[0],))
        return float(dask.compute(self._dask_score(ya, pred, w))[0])


class MLPClassifier(_DaskMLP, _LocalClassifier):
    """Multi-layer perceptron classifier trained data-parallel on a Dask cluster.

    The parameters, fitted attributes and numbers of :class:`fastmlp.MLPClassifier`
    (scikit-learn's ``MLPClassifier``), plus ``client``.  ``fit`` takes dask arrays, dask
    DataFrames (the rows stay on the workers) or NumPy arrays (scattered once);
    ``predict``/``predict_proba`` return dask arrays for dask input.  ``early_stopping``
    holds out scikit-learn's rows and scores them on the workers (``scoring`` None or
    'loss'); ``class_weight`` weights rows on the workers; ``dropout`` draws the masks of
    a single process (with shuffled batches on more than one worker, every worker then
    holds all the training rows and computes a contiguous part of each global batch).

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, \
momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon, \
n_iter_no_change, max_fun
        As :class:`sklearn.neural_network.MLPClassifier`.
    client : distributed.Client or None, default=None
        The cluster to train on.  None: the session's default client if there is one, else
        the scheduler at ``DASK_SCHEDULER_ADDRESS``, else a LocalCluster of process workers
        (one per core, one thread each) started for the fit and closed after it.

    Attributes
    ----------
    cluster_stats_ : dict
        Of the last fit: ``n_workers``, ``steps`` (gradient evaluations), ``wall_seconds``,
        ``compute_seconds`` (the slowest worker's kernel time, summed over steps),
        ``communication_seconds`` (the rest) and ``worker_losses``.

    Examples
    --------
    >>> import numpy as np
    >>> from distributed import Client, LocalCluster
    >>> from fastmlp.dask import MLPClassifier
    >>> X = np.random.RandomState(0).normal(size=(200, 4)); y = X[:, 0] > 0
    >>> with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                   dashboard_address=None) as cluster, Client(cluster) as client:
    ...     clf = MLPClassifier((8,), solver="lbfgs", random_state=0, client=client)
    ...     clf = clf.fit(X, y)
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    _parameter_constraints: dict = {**_LocalClassifier._parameter_constraints,
                                    "client": "no_validation"}

    __init__ = _dask_init(_LocalClassifier)

    def _label_binarizer_for(self, classes):
        """Fit the label binarizer on the (computed) unique labels of a dask y."""
        classes = np.sort(np.asarray(classes))
        if not hasattr(self, "classes_") or not self.warm_start:
            lb = LabelBinarizer().fit(classes)
            self._label_binarizer, self.classes_ = lb, lb.classes_
        elif set(classes) != set(self.classes_):
            raise ValueError("warm_start can only be used where `y` has the same classes as "
                             f"in the previous call to fit. Previously got {self.classes_}, "
                             f"`y` has {classes}")
        return self._label_binarizer

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: _Data, y: _Data, sample_weight: Optional[_Data] = None,
                    classes: Optional[ArrayLike] = None, *, X_val: Optional[ArrayLike] = None,
                    y_val: Optional[ArrayLike] = None,
                    sample_weight_val: Optional[ArrayLike] = None) -> MLPClassifier:
        """One pass (one epoch of sgd/adam) over the given rows on the cluster, as
        :meth:`fastmlp.MLPClassifier.partial_fit`: ``classes`` (all the labels across calls)
        is required on the first call; the optimizer's state is kept between calls.

        Parameters
        ----------
        X, y, sample_weight
            As in :meth:`fit` (dask or NumPy).
        classes : array-like of shape (n_classes,), default=None
        X_val, y_val, sample_weight_val : array-like, default=None
            As in :meth:`fit`: the epoch's validation score and loss are recorded.

        Returns
        -------
        self : object
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer().fit(classes)
        return self._fit_cluster(X, y, sample_weight, incremental=True,
                                 validation=(X_val, y_val, sample_weight_val))

    def predict_proba(self, X: _Data) -> Any:  # np.ndarray, or a dask array for dask X
        """Probability estimates (n_samples, n_classes): a dask array for dask input."""
        check_is_fitted(self)
        if _is_dask(X):
            return self._dask_forward(X, _decode_proba)
        return super().predict_proba(X)

    @staticmethod
    def _dask_score(y, pred, w):
        hits = (y == pred).astype(np.float64)
        return hits.mean() if w is None else (hits * w).sum() / w.sum()


class MLPRegressor(_DaskMLP, _LocalRegressor):
    """Multi-layer perceptron regressor trained data-parallel on a Dask cluster.

    The parameters, fitted attributes and numbers of :class:`fastmlp.MLPRegressor`
    (scikit-learn's ``MLPRegressor``), plus ``client`` (see :class:`MLPClassifier` for the
    cluster, the inputs and what is not supported).

    Examples
    --------
    >>> import numpy as np
    >>> from distributed import Client, LocalCluster
    >>> from fastmlp.dask import MLPRegressor
    >>> X = np.random.RandomState(0).normal(size=(200, 3)); y = X @ [1.0, -2.0, 0.5]
    >>> with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                   dashboard_address=None) as cluster, Client(cluster) as client:
    ...     reg = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0,
    ...                        client=client)
    ...     reg = reg.fit(X, y)
    >>> bool(reg.score(X, y) > 0.9)
    True
    """

    _parameter_constraints: dict = {**_LocalRegressor._parameter_constraints,
                                    "client": "no_validation"}

    __init__ = _dask_init(_LocalRegressor)

    # scikit-learn's MLPRegressor.partial_fit exists for lbfgs too (a warm-started lbfgs
    # fit); fastmlp.MLPRegressor keeps that, and so does this one
    @available_if(lambda est: est._check_solver)
    def partial_fit(self, X: _Data, y: _Data, sample_weight: Optional[_Data] = None, *,
                    X_val: Optional[ArrayLike] = None, y_val: Optional[ArrayLike] = None,
                    sample_weight_val: Optional[ArrayLike] = None) -> MLPRegressor:
        """One pass (one epoch of sgd/adam) over the given rows on the cluster, as
        :meth:`fastmlp.MLPRegressor.partial_fit`.

        Parameters
        ----------
        X, y, sample_weight
            As in :meth:`fit` (dask or NumPy).
        X_val, y_val, sample_weight_val : array-like, default=None
            As in :meth:`fit`: the epoch's validation score and loss are recorded.

        Returns
        -------
        self : object
        """
        return self._fit_cluster(X, y, sample_weight, incremental=True,
                                 validation=(X_val, y_val, sample_weight_val))

    @staticmethod
    def _dask_score(y, pred, w):
        """R^2 averaged over outputs (scikit-learn's 'uniform_average'), weighted rows."""
        import dask.array as da
        if y.ndim == 1:
            y, pred = y[:, None], pred.reshape(-1, 1) if pred.ndim == 1 else pred
        y = y.astype(np.float64)
        ww = da.ones(y.shape[0], chunks=y.chunks[0]) if w is None else w
        mean = (y * ww[:, None]).sum(axis=0) / ww.sum()
        ss_res = (((y - pred) ** 2) * ww[:, None]).sum(axis=0)
        ss_tot = (((y - mean) ** 2) * ww[:, None]).sum(axis=0)
        r2 = da.where(ss_tot != 0, 1 - ss_res / da.where(ss_tot != 0, ss_tot, 1),
                      da.where(ss_res == 0, 1.0, 0.0))
        return r2.mean()
