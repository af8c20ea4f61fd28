"""``fastmlp.MLP``: the thin model class.  It resolves options once, owns a
:class:`~fastmlp._core.Trainer` (parameters, workspace), the optimizer state and the state of
an interrupted epoch, and loops over epochs; all arithmetic happens in the kernels.  Its whole
state (what a model file holds) is ``_get_state()`` / ``_set_state()``, which check a state
read from a file field by field; they live in :mod:`fastmlp._model_state`."""
from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from . import _state as S
from . import persistence
from ._core import PREDICT_CHUNK, Trainer
from ._fitting import minimize_lbfgs
from ._model_state import FIT_DEFAULTS, ModelState
from ._sources import TrainerSource
from ._threads import resolve_n_threads
from ._validation import (FIT_CONSTRAINTS, MLP_CONSTRAINTS, check_dropout, check_dtype,
                          check_hyperparams, check_layer_sizes, check_leaky_relu_slope,
                          check_sample_weight, check_X, check_Y, resolve)
from ._workspace import Workspace
from .optimizers import make_optimizer

ArrayLike = Union[np.ndarray, sp.spmatrix, sp.sparray, Sequence]
DTypeLike = Union[str, type, np.dtype]
RandomStateLike = Union[None, int, np.random.RandomState]


class MLP(ModelState):
    """A multi-layer perceptron ``A[l+1] = f(A[l] @ W[l] + b[l])``.

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, input and output included, e.g. ``(784, 512, 512, 10)``.
    activation : {'sigmoid' (alias 'logistic'), 'tanh', 'relu', 'identity', 'leaky_relu', \
'gelu', 'silu'}
    out_activation : {'identity', 'sigmoid', 'logistic', 'tanh', 'relu', 'leaky_relu', \
'softmax', 'exp'}
    loss : {'squared_error', 'log_loss', 'binary_log_loss', 'poisson'}
    dtype : {'float32', 'float64'}
        Precision of parameters and of every kernel; inputs are converted to it.
    alpha : float
        L2 penalty ``0.5 * alpha * sum ||W||^2 / n_batch``.
    random_state : int, RandomState or None
        Seeds the initial weights and the shuffling.
    n_threads : int or None
        Threads for BLAS and for Numba's kernels during this model's calls (None: this
        process's CPU budget, shared with fastmlp calls running at the same time; a larger
        value is capped at the budget).
    leaky_relu_slope : float, default=0.01
        Leaky ReLU's slope for negative inputs (>= 0).
    dropout : float, sequence of float or None, default=None
        Inverted dropout while training: a rate in [0, 1) for every hidden layer, or one per
        hidden layer.  The masks are drawn from ``random_state`` (reproducible) and depend on
        neither the thread count nor the batch split.

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        ``W[l]`` of shape (n_in, n_out) and ``b[l]`` of shape (n_out,), views of the live
        parameters (after ``fit`` or ``partial_fit``).
    loss_curve_ : list of float
        Mean training loss of each completed epoch; after ``fit(optimizer='lbfgs')``, the
        loss (L2 term included) at each L-BFGS iterate, one entry per iteration.

    Examples
    --------
    >>> import numpy as np
    >>> import fastmlp
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> Y = np.c_[X.sum(1) > 0]
    >>> model = fastmlp.MLP((3, 8, 1), out_activation="sigmoid", random_state=0)
    >>> model = model.fit(X, Y, epochs=20, batch_size=16, learning_rate=0.5)
    >>> model.loss_curve_[-1] < model.loss_curve_[0]
    True
    >>> model.predict(X[:2]).shape
    (2, 1)
    """

    def __init__(self, layer_sizes: Sequence[int], activation: str = "sigmoid",
                 out_activation: str = "identity", loss: str = "squared_error",
                 dtype: DTypeLike = "float32", alpha: float = 0.0,
                 random_state: RandomStateLike = None, n_threads: Optional[int] = None,
                 leaky_relu_slope: float = 0.01,
                 dropout: Union[None, float, Sequence[float]] = None) -> None:
        check_hyperparams(MLP_CONSTRAINTS, {
            "layer_sizes": layer_sizes, "activation": activation,
            "out_activation": out_activation, "loss": loss, "dtype": dtype, "alpha": alpha,
            "random_state": random_state, "n_threads": n_threads,
            "leaky_relu_slope": leaky_relu_slope, "dropout": dropout}, "MLP")
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.leaky_relu_slope = check_leaky_relu_slope(leaky_relu_slope)
        self.dropout = check_dropout(dropout, len(self.layer_sizes) - 2)
        resolve(activation, out_activation, loss, caller="MLP")  # output and loss agree
        self.activation = activation
        self.out_activation = out_activation
        self.loss = loss
        self.dtype = check_dtype(dtype)
        self.alpha = alpha
        self.random_state = random_state
        self._n_threads = resolve_n_threads(n_threads) if n_threads is not None else None
        self._rs = check_random_state(random_state)
        self._trainer: Optional[Trainer] = None
        self._optimizer: Any = None  # an Optimizer of fastmlp.optimizers once trained
        self._opt_state: Any = None
        # an epoch stopped mid-way: {"order", "position", "loss_sum"}
        self._pending: Optional[dict[str, Any]] = None
        self._stop = False
        # partial_fit's settings, as the last call left them
        self._settings: dict[str, Any] = dict(FIT_DEFAULTS)
        self.loss_curve_ = []

    # -- state --------------------------------------------------------------------------------
    def _make_trainer(self, batch_size, init=True, alpha=None):
        S.check_memory(S.training_bytes(self.layer_sizes, batch_size, self.dtype.itemsize),
                       f"training a network {'-'.join(map(str, self.layer_sizes))} "
                       f"({self.dtype.name}) with batch size {batch_size}")
        t = Trainer(self.layer_sizes, activation=self.activation,
                    out_activation=self.out_activation, loss=self.loss, dtype=self.dtype,
                    batch_size=batch_size, alpha=self.alpha if alpha is None else alpha,
                    n_threads=self._n_threads, leaky_relu_slope=self.leaky_relu_slope)
        if self._trainer is not None:  # a new batch size keeps the learned parameters
            t.params[:] = self._trainer.params
            t.set_dropout(self.dropout, self._trainer.dropout_seed)
            t.dropout_step = self._trainer.dropout_step
        else:
            if init:
                t.init_params(self._rs)
            if self.dropout is not None:  # drawn only with dropout on
                t.set_dropout(self.dropout, self._rs.randint(np.iinfo(np.int32).max))
        t.stop_requested = self._stop
        self._trainer = t
        return t

    @property
    def n_threads(self) -> Optional[int]:
        """Threads for this model's calls (None: decided per call); settable."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value: Optional[int]) -> None:
        self._n_threads = resolve_n_threads(value) if value is not None else None
        if self._trainer is not None:
            self._trainer.n_threads = resolve_n_threads(self._n_threads)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """W[l], (n_in, n_out) each: views of the live parameters."""
        return self._fitted().coefs

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """b[l], (n_out,) each: views of the live parameters."""
        return self._fitted().intercepts

    @property
    def deltas_(self) -> list[np.ndarray]:
        """delta[l] = dLoss/dZ of every layer for the last training batch, (batch, n_l) each."""
        t = self._fitted()
        if t.ws.n_rows == 0:
            raise AttributeError("deltas_ exists after a training step")
        return [t.ws.delta(l) for l in range(1, t.layout.n_layers + 1)]

    @property
    def workspace_(self) -> Workspace:
        """The preallocated buffers (activations, deltas, gathered batch) of the training core."""
        return self._fitted().ws

    @property
    def optimizer_settings_(self) -> Optional[dict[str, Any]]:
        """The settings of the last training call: a dict with ``optimizer``,
        ``learning_rate``, ``batch_size`` (and ``momentum`` for sgd), ``{'optimizer':
        'lbfgs'}`` after ``fit(optimizer='lbfgs')``, or None before any."""
        if self._settings["optimizer"] == "lbfgs" and self._trainer is not None:
            return {"optimizer": "lbfgs"}
        if self._optimizer is None or self._trainer is None:
            return None
        out = {"optimizer": self._optimizer.name,
               "learning_rate": self._optimizer.learning_rate,
               "batch_size": self._trainer.batch_size}
        if self._optimizer.name == "sgd":
            out["momentum"] = self._optimizer.momentum
        return out

    @property
    def pending_epoch(self) -> Optional[dict[str, int]]:
        """Where an epoch stopped mid-way by :meth:`request_stop` stands, or None: a dict with
        ``epoch`` (its number, from 1), ``position`` (rows done) and ``n_rows``.  The next
        ``partial_fit`` on the same rows finishes it first."""
        if self._pending is None:
            return None
        return {"epoch": len(self.loss_curve_) + 1, "position": self._pending["position"],
                "n_rows": self._pending["n_rows"]}

    def request_stop(self) -> None:
        """Ask the training call in progress (or the next one) to stop after the current
        batch; safe to call from a signal handler.  An epoch stopped mid-way is kept (see
        :attr:`pending_epoch`); the request is used up when that call returns."""
        self._stop = True
        t = self._trainer
        if t is not None:
            t.stop_requested = True

    def _fitted(self):
        if self._trainer is None:
            # NotFittedError is both a ValueError and an AttributeError
            raise NotFittedError("this MLP has no parameters yet: call fit or partial_fit")
        return self._trainer

    # -- training -----------------------------------------------------------------------------
    def _check_xy(self, X, Y):
        X = check_X(X, self.dtype, self.layer_sizes[0], accept_sparse=True)
        Y = check_Y(Y, self.dtype, X.shape[0], self.layer_sizes[-1], loss=self.loss)
        return X, Y

    def fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 10, batch_size: int = 256,
            learning_rate: float = 0.1, optimizer: str = "sgd", momentum: float = 0.0,
            shuffle: bool = True,
            callback: Optional[Callable[[int, float], Optional[bool]]] = None,
            sample_weight: Optional[ArrayLike] = None) -> MLP:
        """Train from fresh weights, drawn from ``random_state``, for ``epochs`` passes (or
        at most ``epochs`` L-BFGS iterations).

        Two calls of ``fit`` on one object give the same model (as in scikit-learn); only
        :meth:`partial_fit` continues.  ``fit(epochs=k)`` equals ``k`` calls of
        ``partial_fit(epochs=1)`` on a new model.

        ``optimizer='lbfgs'`` minimises the full-batch loss (L2 term included) with
        scikit-learn's L-BFGS-B, through the driver of ``fastmlp.MLPClassifier(solver=
        'lbfgs')`` (the same iterates from the same weights): ``epochs`` is ``max_iter``,
        with scikit-learn's ``tol=1e-4`` and ``max_fun=15000`` (a ``ConvergenceWarning``
        when a limit ends it); ``batch_size``, ``learning_rate``, ``momentum`` and
        ``shuffle`` do not apply (they are kept for a later :meth:`partial_fit`).
        ``loss_curve_`` gets the loss at each iterate, so ``len(loss_curve_)`` is the number
        of iterations; ``callback(iteration, loss)`` runs after each (True stops), and
        :meth:`request_stop` stops after the current iteration.  The whole batch's
        activations are held during the fit (dense input; sparse input runs in chunks of
        rows), then freed.  As in scikit-learn, with squared error over several outputs the
        gradient is that of ``n_outputs * loss`` (scikit-learn issue #8349).  Dropout is
        refused (a new mask at every evaluation is no function to minimise).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, layer_sizes[0])
        Y : array-like of shape (n_samples, layer_sizes[-1]) or (n_samples,)
            The training data, as for :meth:`partial_fit`.
        epochs : int, default=10
            Passes over the data (0 only initialises the weights); the maximum number of
            iterations with ``optimizer='lbfgs'``.
        optimizer : {'sgd', 'adam', 'lbfgs'}, default='sgd'
            'lbfgs': see above.
        batch_size, learning_rate, momentum, shuffle, callback, sample_weight
            As for :meth:`partial_fit`.

        Returns
        -------
        self : MLP
            Trained.

        Examples
        --------
        >>> import numpy as np
        >>> import fastmlp
        >>> X = np.linspace(-1, 1, 64).reshape(-1, 1)
        >>> model = fastmlp.MLP((1, 4, 1), random_state=0)
        >>> len(model.fit(X, 2 * X, epochs=3, batch_size=8).loss_curve_)
        3
        """
        # checked before anything is reset: a bad argument leaves the model as it was
        check_hyperparams(FIT_CONSTRAINTS, {
            "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "optimizer": optimizer, "momentum": momentum, "shuffle": shuffle,
            "callback": callback}, "MLP.fit")
        if optimizer == "lbfgs" and self.dropout is not None:
            raise ValueError("dropout needs optimizer='sgd' or 'adam': a new mask at every "
                             "evaluation is no function L-BFGS can minimise")
        self._trainer = None
        self._optimizer = None
        self._opt_state = None
        self._pending = None
        self._settings = dict(FIT_DEFAULTS)
        self._rs = check_random_state(self.random_state)
        self.loss_curve_ = []
        if optimizer == "lbfgs":
            self._settings = {"batch_size": int(batch_size),
                              "learning_rate": float(learning_rate), "optimizer": "lbfgs",
                              "momentum": float(momentum), "shuffle": bool(shuffle)}
            return self._fit_lbfgs(X, Y, int(epochs), callback, sample_weight)
        return self.partial_fit(X, Y, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, optimizer=optimizer,
                                momentum=momentum, shuffle=shuffle, callback=callback,
                                sample_weight=sample_weight)

    def partial_fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 1,
                    batch_size: Optional[int] = None, learning_rate: Optional[float] = None,
                    optimizer: Optional[str] = None, momentum: Optional[float] = None,
                    shuffle: Optional[bool] = None,
                    callback: Optional[Callable[[int, float], Optional[bool]]] = None,
                    sample_weight: Optional[ArrayLike] = None) -> MLP:
        """Continue training (weights, optimizer and shuffle state kept) for ``epochs`` passes.

        Settings not given (``batch_size``, ``learning_rate``, ``optimizer``, ``momentum``,
        ``shuffle``) are those the model was last trained with, by :meth:`fit` or
        ``partial_fit`` (saved with the model), so ``fit(epochs=k)`` followed by
        ``partial_fit(X, Y)`` trains exactly as ``fit(epochs=k + 1)``; before any training
        they are the defaults below.

        Each shuffled epoch's order is a permutation drawn from the model's RandomState
        (saved with it), so how the epochs are split into calls does not change the result.  An epoch stopped mid-way by
        :meth:`request_stop` is not added to ``loss_curve_``; the next call on the same rows
        finishes it first (it counts as one of that call's epochs), so an interrupted and
        resumed run takes exactly the steps of an uninterrupted one.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, layer_sizes[0])
            Inputs (dense, CSR or CSC), converted to the model's dtype.
        Y : array-like of shape (n_samples, layer_sizes[-1]) or (n_samples,)
            Targets (non-negative with ``loss='poisson'``).
        epochs : int, default=1
            Passes over the data (>= 0).
        batch_size : int, default=None
            Rows per gradient step (>= 1; clipped to n_samples).  None: as the model was
            last trained (256 before any training); so for each setting below.
        learning_rate : float, default=None
            Step size (> 0); 0.1 before any training.
        optimizer : {'sgd', 'adam'}, default=None
            The optimizer ('sgd' before any training); changing it starts a fresh optimizer
            state.  'lbfgs' is for :meth:`fit` only (one optimisation from fresh weights); a
            model it trained continues with 'sgd' or 'adam', given here.
        momentum : float, default=None
            SGD momentum, in [0, 1); 0.0 before any training.
        shuffle : bool, default=None
            Shuffle the rows before each epoch; True before any training.
        callback : callable or None, default=None
            ``callback(epoch, loss)`` runs after each epoch; returning True stops training.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Non-negative weights of the rows: each batch's loss and gradient are weighted
            means (e.g. class weights, one per row).

        Returns
        -------
        self : MLP
            Trained further.

        Raises
        ------
        ValueError
            For bad arguments (``optimizer='lbfgs'`` included), and when an interrupted
            epoch over another number of rows is pending (it is never dropped silently: pass
            its rows, or call :meth:`fit`).

        Examples
        --------
        Three calls of one epoch train exactly as one ``fit`` of three:

        >>> import numpy as np
        >>> from fastmlp import MLP
        >>> X = np.linspace(-1, 1, 50).reshape(-1, 1)
        >>> stepwise = MLP((1, 4, 1), random_state=0)
        >>> for _ in range(3):
        ...     stepwise = stepwise.partial_fit(X, 2 * X, batch_size=8)
        >>> at_once = MLP((1, 4, 1), random_state=0).fit(X, 2 * X, epochs=3, batch_size=8)
        >>> np.array_equal(stepwise.predict(X), at_once.predict(X))
        True
        """
        given = {"batch_size": batch_size, "learning_rate": learning_rate,
                 "optimizer": optimizer, "momentum": momentum, "shuffle": shuffle}
        given = {k: v for k, v in given.items() if v is not None}
        check_hyperparams(FIT_CONSTRAINTS, {"epochs": epochs, "callback": callback, **given},
                          "MLP.partial_fit")
        settings: dict[str, Any] = {**self._settings, **given}
        if settings["optimizer"] == "lbfgs":
            raise ValueError(
                "partial_fit cannot run L-BFGS (one optimisation from fresh weights, which "
                "cannot be continued): use fit(optimizer='lbfgs')" if "optimizer" in given else
                "this model was trained by fit(optimizer='lbfgs'), which partial_fit cannot "
                "continue: pass optimizer='sgd' or 'adam'")
        batch_size, learning_rate, optimizer, momentum, shuffle = (
            settings["batch_size"], settings["learning_rate"], settings["optimizer"],
            settings["momentum"], settings["shuffle"])
        X, Y = self._check_xy(X, Y)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        epochs = int(epochs)
        batch_size = min(int(batch_size), X.shape[0])
        n = X.shape[0]
        pending = self._pending
        if pending is not None and pending["n_rows"] != n:
            raise ValueError(
                f"an interrupted epoch over {pending['n_rows']} rows is pending (stopped at "
                f"row {pending['position']}); pass the same {pending['n_rows']} rows to "
                f"finish it, or call fit to start over (got {n} rows)")
        t = self._trainer
        if t is None or t.batch_size != batch_size:
            t = self._make_trainer(batch_size)
        if self._optimizer is None or self._optimizer.name != optimizer:
            self._optimizer = make_optimizer(optimizer, learning_rate=learning_rate,
                                             momentum=momentum, nesterov=False)
            self._opt_state = self._optimizer.init(t.params)
        self._optimizer.learning_rate = float(learning_rate)
        if optimizer == "sgd":
            self._optimizer.momentum = float(momentum)
        self._settings = {"batch_size": int(settings["batch_size"]),
                          "learning_rate": float(learning_rate), "optimizer": str(optimizer),
                          "momentum": float(momentum), "shuffle": bool(shuffle)}
        try:
            with t.session():  # thread settings held across the epochs
                for _ in range(epochs):
                    if self._stop:
                        break
                    pending = self._pending
                    if pending is not None:  # finish the epoch that was stopped mid-way
                        order, start, before = (pending["order"], pending["position"],
                                                pending["loss_sum"])
                    else:
                        start, before, order = 0, 0.0, None
                        if shuffle:
                            order = np.arange(n, dtype=np.int64)
                            self._rs.shuffle(order)
                    total, done = t.run_epoch(X, Y, self._optimizer, self._opt_state,
                                              order=order, sample_weight=sample_weight,
                                              start=start)
                    if done < n:
                        self._pending = {"order": order, "position": int(done),
                                         "loss_sum": before + total, "n_rows": n}
                        break
                    self._pending = None
                    self.loss_curve_.append((before + total) / n)
                    if callback is not None and callback(len(self.loss_curve_),
                                                         self.loss_curve_[-1]):
                        break
        finally:  # a stop request is used up by the call it stopped
            if self._stop or t.stop_requested:
                self._stop = t.stop_requested = False
        return self

    def _fit_lbfgs(self, X, Y, max_iter, callback, sample_weight):
        """fit(optimizer='lbfgs'): the estimators' L-BFGS driver (minimize_lbfgs) on a
        full-batch trainer for this fit (dense: one batch of every row, as scikit-learn;
        sparse: chunks of rows with the L2 term added once); a trainer of the fit's batch size
        then keeps the solution and the full batch's buffers are freed."""
        X, Y = self._check_xy(X, Y)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        n, sparse = X.shape[0], sp.issparse(X)
        t = self._make_trainer(min(n, PREDICT_CHUNK) if sparse else n,
                               alpha=0.0 if sparse else None)
        source = TrainerSource(t, X, Y, sample_weight, alpha=self.alpha)

        def on_iteration(x, loss):
            self.loss_curve_.append(float(loss))
            return callback is not None and bool(callback(len(self.loss_curve_), float(loss)))

        try:
            if max_iter > 0 and not self._stop:
                # scipy evaluates at its float64 iterate cast to x0's dtype, the model's
                _, result = minimize_lbfgs(source, t.params.copy(), max_iter=max_iter,
                                           on_iteration=on_iteration)
                np.copyto(t.params, result.x)  # the last evaluation's point may be another
        finally:  # a stop request is used up by the call it stopped
            self._stop = t.stop_requested = False
        self._make_trainer(min(self._settings["batch_size"], n))
        return self

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the model (weights, optimizer, RNG and interrupted-epoch state, loss curve,
        scaling) to one file atomically; read it back with ``fastmlp.load(path)``.

        Parameters
        ----------
        path : str or path-like
            The ``.npz`` file; a symlink is followed, a device or FIFO written into.
        """
        persistence.save(self, path)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Network output for X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, layer_sizes[0])
            Inputs (dense, CSR or CSC), converted to the model's dtype.

        Returns
        -------
        ndarray of shape (n_samples, layer_sizes[-1])
            A new array of the model's dtype.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before the first ``fit`` or ``partial_fit``.

        Examples
        --------
        >>> import numpy as np
        >>> import fastmlp
        >>> model = fastmlp.MLP((2, 3, 1), dtype="float64", random_state=0)
        >>> model = model.fit(np.ones((4, 2)), np.ones(4), epochs=1)
        >>> model.predict(np.zeros((5, 2))).shape
        (5, 1)
        """
        t = self._fitted()
        X = check_X(X, self.dtype, self.layer_sizes[0], accept_sparse=True)
        return t.forward(X)


persistence.register("MLP", MLP)

