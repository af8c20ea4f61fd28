"""scikit-learn drop-in estimators: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

Same constructor, validation, fitted attributes, warnings and numbers as scikit-learn 1.9.1's
``sklearn.neural_network`` estimators (the algorithm, draw for draw, is written down in
shared/notes/sklearn-mlp.md).  These classes are front-ends only: every forward pass, backprop
and optimizer step runs in :class:`fastmlp._core.Trainer` and :mod:`fastmlp.optimizers`;
what lives here is validation, the random draws, and per-epoch bookkeeping (loss curve,
no-improvement counter, learning-rate schedules, early stopping).

State.  ``coefs_`` / ``intercepts_`` are plain lists of arrays and the source of truth.  While
fitting they are views of the private ``_trainer``'s flat parameters (so, as in scikit-learn,
``partial_fit`` and warm starts update them in place); the trainer is a cache, dropped on
pickling and rebuilt (re-packed from ``coefs_``) when needed.  ``_optimizer`` and
``_optimizer_state`` (None for lbfgs) hold the stochastic optimizer across ``partial_fit``
calls.
"""
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import (BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context,
                          is_classifier)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _core
from ._core import Trainer, glorot_uniform
from ._validation import as_kernel_input
from ._workspace import Layout
from .optimizers import make_optimizer

