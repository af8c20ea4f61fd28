"""The record a model file keeps of its ``fastmlp train`` run (``extra.cli``: settings, data
fingerprint, task, history), written by :func:`record` and, when read back, checked field by
field as untrusted input (:func:`check_record`, :func:`check_resumable`)."""
import math
import os

from .data import UserError
from .._validation import ACTIVATIONS, SOLVERS
from ..persistence import ModelFileError, load_with_metadata


def record(s, data, fingerprint, task, target, metric, history, status, n_train, n_val):
    return {"cli": {"settings": s, "data": None if data is None else os.path.abspath(data),
                    "data_sha256": fingerprint, "task": task, "target": target,
                    "metric": metric, "history": history, "status": status,
                    "n_train": int(n_train), "n_val": int(n_val)}}


def _is_int(v, low=0, high=None):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low and \
        (high is None or v <= high)


def _is_num(v, low=None, high=None, low_open=False, high_open=False):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return False
    if low is not None and (v <= low if low_open else v < low):
        return False
    return high is None or (v < high if high_open else v <= high)


# Every setting a record holds, with its check.  A new option that a resumed run keeps goes
# into RESUMED (fastmlp.cli.train) and here; settings missing from older files are listed in
# _OPTIONAL_SETTINGS (the command line gives them the old behaviour).
_OPTIONAL_SETTINGS = ("scale", "alpha", "dropout", "class_weight", "early_stopping",
                      "val_data")
_SETTING_CHECKS = {
    "target": lambda v: v is None or isinstance(v, str),
    "task": lambda v: v in ("auto", "classify", "regress"),
    "hidden": lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(h, 1) for h in v),
    "activation": lambda v: v in ACTIVATIONS,
    "alpha": lambda v: _is_num(v, 0),
    "dropout": lambda v: v is None or (isinstance(v, list) and len(v) > 0 and all(
        _is_num(r, 0, 1, high_open=True) for r in v)),
    "class_weight": lambda v: v in (None, "balanced"),
    "early_stopping": lambda v: v is None or _is_int(v, 1),
    "val_data": lambda v: v is None or isinstance(v, str),
    "solver": lambda v: v in SOLVERS,
    "epochs": lambda v: _is_int(v, 1),
    "batch_size": lambda v: _is_int(v, 1),
    "lr": lambda v: _is_num(v, 0, low_open=True),
    "dtype": lambda v: v in ("float32", "float64"),
    "val_fraction": lambda v: _is_num(v, 0, 1, high_open=True),
    "seed": lambda v: _is_int(v, 0, 2 ** 32 - 1),
    "momentum": lambda v: _is_num(v, 0, 1, high_open=True),
    "scale": lambda v: isinstance(v, bool),
}


def check_record(meta, path):
    """The command-line record of a model file (``extra.cli``), every field checked: {} when
    the file has none (a model saved from Python); UserError when it was edited or damaged."""
    rec = meta.get("extra", {}).get("cli")
    if rec is None:
        return {}

    def bad(what):
        raise UserError(f"{path}: bad training record ({what}); the file was edited or damaged")
    if not isinstance(rec, dict):
        bad("not a mapping")
    s = rec.get("settings")
    if not isinstance(s, dict):
        bad("settings")
    for k, check in _SETTING_CHECKS.items():
        if (k in s or k not in _OPTIONAL_SETTINGS) and not check(s.get(k)):
            bad(f"setting {k!r} = {s.get(k)!r}")
    if set(s) - set(_SETTING_CHECKS):
        bad(f"unknown settings {sorted(set(s) - set(_SETTING_CHECKS))}")
    h = rec.get("history")
    if not isinstance(h, dict) or not isinstance(h.get("val_score"), list) or \
            not all(v is None or _is_num(v) for v in h["val_score"]) or \
            not _is_num(h.get("seconds"), 0):
        bad("history")
    checks = {"data": lambda v: v is None or isinstance(v, str),
              "data_sha256": lambda v: isinstance(v, str),
              "task": lambda v: v in ("classify", "regress"),
              "target": lambda v: v is None or isinstance(v, str),
              "metric": lambda v: v in ("accuracy", "R^2"),
              "status": lambda v: v in ("checkpoint", "interrupted", "complete"),
              "n_train": _is_int, "n_val": _is_int}
    for k, check in checks.items():
        if not check(rec.get(k)):
            bad(f"{k!r} = {rec.get(k)!r}")
    if (rec["task"] == "classify") != (rec["metric"] == "accuracy"):
        bad("metric")
    return rec


def load_model(path, option=None):
    """(model, file metadata, checked training record) of a model file, or a UserError."""
    try:
        model, meta = load_with_metadata(path)
    except ModelFileError as exc:
        raise UserError(f"{option} {exc}" if option else str(exc)) from None
    return model, meta, check_record(meta, path)


def check_resumable(model, rec, path):
    """A checkpoint must be an MLP from `fastmlp train` whose record matches its network."""
    from ..model import MLP
    if not rec or not isinstance(model, MLP):
        raise UserError(f"--resume {path}: not a checkpoint of `fastmlp train` with --solver "
                        f"sgd or adam; it cannot be resumed")
    s = rec["settings"]
    opt = model.optimizer_settings_
    if s["solver"] == "lbfgs" and opt == {"optimizer": "lbfgs"}:
        raise UserError(f"--resume {path}: an L-BFGS run (--solver lbfgs) is one optimisation "
                        f"and cannot be resumed; train again with the --epochs (iterations) "
                        f"it needs")
    act = "logistic" if s["activation"] in ("sigmoid", "logistic") else s["activation"]
    model_act = "logistic" if model.activation in ("sigmoid", "logistic") else model.activation
    problems = []
    if s["solver"] == "lbfgs":
        problems.append("solver lbfgs")
    if list(model.layer_sizes[1:-1]) != s["hidden"]:
        problems.append(f"hidden {s['hidden']} but layers {list(model.layer_sizes)}")
    if act != model_act:
        problems.append(f"activation {s['activation']} but the network's {model.activation}")
    if s["dtype"] != model.dtype.name:
        problems.append(f"dtype {s['dtype']} but the network's {model.dtype.name}")
    if opt is not None and (opt["optimizer"] != s["solver"] or
                            opt.get("batch_size", 0) > s["batch_size"]):
        problems.append(f"solver {s['solver']}, batch {s['batch_size']} but the model's "
                        f"{opt['optimizer']}, batch {opt.get('batch_size', '-')}")
    if len(model.loss_curve_) != len(rec["history"]["val_score"]):
        problems.append("a history of another length than the loss curve")
    if problems:
        raise UserError(f"--resume {path}: its settings do not match its model "
                        f"({'; '.join(problems)}): the file was edited; it cannot be resumed")
