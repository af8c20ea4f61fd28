"""The gradient source of a ``fastmlp.dask`` fit (what the estimators' one L-BFGS driver and
one epoch loop drive, as they drive the Trainer locally) and the validation scored on the
engines (see :mod:`fastmlp.dask` for the protocol)."""
from __future__ import annotations

import contextlib

import numpy as np

from .._engine import mean_loss
from .._sources import full_batch_loss_grad


class _ClusterValidation:
    """The validation rows on the engines -- early_stopping's held-out rows (each on the
    engine that holds it) or the user's validation set (a part per engine): each evaluation
    sends the parameters and receives a few sums per engine (the loss, the weight, accuracy's
    hits or R^2's squares), never rows or predictions."""

    def __init__(self, fleet, classify):
        self.fleet, self.classify = fleet, classify
        self.mean = None
        if not classify:
            moments = fleet.call("validation_moments")
            weight = sum(m[0] for m in moments)
            total = sum(m[1] for m in moments if m[1] is not None)
            self.mean = total / weight  # np.average(y, axis=0, weights=sw), as r2_score

    def evaluate(self, params):
        """(validation loss, score) at ``params``: the mean loss without the L2 term, and
        accuracy or R^2 (scikit-learn's uniform average over outputs, with its rules for
        constant targets)."""
        results = [r for r in self.fleet.call("validate", params, self.classify, self.mean)
                   if r[2] is not None]
        loss = sum(r[0] for r in results) / sum(r[1] for r in results)
        if self.classify:
            return loss, sum(r[2][0] for r in results) / sum(r[2][1] for r in results)
        ss_res = sum(r[2][0] for r in results)
        ss_tot = sum(r[2][1] for r in results)
        if not np.isfinite(ss_res).all():
            return loss, np.nan
        r2 = np.ones(len(ss_res))
        valid = (ss_tot != 0) & (ss_res != 0)
        r2[valid] = 1 - ss_res[valid] / ss_tot[valid]
        r2[(ss_res != 0) & (ss_tot == 0)] = 0.0
        return loss, float(np.mean(r2))


class _FleetSource:
    """The gradient source of a cluster fit (what the estimators' fitting loops drive; the
    protocol is ``fastmlp._sources.TrainerSource``'s): every gradient is the sum of the
    engines' raw sums, and the driver's ``params`` (coefs_/intercepts_ are views of them)
    take the step.  ``after(steps)``, when given, runs after every step (tests use it to
    lose a worker or request a stop at a given step)."""

    def __init__(self, fleet, layout, params, alpha, shuffle, after=None):
        self.fleet, self.layout, self.params = fleet, layout, params
        self.alpha, self.shuffle, self.after = alpha, shuffle, after
        self.stop_requested = False
        self.grads = np.empty_like(params)
        self._sums = np.empty(layout.n_params, np.float64)
        self.seed = None  # dropout's: the local trainer's mask seed
        self.step = 0     # and its step count

    def set_dropout(self, rates, seed):
        self.seed = seed  # the rates are in the engines' spec

    def session(self):
        return contextlib.nullcontext()  # the engines hold their own thread settings

    def loss_grad(self, packed):
        """A full-batch evaluation: one round trip to every engine."""
        params, sums = self.params, self._sums
        np.copyto(params, packed)
        total = weight_sum = 0.0
        sums[:] = 0
        for loss_sum, w, g, _ in self.fleet.call("full", params):
            total += loss_sum
            weight_sum += w
            np.add(sums, g, out=sums)
        if self.after is not None:
            self.after(self.fleet.steps)
        return full_batch_loss_grad(params, self.layout.n_coef, self.alpha, total, sums,
                                     weight_sum, params.dtype)

    def run_epoch(self, optimizer, state, rs):
        """One epoch of global batches, each batch's gradient summed over the shards; the
        engines apply the shuffle that ``rs`` draws (its state travels, not the order)."""
        fleet, params, grads, alpha = self.fleet, self.params, self.grads, self.alpha
        n_coef = self.layout.n_coef
        if self.shuffle:
            pre = rs.get_state()
            post = fleet.call("begin_epoch", pre)[0]
            fleet.rng_states.append(pre)
            rs.set_state(post)
        B, n = fleet.spec["batch_size"], fleet.spec["n_train"]
        n_batches = -(-n // B)
        total = 0.0
        for b in range(n_batches):
            key = 0 if self.seed is None else ((self.seed << 32) | (self.step & 0xFFFFFFFF))
            self.step += 1
            loss_sum = weight_sum = 0.0
            for k, (ls, w, g, _) in enumerate(fleet.call("step", params, b, key)):
                if k == 0:
                    np.copyto(grads, g)
                else:
                    np.add(grads, g, out=grads)
                loss_sum += ls
                weight_sum += w
            batch_loss = mean_loss(params, n_coef, loss_sum, weight_sum, alpha)
            optimizer.update(state, params, grads, 1.0 / weight_sum, alpha / weight_sum, n_coef)
            done = min((b + 1) * B, n)
            total += batch_loss * (done - b * B)
            if self.after is not None:
                self.after(fleet.steps)
            if self.stop_requested and b + 1 < n_batches:
                return total, done  # request_stop(): after this batch, as locally
        return total, n

    def evaluate(self, validation, score):
        """The engines score their own validation rows (``score`` is theirs)."""
        return validation.evaluate(self.params)
