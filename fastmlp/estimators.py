"""scikit-learn drop-in estimators: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

Same constructor, validation, fitted attributes, warnings and numbers as scikit-learn 1.9's
``sklearn.neural_network`` estimators (the same algorithm, random draw for random draw; the
parity tests compare the two).  These classes are front-ends only: every forward pass, backprop
and optimizer step runs in :class:`fastmlp._core.Trainer` and :mod:`fastmlp.optimizers`;
what lives here is validation, the random draws, and per-epoch bookkeeping (loss curve,
no-improvement counter, learning-rate schedules, early stopping).

One fitting loop, two gradient sources.  The L-BFGS driver (``_BaseMLP._run_lbfgs``) and the
epoch loop (``_BaseMLP._run_epochs``) drive a *gradient source*: here the Trainer on rows in
memory (:class:`fastmlp._sources.TrainerSource`, which states the protocol), on a cluster the
shards' engines (``fastmlp.dask``), so that both fit the same way.

State.  ``coefs_`` / ``intercepts_`` are plain lists of arrays and the source of truth.  While
fitting they are views of the private ``_trainer``'s flat parameters (so, as in scikit-learn,
``partial_fit`` and warm starts update them in place); the trainer is a cache, dropped on
pickling and rebuilt (re-packed from ``coefs_``) when needed.  ``_optimizer`` and
``_optimizer_state`` (None for lbfgs) hold the stochastic optimizer across ``partial_fit``
calls.  What a model file stores is in :mod:`fastmlp._estimator_state`.

Why one module of ~1000 lines: the shared base follows scikit-learn's
``_multilayer_perceptron.py`` step for step (initialisation, the validation split, the epoch
bookkeeping, L-BFGS), so that parity can be reviewed side by side; the extensions beyond
scikit-learn (a validation set of one's own, class weights, callbacks, dropout) hook into those
same steps.  Splitting it would scatter that correspondence.
"""
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import (BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context,
                          is_classifier)
from sklearn.callback import CallbackSupportMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, check_scoring, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, check_consistent_length, check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _core
from . import kernels as K
from . import persistence
from ._core import Trainer, glorot_uniform
from ._estimator_state import EstimatorState
from ._sources import TrainerSource
from ._validation import (ESTIMATOR_ACTIVATIONS, SOLVERS, as_kernel_input, check_class_weight,
                          check_dropout)
from ._workspace import Layout
from .optimizers import make_optimizer

_STOCHASTIC_SOLVERS = ("sgd", "adam")


