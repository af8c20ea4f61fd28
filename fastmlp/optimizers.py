"""Optimizers as (init, update) over explicit state, updating the flat parameters in place.

State is a NamedTuple of arrays (the step count is a 1-element array so that it too is updated
in place); that is what makes partial_fit, warm_start, checkpoints and resume plain copies.
The learning rate is an attribute; the optimizer's schedule changes it between epochs
(:meth:`SGD.iteration_ends`, :meth:`SGD.trigger_stopping`, as scikit-learn's optimizers do).
:func:`make_optimizer` builds one by name.
"""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Union

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_parameter_constraints

from .kernels import adam_update, sgd_update
from .kernels import optim as _kernel_codes


class SGDState(NamedTuple):
    velocity: np.ndarray  # (P,)


class AdamState(NamedTuple):
    # (1,) int64: steps taken; shadows tuple.count, as optax's ScaleByAdamState.count does
    count: np.ndarray  # type: ignore[assignment]
    mu: np.ndarray     # (P,) first moment
    nu: np.ndarray     # (P,) second moment


# (code, s1, s2, hyper): an optimizer step as the training kernels' ``apply_update`` takes it
KernelArgs = tuple[int, np.ndarray, np.ndarray, np.ndarray]


# SGD's learning-rate schedules (scikit-learn's MLP ``learning_rate`` values)
SCHEDULES = ("constant", "invscaling", "adaptive")


class SGD:
    """Stochastic gradient descent with (Nesterov) momentum, as scikit-learn's SGDOptimizer,
    with its learning-rate schedule: 'constant'; 'invscaling' (after each epoch the rate
    becomes ``learning_rate_init / (t + 1) ** power_t`` for ``t`` samples seen); 'adaptive'
    (each time training stops improving the rate is divided by 5, until it is at most 1e-6).
    ``learning_rate`` is the current rate, ``learning_rate_init`` the one it started at."""
    name = "sgd"
    State = SGDState

    def __init__(self, learning_rate: float = 0.1, momentum: float = 0.0,
                 nesterov: bool = False, schedule: str = "constant",
                 power_t: float = 0.5) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.learning_rate = float(learning_rate)
        self.learning_rate_init = self.learning_rate
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.schedule = str(schedule)
        self.power_t = float(power_t)

    def iteration_ends(self, time_step: int) -> None:
        """The schedule's update at the end of an epoch, ``time_step`` samples seen in all."""
        if self.schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        """Training stopped improving (``msg`` says how): True to stop; the 'adaptive'
        schedule instead divides the rate by 5 and goes on, until the rate is at most 1e-6."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False

    def init(self, params: np.ndarray) -> SGDState:
        return SGDState(np.zeros_like(params))

    def update(self, state: SGDState, params: np.ndarray, grads: np.ndarray,
               scale: float = 1.0, l2: float = 0.0, n_coef: int = 0) -> None:
        """One step from the gradient ``scale * grads + l2 * params[:n_coef]``."""
        t = params.dtype.type  # float32 SGD runs float32 arithmetic (as NumPy would)
        sgd_update(params, grads, state.velocity, t(self.learning_rate), t(self.momentum),
                   self.nesterov, t(scale), t(l2), n_coef)

    def kernel_args(self, state: SGDState) -> KernelArgs:
        """(code, s1, s2, hyper) for the training kernels' ``apply_update``: the same step as
        :meth:`update`, taken inside a multi-step kernel call."""
        hyper = np.array([self.learning_rate, self.momentum, float(self.nesterov), 0, 0, 0])
        return _kernel_codes.SGD, state.velocity, state.velocity, hyper

    def step_rates(self, state: SGDState, out: np.ndarray) -> None:
        """Per-step learning rates of the next ``len(out)`` steps: SGD's is constant (in
        ``hyper``), so nothing to fill."""

    def advance(self, state: SGDState, n_steps: int) -> None:
        """Record ``n_steps`` steps taken by a kernel (SGD keeps no count)."""


class Adam:
    """Adam (Kingma & Ba), as scikit-learn's AdamOptimizer: eps added to sqrt(v)."""
    name = "adam"
    State = AdamState

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8) -> None:
        self.learning_rate = float(learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def iteration_ends(self, time_step: int) -> None:
        """End of an epoch: Adam has no schedule (its bias correction goes by step)."""

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        """Training stopped improving: Adam always stops."""
        if verbose:
            print(msg + " Stopping.")
        return True

    def init(self, params: np.ndarray) -> AdamState:
        return AdamState(np.zeros(1, np.int64), np.zeros_like(params), np.zeros_like(params))

    def update(self, state: AdamState, params: np.ndarray, grads: np.ndarray,
               scale: float = 1.0, l2: float = 0.0, n_coef: int = 0) -> None:
        """One step from the gradient ``scale * grads + l2 * params[:n_coef]``."""
        state.count[0] += 1
        lr_t = self._rate(int(state.count[0]))
        adam_update(params, grads, state.mu, state.nu, float(lr_t), self.beta_1, self.beta_2,
                    self.epsilon, scale, l2, n_coef)

    def _rate(self, t: int) -> float:
        return self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)

    def kernel_args(self, state: AdamState) -> KernelArgs:
        """(code, s1, s2, hyper) for the training kernels' ``apply_update``: the same step as
        :meth:`update`, taken inside a multi-step kernel call."""
        hyper = np.array([0, 0, 0, self.beta_1, self.beta_2, self.epsilon], np.float64)
        return _kernel_codes.ADAM, state.mu, state.nu, hyper

    def step_rates(self, state: AdamState, out: np.ndarray) -> None:
        """out[k] <- the bias-corrected rate of step count + 1 + k (the same expression as
        :meth:`update`'s, so a kernel's steps equal the Python ones bit for bit)."""
        t = int(state.count[0])
        for k in range(out.shape[0]):
            out[k] = self._rate(t + 1 + k)

    def advance(self, state: AdamState, n_steps: int) -> None:
        """Record ``n_steps`` steps taken by a kernel."""
        state.count[0] += n_steps


