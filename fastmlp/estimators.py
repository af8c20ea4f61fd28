"""scikit-learn drop-in estimators: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

Same constructor, validation, fitted attributes, warnings and numbers as scikit-learn 1.9's
``sklearn.neural_network`` estimators (the same algorithm, random draw for random draw; the
parity tests compare the two).  These classes are front-ends only: every forward pass, backprop
and optimizer step runs in :class:`fastmlp._core.Trainer` and :mod:`fastmlp.optimizers`;
what lives here is validation, the random draws, and per-epoch bookkeeping (loss curve,
no-improvement counter, learning-rate schedules, early stopping).

One fitting loop, two gradient sources.  The L-BFGS driver (``_run_lbfgs``) and the epoch
loop (``_run_epochs``), in :mod:`fastmlp._fitting` (a mixin of ``_BaseMLP``), drive a
*gradient source*: here the Trainer on rows in memory (:class:`fastmlp._sources.TrainerSource`,
which states the protocol), on a cluster the shards' engines (``fastmlp.dask``), so that both
fit the same way.

State.  ``coefs_`` / ``intercepts_`` are plain lists of arrays and the source of truth.  While
fitting they are views of the private ``_trainer``'s flat parameters (so, as in scikit-learn,
``partial_fit`` and warm starts update them in place); the trainer is a cache, dropped on
pickling and rebuilt (re-packed from ``coefs_``) when needed.  ``_optimizer`` and
``_optimizer_state`` (None for lbfgs) hold the stochastic optimizer across ``partial_fit``
calls.  What a model file stores is in :mod:`fastmlp._estimator_state`.

Layout: this module holds the public classes, their parameters, the network, ``_fit`` (the
entry of fit/partial_fit) and the extensions' hooks (class weights, callbacks); the fitting
loops, which follow scikit-learn's ``_multilayer_perceptron.py`` step for step, are in
:mod:`fastmlp._fitting`.
"""
from __future__ import annotations

import os
from numbers import Integral, Real
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

import numpy as np
from sklearn.base import (BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context,
                          is_classifier)
from sklearn.callback import CallbackSupportMixin
from sklearn.metrics import accuracy_score, check_scoring, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import persistence
from ._core import Trainer
from ._estimator_state import EstimatorState
from ._fitting import _STOCHASTIC_SOLVERS, _FittingLoops, _SubTasks
from ._validation import (ESTIMATOR_ACTIVATIONS, SOLVERS, as_kernel_input, check_class_weight,
                          one_hot_labels)
from .model import ArrayLike, RandomStateLike

# the types of the constructor's parameters that take more than one kind of value
_LayerSizes = Union[int, Sequence[int]]
_Scoring = Union[None, str, Callable[..., float]]
_Dropout = Union[None, float, Sequence[float], np.ndarray]
_ClassWeight = Union[None, str, dict[Any, float], Sequence[dict[Any, float]]]
_MLP = TypeVar("_MLP", bound="_BaseMLP")


