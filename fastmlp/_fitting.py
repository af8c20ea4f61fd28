"""The fitting loops of fastmlp's scikit-learn estimators: one L-BFGS driver (``_run_lbfgs``)
and one epoch loop (``_run_epochs``, ``_epochs``) with scikit-learn's per-epoch bookkeeping
(the loss curve, the no-improvement counter, learning-rate schedules, early stopping, the best
weights) and fastmlp's (validation sets, callbacks, stop requests).

One fitting loop, two gradient sources: the loops drive a *gradient source*
(:mod:`fastmlp._sources`) -- locally the Trainer on rows in memory
(:class:`fastmlp._sources.TrainerSource`, which states the protocol; ``_fit_lbfgs`` and
``_fit_stochastic`` open it), on a cluster the shards' engines
(``fastmlp.dask.source._FleetSource``) -- so that both fit the same way.  They are a mixin,
:class:`_FittingLoops`, of :class:`fastmlp.estimators._BaseMLP`, and follow scikit-learn's
``_multilayer_perceptron.py`` step for step so that parity can be reviewed side by side.
"""
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import train_test_split
from sklearn.utils import check_consistent_length
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, validate_data

from . import _core
from . import kernels as K
from ._core import glorot_uniform
from ._sources import TrainerSource
from ._state import check_memory, training_bytes
from ._validation import as_kernel_input, check_dropout
from ._workspace import Layout
from .optimizers import make_optimizer
_STOCHASTIC_SOLVERS = ("sgd", "adam")


def minimize_lbfgs(source, x0, *, max_iter, max_fun=15000, tol=1e-4, iprint=-1,
                   on_iteration=None):
    """THE L-BFGS driver (the estimators' and ``fastmlp.MLP``'s): scikit-learn's L-BFGS-B call
    -- its options, its convergence check (a ``ConvergenceWarning`` when ``max_iter`` or
    ``max_fun`` ends it) -- on a gradient source (see :class:`TrainerSource`) from ``x0``.

    ``on_iteration(x, loss)`` runs after each iteration with the new iterate and the loss
    there; it returning True, or ``source.stop_requested`` (set by a stop request), ends the
    optimisation after that iteration.  Returns ``(n_iter, opt_res)``, scipy's result:
    ``opt_res.x`` (float64) is the solution; ``source.params`` holds the last point
    evaluated, not necessarily the solution."""

    def callback(intermediate_result):  # scipy passes the iterate under this very name
        stop = on_iteration is not None and on_iteration(intermediate_result.x,
                                                         intermediate_result.fun)
        if source.stop_requested or stop:
            raise StopIteration

    opt_res = scipy.optimize.minimize(
        source.loss_grad, x0, method="L-BFGS-B", jac=True,
        options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol,
                 **_get_additional_lbfgs_options_dict("iprint", iprint)},
        callback=callback)
    return _check_optimize_result("lbfgs", opt_res, max_iter), opt_res


class _FittingLoops:
    """The fitting half of :class:`fastmlp.estimators._BaseMLP` (a mixin): initialisation,
    the validation sets, the L-BFGS driver and the epoch loop over a gradient source."""

    def _check_training_memory(self, layer_units, X, dtype):
        """A MemoryError naming the network, before anything is allocated, when training it
        (parameters, gradients, the optimizer's moments, the batch's activations and deltas)
        needs more than the memory available -- as ``fastmlp.MLP`` and ``fastmlp train`` say it
        (hidden_layer_sizes=(10**9,) failed inside the weights' random draw, "Unable to
        allocate 29.8 GiB for an array with shape (4, 1000000000)").  The batch: the fit's
        (stochastic solvers), or every row (L-BFGS; sparse input: one chunk)."""
        batch = (self._batch_size(X.shape[0], warn=False)
                 if self.solver in _STOCHASTIC_SOLVERS else self._lbfgs_rows(X))
        dtype = np.dtype(dtype)
        check_memory(training_bytes(layer_units, batch, dtype.itemsize),
                     f"training a network {'-'.join(map(str, layer_units))} ({dtype.name}) "
                     f"with batch size {batch}")

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

        def on_iteration(x, fun):
            """After each L-BFGS iteration: verbose output (scipy >= 1.15 prints nothing for
            scikit-learn's iprint), the validation set, callbacks; True to stop."""
            iteration[0] += 1
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
            return stop

        # SciPy (>= 1.15) evaluates the function at x cast to x0's dtype (the weights') and
        # keeps its own iterate in float64: float32 weights and data mean a float32 network at
        # every evaluation, and the result (opt_res.x) is float64 -- as in scikit-learn.
        x0 = source.params.astype(param_dtype)
        tasks.begin(*views(x0))
        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        self._attach(source)
        try:
            self.n_iter_, opt_res = minimize_lbfgs(
                source, x0, max_iter=self.max_iter, max_fun=self.max_fun, tol=self.tol,
                iprint=iprint, on_iteration=on_iteration)
        finally:
            self._source = None
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
        sparse = sp.issparse(X)
        rows = self._lbfgs_rows(X)
        X = as_kernel_input(X, dtype)
        # dense: one full batch, as scikit-learn.  Sparse: chunks of rows, with the L2 term
        # added once instead of per chunk.
        t = self._make_trainer(layer_units, dtype, rows, 0.0 if sparse else self.alpha)
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
                              schedule=self.learning_rate, power_t=self.power_t,
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

    def _batch_size(self, n_samples, warn=True):
        """The fit's batch size for n_samples rows (``warn``: say that a larger one is
        clipped, as scikit-learn does)."""
        if self.batch_size == "auto":
            return min(200, n_samples)
        if warn and self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    @staticmethod
    def _lbfgs_rows(X):
        """The rows one L-BFGS evaluation runs at once: every row (dense), one chunk of
        PREDICT_CHUNK rows (sparse: never densifying the whole matrix)."""
        n = X.shape[0]
        return min(n, _core.PREDICT_CHUNK) if sp.issparse(X) else n

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
        self._optimizer.iteration_ends(self.t_)
        if self._no_improvement_count > self.n_iter_no_change:
            if self.early_stopping:
                msg = ("Validation score did not improve more than tol=%f for %d "
                       "consecutive epochs." % (self.tol, self.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d "
                       "consecutive epochs." % (self.tol, self.n_iter_no_change))
            if self._optimizer.trigger_stopping(msg, self.verbose):
                return True
            self._no_improvement_count = 0
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

