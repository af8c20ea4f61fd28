"""Saving and loading models: ``save(obj, path)`` and ``load(path)`` (issue 5).

One file per model: an uncompressed ``.npz`` (a zip of ``.npy`` arrays, read with
``allow_pickle=False``) whose member ``__meta__`` is UTF-8 JSON:

    {"format": "fastmlp-model", "format_version": 1, "fastmlp_version": "...",
     "kind": "MLP" | "MLPClassifier" | "MLPRegressor", "created": ISO time,
     "arrays": {name: [dtype, shape], ...},   # the manifest of every other member
     "sha256": digest of the manifest's arrays and of this JSON without the digest,
     "model": {...},                           # per kind: init arguments, fitted scalars
     "scaling": {"x": bool, "y": bool},        # optional (format 2): see below
     "extra": {...}}                           # the caller's JSON (the command line's history)

Scaling (format version 2, optional): a model trained on standardised data (``fastmlp train``
by default) carries its standardisation as plain float64 arrays ``scaling/x_mean``,
``scaling/x_scale`` (one per input feature) and, for a regressor trained on a standardised
target, ``scaling/y_mean``, ``scaling/y_scale`` (one per output).  They are the model's
attributes ``x_mean_``, ``x_scale_``, ``y_mean_``, ``y_scale_``: ``save`` writes whichever
pairs the object has, ``load`` sets them back (a file without the entry -- every format-1
file -- loads with none of them).  The model itself (``predict``) works in the scaled space;
``fastmlp predict``/``evaluate`` apply ``(X - x_mean_) / x_scale_`` and
``out * y_scale_ + y_mean_``.  A file is written as format 1 when it has no scaling, so older
fastmlp versions still read it, and as format 2 otherwise, so they refuse it (rather than
silently predicting in the wrong units).

Loading never executes code: JSON and plain numeric/string arrays only.  Before any array is
read the manifest is checked against the zip directory (names, sizes), so a truncated,
corrupted or tampered file fails with :class:`ModelFileError` (a ``ValueError``) naming the
problem instead of allocating or running anything; a file from a newer format is refused
with a request to upgrade.  Writes are atomic: a temporary file in the target's directory,
fsync, ``os.replace``, fsync of the directory -- a crash or Ctrl-C leaves the old file intact.
"""
import datetime
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile

import numpy as np
import numpy.lib.format as npformat

FORMAT = "fastmlp-model"
FORMAT_VERSION = 2  # the newest this version reads and writes (2: optional scaling entry)
_SCALING_VERSION = 2
# the standardisation a model may carry (attribute -> array member): pairs (mean, scale)
SCALING_ATTRS = {"x": ("x_mean_", "x_scale_"), "y": ("y_mean_", "y_scale_")}
_META = "__meta__"
_MAX_META_BYTES = 64 << 20
# dtypes an array member may have: numbers, booleans and fixed-width unicode (class labels,
# feature names).  Object arrays would need pickle and are never written or read.
_ARRAY_KINDS = "biufU"


class ModelFileError(ValueError):
    """The file is not a fastmlp model this version can load (with the reason)."""


# ---------------------------------------------------------------------------------------------
# small converters
def _fastmlp_version():
    from . import __version__
    return __version__


def _label_array(values, what):
    """Class labels / feature names -> a numeric, bool or unicode array (never object)."""
    a = np.asarray(values)
    if a.dtype.kind == "O":
        if all(isinstance(v, str) for v in a.ravel()):
            a = a.astype(str)
        elif all(isinstance(v, (bool, np.bool_)) for v in a.ravel()):
            a = a.astype(bool)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in a.ravel()):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"cannot save {what}: only numbers, booleans and strings are "
                             f"supported, got {sorted({type(v).__name__ for v in a.ravel()})}")
    if a.dtype.kind not in _ARRAY_KINDS:
        raise ValueError(f"cannot save {what} of dtype {a.dtype}")
    return a


