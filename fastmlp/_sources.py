"""Gradient sources: what the estimators' fitting loops (the L-BFGS driver and the epoch
loop of ``fastmlp.estimators``) train on.  :class:`TrainerSource` is the local one, the
Trainer on rows in memory, and states the protocol; ``fastmlp.dask`` supplies the cluster's.
:func:`full_batch_loss_grad` is L-BFGS's loss and gradient from sums over rows, shared by the
sparse local source (chunks of rows) and the cluster's (shards)."""
import numpy as np
import scipy.sparse as sp
from sklearn.neural_network._base import LOSS_FUNCTIONS as _SKLEARN_LOSSES


def full_batch_loss_grad(params, n_coef, alpha, loss_sum, grad_sums, weight_sum, dtype):
    """L-BFGS's loss and gradient from sums over the rows (added over chunks of rows, or over
    a cluster's shards): ``loss_sum`` and ``grad_sums`` ((P,) float64, overwritten) without the
    L2 term, which is added here once, in float64 -- ``0.5 * alpha * ||W||^2`` and
    ``alpha * W`` (intercepts excluded) -- before dividing by ``weight_sum``.  Returns the
    loss and the gradient in ``dtype``."""
    coefs = params[:n_coef].astype(np.float64)
    grad_sums[:n_coef] += alpha * coefs
    loss_sum += 0.5 * alpha * float(coefs @ coefs)
    return loss_sum / weight_sum, (grad_sums / weight_sum).astype(dtype)


def loss_as_sklearn(t, Y, sw, alpha):
    """The loss of the full batch the trainer ``t`` just ran, and its output layer's
    intercept gradient (set in ``t.grads``), summed as scikit-learn sums them: its loss
    function on the outputs (a pairwise sum), ``np.dot`` for the L2 term, ``np.sum`` over
    the rows.  The kernel's sums differ from these by a few ulps, and L-BFGS amplifies
    ulps into visible differences after ~50-100 iterations; with these, and the kernel's
    other sums (the weights' gradients, the hidden intercepts') in scikit-learn's order
    already, the iterates stay scikit-learn's.  O(rows x outputs): small next to the
    backprop."""
    L = t.layout.n_layers
    out, delta = t.ws.A(L), t.ws.delta(L)
    name = t.loss
    if name == "log_loss" and t.out_activation in ("logistic", "sigmoid"):
        name = "binary_log_loss"
    loss = _SKLEARN_LOSSES[name](Y, out, sw)
    sw_sum = Y.shape[0] if sw is None else sw.sum()
    values = 0
    for s in t.layout.views(t.params)[0]:
        s = s.ravel()
        values += np.dot(s, s)
    loss += (0.5 * alpha) * values / sw_sum
    t.layout.views(t.grads)[1][-1][:] = np.sum(delta, axis=0) / sw_sum
    return loss


class TrainerSource:
    """The gradient source of a local fit: the :class:`~fastmlp._core.Trainer` on rows in
    memory (dense or CSR), trained in the trainer's dtype.

    The fitting loops (``fastmlp.estimators._BaseMLP._run_lbfgs`` and ``_run_epochs``) drive
    a source; a cluster supplies its own (``fastmlp.dask.source._FleetSource``).  A source has

    * ``params``, the flat parameter vector (coefs_/intercepts_ are views of it), and its
      ``layout``;
    * ``stop_requested``, which ``request_stop()`` sets: stop after the current batch;
    * ``loss_grad(packed)``: L-BFGS's full-batch (loss, gradient) at ``packed`` (dense: the
      trainer's one full batch, its loss summed as scikit-learn sums it);
    * ``set_dropout(rates, seed)`` and ``run_epoch(optimizer, state, rs)``: one epoch of
      batches in scikit-learn's order (its shuffle drawn from ``rs``), returning the sum of
      batch loss x batch rows and the number of rows done (fewer when stopped);
      ``session()``, a context that the epochs run in (the trainer's thread settings);
    * ``evaluate(validation, score)``: the validation loss of the network and its score
      (``score(output, y, sample_weight)``, None when ``score`` is None).

    ``shuffle``: for epochs, whether each reshuffles the rows; None for L-BFGS, whose
    ``alpha`` is added once (:func:`full_batch_loss_grad`) on sparse input, where the trainer
    runs chunks of rows without it.
    """

    def __init__(self, trainer, X, y, sample_weight, *, alpha=0.0, shuffle=None):
        self.trainer, self.layout, self.params = trainer, trainer.layout, trainer.params
        self.X = X
        self.Y = np.ascontiguousarray(y, dtype=trainer.dtype)
        self.sw = (None if sample_weight is None
                   else np.ascontiguousarray(sample_weight, dtype=trainer.dtype))
        self.alpha, self.shuffle = alpha, shuffle
        # sklearn.utils.shuffle(sample_idx, random_state=rs) == rs.shuffle(sample_idx): the
        # same draws, so each epoch's order is composed with the previous one, in place
        self.order = (np.arange(X.shape[0], dtype=np.int64)
                      if shuffle or (shuffle is not None and sp.issparse(X)) else None)
        self._sums = None

    @property
    def stop_requested(self):
        return self.trainer.stop_requested

    @stop_requested.setter
    def stop_requested(self, value):
        self.trainer.stop_requested = value

    def set_dropout(self, rates, seed):
        self.trainer.set_dropout(rates, seed)

    def session(self):
        return self.trainer.session()

    def run_epoch(self, optimizer, state, rs):
        if self.shuffle:
            rs.shuffle(self.order)
        return self.trainer.run_epoch(self.X, self.Y, optimizer, state, order=self.order,
                                      sample_weight=self.sw)

    def loss_grad(self, packed):
        t, X, Y, sw = self.trainer, self.X, self.Y, self.sw
        np.copyto(t.params, packed)
        if not sp.issparse(X):
            t.loss_and_grads(X, Y, sw)
            return loss_as_sklearn(t, Y, sw, self.alpha), t.grads.copy()
        if self._sums is None:
            self._sums = np.empty(t.grads.shape, np.float64)
        n, chunk, sums = X.shape[0], t.batch_size, self._sums  # chunks of the workspace
        total, weight_sum = 0.0, 0.0
        sums[:] = 0
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            w = stop - start if sw is None else float(sw[start:stop].sum(dtype=np.float64))
            if w == 0:  # a chunk of zero weights adds nothing (and would divide by 0)
                continue
            total += w * t.loss_and_grads(X[start:stop], Y[start:stop],
                                          None if sw is None else sw[start:stop])
            sums[:] += w * t.grads
            weight_sum += w
        return full_batch_loss_grad(t.params, t.layout.n_coef, self.alpha, total, sums,
                                     weight_sum, t.dtype)

    def evaluate(self, validation, score):
        output = self.trainer.forward(validation.X)
        loss = validation.loss(output, self.trainer.codes[2])
        return loss, None if score is None else score(output, validation.y, validation.sw)
