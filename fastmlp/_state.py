"""Helpers for the models' state (``_get_state`` / ``_set_state``).

A model's state is a plain dict that a model file stores as it is::

    {"model":   {...},                  # JSON: settings, fitted scalars, loss curve, ...
     "arrays":  {name: ndarray},        # numbers, booleans or unicode only (never objects)
     "scaling": {"x": (mean, scale), "y": (mean, scale)},   # optional standardisation
     "format_version": int}             # the oldest file format that can hold it

Each model class writes and reads its own state; this module has the pieces they share: the
RandomState, the optimizer state and the standardisation as plain values, and the checks that
treat a state read from a file as untrusted input (every field, every shape, every size before
anything is allocated).  A bad field raises ``ValueError`` naming it.
"""
import math
import os

import numpy as np

from .optimizers import OPTIMIZERS, SCHEDULES, make_optimizer as _new_optimizer

# the standardisation a model may carry: which -> (mean attribute, scale attribute)
SCALING_ATTRS = {"x": ("x_mean_", "x_scale_"), "y": ("y_mean_", "y_scale_")}
# dtypes an array may have: numbers, booleans and fixed-width unicode (class labels, feature
# names).  Object arrays would need pickle.
ARRAY_KINDS = "biufU"


def bad(reason):
    """Raise the ValueError of a state that cannot be used."""
    raise ValueError(reason)


# -- untrusted JSON fields -------------------------------------------------------------------
def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def get_int(d, key, what=None, low=None, high=None, optional=False):
    """``d[key]`` as an int in [low, high] (None allowed when optional)."""
    v = d.get(key) if isinstance(d, dict) else None
    if v is None and optional:
        return None
    if not is_int(v) or (low is not None and v < low) or (high is not None and v > high):
        bad(f"bad {what or key} ({v!r})")
    return v


def get_float(d, key, what=None, low=None, high=None, finite=True, optional=False):
    """``d[key]`` as a float (finite unless told, within [low, high])."""
    v = d.get(key) if isinstance(d, dict) else None
    if v is None and optional:
        return None
    if not is_number(v) or (finite and not math.isfinite(v)) or \
            (low is not None and not v >= low) or (high is not None and not v <= high):
        bad(f"bad {what or key} ({v!r})")
    return float(v)


def get_str(d, key, choices=None, what=None):
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, str) or (choices is not None and v not in choices):
        bad(f"bad {what or key} ({v!r})")
    return v


def float_list(v, what, finite=False, optional=False):
    """A list of numbers (NaN/inf allowed unless finite) -> list of float."""
    if v is None and optional:
        return None
    if not isinstance(v, list) or not all(is_number(x) for x in v) or \
            (finite and not all(math.isfinite(x) for x in v)):
        bad(f"bad {what}")
    return [float(x) for x in v]


def label_array(values, what):
    """Class labels / feature names -> a numeric, bool or unicode array (never object)."""
    a = np.asarray(values)
    if a.dtype.kind == "O":
        flat = a.ravel()
        if all(isinstance(v, str) for v in flat):
            a = a.astype(str)
        elif all(isinstance(v, (bool, np.bool_)) for v in flat):
            a = a.astype(bool)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"cannot save {what}: only numbers, booleans and strings are "
                             f"supported, got {sorted({type(v).__name__ for v in flat})}")
    if a.dtype.kind not in ARRAY_KINDS:
        raise ValueError(f"cannot save {what} of dtype {a.dtype}")
    return a


def check_labels(a, what, n=None, unique=False):
    """An untrusted 1-D label array (classes, feature names): its length n when given."""
    if a.ndim != 1 or (n is not None and len(a) != n) or len(a) == 0:
        bad(f"bad {what}: {len(a) if a.ndim == 1 else a.shape} values for "
            f"{n if n is not None else 'at least one'}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad(f"bad {what}: NaN or infinity")
    if unique and len(np.unique(a)) != len(a):
        bad(f"bad {what}: repeated values")
    return a


# -- memory ----------------------------------------------------------------------------------
def available_memory():
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _human(nbytes):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} PB"  # pragma: no cover