Optimizer = Union[SGD, Adam]
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}
# The optimizer names, as a scikit-learn parameter constraint.
NAME_CONSTRAINT = {"name": [StrOptions(set(OPTIMIZERS))]}


def make_optimizer(name: str, **settings: Any) -> Optimizer:
    """The optimizer called ``name`` ('sgd' or 'adam'), built from ``settings``.

    The one place optimizers are constructed (``fastmlp.MLP``, the scikit-learn estimators
    and model files all come here).  ``settings`` may carry the hyper-parameters of every
    optimizer (``learning_rate``, ``momentum``, ``nesterov``, ``schedule``, ``power_t``,
    ``beta_1``, ``beta_2``, ``epsilon``); each optimizer takes the ones it has and ignores
    the others, as scikit-learn's solvers do.

    Parameters
    ----------
    name : {'sgd', 'adam'}
        Which optimizer.
    **settings
        Hyper-parameters; missing ones take the optimizer's defaults.

    Returns
    -------
    SGD or Adam
        A new optimizer; its state comes from ``optimizer.init(params)``.

    Examples
    --------
    >>> opt = make_optimizer("sgd", learning_rate=0.5, momentum=0.9, beta_1=0.8)
    >>> type(opt).__name__, opt.learning_rate, opt.momentum
    ('SGD', 0.5, 0.9)
    >>> make_optimizer("rmsprop")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'name' parameter of \
make_optimizer must be a str among {...}. Got 'rmsprop' instead.
    """
    validate_parameter_constraints(NAME_CONSTRAINT, {"name": name}, caller_name="make_optimizer")
    cls = OPTIMIZERS[name]
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in settings.items() if k in accepted})
