"""fastmlp's functional backend: the network as plain functions on plain arrays.

:func:`forward` and :func:`loss_and_grads` take ``coefs`` (a list of ``(n_in, n_out)`` arrays,
as in scikit-learn) and ``intercepts`` and return new arrays; other projects call them as their
compute engine.  They validate their inputs (``fastmlp._validation``) and run on the training
core (``fastmlp._core``).
"""
from ._core import PREDICT_CHUNK, Trainer
from ._validation import check_params, check_sample_weight, check_X, check_Y

__all__ = ["forward", "loss_and_grads"]


def _trainer_for(coefs, intercepts, sizes, dtype, activation, out_activation, loss, alpha,
                 n_threads, capacity):
    """A Trainer holding (validated) coefs/intercepts, for one functional call."""
    t = Trainer(sizes, activation=activation, out_activation=out_activation, loss=loss,
                dtype=dtype, batch_size=capacity, alpha=alpha, n_threads=n_threads)
    t.layout.pack(coefs, intercepts, t.params)
    return t


def forward(coefs, intercepts, X, activation="logistic", out_activation="identity",
            n_threads=None):
    """The network's output for X: ``A[l+1] = f(A[l] @ W[l] + b[l])``, f = ``activation`` for
    hidden layers and ``out_activation`` for the last.

    coefs: list of (n_in, n_out) arrays, intercepts: list of (n_out,), all float32 or all
    float64; X (N, n_in), dense or CSR/CSC, converted to the parameters' dtype.
    Returns a new (N, n_out) array.  Nothing passed in is modified."""
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    # the loss plays no part in a forward pass; pick one the output activation accepts
    loss = {"softmax": "log_loss", "exp": "poisson"}.get(out_activation, "squared_error")
    t = _trainer_for(coefs, intercepts, sizes, dtype, activation, out_activation, loss, 0.0,
                     n_threads, min(X.shape[0], PREDICT_CHUNK))
    return t.forward(X)


def loss_and_grads(coefs, intercepts, X, Y, activation="logistic", out_activation="identity",
                   loss="squared_error", alpha=0.0, sample_weight=None, n_threads=None):
    """Loss and gradients of one batch, with scikit-learn's definitions (it can serve as
    ``MLP._backprop``):

    * squared_error: ``0.5 * mean over samples and outputs of (A - Y)^2``; its gradient is
      that of ``n_outputs * loss`` (scikit-learn issue #8349, reproduced on purpose);
    * log_loss (softmax output), binary log loss (logistic output), poisson (exp output);
    * plus ``0.5 * alpha * sum ||W||^2 / n``; with sample weights the means are weighted and
      n is the weight sum.

    Returns ``(loss, coef_grads, intercept_grads)`` as new arrays shaped like the
    parameters.  Nothing passed in is modified."""
    sizes, dtype = check_params(coefs, intercepts)
    X = check_X(X, dtype, sizes[0], accept_sparse=True)
    Y = check_Y(Y, dtype, X.shape[0], sizes[-1])
    sw = check_sample_weight(sample_weight, X.shape[0], dtype)
    t = _trainer_for(coefs, intercepts, sizes, dtype, activation, out_activation, loss, alpha,
                     n_threads, X.shape[0])
    value = t.loss_and_grads(X, Y, sw)
    return (float(value), [g.copy() for g in t.coef_grads],
            [g.copy() for g in t.intercept_grads])
