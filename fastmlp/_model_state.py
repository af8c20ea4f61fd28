"""Model-file state of :class:`fastmlp.MLP`: what a model file holds (``_get_state``) and how
an untrusted file's state becomes a model again (``_from_state``/``_set_state``), every field
checked before anything changes.

:class:`ModelState` is a mixin of ``fastmlp.model.MLP``: the state still belongs to the model
class (as ``fastmlp._estimator_state`` does for the scikit-learn estimators), kept in its own
module so that ``model.py`` holds the training loop and this file the file-format fields.
Field checks use :mod:`fastmlp._state`.
"""
import numpy as np

from . import _state as S
from ._validation import SOLVERS

# partial_fit's settings before any training (in this order)
FIT_DEFAULTS = {"batch_size": 256, "learning_rate": 0.1, "optimizer": "sgd", "momentum": 0.0,
                "shuffle": True}


class ModelState:
    """``_get_state``/``_set_state``/``_from_state`` for :class:`fastmlp.MLP`."""

    def _get_state(self):
        """Everything a model file needs, as plain values (see :mod:`fastmlp._state`)."""
        rs = self.random_state
        model = {"layer_sizes": list(self.layer_sizes), "activation": self.activation,
                 "out_activation": self.out_activation, "loss": self.loss,
                 "dtype": self.dtype.name, "alpha": float(self.alpha),
                 "random_state": int(rs) if isinstance(rs, (int, np.integer))
                 and not isinstance(rs, bool) else None,
                 "n_threads": self._n_threads, "loss_curve": list(self.loss_curve_)}
        if self.leaky_relu_slope != 0.01:  # files without these keys keep the defaults
            model["leaky_relu_slope"] = self.leaky_relu_slope
        if self.dropout is not None:
            model["dropout"] = [float(r) for r in self.dropout]
        arrays = {}
        model["rng"], arrays["rng/keys"] = S.rng_state(self._rs)
        t = self._trainer
        model["fitted"] = t is not None
        model["fit_settings"] = dict(self._settings)
        if t is not None:
            model["batch_size"] = int(t.batch_size)
            arrays["params"] = t.params
            if t.dropout is not None:  # where the masks stand, for an exact resume
                model["dropout_seed"], model["dropout_step"] = t.dropout_seed, t.dropout_step
            if self._optimizer is not None:
                model["optimizer"], opt_arrays = S.optimizer_state(self._optimizer,
                                                                   self._opt_state)
                arrays.update(opt_arrays)
        p = self._pending
        if p is not None:
            model["epoch"] = {"position": p["position"], "loss_sum": float(p["loss_sum"])}
            arrays["epoch/order"] = (np.arange(p["n_rows"], dtype=np.int64)
                                     if p["order"] is None else p["order"])
        for name in ("classes_", "feature_names_in_"):
            if getattr(self, name, None) is not None:
                arrays[f"attr/{name}"] = S.label_array(getattr(self, name), name)
        scaling = S.get_scaling(self, self.layer_sizes[0], self.layer_sizes[-1])
        return {"model": model, "arrays": arrays, "scaling": scaling, "format_version": 1}

    @classmethod
    def _from_state(cls, state):
        """A new MLP from an untrusted state (``ValueError`` naming what is wrong)."""
        model = state.get("model") if isinstance(state, dict) else None
        if not isinstance(model, dict):
            S.bad("bad model description")
        sizes = model.get("layer_sizes")
        if not isinstance(sizes, list) or not all(S.is_int(v) and v >= 1 for v in sizes):
            S.bad(f"bad layer sizes {sizes!r}")
        for key in ("activation", "out_activation", "loss", "dtype"):
            S.get_str(model, key)
        if model["dtype"] not in ("float32", "float64"):
            S.bad(f"bad dtype {model['dtype']!r}")
        alpha = S.get_float(model, "alpha", low=0.0)
        S.get_int(model, "random_state", low=0, high=2 ** 32 - 1, optional=True)
        S.get_int(model, "n_threads", low=1, optional=True)
        slope = S.get_float(model, "leaky_relu_slope", low=0.0, optional=True)
        dropout = model.get("dropout")
        try:
            m = cls(sizes, activation=model["activation"],
                    out_activation=model["out_activation"], loss=model["loss"],
                    dtype=model["dtype"], alpha=alpha, random_state=model["random_state"],
                    n_threads=model["n_threads"],
                    leaky_relu_slope=0.01 if slope is None else slope, dropout=dropout)
        except (TypeError, ValueError) as exc:
            S.bad(f"bad model description ({exc})")
        m._set_state(state)
        return m

    @staticmethod
    def _stored_settings(model, batch_size, opt):
        """partial_fit's settings from a state: its ``fit_settings``, checked; a file
        written before they were saved: its optimizer's and batch size, else the defaults."""
        settings = dict(FIT_DEFAULTS)
        if batch_size is not None:
            settings["batch_size"] = batch_size
        if opt is not None:
            settings.update(optimizer=opt.name, learning_rate=opt.learning_rate)
            if opt.name == "sgd":
                settings["momentum"] = opt.momentum
        stored = model.get("fit_settings")
        if stored is None:
            return settings
        if not isinstance(stored, dict) or set(stored) != set(FIT_DEFAULTS) or \
                not isinstance(stored["shuffle"], bool):
            S.bad("bad fit settings")
        settings = {
            "batch_size": S.get_int(stored, "batch_size", "fit settings' batch size", low=1),
            "learning_rate": S.get_float(stored, "learning_rate", "fit settings' learning rate",
                                         low=0.0),
            "optimizer": S.get_str(stored, "optimizer", SOLVERS, "fit settings' optimizer"),
            "momentum": S.get_float(stored, "momentum", "fit settings' momentum", low=0.0,
                                    high=1.0),
            "shuffle": stored["shuffle"]}
        if not settings["learning_rate"] > 0 or not settings["momentum"] < 1:
            S.bad("bad fit settings (learning rate or momentum)")
        if settings["optimizer"] == "lbfgs" and opt is not None:  # fit(lbfgs) keeps none
            S.bad("bad fit settings (lbfgs, but an optimizer state)")
        return settings

    def _set_state(self, state):
        """Load a state from :meth:`_get_state` (or an untrusted file) into this model, whose
        architecture must be the state's; every field is checked before anything changes."""
        model = state.get("model") if isinstance(state, dict) else None
        arrays = dict(state.get("arrays") or {}) if isinstance(state, dict) else {}
        if not isinstance(model, dict):
            S.bad("bad model description")
        if model.get("layer_sizes") != list(self.layer_sizes) or \
                any(model.get(k) != getattr(self, k) for k in
                    ("activation", "out_activation", "loss")) or \
                model.get("dtype") != self.dtype.name:
            S.bad("the state is for another architecture")
        n_in, n_out = self.layer_sizes[0], self.layer_sizes[-1]
        curve = S.float_list(model.get("loss_curve"), "loss curve")
        rs = S.make_rng(model.get("rng"), arrays.pop("rng/keys", None))
        fitted = model.get("fitted")
        if not isinstance(fitted, bool):
            S.bad("bad 'fitted' flag")
        params = opt = opt_state = None
        batch_size = None
        if fitted:
            batch_size = S.get_int(model, "batch_size", "batch size", low=1)
            params = arrays.pop("params", None)
            if params is None or params.shape != (S.n_params(self.layer_sizes),) or \
                    params.dtype != self.dtype:
                S.bad(f"parameters missing or of the wrong shape/dtype for layers "
                      f"{list(self.layer_sizes)}")
            if not np.isfinite(params).all():
                S.bad("parameters contain NaN or infinity")
            try:  # before the network is built
                S.check_memory(S.training_bytes(self.layer_sizes, batch_size,
                                                self.dtype.itemsize),
                               f"a network {'-'.join(map(str, self.layer_sizes))} with batch "
                               f"size {batch_size}")
            except MemoryError as exc:
                S.bad(str(exc))
            if "optimizer" in model:
                opt, opt_state = S.make_optimizer(model["optimizer"], arrays, params)
            if self.dropout is not None:
                dropout_at = (S.get_int(model, "dropout_seed", low=0, high=2 ** 32 - 1),
                              S.get_int(model, "dropout_step", low=0))
        pending = None
        order = arrays.pop("epoch/order", None)
        if "epoch" in model or order is not None:
            ep = model.get("epoch")
            if not fitted or not isinstance(ep, dict) or order is None or order.ndim != 1 or \
                    order.dtype != np.int64 or len(order) < 2 or \
                    not np.array_equal(np.sort(order), np.arange(len(order))):
                S.bad("bad interrupted-epoch record")
            position = S.get_int(ep, "position", "interrupted-epoch position", 1,
                                 len(order) - 1)
            loss_sum = S.get_float(ep, "loss_sum", "interrupted-epoch loss", finite=False)
            pending = {"order": order, "position": position, "loss_sum": loss_sum,
                       "n_rows": len(order)}
        settings = self._stored_settings(model, batch_size, opt)
        if settings["optimizer"] == "lbfgs" and pending is not None:
            S.bad("bad interrupted-epoch record (an L-BFGS fit has no epochs)")
        labels = {}
        for name, n, unique in (("classes_", n_out, True), ("feature_names_in_", n_in, False)):
            a = arrays.pop(f"attr/{name}", None)
            if a is not None:
                labels[name] = S.check_labels(a, name.rstrip("_").replace("_", " "), n, unique)
        if "feature_names_in_" in labels and labels["feature_names_in_"].dtype.kind != "U":
            S.bad("bad feature names (not strings)")
        if arrays:
            S.bad(f"unexpected arrays {sorted(arrays)}")
        S.set_scaling(self, state.get("scaling"), n_in, n_out)  # checks, then sets
        # every field checked: now change the model
        self._trainer = None
        if fitted:
            t = self._make_trainer(batch_size, init=False)
            t.params[:] = params
            if self.dropout is not None:
                t.set_dropout(self.dropout, dropout_at[0])
                t.dropout_step = dropout_at[1]
            if opt is not None:
                self._optimizer, self._opt_state = opt, opt_state
        self._rs = rs
        self.loss_curve_ = curve
        self._pending = pending
        self._settings = settings
        for name in ("classes_", "feature_names_in_"):
            if name in labels:
                setattr(self, name, labels[name])

