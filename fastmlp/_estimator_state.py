"""Model-file state of the scikit-learn estimators: what ``MLPClassifier``/``MLPRegressor``
write into a model file and how an untrusted file's state becomes an estimator again.

:class:`EstimatorState` is a mixin of ``fastmlp.estimators._BaseMLP``: the state still belongs
to the estimator class (``_get_state``/``_set_state``/``_from_state``, PyTorch's state_dict
pattern), kept in its own module so that ``estimators.py`` holds the algorithm and this file
the file-format fields.  Field checks use :mod:`fastmlp._state`.
"""
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import LabelBinarizer

from . import _state as S


class EstimatorState:
    """``_get_state``/``_set_state``/``_from_state`` for fastmlp's scikit-learn estimators."""

    # scikit-learn's fitted attributes that are plain values, lists of numbers, label arrays
    _STATE_SCALARS = ("n_iter_", "n_layers_", "n_outputs_", "out_activation_", "loss_", "t_",
                      "n_features_in_", "best_loss_", "best_validation_score_")
    _STATE_LISTS = ("loss_curve_", "validation_scores_", "validation_loss_curve_")
    _STATE_LABELS = ("classes_", "feature_names_in_")

    def _get_state(self):
        """Everything a model file needs, as plain values (see :mod:`fastmlp._state`)."""
        params, arrays, model = {}, {}, {}
        for k, v in self.get_params(deep=False).items():
            if k == "random_state" and isinstance(v, np.random.RandomState):
                model["random_state_object"], arrays["param/random_state"] = S.rng_state(v)
                v = None
            if k == "class_weight" and v is not None and not isinstance(v, str):
                # {label: weight} (or a list of them): JSON keys would turn labels into
                # strings, so they travel as [label, weight] pairs
                model["class_weight_pairs"] = True
                v = _class_weight_pairs(v)
            params[k] = list(v) if isinstance(v, tuple) else v
        model["params"] = params
        fitted = hasattr(self, "coefs_")
        model["fitted"] = fitted
        sizes = None
        if fitted:
            sizes = (self.coefs_[0].shape[0], self.coefs_[-1].shape[1])
            model["n_coefs"] = len(self.coefs_)
            for i, (c, b) in enumerate(zip(self.coefs_, self.intercepts_)):
                arrays[f"coefs/{i}"], arrays[f"intercepts/{i}"] = c, b
            model["attrs"] = {k: getattr(self, k) for k in self._STATE_SCALARS
                              + self._STATE_LISTS if hasattr(self, k)}
            for k in self._STATE_LABELS:
                if getattr(self, k, None) is not None:
                    arrays[f"attr/{k}"] = S.label_array(getattr(self, k), k)
            lb = getattr(self, "_label_binarizer", None)
            if lb is not None:
                model["label_type"] = lb.y_type_
            opt, state = getattr(self, "_optimizer", None), getattr(self, "_optimizer_state",
                                                                    None)
            if opt is not None and state is not None:
                model["optimizer"], opt_arrays = S.optimizer_state(opt, state)
                arrays.update(opt_arrays)
            rs = getattr(self, "_random_state", None)
            if isinstance(rs, np.random.RandomState) and rs is self.random_state:
                model["rng_is_param"] = True  # check_random_state's alias, kept as one object
            elif isinstance(rs, np.random.RandomState):
                model["rng"], arrays["rng/keys"] = S.rng_state(rs)
            if getattr(self, "_best_coefs", None) is self.coefs_:
                model["best_is_current"] = True  # early-stopped: best and live weights alias
            for k in ("_best_coefs", "_best_intercepts"):
                if getattr(self, k, None) is not None and not model.get("best_is_current"):
                    model[k] = len(getattr(self, k))
                    for i, a in enumerate(getattr(self, k)):
                        arrays[f"{k}/{i}"] = a
            if hasattr(self, "_no_improvement_count"):
                model["_no_improvement_count"] = self._no_improvement_count
        scaling = S.get_scaling(self, *(sizes or (None, None)))
        return {"model": model, "arrays": arrays, "scaling": scaling, "format_version": 1}

    def _get_state_with_objects(self):
        """:meth:`_get_state` plus ``state["objects"]``, what a model file cannot hold:
        scikit-learn's callbacks (``set_callbacks``), parameters that are not plain values (a
        callable ``scoring``; checked by ``_validate_params`` as ``set_params`` is) and the
        metadata requests of ``set_fit_request``.  Pickles, copies and ``to_local``."""
        from .persistence import _jsonable
        state = self._get_state()
        objects = {}
        for k, v in list(state["model"]["params"].items()):
            try:
                _jsonable(v, k)
            except ValueError:  # e.g. a callable scoring: pickles carry it as it is
                objects[k] = state["model"]["params"].pop(k)
        state["objects"] = {"callbacks": list(getattr(self, "_skl_callbacks", None) or []),
                            "params": objects}
        if "_metadata_request" in vars(self):  # set_fit_request & co. (metadata routing)
            state["objects"]["metadata_request"] = self._metadata_request
        return state

    # -- pickling, copies: the same state, checked the same way -----------------------------
    # Besides that state (``_fastmlp_state``), a pickle holds scikit-learn's view of the
    # estimator (its parameters and attributes, none of fastmlp's objects): what scikit-learn's
    # own class reads when a patched estimator's pickle is loaded where fastmlp is not patched
    # or not installed.  fastmlp reads only ``_fastmlp_state``.
    _NOT_IN_VIEW = ("_trainer", "_source", "_optimizer", "_optimizer_state", "_stop_requested",
                    "_skl_callbacks_to_teardown", "_callback_fit_ctx")

    def __getstate__(self):
        state = {k: v for k, v in vars(self).items() if k not in self._NOT_IN_VIEW
                 and type(v).__module__.split(".")[0] != "fastmlp"}
        state["_fastmlp_state"] = _plain(self._get_state_with_objects(), "the estimator")
        if type(self).__module__.startswith("sklearn."):  # as BaseEstimator.__getstate__
            from sklearn import __version__
            state["_sklearn_version"] = __version__
        return state

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise ValueError(f"cannot unpickle {type(self).__name__}: its state is "
                             f"{type(state).__name__}, not a dict")
        if type(self).__module__.startswith("sklearn."):
            # scikit-learn's check: an InconsistentVersionWarning on another version
            BaseEstimator.__setstate__(self, {"_sklearn_version": state.get(
                "_sklearn_version", "pre-0.18")})
        ours = state.get("_fastmlp_state")
        if ours is None and type(self).__module__.startswith("sklearn."):
            ours = self._state_of_sklearn_pickle(state)
        elif ours is None:
            raise ValueError(f"cannot unpickle {type(self).__name__}: not a pickle of this "
                             "fastmlp version (pickles of fastmlp before its one state format do "
                             "not load; save models with .save(path) / fastmlp.load(path))")
        try:
            new = type(self)._from_state(_plain(ours, "the pickled state", check=True))
        except ValueError as exc:
            raise ValueError(f"cannot unpickle {type(self).__name__}: {exc}") from None
        self.__dict__.clear()
        self.__dict__.update(vars(new))

    def _state_of_sklearn_pickle(self, state):
        """The state of scikit-learn's own estimator pickled without fastmlp, loaded while
        patched: its attributes, read through ``_get_state`` (scikit-learn's optimizer is not
        fastmlp's: the next partial_fit starts a fresh one, as scikit-learn's would)."""
        other = type(self)()  # fastmlp's own parameters keep their defaults
        other.__dict__.update({k: v for k, v in state.items() if k not in (
            "_optimizer", "_optimizer_state", "_sklearn_version")})
        try:
            return other._get_state_with_objects()
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot unpickle {type(self).__name__}: bad scikit-learn state "
                             f"({exc})") from None

    @classmethod
    def _from_state(cls, state):
        """A new estimator from an untrusted state (``ValueError`` naming what is wrong)."""
        model = state.get("model") if isinstance(state, dict) else None
        params = model.get("params") if isinstance(model, dict) else None
        if not isinstance(params, dict):
            S.bad("bad estimator parameters")
        params = dict(params)
        if isinstance(params.get("hidden_layer_sizes"), list):
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        if model.get("class_weight_pairs"):
            params["class_weight"] = _class_weight_from_pairs(params.get("class_weight"))
        objects = state.get("objects") or {}
        given = objects.get("params", {}) if isinstance(objects, dict) else None
        if not isinstance(given, dict) or set(given) & set(params):
            S.bad("bad estimator parameters (objects)")
        params.update(given)
        arrays = dict(state.get("arrays") or {})
        if "random_state_object" in model:
            params["random_state"] = S.make_rng(model["random_state_object"],
                                                arrays.pop("param/random_state", None))
        try:
            est = cls(**params)
            est._validate_params()
        except (TypeError, ValueError) as exc:
            S.bad(f"bad estimator parameters ({exc})")
        est._set_state(dict(state, arrays=arrays))
        return est

    def _set_state(self, state):
        """Load a state from :meth:`_get_state` (or an untrusted file): the fitted
        attributes; every field is checked before anything changes."""
        model, arrays = state["model"], dict(state.get("arrays") or {})
        arrays.pop("param/random_state", None)
        fitted = model.get("fitted")
        if not isinstance(fitted, bool):
            S.bad("bad 'fitted' flag")
        attrs = {}
        sizes = (None, None)
        if fitted:
            n = S.get_int(model, "n_coefs", "layer count", low=1)
            try:
                coefs = [arrays.pop(f"coefs/{i}") for i in range(n)]
                intercepts = [arrays.pop(f"intercepts/{i}") for i in range(n)]
            except KeyError as exc:
                S.bad(f"missing array {exc}")
            from ._validation import check_params
            try:
                check_params(coefs, intercepts)
            except ValueError as exc:
                S.bad(f"bad parameters ({exc})")
            hidden = self.hidden_layer_sizes
            hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
            if [c.shape[1] for c in coefs[:-1]] != hidden:
                S.bad(f"the weights' layers {[c.shape[1] for c in coefs[:-1]]} are not "
                      f"hidden_layer_sizes {hidden}")
            sizes = (coefs[0].shape[0], coefs[-1].shape[1])
            attrs.update(coefs_=coefs, intercepts_=intercepts)
            given = model.get("attrs")
            if not isinstance(given, dict) or \
                    not set(given) <= set(self._STATE_SCALARS + self._STATE_LISTS):
                S.bad("bad fitted attributes")
            for k, v in given.items():
                if k in self._STATE_LISTS:
                    v = S.float_list(v, k, optional=True)
                elif k == "out_activation_":
                    v = S.get_str(given, k, ("identity", "logistic", "softmax", "exp"))
                elif k in ("n_iter_", "n_layers_", "n_outputs_", "t_", "n_features_in_"):
                    v = S.get_int(given, k, low=0)
                else:
                    v = S.get_float(given, k, finite=False, optional=True)
                attrs[k] = v
            if attrs.get("n_features_in_", sizes[0]) != sizes[0] or \
                    attrs.get("n_outputs_", sizes[1]) != sizes[1] or \
                    attrs.get("n_layers_", n + 1) != n + 1:
                S.bad("the fitted sizes do not match the weights")
            for k in self._STATE_LABELS:
                a = arrays.pop(f"attr/{k}", None)
                if a is not None:
                    attrs[k] = S.check_labels(a, k, sizes[0] if k == "feature_names_in_"
                                              else None, unique=k == "classes_")
            if "feature_names_in_" in attrs:
                if attrs["feature_names_in_"].dtype.kind != "U":
                    S.bad("bad feature names (not strings)")
                attrs["feature_names_in_"] = attrs["feature_names_in_"].astype(object)
            if "label_type" in model:
                classes = attrs.get("classes_")
                label_type = model["label_type"]
                if classes is None or label_type not in ("binary", "multiclass",
                                                         "multilabel-indicator"):
                    S.bad("bad class labels")
                n_out = 1 if label_type == "binary" else len(classes)
                if sizes[1] != n_out:
                    S.bad(f"bad class labels: {len(classes)} classes for {sizes[1]} outputs")
                lb = LabelBinarizer()
                if label_type == "multilabel-indicator":
                    lb.fit(np.vstack([np.zeros(len(classes), int), np.ones(len(classes), int)]))
                else:
                    lb.fit(classes)
                if lb.y_type_ != label_type or not np.array_equal(lb.classes_, classes):
                    S.bad("bad class labels")
                attrs["_label_binarizer"] = lb
            elif "classes_" in attrs:
                S.bad("class labels without a label type")
            if "optimizer" in model:
                flat = np.concatenate([c.ravel() for c in coefs] +
                                      [b.ravel() for b in intercepts])
                attrs["_optimizer"], attrs["_optimizer_state"] = S.make_optimizer(
                    model["optimizer"], arrays, flat)
                if attrs["_optimizer"].name == "sgd" and \
                        "schedule" not in model["optimizer"]["hyper"]:
                    # a file from before the schedule moved into the optimizer: the
                    # estimator's parameters drove it, so they still do
                    opt = attrs["_optimizer"]
                    opt.schedule, opt.power_t = self.learning_rate, float(self.power_t)
                    opt.learning_rate_init = float(self.learning_rate_init)
            if model.get("rng_is_param"):
                if "rng" in model or not isinstance(self.random_state, np.random.RandomState):
                    S.bad("bad random state")
                attrs["_random_state"] = self.random_state
            elif "rng" in model:
                attrs["_random_state"] = S.make_rng(model["rng"], arrays.pop("rng/keys", None))
            for k, ref in (("_best_coefs", coefs), ("_best_intercepts", intercepts)):
                if k in model:
                    m = S.get_int(model, k, k, low=n, high=n)
                    try:
                        best = [arrays.pop(f"{k}/{i}") for i in range(m)]
                    except KeyError as exc:
                        S.bad(f"missing array {exc}")
                    if any(a.shape != r.shape or a.dtype.kind != "f" for a, r in zip(best, ref)):
                        S.bad(f"bad {k}")
                    attrs[k] = best
            if model.get("best_is_current"):
                attrs["_best_coefs"], attrs["_best_intercepts"] = coefs, intercepts
            if "_no_improvement_count" in model:
                attrs["_no_improvement_count"] = S.get_int(model, "_no_improvement_count",
                                                           low=0)
        if arrays:
            S.bad(f"unexpected arrays {sorted(arrays)}")
        objects = state.get("objects") or {}
        if not isinstance(objects, dict) or \
                not set(objects) <= {"callbacks", "params", "metadata_request"} or \
                not isinstance(objects.get("callbacks", []), list):
            S.bad("bad objects")
        if objects.get("callbacks"):
            probe = type(self).__new__(type(self))  # set_callbacks' check, nothing set yet
            try:
                probe.set_callbacks(*objects["callbacks"])
            except TypeError as exc:
                S.bad(f"bad callbacks ({exc})")
            attrs["_skl_callbacks"] = probe._skl_callbacks
        if "metadata_request" in objects:
            from sklearn.utils._metadata_requests import MetadataRequest
            if not isinstance(objects["metadata_request"], MetadataRequest):
                S.bad("bad metadata request")
            attrs["_metadata_request"] = objects["metadata_request"]
        S.set_scaling(self, state.get("scaling"), *sizes)
        for k, v in attrs.items():
            setattr(self, k, v)