def _jsonable(value, what):
    """Check that value is plain JSON (numbers finite); numpy scalars become Python ones."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return {"__float__": repr(v)}
        return v
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{what}[{k!r}]") for k, v in value.items()}
    raise ValueError(f"cannot save {what}: {type(value).__name__} is not a plain value")


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"]) if value["__float__"] in ("nan", "inf", "-inf") \
                else _bad(f"bad float {value['__float__']!r}")
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _bad(reason):
    raise ModelFileError(reason)


def _rng_state(rs):
    """RandomState -> (json part, keys array)."""
    name, keys, pos, has_gauss, cached = rs.get_state()
    return {"bit_generator": name, "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}, np.asarray(keys, np.uint32)


def _make_rng(meta, keys):
    if not isinstance(meta, dict) or meta.get("bit_generator") != "MT19937" or \
            keys.shape != (624,) or keys.dtype != np.uint32:
        _bad("bad random state")
    rs = np.random.RandomState()
    try:
        rs.set_state(("MT19937", keys, int(meta["pos"]), int(meta["has_gauss"]),
                      float(meta["cached_gaussian"])))
    except (KeyError, TypeError, ValueError) as exc:
        _bad(f"bad random state ({exc})")
    return rs


def _optimizer_meta(opt):
    hyper = {k: _jsonable(v, f"optimizer.{k}") for k, v in vars(opt).items()
             if isinstance(v, (bool, int, float, np.number))}
    return {"name": opt.name, "hyper": hyper}


def _make_optimizer(meta, state_arrays, params):
    from .optimizers import OPTIMIZERS
    if not isinstance(meta, dict) or meta.get("name") not in OPTIMIZERS or \
            not isinstance(meta.get("hyper"), dict):
        _bad("bad optimizer description")
    opt = OPTIMIZERS[meta["name"]]()
    for k, v in meta["hyper"].items():
        if not hasattr(opt, k) or type(getattr(opt, k)) not in (bool, int, float) or \
                not isinstance(v, (bool, int, float)):
            _bad(f"bad optimizer setting {k!r}")
        setattr(opt, k, type(getattr(opt, k))(v))
    state = opt.init(params)
    for field in state._fields:
        a = state_arrays.get(field)
        target = getattr(state, field)
        if a is None or a.shape != target.shape or a.dtype != target.dtype:
            _bad(f"optimizer state {field!r} is missing or has the wrong shape/dtype")
        target[...] = a
    if set(state_arrays) - set(state._fields):
        _bad(f"unknown optimizer state {sorted(set(state_arrays) - set(state._fields))}")
    return opt, state


# ---------------------------------------------------------------------------------------------
# per kind: object -> (model meta, arrays) and back
def _dump_mlp(m):
    meta = {"layer_sizes": list(m.layer_sizes), "activation": m.activation,
            "out_activation": m.out_activation, "loss": m.loss, "dtype": m.dtype.name,
            "alpha": _jsonable(m.alpha, "alpha"),
            "random_state": m.random_state if isinstance(m.random_state, (int, np.integer))
            and not isinstance(m.random_state, bool) else None,
            "n_threads": m.n_threads, "loss_curve": _jsonable(list(m.loss_curve_), "loss_curve_")}
    if meta["random_state"] is not None:
        meta["random_state"] = int(meta["random_state"])
    arrays = {}
    meta["rng"], arrays["rng/keys"] = _rng_state(m._rs)
    t = m._trainer
    meta["fitted"] = t is not None
    if t is not None:
        meta["batch_size"] = int(t.batch_size)
        arrays["params"] = t.params
        if m._optimizer is not None:
            meta["optimizer"] = _optimizer_meta(m._optimizer)
            for field in m._opt_state._fields:
                arrays[f"opt/{field}"] = getattr(m._opt_state, field)
        pending = getattr(m, "_pending_epoch", None)
        if pending is not None:
            order, position, total = pending
            arrays["epoch/order"] = np.asarray(order, np.int64)
            meta["epoch"] = {"position": int(position), "loss_sum": _jsonable(total, "loss")}
    for name in ("classes_", "feature_names_in_"):
        if getattr(m, name, None) is not None:
            arrays[f"attr/{name}"] = _label_array(getattr(m, name), name)
    return meta, arrays


def _load_mlp(meta, arrays):
    from .model import MLP
    try:
        m = MLP(meta["layer_sizes"], activation=meta["activation"],
                out_activation=meta["out_activation"], loss=meta["loss"], dtype=meta["dtype"],
                alpha=meta["alpha"], random_state=meta["random_state"],
                n_threads=meta["n_threads"])
    except (KeyError, TypeError, ValueError) as exc:
        _bad(f"bad model description ({exc})")
    rs = _make_rng(meta.get("rng"), arrays.pop("rng/keys", np.zeros(0)))
    curve = meta.get("loss_curve")
    if not isinstance(curve, list) or not all(isinstance(v, (int, float)) for v in curve):
        _bad("bad loss curve")
    m.loss_curve_ = [float(v) for v in curve]
    if meta.get("fitted"):
        params = arrays.pop("params", None)
        bs = meta.get("batch_size")
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            _bad("bad batch size")
        t = m._make_trainer(bs)
        if params is None or params.shape != t.params.shape or params.dtype != t.params.dtype:
            _bad(f"parameters missing or of the wrong shape/dtype for layers {m.layer_sizes}")
        if not np.isfinite(params).all():
            _bad("parameters contain NaN or infinity")
        t.params[:] = params
        if "optimizer" in meta:
            state = {k[4:]: arrays.pop(k) for k in list(arrays) if k.startswith("opt/")}
            m._optimizer, m._opt_state = _make_optimizer(meta["optimizer"], state, t.params)
        if "epoch" in meta:
            order = arrays.pop("epoch/order", None)
            ep = meta["epoch"]
            pos = ep.get("position") if isinstance(ep, dict) else None
            total = ep.get("loss_sum") if isinstance(ep, dict) else None
            if order is None or order.ndim != 1 or order.dtype != np.int64 or \
                    not isinstance(pos, int) or not 0 < pos < len(order) or \
                    not isinstance(total, (int, float)) or \
                    not np.array_equal(np.sort(order), np.arange(len(order))):
                _bad("bad interrupted-epoch record")
            m._pending_epoch = (order, pos, float(total))
    m._rs = rs  # after _make_trainer, whose initialisation draws from the old one
    for name in ("classes_", "feature_names_in_"):
        if f"attr/{name}" in arrays:
            setattr(m, name, arrays.pop(f"attr/{name}"))
    if arrays:
        _bad(f"unexpected arrays {sorted(arrays)}")
    return m


# scikit-learn's fitted attributes of MLPClassifier/MLPRegressor that are plain values.
_EST_SCALARS = ("n_iter_", "n_layers_", "n_outputs_", "out_activation_", "loss_", "t_",
                "n_features_in_", "best_loss_", "best_validation_score_")
_EST_LISTS = ("loss_curve_", "validation_scores_")
_EST_ARRAYS = ("classes_", "feature_names_in_")


def _dump_estimator(est):
    params = {}
    arrays = {}
    meta = {}
    for k, v in est.get_params(deep=False).items():
        if k == "random_state" and isinstance(v, np.random.RandomState):
            meta["random_state_object"], arrays["param/random_state"] = _rng_state(v)
            v = None
        elif isinstance(v, tuple):
            v = list(v)
        params[k] = _jsonable(v, f"parameter {k}")
    meta["params"] = params
    fitted = hasattr(est, "coefs_")
    meta["fitted"] = fitted
    if fitted:
        meta["n_coefs"] = len(est.coefs_)
        for i, (c, b) in enumerate(zip(est.coefs_, est.intercepts_)):
            arrays[f"coefs/{i}"] = np.ascontiguousarray(c)
            arrays[f"intercepts/{i}"] = np.ascontiguousarray(b)
        meta["attrs"] = {k: _jsonable(getattr(est, k), k) for k in _EST_SCALARS + _EST_LISTS
                         if hasattr(est, k)}
        for k in _EST_ARRAYS:
            if getattr(est, k, None) is not None:
                arrays[f"attr/{k}"] = _label_array(getattr(est, k), k)
        lb = getattr(est, "_label_binarizer", None)
        if lb is not None:
            meta["label_type"] = lb.y_type_
        opt = getattr(est, "_optimizer", None)
        state = getattr(est, "_optimizer_state", None)
        if opt is not None and state is not None and hasattr(state, "_fields"):
            meta["optimizer"] = _optimizer_meta(opt)
            for field in state._fields:
                arrays[f"opt/{field}"] = np.asarray(getattr(state, field))
        rs = getattr(est, "_random_state", None)
        if isinstance(rs, np.random.RandomState):
            meta["rng"], arrays["rng/keys"] = _rng_state(rs)
        if getattr(est, "_best_coefs", None) is est.coefs_:
            meta["best_is_current"] = True  # an early-stopped fit: best and live weights alias
        for k in ("_best_coefs", "_best_intercepts"):
            if getattr(est, k, None) is not None and not meta.get("best_is_current"):
                meta[k] = len(getattr(est, k))
                for i, a in enumerate(getattr(est, k)):
                    arrays[f"{k}/{i}"] = np.ascontiguousarray(a)
        for k in ("_no_improvement_count",):
            if hasattr(est, k):
                meta[k] = _jsonable(getattr(est, k), k)
    return meta, arrays


def _load_estimator(kind, meta, arrays):
    from . import estimators
    cls = getattr(estimators, kind)
    params = meta.get("params")
    if not isinstance(params, dict):
        _bad("bad estimator parameters")
    params = dict(params)
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if "random_state_object" in meta:
        params["random_state"] = _make_rng(meta["random_state_object"],
                                           arrays.pop("param/random_state", np.zeros(0)))
    try:
        est = cls(**params)
        est._validate_params()
    except (TypeError, ValueError) as exc:
        _bad(f"bad estimator parameters ({exc})")
    if meta.get("fitted"):
        n = meta.get("n_coefs")
        if not isinstance(n, int) or n < 1:
            _bad("bad layer count")
        try:
            coefs = [arrays.pop(f"coefs/{i}") for i in range(n)]
            intercepts = [arrays.pop(f"intercepts/{i}") for i in range(n)]
        except KeyError as exc:
            _bad(f"missing array {exc}")
        from ._validation import check_params
        try:
            check_params(coefs, intercepts)
        except ValueError as exc:
            _bad(f"bad parameters ({exc})")
        est.coefs_, est.intercepts_ = coefs, intercepts
        attrs = meta.get("attrs")
        if not isinstance(attrs, dict) or not set(attrs) <= set(_EST_SCALARS + _EST_LISTS):
            _bad("bad fitted attributes")
        for k, v in attrs.items():
            if k in _EST_LISTS and v is not None:
                if not isinstance(v, list) or not all(isinstance(x, (int, float)) for x in v):
                    _bad(f"bad {k}")
                v = [float(x) for x in v]
            elif not (v is None or isinstance(v, (int, float, str))):
                _bad(f"bad {k}")
            setattr(est, k, v)
        for k in _EST_ARRAYS:
            if f"attr/{k}" in arrays:
                setattr(est, k, arrays.pop(f"attr/{k}"))
        if getattr(est, "feature_names_in_", None) is not None:
            est.feature_names_in_ = est.feature_names_in_.astype(object)
        if "label_type" in meta:
            from sklearn.preprocessing import LabelBinarizer
            if not hasattr(est, "classes_") or meta["label_type"] not in (
                    "binary", "multiclass", "multilabel-indicator"):
                _bad("bad class labels")
            lb = LabelBinarizer()
            n = len(est.classes_)
            if meta["label_type"] == "multilabel-indicator":
                lb.fit(np.vstack([np.zeros(n, int), np.ones(n, int)]))
            else:
                lb.fit(est.classes_)
            if lb.y_type_ != meta["label_type"] or not np.array_equal(lb.classes_, est.classes_):
                _bad("bad class labels")
            est._label_binarizer = lb
        if "optimizer" in meta:
            state = {k[4:]: arrays.pop(k) for k in list(arrays) if k.startswith("opt/")}
            flat = np.concatenate([c.ravel() for c in coefs] + [b.ravel() for b in intercepts])
            est._optimizer, est._optimizer_state = _make_optimizer(meta["optimizer"], state, flat)
        if "rng" in meta:
            est._random_state = _make_rng(meta["rng"], arrays.pop("rng/keys", np.zeros(0)))
        for k in ("_best_coefs", "_best_intercepts"):
            if k in meta:
                if not isinstance(meta[k], int):
                    _bad(f"bad {k}")
                try:
                    setattr(est, k, [arrays.pop(f"{k}/{i}") for i in range(meta[k])])
                except KeyError as exc:
                    _bad(f"missing array {exc}")
        if meta.get("best_is_current"):
            est._best_coefs, est._best_intercepts = est.coefs_, est.intercepts_
        if "_no_improvement_count" in meta:
            est._no_improvement_count = meta["_no_improvement_count"]
        restore = getattr(est, "_after_load", None)
        if callable(restore):  # lets the estimator rebuild private state (its trainer)
            restore()
    if arrays:
        _bad(f"unexpected arrays {sorted(arrays)}")
    return est


# ---------------------------------------------------------------------------------------------
# the optional standardisation (format 2)
def _model_io_sizes(obj, kind):
    """(n_inputs, n_outputs) of a fitted model, or None for an unfitted one."""
    if kind == "MLP":
        return int(obj.layer_sizes[0]), int(obj.layer_sizes[-1])
    if hasattr(obj, "coefs_"):
        return int(obj.coefs_[0].shape[0]), int(obj.coefs_[-1].shape[1])
    return None


def _check_scaling(which, mean, scale, sizes):
    """Each pair: 1-D float64, finite, the same length (the model's inputs / outputs when
    known), every scale > 0.  -> None, or the reason the pair is unusable."""
    if mean.ndim != 1 or mean.shape != scale.shape or len(mean) == 0:
        return f"{which} mean and scale must be 1-D arrays of one length"
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()) or (scale <= 0).any():
        return f"{which} scale must be finite and positive (and the mean finite)"
    if sizes is not None:
        n = sizes[0] if which == "x" else sizes[1]
        if len(mean) != n:
            return (f"{which} scaling has {len(mean)} values but the model has {n} "
                    f"{'inputs' if which == 'x' else 'outputs'}")
    return None


def _dump_scaling(obj, kind):
    """-> (meta or None, arrays) for the pairs of SCALING_ATTRS the object has."""
    meta, arrays = {}, {}
    sizes = _model_io_sizes(obj, kind)
    for which, (mean_attr, scale_attr) in SCALING_ATTRS.items():
        mean, scale = getattr(obj, mean_attr, None), getattr(obj, scale_attr, None)
        if mean is None and scale is None:
            continue
        if mean is None or scale is None:
            raise ValueError(f"cannot save the scaling: {mean_attr} and {scale_attr} go "
                             f"together")
        try:
            mean = np.array(mean, dtype=np.float64).reshape(-1)
            scale = np.array(scale, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"cannot save the scaling: {mean_attr}/{scale_attr} are not "
                             f"numbers") from None
        problem = _check_scaling(which, mean, scale, sizes)
        if problem:
            raise ValueError(f"cannot save the scaling: {problem}")
        meta[which] = True
        arrays[f"scaling/{which}_mean"], arrays[f"scaling/{which}_scale"] = mean, scale
    return (meta or None), arrays


def _load_scaling(meta, arrays, obj, kind):
    """Pop the scaling arrays and set them on obj (files without the entry: nothing)."""
    spec = meta.get("scaling")
    if spec is None:
        return
    if not isinstance(spec, dict) or not spec or not set(spec) <= set(SCALING_ATTRS) or \
            not all(v is True for v in spec.values()):
        _bad("bad scaling description")
    sizes = _model_io_sizes(obj, kind)
    for which in spec:
        mean = arrays.pop(f"scaling/{which}_mean", None)
        scale = arrays.pop(f"scaling/{which}_scale", None)
        if mean is None or scale is None or mean.dtype != np.float64 or \
                scale.dtype != np.float64:
            _bad(f"scaling arrays for {which!r} missing or not float64")
        problem = _check_scaling(which, mean, scale, sizes)
        if problem:
            _bad(f"bad scaling ({problem})")
        mean_attr, scale_attr = SCALING_ATTRS[which]
        setattr(obj, mean_attr, mean)
        setattr(obj, scale_attr, scale)


def _kind_of(obj):
    from .model import MLP
    if isinstance(obj, MLP):
        return "MLP"
    name = type(obj).__name__
    if name in ("MLPClassifier", "MLPRegressor") and type(obj).__module__ == "fastmlp.estimators":
        return name
    raise TypeError(f"save() takes a fastmlp MLP, MLPClassifier or MLPRegressor, "
                    f"got {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------
# the file
def _digest(manifest_arrays, meta_without_digest):
    h = hashlib.sha256()
    h.update(json.dumps(meta_without_digest, sort_keys=True).encode())
    for name in sorted(manifest_arrays):
        a = manifest_arrays[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def save(obj, path, extra=None):
    """Write ``obj`` (MLP, MLPClassifier or MLPRegressor) to ``path`` atomically.

    ``extra`` is an optional JSON-able dict stored alongside (read back by
    :func:`read_metadata`); the command line keeps its training history there."""
    kind = _kind_of(obj)
    model_meta, arrays = _dump_mlp(obj) if kind == "MLP" else _dump_estimator(obj)
    scaling, scaling_arrays = _dump_scaling(obj, kind)
    arrays.update(scaling_arrays)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for k, a in arrays.items():
        if a.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"cannot save array {k} of dtype {a.dtype}")
    meta = {"format": FORMAT, "format_version": 1 if scaling is None else _SCALING_VERSION,
            "fastmlp_version": _fastmlp_version(), "kind": kind,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "arrays": {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()},
            "model": model_meta, "extra": _jsonable(extra or {}, "extra")}
    if scaling is not None:
        meta["scaling"] = scaling
    meta["sha256"] = _digest(arrays, meta)
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    atomic_write(path, lambda f: np.savez(f, **{_META: blob}, **arrays))


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and rename it over
    ``path``; on any failure (Ctrl-C included) the temporary file is removed and ``path`` is
    untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _read(path):
    """-> (meta, arrays) after every structural check; raises ModelFileError."""
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        try:
            data = f.read()
        except OSError as exc:
            raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return _parse(data)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def _parse(data):
    if not data.startswith(b"PK"):
        _bad("not a fastmlp model (not an npz/zip file)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = {i.filename: i for i in zf.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        _bad(f"corrupted or truncated model file ({exc})")
    meta_info = infos.get(_META + ".npy")
    if meta_info is None:
        _bad("not a fastmlp model (no metadata)")
    if meta_info.file_size > _MAX_META_BYTES:
        _bad("metadata too large")

    def member(name, dtype, shape=None):
        """The array stored as ``name``: its .npy header must say exactly dtype and shape
        (shape None: any 1-D length) and the data must be complete, checked before anything
        is allocated."""
        info = infos[name + ".npy"]
        if shape is not None and info.file_size > dtype.itemsize * math.prod(shape) + 65536:
            _bad(f"array {name!r} is larger than its manifest says (tampered or damaged)")
        try:
            raw = zf.read(info)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError,
                NotImplementedError) as exc:
            _bad(f"corrupted or truncated model file (array {name!r}: {exc})")
        except Exception as exc:  # zlib.error and the like: still a damaged file
            _bad(f"corrupted model file (array {name!r}: {type(exc).__name__}: {exc})")
        bio = io.BytesIO(raw)
        try:
            version = npformat.read_magic(bio)
            if version == (1, 0):
                hshape, fortran, hdtype = npformat.read_array_header_1_0(bio)
            elif version == (2, 0):
                hshape, fortran, hdtype = npformat.read_array_header_2_0(bio)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:
            _bad(f"corrupted array {name!r} ({exc})")
        if hdtype != dtype or fortran or (shape is None and len(hshape) != 1) or \
                (shape is not None and tuple(hshape) != shape):
            _bad(f"array {name!r} does not match the manifest (tampered or damaged)")
        count = math.prod(hshape)
        if len(raw) - bio.tell() != count * dtype.itemsize:
            _bad(f"array {name!r} is truncated or padded (tampered or damaged)")
        return np.frombuffer(raw, dtype=dtype, count=count, offset=bio.tell()) \
            .reshape(hshape).copy()

    blob = member(_META, np.dtype(np.uint8))
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        _bad(f"corrupted metadata ({exc})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _bad("not a fastmlp model (wrong format tag)")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _bad("bad format version")
    if version > FORMAT_VERSION:
        _bad(f"written by a newer fastmlp ({meta.get('fastmlp_version')!s}, file format "
             f"{version}); this fastmlp ({_fastmlp_version()}) reads format {FORMAT_VERSION} "
             f"and older: upgrade fastmlp to load it")
    if meta.get("kind") not in ("MLP", "MLPClassifier", "MLPRegressor"):
        _bad(f"unknown model kind {meta.get('kind')!r}")
    manifest = meta.get("arrays")
    if not isinstance(manifest, dict):
        _bad("bad array manifest")
    if set(infos) != {_META + ".npy"} | {k + ".npy" for k in manifest}:
        _bad("the file's arrays do not match its manifest (tampered or damaged)")
    arrays = {}
    for name, spec in manifest.items():
        try:
            dt, shape = np.dtype(spec[0]), tuple(int(s) for s in spec[1])
            assert len(spec) == 2 and dt.kind in _ARRAY_KINDS and min(shape, default=0) >= 0
        except Exception:
            _bad(f"bad manifest entry for {name!r}")
        a = member(name, dt, shape)
        arrays[name] = a
    digest = meta.pop("sha256", None)
    if digest != _digest(arrays, meta):
        _bad("checksum mismatch: the file was modified or damaged")
    meta["sha256"] = digest
    return _from_json(meta), arrays


def read_metadata(path):
    """The file's JSON metadata (checked like :func:`load`, but no model is built)."""
    meta, _ = _read(path)
    return meta


def load_with_metadata(path):
    """-> (model, metadata dict)."""
    meta, arrays = _read(path)
    kind = meta["kind"]
    model_meta = meta.get("model")
    if not isinstance(model_meta, dict):
        raise ModelFileError(f"{os.fspath(path)}: bad model description")
    arrays = dict(arrays)
    scaling = {k: arrays.pop(k) for k in list(arrays) if k.startswith("scaling/")}
    try:
        if kind == "MLP":
            obj = _load_mlp(model_meta, arrays)
        else:
            obj = _load_estimator(kind, model_meta, arrays)
        if meta.get("scaling") is not None and meta["format_version"] < _SCALING_VERSION:
            _bad("a scaling entry in a format-1 file")
        _load_scaling(meta, scaling, obj, kind)
        if scaling:
            _bad(f"unexpected arrays {sorted(scaling)}")
    except ModelFileError as exc:
        raise ModelFileError(f"{os.fspath(path)}: {exc}") from None
    return obj, meta


def load(path):
    """Load a model written by :func:`save` (or ``model.save``).  Raises
    :class:`ModelFileError` (a ValueError) for a missing, damaged, tampered or newer file."""
    return load_with_metadata(path)[0]