_STOCHASTIC_SOLVERS = ("sgd", "adam")


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share (sklearn's BaseMultilayerPerceptron)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
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
    }

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size,
                    learning_rate, learning_rate_init, power_t, max_iter, loss, shuffle,
                    random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                    early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                    n_iter_no_change, max_fun):
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

    # -- persistence ------------------------------------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ is the live __dict__
        state.pop("_trainer", None)  # a cache of coefs_ plus scratch space; rebuilt on demand
        return state

    def save(self, path):
        from .persistence import save
        save(self, path)

    # -- the network ------------------------------------------------------------------------
    @property
    def _train_loss(self):
        return "log_loss" if is_classifier(self) else self.loss

    def _make_trainer(self, layer_units, dtype, batch_size, alpha):
        """A Trainer holding coefs_/intercepts_ (copied in); the cached one when it fits."""
        t = getattr(self, "_trainer", None)
        if (t is None or list(t.layout.sizes) != list(layer_units) or t.dtype != dtype
                or t.batch_size != batch_size or t.alpha != float(alpha)
                or (t.activation, t.out_activation, t.loss)
                != (self.activation, self.out_activation_, self._train_loss)):
            t = Trainer(layer_units, activation=self.activation,
                        out_activation=self.out_activation_, loss=self._train_loss,
                        dtype=dtype, batch_size=batch_size, alpha=alpha)
        t.layout.pack(self.coefs_, self.intercepts_, t.params)
        t.stop_requested = False
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
                                  n_rows=X.shape[0])
        return t.forward(X)

    # -- fitting ----------------------------------------------------------------------------
    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:  # binary, multilabel
            self.out_activation_ = "logistic"
        self.coefs_, self.intercepts_ = glorot_uniform(Layout(layer_units), self._random_state,
                                                       dtype, self.activation)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        self._trainer = None
        self._optimizer = None
        self._optimizer_state = None
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _fit(self, X, y, sample_weight=None, incremental=False):
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
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden_layer_sizes + [self.n_outputs_]

        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)

        # The first fit's weights have X's dtype, so float32 stays float32 end to end.  On a
        # warm start scikit-learn updates the weights in place, keeping their dtype: float64
        # weights meeting float32 X compute in float64 (exact here); float32 weights meeting
        # float64 X compute in float64 but store float32 (here: float32 throughout, within
        # float32 tolerance).
        param_dtype = self.coefs_[0].dtype
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, y, sample_weight, layer_units, param_dtype, incremental)
        else:
            self._optimizer = self._optimizer_state = None
            self._fit_lbfgs(X, y, sample_weight, layer_units, param_dtype)

        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _fit_lbfgs(self, X, y, sample_weight, layer_units, param_dtype):
        # SciPy (>= 1.15) evaluates the function at x cast to x0's dtype (x0 packs coefs_, so
        # the weights' dtype) and keeps its own iterate in float64: float32 weights and data
        # mean a float32 network at every evaluation, and the result (opt_res.x) is float64
        # -- as in scikit-learn.
        dtype = np.result_type(X.dtype, param_dtype)
        n = X.shape[0]
        sparse = sp.issparse(X)
        X = as_kernel_input(X, dtype)
        Y = np.ascontiguousarray(y, dtype=dtype)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype)
        # dense: one full batch, as scikit-learn.  Sparse: chunks of rows (never densifying
        # the whole matrix), with the L2 term added once below instead of per chunk.
        chunk = _core.PREDICT_CHUNK
        t = self._make_trainer(layer_units, dtype, min(n, chunk) if sparse else n,
                               0.0 if sparse else self.alpha)
        n_coef = t.layout.n_coef
        chunk_grads = np.empty(t.grads.shape, np.float64)

        def loss_grad(packed):
            np.copyto(t.params, packed)
            if not sparse:
                return t.loss_and_grads(X, Y, sw), t.grads.copy()
            total, weight_sum = 0.0, 0.0
            chunk_grads[:] = 0
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                w = stop - start if sw is None else float(sw[start:stop].sum(dtype=np.float64))
                if w == 0:  # a chunk of zero weights adds nothing (and would divide by 0)
                    continue
                total += w * t.loss_and_grads(X[start:stop], Y[start:stop],
                                              None if sw is None else sw[start:stop])
                chunk_grads[:] += w * t.grads
                weight_sum += w
            coefs = t.params[:n_coef].astype(np.float64)
            chunk_grads[:n_coef] += self.alpha * coefs
            total += 0.5 * self.alpha * float(coefs @ coefs)
            return total / weight_sum, (chunk_grads / weight_sum).astype(dtype)

        def stop_if_requested(intermediate_result):
            if t.stop_requested:
                raise StopIteration

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        opt_res = scipy.optimize.minimize(
            loss_grad, t.params.astype(param_dtype), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)},
            callback=stop_if_requested)
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        if t.dtype == opt_res.x.dtype:
            np.copyto(t.params, opt_res.x)
        else:  # float32 evaluations, float64 result: the trainer no longer holds coefs_
            self.coefs_, self.intercepts_ = t.layout.views(opt_res.x)
        # the full-batch workspace (activations and deltas of every row) and the gradients
        # serve only this fit: free them (coefs_ keep only the parameter vector alive)
        self._trainer = None

    def _make_optimizer(self):
        return make_optimizer(self.solver, learning_rate=self.learning_rate_init,
                              momentum=self.momentum, nesterov=self.nesterovs_momentum,
                              beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)

    def _fit_stochastic(self, X, y, sample_weight, layer_units, dtype, incremental):
        """Epochs of sgd/adam: the batches run in Trainer.run_epoch; here, the random draws
        and the per-epoch bookkeeping, in scikit-learn's order."""
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
            self._optimizer_state = None
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X = as_kernel_input(X, dtype)
        X, y, sample_weight, validation = self._validation_split(X, y, sample_weight, dtype)
        n_samples = X.shape[0]
        Y = np.ascontiguousarray(y, dtype=dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)

        best_aliases_coefs = getattr(self, "_best_coefs", None) is self.coefs_
        t = self._make_trainer(layer_units, dtype, self._batch_size(n_samples), self.alpha)
        if best_aliases_coefs:
            # scikit-learn restores `_best_coefs`, which after an early-stopped fit IS the
            # coefs_ list it goes on updating in place; keep that aliasing
            self._best_coefs, self._best_intercepts = self.coefs_, self.intercepts_
        opt, state = self._optimizer, self._state_for(t)

        # sklearn.utils.shuffle(sample_idx, random_state=rs) == rs.shuffle(sample_idx): the
        # same draws, so each epoch's order is composed with the previous one, in place
        order = (np.arange(n_samples, dtype=np.int64)
                 if self.shuffle or sp.issparse(X) else None)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if t.stop_requested:  # set between two epochs
                    warnings.warn("Training interrupted by user.")
                    break
                if self.shuffle:
                    self._random_state.shuffle(order)
                total, done = t.run_epoch(X, Y, opt, state, order=order,
                                          sample_weight=sample_weight)
                if done < n_samples:  # stop_requested during the epoch (e.g. Ctrl-C)
                    warnings.warn("Training interrupted by user.")
                    break
                if self._end_epoch(total / n_samples, n_samples, validation):
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                                  "the optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if self.early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _validation_split(self, X, y, sample_weight, dtype):
        """(X_train, y_train, sw_train, (X_val, y_val, sw_val) or None)."""
        if not self.early_stopping:
            return X, y, sample_weight, None
        # Stratified only when there is ONE output column: binary classification.  The
        # multiclass (K columns) and multilabel splits are plain shuffles whatever the
        # docstring says: scikit-learn stratifies on `n_outputs_ == 1` (since PR #13164), and
        # fastmlp reproduces that split draw for draw.
        stratify = y if (is_classifier(self) and self.n_outputs_ == 1) else None
        arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
        split = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, y_train, y_val = split[:4]
        sw_train, sw_val = (None, None) if sample_weight is None else split[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        if is_classifier(self):
            y_val = self._label_binarizer.inverse_transform(y_val)
        return (as_kernel_input(X_train, dtype), y_train, sw_train,
                (as_kernel_input(X_val, dtype), y_val, sw_val))

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _state_for(self, t):
        """The optimizer state for trainer t: kept across partial_fit calls, fresh when
        missing or shaped for other parameters, cast when the weights' dtype changed."""
        state = self._optimizer_state
        moments = [] if state is None else [a for a in state if a.dtype.kind == "f"]
        if state is None or any(a.shape != t.params.shape for a in moments):
            state = self._optimizer.init(t.params)
        elif any(a.dtype != t.dtype for a in moments):
            state = type(state)(*(a.astype(t.dtype) if a.dtype.kind == "f" else a
                                  for a in state))
        self._optimizer_state = state
        return state

    def _end_epoch(self, loss, n_samples, validation):
        """Per-epoch bookkeeping after an epoch of mean loss `loss`; True to stop."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n_samples
        self.loss_curve_.append(loss)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        self._update_no_improvement_count(validation)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = (float(self.learning_rate_init)
                                             / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count > self.n_iter_no_change:
            if validation is not None:
                msg = ("Validation score did not improve more than tol=%f for %d "
                       "consecutive epochs." % (self.tol, self.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d "
                       "consecutive epochs." % (self.tol, self.n_iter_no_change))
            if self._trigger_stopping(msg):
                return True
            self._no_improvement_count = 0
        return False

    def _trigger_stopping(self, msg):
        """scikit-learn's optimizer.trigger_stopping: only SGD's adaptive schedule goes on
        (dividing the rate by 5) until the rate falls to 1e-6."""
        if not (self.solver == "sgd" and self.learning_rate == "adaptive"):
            if self.verbose:
                print(msg + " Stopping.")
            return True
        opt = self._optimizer
        if opt.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        opt.learning_rate /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % opt.learning_rate)
        return False

    def _update_no_improvement_count(self, validation):
        if validation is not None:
            X_val, y_val, sw_val = validation
            val_score = self._score_output(self._trainer.forward(X_val), y_val, sw_val)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _score_output(self, output, y, sample_weight):
        """The validation score of the network output (accuracy / R^2), NaN when the
        prediction is not finite."""
        y_pred = self._decode(output)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` (1.9.1), same
    parameters and numbers, trained by fastmlp's kernels.

    Optimizes the log loss with lbfgs, sgd or adam.  See
    :class:`sklearn.neural_network.MLPClassifier` for the parameters and attributes.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size,
                         learning_rate, learning_rate_init, power_t, max_iter, "log_loss",
                         shuffle, random_state, tol, verbose, warm_start, momentum,
                         nesterovs_momentum, early_stopping, validation_fraction, beta_1,
                         beta_2, epsilon, n_iter_no_change, max_fun)

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
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    _score_function = staticmethod(accuracy_score)

    def _decode(self, output):
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._decode(self._forward(X))

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        ``classes`` (all the labels across calls) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Log of probability estimates, ``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
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
    See :class:`sklearn.neural_network.MLPRegressor` for the parameters and attributes.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size,
                         learning_rate, learning_rate_init, power_t, max_iter, loss,
                         shuffle, random_state, tol, verbose, warm_start, momentum,
                         nesterovs_momentum, early_stopping, validation_fraction, beta_1,
                         beta_2, epsilon, n_iter_no_change, max_fun)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    _score_function = staticmethod(r2_score)

    def _decode(self, output):
        return output.ravel() if output.shape[1] == 1 else output

    def predict(self, X):
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
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