class _BaseMLP(EstimatorState, CallbackSupportMixin, BaseEstimator):
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

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size,
                    learning_rate, learning_rate_init, power_t, max_iter, loss, shuffle,
                    random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                    early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                    n_iter_no_change, max_fun, scoring=None, restore_best_weights="auto",
                    leaky_relu_slope=0.01, dropout=None):
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
    def save(self, path):
        """Write the estimator (parameters, fitted attributes, optimizer and RNG state) to one
        file atomically; read it back with ``fastmlp.load(path)``."""
        persistence.save(self, path)

    def request_stop(self):
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
        self.validation_loss_curve_ = None

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

    def _check_validation_set(self, X_val, y_val, sample_weight_val):
        """The user's validation set (``fit(..., X_val=, y_val=)``) validated like X and y, as
        a :class:`_Validation`; None when none is given."""
        if X_val is None and y_val is None:
            if sample_weight_val is not None:
                raise ValueError("sample_weight_val is provided, but X_val and y_val were not "
                                 "provided.")
            return None
        if y_val is None:
            raise ValueError("X_val is provided, but y_val was not provided.")
        if X_val is None:
            raise ValueError("y_val is provided, but X_val was not provided.")
        Xv = validate_data(self, X_val, accept_sparse=["csr", "csc"],
                           dtype=(np.float64, np.float32), reset=False)
        yv, Yv = self._encode_y_val(y_val)
        check_consistent_length(Xv, yv)
        swv = None
        if sample_weight_val is not None:
            swv = _check_sample_weight(sample_weight_val, Xv, ensure_non_negative=True)
        return _Validation(Xv, yv, Yv, swv, X_score=X_val, y_score=y_val)

    def _dropout_rates(self, n_hidden):
        """``dropout`` as one rate per hidden layer, or None when it is off."""
        rates = check_dropout(self.dropout, n_hidden)
        if rates is not None and self.solver not in _STOCHASTIC_SOLVERS:
            raise ValueError("dropout needs solver='sgd' or 'adam': a new mask at every "
                             "evaluation is no function L-BFGS can minimise.")
        return rates

    def _restores_best(self, validation):
        """Whether the fit ends on the weights of the best validation score: scikit-learn's
        rule (with early stopping) for 'auto', else as ``restore_best_weights`` says."""
        if self.restore_best_weights == "auto":
            return bool(self.early_stopping) and validation is not None
        return bool(self.restore_best_weights) and validation is not None

    def _start_validation(self, validation):
        """Validation bookkeeping for a fit that has a validation set."""
        if getattr(self, "validation_scores_", None) is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
        if getattr(self, "validation_loss_curve_", None) is None:
            self.validation_loss_curve_ = []
        if self.scoring not in (None, "loss"):
            validation.scorer = check_scoring(self, self.scoring)

    def _evaluate(self, validation, source):
        """Validation loss of the source's network (appended to ``validation_loss_curve_``)
        and the validation score that early stopping follows: scikit-learn's (accuracy / R^2)
        when ``scoring`` is None, minus the loss for 'loss', else the user's scorer."""
        loss, score = source.evaluate(validation,
                                      self._score_output if self.scoring is None else None)
        self.validation_loss_curve_.append(loss)
        if self.scoring is None:
            return score
        if self.scoring == "loss":
            return -loss
        kwargs = {} if validation.sw is None else {"sample_weight": validation.sw}
        with warnings.catch_warnings():
            # the split of early_stopping=True is a NumPy array even when X was a DataFrame
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return float(validation.scorer(self, validation.X_score, validation.y_score,
                                           **kwargs))

    def _attach(self, source):
        """Make ``source`` the fit's gradient source: a stop request reaches it."""
        self._source = source
        if getattr(self, "_stop_requested", False):
            source.stop_requested = True

    def _run_lbfgs(self, source, validation, tasks, param_dtype):
        """scikit-learn's L-BFGS-B fit on a gradient source (see :class:`TrainerSource`)
        from the source's parameters, with its options and its convergence check; after each
        iteration, fastmlp's bookkeeping: verbose output, the validation set, callbacks, a
        stop request.  Sets ``n_iter_`` and ``loss_`` and leaves coefs_/intercepts_ on the
        solution (on the best-scoring iterate when the best weights are restored)."""
        if validation is not None:
            # L-BFGS has no scikit-learn validation bookkeeping: these attributes, per
            # iteration, exist only when a validation set is given
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.validation_loss_curve_ = []
            self._start_validation(validation)
        keep_best = self._restores_best(validation)
        best = {}
        iteration = [0]
        views = source.layout.views

        def on_iteration(intermediate_result):
            """After each L-BFGS iteration: verbose output (scipy >= 1.15 prints nothing for
            scikit-learn's iprint), the validation set, callbacks, a stop request."""
            iteration[0] += 1
            x, fun = intermediate_result.x, intermediate_result.fun
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (iteration[0], fun))
            if validation is not None:
                np.copyto(source.params, x)  # every evaluation copies its own point in again
                score = self._evaluate(validation, source)
                self.validation_scores_.append(score)
                if self.verbose:
                    print("Validation score: %f" % score)
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    if keep_best:
                        best.update(x=x.copy(), fun=float(fun))
            stop = tasks.end(*views(x))
            tasks.begin(*views(x))
            if source.stop_requested or stop:
                raise StopIteration

        # SciPy (>= 1.15) evaluates the function at x cast to x0's dtype (the weights') and
        # keeps its own iterate in float64: float32 weights and data mean a float32 network at
        # every evaluation, and the result (opt_res.x) is float64 -- as in scikit-learn.
        x0 = source.params.astype(param_dtype)
        tasks.begin(*views(x0))
        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        self._attach(source)
        try:
            opt_res = scipy.optimize.minimize(
                source.loss_grad, x0, method="L-BFGS-B", jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                         **_get_additional_lbfgs_options_dict("iprint", iprint)},
                callback=on_iteration)
        finally:
            self._source = None
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_, x = opt_res.fun, opt_res.x
        if best:
            self.loss_, x = best["fun"], best["x"]
        if source.params.dtype == x.dtype:
            np.copyto(source.params, x)
        else:  # float32 evaluations, float64 result: the source no longer holds coefs_
            self.coefs_, self.intercepts_ = views(x)

    def _fit_lbfgs(self, X, y, sample_weight, layer_units, param_dtype, validation, tasks):
        """L-BFGS on the local Trainer (the driver: _run_lbfgs), in the dtype NumPy would
        compute the network in (the weights' and X's)."""
        dtype = np.result_type(X.dtype, param_dtype)
        n = X.shape[0]
        sparse = sp.issparse(X)
        X = as_kernel_input(X, dtype)
        # dense: one full batch, as scikit-learn.  Sparse: chunks of rows (never densifying
        # the whole matrix), with the L2 term added once instead of per chunk.
        t = self._make_trainer(layer_units, dtype, min(n, _core.PREDICT_CHUNK) if sparse else n,
                               0.0 if sparse else self.alpha)
        if validation is not None:
            validation = validation.prepared(dtype)
        self._run_lbfgs(TrainerSource(t, X, y, sample_weight, alpha=self.alpha), validation,
                        tasks, param_dtype)
        # the full-batch workspace (activations and deltas of every row) and the gradients
        # serve only this fit: free them (coefs_ keep only the parameter vector alive)
        self._trainer = None

    def _make_optimizer(self):
        return make_optimizer(self.solver, learning_rate=self.learning_rate_init,
                              momentum=self.momentum, nesterov=self.nesterovs_momentum,
                              beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)

    def _run_epochs(self, open_source, n_samples, validation, incremental, tasks, dropout):
        """scikit-learn's epochs of sgd/adam on a gradient source (see :class:`TrainerSource`)
        of ``n_samples`` training rows, with its per-epoch bookkeeping in its order (the
        random draws, the loss curve, schedules, tolerance, early stopping, the best weights)
        and fastmlp's (validation scoring, callbacks, stop requests).  ``open_source()``
        makes the source; coefs_/intercepts_ become views of its parameters."""
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
            self._optimizer_state = None
        if validation is not None:
            self._start_validation(validation)
        best_aliases_coefs = getattr(self, "_best_coefs", None) is self.coefs_
        source = open_source()
        if dropout is not None:  # drawn only with dropout on: the default keeps sklearn's draws
            source.set_dropout(dropout, self._random_state.randint(np.iinfo(np.int32).max))
        if best_aliases_coefs:
            # scikit-learn restores `_best_coefs`, which after an early-stopped fit IS the
            # coefs_ list it goes on updating in place; keep that aliasing
            self._best_coefs, self._best_intercepts = self.coefs_, self.intercepts_
        opt, state = self._optimizer, self._state_for(source.params)
        self._attach(source)
        try:
            self.n_iter_ = 0
            with source.session():  # thread settings held across the epochs, set once
                self._epochs(source, opt, state, n_samples, validation, tasks, incremental)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            self._source = None

        # partial_fit has no end of training to restore at: each call keeps its last epoch
        if self._restores_best(validation) and not incremental:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _epochs(self, source, opt, state, n_samples, validation, tasks, incremental):
        """The epoch loop of _run_epochs."""
        for _ in range(self.max_iter):
            if source.stop_requested:  # set between two epochs
                warnings.warn("Training interrupted by user.")
                break
            tasks.begin(self.coefs_, self.intercepts_)
            total, done = source.run_epoch(opt, state, self._random_state)
            if done < n_samples:  # stop_requested during the epoch (e.g. Ctrl-C)
                warnings.warn("Training interrupted by user.")
                break
            stop = self._end_epoch(total / n_samples, n_samples, validation, source)
            after_epoch = getattr(self, "_after_epoch", None)
            if after_epoch is not None:  # the command line's progress display (--dask)
                after_epoch(self.n_iter_, self.loss_curve_[-1])
            if tasks.end(self.coefs_, self.intercepts_) or stop:
                break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                              "the optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)

    def _fit_stochastic(self, X, y, sample_weight, layer_units, dtype, incremental,
                        user_validation, tasks, dropout=None):
        """Epochs of sgd/adam on the local Trainer (the loop: _run_epochs): the batches run in
        Trainer.run_epoch."""
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X = as_kernel_input(X, dtype)
        if user_validation is None:
            X, y, sample_weight, validation = self._validation_split(X, y, sample_weight,
                                                                     dtype)
        else:  # the user's own set replaces early_stopping's random split
            validation = user_validation.prepared(dtype)
        n_samples = X.shape[0]

        def open_source():
            t = self._make_trainer(layer_units, dtype, self._batch_size(n_samples), self.alpha)
            return TrainerSource(t, X, y, sample_weight, shuffle=self.shuffle)

        self._run_epochs(open_source, n_samples, validation, incremental, tasks, dropout)

    def _validation_split(self, X, y, sample_weight, dtype):
        """(X_train, y_train, sw_train, _Validation or None)."""
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
        Y_val = y_val
        if is_classifier(self):
            y_val = self._label_binarizer.inverse_transform(y_val)
        X_val = as_kernel_input(X_val, dtype)
        return (as_kernel_input(X_train, dtype), y_train, sw_train,
                _Validation(X_val, y_val, Y_val, sw_val, X_score=X_val, y_score=y_val))

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _state_for(self, params):
        """The optimizer state for the flat parameters ``params``: kept across partial_fit
        calls, fresh when missing or shaped for other parameters, cast when the weights'
        dtype changed."""
        state = self._optimizer_state
        moments = [] if state is None else [a for a in state if a.dtype.kind == "f"]
        if state is None or any(a.shape != params.shape for a in moments):
            state = self._optimizer.init(params)
        elif any(a.dtype != params.dtype for a in moments):
            state = type(state)(*(a.astype(params.dtype) if a.dtype.kind == "f" else a
                                  for a in state))
        self._optimizer_state = state
        return state

    def _end_epoch(self, loss, n_samples, validation, source):
        """Per-epoch bookkeeping after an epoch of mean loss `loss` on the gradient source
        ``source``; True to stop."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n_samples
        self.loss_curve_.append(loss)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        self._update_no_improvement_count(validation, source)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = (float(self.learning_rate_init)
                                             / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count > self.n_iter_no_change:
            if self.early_stopping:
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

    def _update_no_improvement_count(self, validation, source):
        if validation is not None:
            val_score = self._evaluate(validation, source)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if self.early_stopping:
                if last_valid_score < (self.best_validation_score_ + self.tol):
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                if self.early_stopping or self._restores_best(validation):
                    self._best_coefs = [c.copy() for c in self.coefs_]
                    self._best_intercepts = [i.copy() for i in self.intercepts_]
        if validation is None or not self.early_stopping:  # stop on the training loss
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
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
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


class _Validation:
    """A validation set as the per-epoch evaluation uses it.

    ``X`` the trainer's input; ``y`` what the default score compares predictions with (labels
    for a classifier); ``Y`` the encoded targets the loss compares outputs with; ``sw`` the
    weights or None; ``X_score``/``y_score`` what a user's scorer receives.
    """

    def __init__(self, X, y, Y, sw, X_score=None, y_score=None):
        self.X, self.y, self.Y, self.sw = X, y, Y, sw
        self.X_score, self.y_score = X_score, y_score
        self.scorer = None
        self._scratch = None

    def prepared(self, dtype):
        """The same set with X in the trainer's input form for ``dtype``."""
        X = as_kernel_input(self.X, dtype)
        if X is self.X:
            return self
        v = _Validation(X, self.y, self.Y, self.sw, self.X_score, self.y_score)
        return v

    def loss(self, output, loss_code):
        """Mean loss of the network output on this set, with scikit-learn's definition of the
        training loss (sample-weighted, without the L2 penalty)."""
        if self._scratch is None or self._scratch[0].dtype != output.dtype:
            dt = output.dtype
            Y = np.ascontiguousarray(self.Y, dtype=dt).reshape(output.shape)
            sw = np.zeros(0, dt) if self.sw is None else np.ascontiguousarray(self.sw, dt)
            self._scratch = (np.empty_like(output), Y, sw)
        D, Y, sw = self._scratch
        total = K.output_delta_loss(D, output, Y, sw, loss_code)
        n = output.shape[0] if self.sw is None else float(np.sum(self.sw, dtype=np.float64))
        return float(total) / n