def check_memory(nbytes, what):
    """Raise MemoryError (with what and the sizes) when nbytes exceed the available memory."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs {_human(nbytes)}, more than the {_human(avail)} of "
                          f"memory available")


def training_bytes(layer_sizes, batch_size, itemsize):
    """Bytes a network of these layer sizes allocates to train with batch_size rows:
    parameters, gradients and two optimizer moments, plus activations, deltas and the
    gathered batch (a close upper bound of Trainer + Workspace)."""
    sizes = [int(s) for s in layer_sizes]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    workspace = int(batch_size) * (2 * sum(sizes) + sizes[0] + sizes[-1] + 1)
    return (4 * n_params + workspace) * itemsize


def n_params(layer_sizes):
    sizes = [int(s) for s in layer_sizes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


# -- the RandomState --------------------------------------------------------------------------
def rng_state(rs):
    """RandomState -> (JSON part, keys array)."""
    name, keys, pos, has_gauss, cached = rs.get_state()
    return {"bit_generator": name, "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}, np.asarray(keys, np.uint32)


def make_rng(meta, keys):
    """(JSON part, keys) from rng_state -> a RandomState, every field checked."""
    if not isinstance(meta, dict) or meta.get("bit_generator") != "MT19937" or keys is None \
            or keys.shape != (624,) or keys.dtype != np.uint32:
        bad("bad random state")
    pos = get_int(meta, "pos", "random state", 0, 624)
    gauss = get_int(meta, "has_gauss", "random state", 0, 1)
    cached = get_float(meta, "cached_gaussian", "random state")
    rs = np.random.RandomState()
    rs.set_state(("MT19937", keys, pos, gauss, cached))
    return rs


# -- optimizers -------------------------------------------------------------------------------
_HYPER_RANGES = {"learning_rate": (0.0, None), "momentum": (0.0, 1.0), "beta_1": (0.0, 1.0),
                 "beta_2": (0.0, 1.0), "epsilon": (0.0, None), "learning_rate_init": (0.0, None),
                 "power_t": (0.0, None)}


def optimizer_state(opt, state):
    """(optimizer, its state) -> (JSON part, {"opt/<field>": array})."""
    hyper = {k: v for k, v in vars(opt).items() if isinstance(v, (bool, int, float, str))}
    arrays = {f"opt/{f}": np.asarray(getattr(state, f)) for f in state._fields}
    return {"name": opt.name, "hyper": hyper}, arrays


def make_optimizer(meta, arrays, params):
    """The optimizer and its state for the flat parameters ``params``; pops ``opt/*`` from
    arrays.  Every setting and array is checked."""
    if not isinstance(meta, dict) or meta.get("name") not in OPTIMIZERS or \
            not isinstance(meta.get("hyper"), dict):
        bad("bad optimizer description")
    opt = _new_optimizer(meta["name"])  # the defaults; the checked settings go in below
    for k, v in meta["hyper"].items():
        current = getattr(opt, k, None)
        if type(current) is bool:
            if not isinstance(v, bool):
                bad(f"bad optimizer setting {k!r}")
        elif type(current) in (int, float):
            low, high = _HYPER_RANGES.get(k, (None, None))
            get_float(meta["hyper"], k, f"optimizer setting {k!r}", low=low, high=high)
            if k in ("learning_rate", "learning_rate_init", "epsilon") and not v > 0 or \
                    k == "momentum" and v >= 1:
                bad(f"bad optimizer setting {k!r} ({v!r})")
        elif k == "schedule" and isinstance(current, str):  # SGD's learning-rate schedule
            if v not in SCHEDULES:
                bad(f"bad optimizer setting {k!r} ({v!r})")
        else:
            bad(f"bad optimizer setting {k!r}")
        setattr(opt, k, type(current)(v))
    state = opt.init(params)
    given = {k[4:]: arrays.pop(k) for k in list(arrays) if k.startswith("opt/")}
    for field in state._fields:
        a = given.pop(field, None)
        target = getattr(state, field)
        if a is None or a.shape != target.shape or a.dtype != target.dtype:
            bad(f"optimizer state {field!r} is missing or has the wrong shape/dtype")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad(f"optimizer state {field!r} holds NaN or infinity")
        if a.dtype.kind in "iu" and (a < 0).any():
            bad(f"optimizer state {field!r} is negative")
        target[...] = a
    if given:
        bad(f"unknown optimizer state {sorted(given)}")
    return opt, state


# -- the standardisation ----------------------------------------------------------------------
def _scaling_problem(which, mean, scale, n):
    if mean.ndim != 1 or mean.shape != scale.shape or len(mean) == 0:
        return f"{which} mean and scale must be 1-D arrays of one length"
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()) or (scale <= 0).any():
        return f"{which} scale must be finite and positive (and the mean finite)"
    if n is not None and len(mean) != n:
        return (f"{which} scaling has {len(mean)} values but the model has {n} "
                f"{'inputs' if which == 'x' else 'outputs'}")
    return None


def get_scaling(obj, n_in, n_out):
    """The pairs of SCALING_ATTRS that obj has -> {which: (mean, scale)} (float64, checked);
    n_in/n_out: the model's sizes, or None when unknown."""
    out = {}
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
        problem = _scaling_problem(which, mean, scale, n_in if which == "x" else n_out)
        if problem:
            raise ValueError(f"cannot save the scaling: {problem}")
        out[which] = (mean, scale)
    return out


def set_scaling(obj, scaling, n_in, n_out):
    """Check an untrusted {which: (mean, scale)} and set it on obj."""
    scaling = {} if scaling is None else scaling
    if not isinstance(scaling, dict) or not set(scaling) <= set(SCALING_ATTRS):
        bad("bad scaling description")
    for which, pair in scaling.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            bad(f"bad scaling for {which!r}")
        mean, scale = pair
        if not (isinstance(mean, np.ndarray) and isinstance(scale, np.ndarray)) or \
                mean.dtype != np.float64 or scale.dtype != np.float64:
            bad(f"scaling arrays for {which!r} missing or not float64")
        problem = _scaling_problem(which, mean, scale, n_in if which == "x" else n_out)
        if problem:
            bad(f"bad scaling ({problem})")
    for attrs in SCALING_ATTRS.values():
        for attr in attrs:
            obj.__dict__.pop(attr, None)
    for which, (mean, scale) in scaling.items():
        mean_attr, scale_attr = SCALING_ATTRS[which]
        setattr(obj, mean_attr, mean)
        setattr(obj, scale_attr, scale)