class _BaseMLP(EstimatorState, _FittingLoops, CallbackSupportMixin, BaseEstimator):
    """What MLPClassifier and MLPRegressor share (sklearn's BaseMultilayerPerceptron)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        # scikit-learn's four, and fastmlp's leaky_relu, gelu and silu
        "activation": [StrOptions(set(ESTIMATOR_ACTIVATIONS))],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        # fastmlp's extensions (every default reproduces scikit-learn)
        "scoring": [str, callable, None],
        "restore_best_weights": [StrOptions({"auto"}), "boolean"],
        "leaky_relu_slope": [Interval(Real, 0, None, closed="left")],
        "dropout": [None, Interval(Real, 0, 1, closed="left"), "array-like"],
    }

    def __init__(self, hidden_layer_sizes: _LayerSizes, activation: str, solver: str,
                 alpha: float, batch_size: Union[int, str], learning_rate: str,
                 learning_rate_init: float, power_t: float, max_iter: int, loss: str,
                 shuffle: bool, random_state: RandomStateLike, tol: float, verbose: bool,
                 warm_start: bool, momentum: float, nesterovs_momentum: bool,
                 early_stopping: bool, validation_fraction: float, beta_1: float,
                 beta_2: float, epsilon: float, n_iter_no_change: int, max_fun: int,
                 scoring: _Scoring = None, restore_best_weights: Union[bool, str] = "auto",
                 leaky_relu_slope: float = 0.01, dropout: _Dropout = None) -> None:
        # the subclasses' signatures are the public ones (get_params reads those)
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.scoring = scoring
        self.restore_best_weights = restore_best_weights
        self.leaky_relu_slope = leaky_relu_slope
        self.dropout = dropout

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the estimator (parameters, fitted attributes, optimizer and RNG state) to one
        file atomically; read it back with ``fastmlp.load(path)``."""
        persistence.save(self, path)

    def request_stop(self) -> None:
        """Ask the fit in progress (or the next one) to stop after the current batch or
        L-BFGS iteration; safe to call from a signal handler.  Used up when that fit returns."""
        self._stop_requested = True
        for holder in (getattr(self, "_trainer", None), getattr(self, "_source", None)):
            if holder is not None:
                holder.stop_requested = True

    # -- the network ------------------------------------------------------------------------
    @property
    def _train_loss(self):
        return "log_loss" if is_classifier(self) else self.loss

    def _make_trainer(self, layer_units, dtype, batch_size, alpha):
        """A Trainer holding coefs_/intercepts_ (copied in); the cached one when it fits."""
        t = getattr(self, "_trainer", None)
        if (t is None or list(t.layout.sizes) != list(layer_units) or t.dtype != dtype
                or t.batch_size != batch_size or t.alpha != float(alpha)
                or (t.activation, t.out_activation, t.loss, t.slope)
                != (self.activation, self.out_activation_, self._train_loss,
                    float(self.leaky_relu_slope))):
            t = Trainer(layer_units, activation=self.activation,
                        out_activation=self.out_activation_, loss=self._train_loss,
                        dtype=dtype, batch_size=batch_size, alpha=alpha,
                        leaky_relu_slope=self.leaky_relu_slope)
        t.layout.pack(self.coefs_, self.intercepts_, t.params)
        t.set_dropout(None)
        t.stop_requested = getattr(self, "_stop_requested", False)
        self._trainer = t
        # scikit-learn updates coefs_ in place during training: make them the live views
        self.coefs_, self.intercepts_ = list(t.coefs), list(t.intercepts)
        return t

    def _forward(self, X, check_input=True):
        """Output-layer activations for X: scikit-learn's _forward_pass_fast, on a fresh
        Trainer (so predict is thread-safe and never touches the training state)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        # the dtype NumPy would compute X @ coefs_ in
        dtype = np.result_type(X.dtype, self.coefs_[0].dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        X = as_kernel_input(X, dtype)
        t = Trainer.for_inference(self.coefs_, self.intercepts_, activation=self.activation,
                                  out_activation=self.out_activation_, dtype=dtype,
                                  n_rows=X.shape[0], leaky_relu_slope=self.leaky_relu_slope)
        return t.forward(X)

    # -- fitting ----------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False, X_val=None, y_val=None,
             sample_weight_val=None):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
            # a scalar NaN or infinity passes scikit-learn's check and trains to NaN
            check_array(sample_weight, ensure_2d=False, input_name="sample_weight")
        sample_weight = self._apply_class_weight(sample_weight, y, incremental)
        if self.scoring not in (None, "loss"):
            check_scoring(self, self.scoring)  # an unknown name fails before training
        y_callbacks = self._callback_targets(y)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden_layer_sizes + [self.n_outputs_]

        dtype = X.dtype if first_pass else np.result_type(X.dtype, self.coefs_[0].dtype)
        self._check_training_memory(layer_units, X, dtype)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        user_validation = self._check_validation_set(X_val, y_val, sample_weight_val)
        dropout = self._dropout_rates(len(hidden_layer_sizes))

        # scikit-learn's callbacks (sklearn.callback): the fit is the root task, each epoch
        # (sgd/adam) or L-BFGS iteration a subtask, as LogisticRegression does it
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        if self.solver in _STOCHASTIC_SOLVERS:
            max_subtasks = 1 if incremental else self.max_iter
        else:  # one extra (empty) subtask: scipy reports an iteration after it has ended
            max_subtasks = max(self.max_iter, 1) + 1
        ctx = self._init_callback_context(max_subtasks=max_subtasks)
        ctx.call_on_fit_task_begin(estimator=self, X=X, y=y_callbacks, metadata=metadata)
        tasks = _SubTasks(self, ctx, X, y_callbacks, metadata,
                          "epoch" if self.solver in _STOCHASTIC_SOLVERS else "lbfgs-iter")

        # The first fit's weights have X's dtype, so float32 stays float32 end to end.  On a
        # warm start scikit-learn updates the weights in place, keeping their dtype: float64
        # weights meeting float32 X compute in float64 (exact here); float32 weights meeting
        # float64 X compute in float64 but store float32 (here: float32 throughout, within
        # float32 tolerance).
        param_dtype = self.coefs_[0].dtype
        try:
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(X, y, sample_weight, layer_units, param_dtype, incremental,
                                     user_validation, tasks, dropout)
            else:
                self._optimizer = self._optimizer_state = None
                self._fit_lbfgs(X, y, sample_weight, layer_units, param_dtype,
                                user_validation, tasks)
        finally:
            tasks.close()
            # a stop request is used up by the fit it stopped
            self._stop_requested = False
            if getattr(self, "_trainer", None) is not None:
                self._trainer.stop_requested = False

        self._check_finite_weights()
        ctx.call_on_fit_task_end(estimator=self, X=X, y=y_callbacks, metadata=metadata,
                                 reconstruction_attributes={})
        return self

    def _check_finite_weights(self):
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")

    # -- extensions: class weights, a validation set of one's own -----------------------------
    def _apply_class_weight(self, sample_weight, y, incremental):
        return sample_weight  # regressors have no classes

    def _callback_targets(self, y):
        """The y that callbacks receive: the validated targets."""
        return y


    def _score_output(self, output, y, sample_weight):
        """The validation score of the network output (accuracy / R^2), NaN when the
        prediction is not finite."""
        y_pred = self._decode(output)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self: _MLP, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
            *, X_val: Optional[ArrayLike] = None, y_val: Optional[ArrayLike] = None,
            sample_weight_val: Optional[ArrayLike] = None) -> _MLP:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
        X_val : {ndarray, sparse matrix} of shape (n_val, n_features), default=None
            A validation set of one's own (fastmlp extension; scikit-learn's
            ``HistGradientBoosting*`` convention).  With it, ``validation_scores_`` and
            ``validation_loss_curve_`` are recorded every epoch (every L-BFGS iteration),
            and ``early_stopping=True`` follows this set instead of holding out
            ``validation_fraction`` of X.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of X_val; required with it.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows (the score and the loss are weighted).

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False, X_val=X_val,
                         y_val=y_val, sample_weight_val=sample_weight_val)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags



# The parameters and attributes both estimators add to scikit-learn's (their docstrings' tail).
_EXTENSIONS_DOC = """
    Parameters beyond scikit-learn's (each default keeps scikit-learn's behaviour)
    ---------------------------------------------------------------------------
    activation : also 'leaky_relu' (slope ``leaky_relu_slope``), 'gelu' and 'silu'.
    scoring : None, 'loss', a scorer name or callable, default=None
        What early stopping and ``validation_scores_`` follow (None: accuracy / R^2).
    restore_best_weights : 'auto' or bool, default='auto'
        ``fit`` ends on the weights of the best validation score: with early stopping
        ('auto', as scikit-learn), whenever a validation set is used (True), or never (False).
    leaky_relu_slope : float, default=0.01
        Leaky ReLU's slope for negative inputs (>= 0).
    dropout : float, sequence of float or None, default=None
        Inverted dropout rate of every hidden layer, or one per hidden layer (sgd/adam);
        masks drawn from ``random_state``.
{class_weight}
    Attributes beyond scikit-learn's
    --------------------------------
    validation_loss_curve_ : list of float or None
        The validation loss (without the L2 term) after each epoch or L-BFGS iteration, when
        a validation set is used.