class _SubTasks:
    """The subtasks of a fit that scikit-learn's callbacks see: one per epoch (sgd/adam) or
    L-BFGS iteration, each ``begin`` with its matching ``end``; nothing at all when the
    estimator has no callbacks."""

    def __init__(self, estimator, ctx, X, y, metadata, name):
        self.estimator, self.ctx, self.X, self.y = estimator, ctx, X, y
        self.metadata, self.name = metadata, name
        self.active = ctx is not None and bool(getattr(estimator, "_skl_callbacks", None))
        self.current = None

    @classmethod
    def none(cls):
        """No subtasks (a fit without scikit-learn callbacks)."""
        return cls(None, None, None, None, None, None)

    @staticmethod
    def _weights(coefs, intercepts):
        # evaluated (copied) only when a callback asks for a fitted estimator
        return lambda: {"coefs_": [np.array(c) for c in coefs],
                        "intercepts_": [np.array(b) for b in intercepts]}

    def begin(self, coefs, intercepts):
        if not self.active:
            return
        self.current = self.ctx.subcontext(task_name=self.name)
        self.current.call_on_fit_task_begin(
            estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=self._weights(coefs, intercepts))

    def end(self, coefs, intercepts):
        """End the current subtask; True when a callback asks to stop."""
        if self.current is None:
            return False
        ctx, self.current = self.current, None
        return ctx.call_on_fit_task_end(
            estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=self._weights(coefs, intercepts))

    def close(self):
        """End a subtask that never ran (as scikit-learn's L-BFGS bridge does)."""
        if self.current is not None:
            ctx, self.current = self.current, None
            ctx.call_on_fit_task_end(estimator=self.estimator)


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

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, scoring=None, restore_best_weights="auto",
                 leaky_relu_slope=0.01, dropout=None):
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
    def partial_fit(self, X, y, sample_weight=None, classes=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
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
    See :class:`sklearn.neural_network.MLPRegressor` for the parameters and attributes;
    ``fit`` and ``partial_fit`` also take a validation set (``X_val``, ``y_val``,
    ``sample_weight_val``), and ``set_callbacks`` scikit-learn's callbacks.
    """
    __doc__ += _EXTENSIONS_DOC.format(class_weight="")

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 scoring=None, restore_best_weights="auto", leaky_relu_slope=0.01,
                 dropout=None):
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
    def partial_fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
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
