"""``fastmlp.MLP``: the thin model class.  It resolves options once, owns a
:class:`~fastmlp._core.Trainer` (parameters, workspace) and the optimizer state, and loops
over epochs; all arithmetic happens in the kernels."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from ._core import Trainer
from ._threads import resolve_n_threads
from ._validation import (FIT_CONSTRAINTS, MLP_CONSTRAINTS, check_dtype, check_hyperparams,
                          check_layer_sizes, check_X, check_Y, resolve)
from .optimizers import make_optimizer

ArrayLike = Union[np.ndarray, sp.spmatrix, sp.sparray, Sequence]


class MLP:
    """A multi-layer perceptron ``A[l+1] = f(A[l] @ W[l] + b[l])``.

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, input and output included, e.g. ``(784, 512, 512, 10)``.
    activation : {'sigmoid' (alias 'logistic'), 'tanh', 'relu', 'identity'}
    out_activation : {'identity', 'sigmoid', 'logistic', 'tanh', 'relu', 'softmax', 'exp'}
    loss : {'squared_error', 'log_loss', 'binary_log_loss', 'poisson'}
    dtype : {'float32', 'float64'}
        Precision of parameters and of every kernel; inputs are converted to it.
    alpha : float
        L2 penalty ``0.5 * alpha * sum ||W||^2 / n_batch``.
    random_state : int, RandomState or None
        Seeds the initial weights and the shuffling.
    n_threads : int or None
        Threads for BLAS and for Numba's kernels during this model's calls (None: all cores).

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        ``W[l]`` of shape (n_in, n_out) and ``b[l]`` of shape (n_out,), views of the live
        parameters (after ``fit`` or ``partial_fit``).
    loss_curve_ : list of float
        Mean training loss of each completed epoch.

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

    def __init__(self, layer_sizes, activation="sigmoid", out_activation="identity",
                 loss="squared_error", dtype="float32", alpha=0.0, random_state=None,
                 n_threads=None):
        check_hyperparams(MLP_CONSTRAINTS, {
            "layer_sizes": layer_sizes, "activation": activation,
            "out_activation": out_activation, "loss": loss, "dtype": dtype, "alpha": alpha,
            "random_state": random_state, "n_threads": n_threads}, "MLP")
        self.layer_sizes = check_layer_sizes(layer_sizes)
        resolve(activation, out_activation, loss)  # the combination of output and loss
        self.activation = activation
        self.out_activation = out_activation
        self.loss = loss
        self.dtype = check_dtype(dtype)
        self.alpha = alpha
        self.random_state = random_state
        self.n_threads = resolve_n_threads(n_threads) if n_threads is not None else None
        self._rs = check_random_state(random_state)
        self._trainer = None
        self._optimizer = None
        self._opt_state = None
        self._pending_epoch = None  # (order, position, loss sum) of an epoch stopped mid-way
        self.loss_curve_ = []

    # -- state --------------------------------------------------------------------------------
    def _make_trainer(self, batch_size):
        t = Trainer(self.layer_sizes, activation=self.activation,
                            out_activation=self.out_activation, loss=self.loss,
                            dtype=self.dtype, batch_size=batch_size, alpha=self.alpha,
                            n_threads=self.n_threads)
        if self._trainer is None:
            t.init_params(self._rs)
        else:  # a new batch size keeps the learned parameters
            t.params[:] = self._trainer.params
        self._trainer = t
        return t

    @property
    def coefs_(self):
        """W[l], (n_in, n_out) each: views of the live parameters."""
        return self._fitted().coefs

    @property
    def intercepts_(self):
        """b[l], (n_out,) each: views of the live parameters."""
        return self._fitted().intercepts

    @property
    def deltas_(self):
        """delta[l] = dLoss/dZ of every layer for the last training batch, (batch, n_l) each."""
        t = self._fitted()
        if t.ws.n_rows == 0:
            raise AttributeError("deltas_ exists after a training step")
        return [t.ws.delta(l) for l in range(1, t.layout.n_layers + 1)]

    @property
    def workspace_(self):
        """The preallocated buffers (activations, deltas, gathered batch) of the training core."""
        return self._fitted().ws

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
            callback: Optional[Callable[[int, float], Optional[bool]]] = None) -> "MLP":
        """Train from freshly initialised weights for ``epochs`` passes over (X, Y).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, layer_sizes[0])
            Inputs (dense, CSR or CSC), converted to the model's dtype.
        Y : array-like of shape (n_samples, layer_sizes[-1]) or (n_samples,)
            Targets (non-negative with ``loss='poisson'``).
        epochs : int, default=10
            Passes over the data (0 only initialises the weights).
        batch_size : int, default=256
            Rows per gradient step (clipped to n_samples).
        learning_rate : float, default=0.1
            Step size (positive).
        optimizer : {'sgd', 'adam'}, default='sgd'
            The optimizer.
        momentum : float, default=0.0
            SGD momentum, in [0, 1).
        shuffle : bool, default=True
            Shuffle the rows before each epoch.
        callback : callable or None, default=None
            ``callback(epoch, loss)`` runs after each epoch; returning True stops training.

        Returns
        -------
        MLP
            self, trained.

        Examples
        --------
        >>> import numpy as np
        >>> import fastmlp
        >>> X = np.linspace(-1, 1, 64).reshape(-1, 1)
        >>> model = fastmlp.MLP((1, 4, 1), random_state=0)
        >>> len(model.fit(X, 2 * X, epochs=3, batch_size=8).loss_curve_)
        3
        """
        check_hyperparams(FIT_CONSTRAINTS, {
            "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "optimizer": optimizer, "momentum": momentum, "shuffle": shuffle,
            "callback": callback}, "MLP.fit")
        self._trainer = None
        self._optimizer = None
        self._pending_epoch = None
        self.loss_curve_ = []
        return self.partial_fit(X, Y, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, optimizer=optimizer,
                                momentum=momentum, shuffle=shuffle, callback=callback)

    def partial_fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 1, batch_size: int = 256,
                    learning_rate: float = 0.1, optimizer: str = "sgd", momentum: float = 0.0,
                    shuffle: bool = True,
                    callback: Optional[Callable[[int, float], Optional[bool]]] = None
                    ) -> "MLP":
        """Continue training (weights and optimizer state kept) for ``epochs`` passes.

        The first call initialises the weights; later calls go on from where the last one
        stopped.  The parameters are those of :meth:`fit`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, layer_sizes[0])
            Inputs (dense, CSR or CSC), converted to the model's dtype.
        Y : array-like of shape (n_samples, layer_sizes[-1]) or (n_samples,)
            Targets.
        epochs : int, default=1
            Passes over the data.
        batch_size, learning_rate, optimizer, momentum, shuffle, callback
            As in :meth:`fit`; changing ``optimizer`` starts a fresh optimizer state.

        Returns
        -------
        MLP
            self, trained further.

        Examples
        --------
        >>> import numpy as np
        >>> import fastmlp
        >>> X = np.linspace(-1, 1, 64).reshape(-1, 1)
        >>> model = fastmlp.MLP((1, 4, 1), random_state=0)
        >>> for _ in range(3):
        ...     model = model.partial_fit(X, 2 * X, batch_size=8)
        >>> len(model.loss_curve_)
        3

        An epoch stopped mid-way by ``_trainer.stop_requested`` is not added to
        ``loss_curve_``; its order and position are kept, and the next call on the same number
        of rows finishes it first (it counts as one of that call's epochs), so that an
        interrupted and resumed run takes exactly the steps of an uninterrupted one."""
        check_hyperparams(FIT_CONSTRAINTS, {
            "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "optimizer": optimizer, "momentum": momentum, "shuffle": shuffle,
            "callback": callback}, "MLP.partial_fit")
        X, Y = self._check_xy(X, Y)
        epochs = int(epochs)
        batch_size = min(int(batch_size), X.shape[0])
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
        order = np.arange(X.shape[0], dtype=np.int64) if shuffle else None
        pending, self._pending_epoch = self._pending_epoch, None
        if pending is not None and (len(pending[0]) != X.shape[0] or pending[1] >= X.shape[0]):
            pending = None  # different data: the stopped epoch cannot be finished
        for epoch in range(epochs):
            start, before = 0, 0.0
            epoch_order = order
            if pending is not None:  # finish the epoch that was stopped mid-way (issue 5)
                epoch_order, start, before = pending
                pending = None
            elif shuffle:
                self._rs.shuffle(order)
            total, done = t.run_epoch(X, Y, self._optimizer, self._opt_state,
                                      order=epoch_order, start=start)
            if done < X.shape[0]:
                self._pending_epoch = (np.arange(X.shape[0], dtype=np.int64)
                                       if epoch_order is None else epoch_order.copy(),
                                       int(done), before + total)
                break
            self.loss_curve_.append((before + total) / X.shape[0])
            if callback is not None and callback(len(self.loss_curve_), self.loss_curve_[-1]):
                break
            if t.stop_requested:
                break
        return self

    def save(self, path):
        """Write the model (weights, optimizer and RNG state, loss curve) to one file; read
        it back with ``fastmlp.load(path)``."""
        from .persistence import save
        save(self, path)

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