def _plain(state, what, check=False):
    """A state as a model file holds it: the JSON part as plain JSON values (numpy scalars
    made Python ones, tuples lists), arrays of the file's dtypes.  check=True: an untrusted
    state (from a pickle), raising ValueError naming the problem."""
    from .persistence import _from_json, _jsonable
    if not isinstance(state, dict) or not set(state) <= {"model", "arrays", "scaling",
                                                        "format_version", "objects"}:
        S.bad(f"bad state of {what}")
    arrays = state.get("arrays")
    if not isinstance(arrays, dict) or not all(
            isinstance(k, str) and isinstance(a, np.ndarray) and a.dtype.kind in S.ARRAY_KINDS
            for k, a in arrays.items()):
        S.bad(f"bad arrays in {what}")
    version = state.get("format_version", 1)
    if check and (not isinstance(version, int) or isinstance(version, bool) or version != 1):
        S.bad(f"bad format version in {what}")
    return dict(state, model=_from_json(_jsonable(state.get("model"), what)),
                arrays=dict(arrays))


def _class_weight_pairs(class_weight):
    """class_weight ({label: weight} or a list of them) as [[label, weight], ...] lists."""
    def pairs(d):
        return [[k.item() if isinstance(k, np.generic) else k, float(w)] for k, w in d.items()]
    if isinstance(class_weight, dict):
        return pairs(class_weight)
    return [pairs(d) for d in class_weight]


def _class_weight_from_pairs(value):
    """The inverse of _class_weight_pairs, for an untrusted file."""
    def is_pair(p):
        return (isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int, float))
                and isinstance(p[1], (int, float)))
    if isinstance(value, list) and all(is_pair(p) for p in value):
        return {p[0]: p[1] for p in value}
    if isinstance(value, list) and all(isinstance(d, list) and all(is_pair(p) for p in d)
                                       for d in value):
        return [{p[0]: p[1] for p in d} for d in value]
    S.bad("bad estimator parameters (class_weight)")