"""
_CLASS_WEIGHT_DOC = '''    class_weight : dict, list of dict, 'balanced' or None, default=None
        Multiplies ``sample_weight`` by the weight of each row's class
        (:func:`sklearn.utils.class_weight.compute_sample_weight`).
'''


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` (1.9.1), same
    parameters and numbers, trained by fastmlp's kernels.

    Optimizes the log loss with lbfgs, sgd or adam.  See
    :class:`sklearn.neural_network.MLPClassifier` for the parameters and attributes; ``fit``
    and ``partial_fit`` also take a validation set (``X_val``, ``y_val``,
    ``sample_weight_val``), and ``set_callbacks`` scikit-learn's callbacks.
    """
    __doc__ += _EXTENSIONS_DOC.format(class_weight=_CLASS_WEIGHT_DOC)

    def __init__(self, hidden_layer_sizes: _LayerSizes = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: RandomStateLike = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, max_fun: int = 15000,
                 class_weight: _ClassWeight = None, scoring: _Scoring = None,
                 restore_best_weights: Union[bool, str] = "auto",
                 leaky_relu_slope: float = 0.01, dropout: _Dropout = None) -> None:
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size,
                         learning_rate, learning_rate_init, power_t, max_iter, "log_loss",
                         shuffle, random_state, tol, verbose, warm_start, momentum,
                         nesterovs_momentum, early_stopping, validation_fraction, beta_1,
                         beta_2, epsilon, n_iter_no_change, max_fun, scoring=scoring,
                         restore_best_weights=restore_best_weights,
                         leaky_relu_slope=leaky_relu_slope, dropout=dropout)
        self.class_weight = class_weight

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, list, StrOptions({"balanced"}), None],
    }

    def _apply_class_weight(self, sample_weight, y, incremental):
        """class_weight as scikit-learn means it: multiplies sample_weight."""
        if self.class_weight is None:
            return sample_weight
        if incremental and isinstance(self.class_weight, str):
            raise ValueError("class_weight='balanced' is not supported by partial_fit: one "
                             "batch's class frequencies are not the data set's. Pass a dict, "
                             "e.g. from sklearn.utils.class_weight.compute_class_weight.")
        check_class_weight(self.class_weight)
        expanded = compute_sample_weight(self.class_weight,
                                         self._label_binarizer.inverse_transform(y))
        weights = expanded if sample_weight is None else sample_weight * expanded
        total = weights.sum(dtype=np.float64)
        if not total > 0:
            raise ValueError("class_weight gives every training sample zero weight"
                             + ("" if sample_weight is None else " (with sample_weight)")
                             + ": at least one class present in y needs a positive weight")
        if not np.isfinite(total):
            raise ValueError("class_weight" + ("" if sample_weight is None else
                                               " (with sample_weight)")
                             + " sums to infinity over the training samples: scale the "
                             "weights down")
        return weights

    def _callback_targets(self, y):
        # the labels, decoded only when a callback asks for them
        return lambda: self._label_binarizer.inverse_transform(y)

    def _encode_y_val(self, y_val):
        y = check_array(y_val, ensure_2d=False, dtype=None, input_name="y_val")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self._label_binarizer.y_type_ != "multilabel-indicator":
            unknown = np.setdiff1d(unique_labels(y), self.classes_)
            if len(unknown):
                raise ValueError(f"y_val has classes not in `self.classes_`: {unknown}; "
                                 f"`self.classes_` has {self.classes_}.")
        return y, self._label_binarizer.transform(y)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        # bool, not float: the trainer converts it to its own dtype
        return X, one_hot_labels(self._label_binarizer, y)

    _score_function = staticmethod(accuracy_score)

    def _decode(self, output):
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict using the multi-layer perceptron classifier.

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._decode(self._forward(X))

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                    classes: Optional[ArrayLike] = None, *, X_val: Optional[ArrayLike] = None,
                    y_val: Optional[ArrayLike] = None,
                    sample_weight_val: Optional[ArrayLike] = None) -> MLPClassifier:
        """Update the model with a single iteration over the given data.

        ``classes`` (all the labels across calls) is required on the first call.  With
        ``X_val``/``y_val`` (see :meth:`fit`) the epoch's validation score and loss are
        appended to ``validation_scores_`` and ``validation_loss_curve_``."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True, X_val=X_val,
                         y_val=y_val, sample_weight_val=sample_weight_val)

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log of probability estimates, ``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Probability estimates, (n_samples, n_classes), in the order of ``classes_``."""
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` (1.9.1), same
    parameters and numbers, trained by fastmlp's kernels.

    Optimizes the (half) squared error or the (half) Poisson deviance with lbfgs, sgd or adam.
    See :class:`sklearn.neural_network.MLPRegressor` for the parameters and attributes;
    ``fit`` and ``partial_fit`` also take a validation set (``X_val``, ``y_val``,
    ``sample_weight_val``), and ``set_callbacks`` scikit-learn's callbacks.
    """
    __doc__ += _EXTENSIONS_DOC.format(class_weight="")

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: _LayerSizes = (100,),
                 activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: RandomStateLike = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10, max_fun: int = 15000,
                 scoring: _Scoring = None, restore_best_weights: Union[bool, str] = "auto",
                 leaky_relu_slope: float = 0.01, dropout: _Dropout = None) -> None:
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size,
                         learning_rate, learning_rate_init, power_t, max_iter, loss,
                         shuffle, random_state, tol, verbose, warm_start, momentum,
                         nesterovs_momentum, early_stopping, validation_fraction, beta_1,
                         beta_2, epsilon, n_iter_no_change, max_fun, scoring=scoring,
                         restore_best_weights=restore_best_weights,
                         leaky_relu_slope=leaky_relu_slope, dropout=dropout)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    _score_function = staticmethod(r2_score)

    def _encode_y_val(self, y_val):
        y = check_array(y_val, ensure_2d=False, dtype="numeric", input_name="y_val")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if Y.ndim != 2 or Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y_val has {Y.shape[1] if Y.ndim == 2 else Y.shape} outputs, "
                             f"but y has {self.n_outputs_}.")
        return y, Y

    def _decode(self, output):
        return output.ravel() if output.shape[1] == 1 else output

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict using the multi-layer perceptron model.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        return self._decode(self._forward(X))

    # scikit-learn 1.9.1 guards this with `lambda est: est._check_solver` (the bound method,
    # always truthy, not its result), so MLPRegressor.partial_fit exists for lbfgs too and runs
    # a warm-started lbfgs fit; reproduced for drop-in compatibility.
    @available_if(lambda est: est._check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                    *, X_val: Optional[ArrayLike] = None, y_val: Optional[ArrayLike] = None,
                    sample_weight_val: Optional[ArrayLike] = None) -> MLPRegressor:
        """Update the model with a single iteration over the given data (``X_val``/``y_val``:
        see :meth:`fit`)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True, X_val=X_val,
                         y_val=y_val, sample_weight_val=sample_weight_val)


# fastmlp's parameters beyond scikit-learn's, with their defaults: each default reproduces
# scikit-learn's behaviour exactly (README, "Beyond scikit-learn").
EXTENSION_PARAMS = {"scoring": None, "restore_best_weights": "auto", "class_weight": None,
                    "leaky_relu_slope": 0.01, "dropout": None}

persistence.register("MLPClassifier", MLPClassifier)
persistence.register("MLPRegressor", MLPRegressor)
