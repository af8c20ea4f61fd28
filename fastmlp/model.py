"""``fastmlp.MLP``: the thin model class.  It resolves options once, owns a
:class:`~fastmlp._core.Trainer` (parameters, workspace) and the optimizer state, and loops
over epochs; all arithmetic happens in the kernels."""
import numpy as np
from sklearn.utils import check_random_state

from ._core import Trainer
from ._threads import resolve_n_threads
from ._validation import check_dtype, check_X, check_Y, resolve
from .optimizers import OPTIMIZERS


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
    """

    def __init__(self, layer_sizes, activation="sigmoid", out_activation="identity",
                 loss="squared_error", dtype="float32", alpha=0.0, random_state=None,
                 n_threads=None):
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or min(sizes) < 1 or any(s != ls for s, ls in zip(sizes, layer_sizes)):
            raise ValueError("layer_sizes must hold at least two positive integers (inputs and "
                             f"outputs), got {layer_sizes!r}")
        resolve(activation, out_activation, loss)
        self.layer_sizes = tuple(sizes)
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
            raise AttributeError("this MLP has no parameters yet: call fit or partial_fit")
        return self._trainer

    # -- training -----------------------------------------------------------------------------
    def _check_xy(self, X, Y):
        X = check_X(X, self.dtype, self.layer_sizes[0], accept_sparse=True)
        Y = check_Y(Y, self.dtype, X.shape[0], self.layer_sizes[-1])
        return X, Y

    def fit(self, X, Y, epochs=10, batch_size=256, learning_rate=0.1, optimizer="sgd",
            momentum=0.0, shuffle=True, callback=None):
        """Train from freshly initialised weights for ``epochs`` passes over (X, Y).

        ``callback(epoch, loss)`` runs after each epoch; returning True stops training."""
        self._trainer = None
        self._optimizer = None
        self._pending_epoch = None
        self.loss_curve_ = []
        return self.partial_fit(X, Y, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, optimizer=optimizer,
                                momentum=momentum, shuffle=shuffle, callback=callback)

    def partial_fit(self, X, Y, epochs=1, batch_size=256, learning_rate=0.1, optimizer="sgd",
                    momentum=0.0, shuffle=True, callback=None):
        """Continue training (weights and optimizer state kept) for ``epochs`` passes.

        An epoch stopped mid-way by ``_trainer.stop_requested`` is not added to
        ``loss_curve_``; its order and position are kept, and the next call on the same number
        of rows finishes it first (it counts as one of that call's epochs), so that an
        interrupted and resumed run takes exactly the steps of an uninterrupted one."""
        X, Y = self._check_xy(X, Y)
        epochs = _positive_int("epochs", epochs, allow_zero=True)
        batch_size = min(_positive_int("batch_size", batch_size), X.shape[0])
        if not (isinstance(learning_rate, (int, float)) and np.isfinite(learning_rate)
                and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if not (0 <= momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        t = self._trainer
        if t is None or t.batch_size != batch_size:
            t = self._make_trainer(batch_size)
        if self._optimizer is None or self._optimizer.name != optimizer:
            self._optimizer = (OPTIMIZERS["sgd"](learning_rate, momentum)
                               if optimizer == "sgd" else OPTIMIZERS["adam"](learning_rate))
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

    def predict(self, X):
        """Network output for X: a new (N, n_out) array of the model's dtype."""
        t = self._fitted()
        X = check_X(X, self.dtype, self.layer_sizes[0], accept_sparse=True)
        return t.forward(X)


def _positive_int(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"integer, got {value!r}")
    return int(value)
