"""``fastmlp train``: data -> split -> standardisation -> one ``fastmlp.MLP`` whatever the
solver, trained by epochs through ``MLP.partial_fit`` (sgd/adam: checkpointable, resumable to
the bit) or by one ``MLP.fit(optimizer='lbfgs')`` (lbfgs: not resumable) -> held-out metric,
model file, plot.

The epoch loop here only schedules: every batch runs in the training core, through
``MLP.partial_fit``, one epoch per call.  Each epoch's order is drawn from the model's
RandomState, which the model file stores with the position of an epoch stopped mid-way, so an
interrupted run, its checkpoint and its resumption take exactly the steps of an uninterrupted
one.  Signals reach the model only through its public ``request_stop()``.

(~500 lines: the job's steps from reading to reporting; reading files, the training record and
outputs/signals/progress live in ``data``, ``record`` and ``run`` beside it.)
"""
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from .data import (UserError, check_memory, class_labels, detect_task, predictions,
                        read_data, score, to_dtype)
from .record import check_resumable, load_model, record as _record
from .run import EXIT_SIGNAL, Progress, StopOnSignal, check_output_path
from ..persistence import atomic_write, save

# Defaults: the digits main job (a small sigmoid network) and a DATA run (scikit-learn's).
DIGITS_DEFAULTS = dict(hidden=[64], activation="sigmoid", solver="sgd", epochs=30,
                       batch_size=32, lr=0.1, val_fraction=0.25, momentum=0.9)
DATA_DEFAULTS = dict(hidden=[100], activation="relu", solver="adam", epochs=200,
                     batch_size=200, lr=None, val_fraction=0.2, momentum=0.9, scale=True)
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001, "lbfgs": None}
# options a resumed run takes from the checkpoint; giving a different value is an error
RESUMED = ("target", "task", "hidden", "activation", "solver", "batch_size", "lr", "dtype",
           "val_fraction", "seed", "momentum", "scale", "alpha", "dropout", "class_weight",
           "val_data")
# what the options beyond scikit-learn's defaults mean when absent (older checkpoints too)
EXTRA_DEFAULTS = dict(alpha=0.0, dropout=None, class_weight=None, val_data=None,
                      early_stopping=None)


# ---------------------------------------------------------------------------------------------
# setup
def _digits(seed, val_fraction):
    """scikit-learn's bundled digits, val_fraction held out (stratified); raw pixels: the
    job's standardisation is the generic, stored one (so `fastmlp predict` takes raw pixels)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    if val_fraction == 0:
        return X, X[:0], y, y[:0]
    return train_test_split(X, y, test_size=val_fraction, random_state=seed, stratify=y)


def _split(ds, task, val_fraction, seed):
    from sklearn.model_selection import train_test_split
    X, y = ds.X, ds.y
    n = len(X)
    if val_fraction == 0:
        return X, X[:0], y, y[:0]
    n_val = math.ceil(n * val_fraction)
    if n_val < 1 or n - n_val < 1:
        raise UserError(f"{ds.source}: {n} rows are too few to hold out --val-fraction "
                        f"{val_fraction} (use --val-fraction 0 to train on every row)")
    stratify = None
    if task == "classify":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts):
            stratify = y
    return train_test_split(X, y, test_size=n_val, random_state=seed, stratify=stratify)


def _validation_file(path, ds, target, task, classes=None):
    """(X, y) of the --val-data file: DATA's columns, target and task; for classification,
    only ``classes`` (the training rows' labels)."""
    vds = read_data(path, target=target)
    if vds.X.shape[1] != ds.X.shape[1] or (
            ds.feature_names is not None and vds.feature_names is not None
            and list(vds.feature_names) != list(ds.feature_names)):
        raise UserError(f"--val-data {path}: not DATA's columns")
    if len(vds.X) == 0:
        raise UserError(f"--val-data {path}: no rows")
    if task == "regress":
        if vds.y.dtype.kind not in "biuf":
            raise UserError(f"--val-data {path}: the target is not numeric")
        return vds.X, vds.y.astype(np.float64)
    y = class_labels(vds.y)
    known = set(np.unique(classes).tolist())
    unknown = [v for v in np.unique(y).tolist() if v not in known]
    if unknown:  # an output no training row teaches (as MLPClassifier refuses such a y_val)
        raise UserError(f"--val-data {path}: {'class' if len(unknown) == 1 else 'classes'} "
                        f"{_few(unknown, 5)} not in DATA's training rows (its classes: "
                        f"{_few(sorted(known, key=str))})")
    return vds.X, y


def _few(values, n=10):
    return ", ".join(map(repr, values[:n])) + (f", ... ({len(values)} in all)"
                                               if len(values) > n else "")


def _fit_scaling(Xtr, ytr, task, source, names):
    """Standardisation of the training rows: {attribute: float64 array} (x_mean_, x_scale_,
    and for regression y_mean_, y_scale_); a constant column gets scale 1.  Values too large
    to standardise in float64 (beyond ~1e154) are an error naming the column and row."""
    from sklearn.preprocessing import StandardScaler

    def fit(values, what):
        with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sc = StandardScaler().fit(values)
        bad = ~(np.isfinite(sc.mean_) & np.isfinite(sc.scale_))
        if bad.any():
            j = int(np.argmax(bad))
            i = int(np.argmax(np.abs(values[:, j])))
            col = (f"feature column {names[j]!r}" if what == "x" and names is not None else
                   f"feature column {j}" if what == "x" else "the target")
            raise UserError(f"{source}: {col}, row {i + 1} of the training rows: value "
                            f"{float(values[i, j])!r} is too large to standardise (rescale it)")
        return sc
    sx = fit(Xtr, "x")
    scaling = {"x_mean_": sx.mean_, "x_scale_": sx.scale_}
    if task == "regress":
        sy = fit(np.asarray(ytr, np.float64).reshape(len(ytr), -1), "y")
        scaling.update(y_mean_=sy.mean_, y_scale_=sy.scale_)
    return {k: np.ascontiguousarray(v, np.float64) for k, v in scaling.items()}


def _stored_scaling(model, path, task):
    scaling = {k: getattr(model, k, None) for k in ("x_mean_", "x_scale_", "y_mean_",
                                                    "y_scale_")}
    if scaling["x_mean_"] is None or (task == "regress") != (scaling["y_mean_"] is not None):
        raise UserError(f"--resume {path}: the checkpoint says it was trained on standardised "
                        f"data but holds no scaling")
    return {k: v for k, v in scaling.items() if v is not None}


def _settings(args, resumed=None):
    """Resolved training options (a dict), from the command line or the checkpoint."""
    if args.val_data is not None:
        args.val_data = os.path.abspath(args.val_data)
    given = {k: getattr(args, k) for k in RESUMED + ("epochs",) if getattr(args, k) is not None}
    if resumed is not None:
        s = dict(resumed)
        s.setdefault("scale", False)  # checkpoints from before scaling trained unscaled
        for k, v in EXTRA_DEFAULTS.items():
            s.setdefault(k, v)
        if args.early_stopping is not None or s["early_stopping"] is not None:
            raise UserError("--early-stopping runs cannot be resumed (the best epoch's weights "
                            "are not in a checkpoint)")
        for k, v in given.items():
            if k == "scale" and v != s["scale"]:
                raise UserError(f"--no-scale differs from the checkpoint, which was trained "
                                f"on standardised data; a resumed run keeps its settings")
            if k != "epochs" and v != s.get(k):
                raise UserError(f"--{k.replace('_', '-')} {v} differs from the checkpoint's "
                                f"{s.get(k)}; a resumed run keeps its settings")
        s["epochs"] = given.get("epochs", s["epochs"])
        return s
    s = dict(DIGITS_DEFAULTS if args.data is None else DATA_DEFAULTS)
    s.update(dtype="float32", seed=0, target=None, task="auto", **EXTRA_DEFAULTS)
    s.update(given)
    s["early_stopping"] = args.early_stopping
    if s["lr"] is None:
        s["lr"] = DEFAULT_LR[s["solver"]] or 0.001
    if s["solver"] == "lbfgs":
        if args.checkpoint_every:
            raise UserError("--checkpoint-every needs --solver sgd or adam (an L-BFGS run "
                            "is one optimisation that cannot be checkpointed)")
        for option, key in (("--dropout", "dropout"), ("--early-stopping", "early_stopping")):
            if s[key] is not None:
                raise UserError(f"{option} needs --solver sgd or adam")
    if s["val_data"] is not None:
        if args.data is None:
            raise UserError("--val-data needs DATA (the digits job holds out --val-fraction)")
        if args.val_fraction is not None:
            raise UserError("--val-data replaces --val-fraction: give one of them")
        s["val_fraction"] = 0.0  # every row of DATA trains
    if s["early_stopping"] is not None and s["val_data"] is None and s["val_fraction"] == 0:
        raise UserError("--early-stopping needs validation rows: --val-fraction above 0 or "
                        "--val-data")
    if s["dropout"] is not None and len(s["dropout"]) not in (1, len(s["hidden"])):
        raise UserError(f"--dropout: one rate, or one per hidden layer ({len(s['hidden'])}), "
                        f"got {len(s['dropout'])}")
    return s


# ---------------------------------------------------------------------------------------------
def _score(task, model, X, y):
    """Accuracy, or R^2 in the target's units (X already in the model's input units)."""
    if len(X) == 0:
        return None
    return score(task, y, predictions(model, X))


def _arch(sizes):
    return "-".join(str(int(s)) for s in sizes)


def run_train(args):
    holder = []
    with StopOnSignal(lambda: holder[-1] if holder else None) as stop:
        return _run_train(args, holder, stop)


def _interrupted_after_training(stop):
    if stop.signum is None:
        return 0
    print(f"fastmlp: interrupted by {signal.Signals(stop.signum).name} after training "
          f"finished; the results above stand", file=sys.stderr)
    return EXIT_SIGNAL[stop.signum]


def _no_scale_needs_data(args, data):
    if data is None and args.scale is False:
        raise UserError("--no-scale needs DATA: the digits job is always standardised")


def _print_notes(ds, args):
    for note in ds.notes:
        print(f"fastmlp: note: {note}", file=sys.stderr)


def check_outputs(args):
    """--out and --plot can be written (and --plot is a PNG that matplotlib can draw)."""
    for path, option in ((args.out, "--out"), (args.plot, "--plot")):
        check_output_path(path, option)
    if args.plot is not None:
        if not args.plot.lower().endswith(".png"):
            raise UserError(f"--plot {args.plot}: the plot is a PNG; name it *.png")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'fastmlp[plot]'") from None


def _run_train(args, holder, stop):
    check_outputs(args)

    model = None
    info = None
    if args.resume is not None:
        model, meta, info = load_model(args.resume, "--resume")
        check_resumable(model, info, args.resume)
        data = args.data if args.data is not None else info["data"]
        _no_scale_needs_data(args, data)
        s = _settings(args, info["settings"])
        if args.out is None:
            args.out = args.resume
    else:
        data = args.data
        _no_scale_needs_data(args, data)
        s = _settings(args)
    if data is None:
        s["scale"] = True  # the digits job is standardised as part of its definition
    for path in (args.out, args.plot):
        if path is not None and data is not None and os.path.abspath(path) == \
                os.path.abspath(data):
            raise UserError(f"{path}: would overwrite the data file")

    # -- data --------------------------------------------------------------------------------
    if data is None:
        Xtr, Xva, ytr, yva = _digits(s["seed"], s["val_fraction"])
        task, target, feature_names, fingerprint = "classify", None, None, "digits"
        source = "digits"
    else:
        ds = read_data(data, target=s["target"])
        _print_notes(ds, args)
        target, feature_names, fingerprint = ds.target_name, ds.feature_names, ds.fingerprint()
        source = data
        task = s["task"] if s["task"] != "auto" else detect_task(ds.y, target)
        if task == "regress":
            if ds.y.dtype.kind not in "biuf":
                raise UserError(f"{data}: target {target or 'y'!r} is not numeric: "
                                f"cannot regress (use --task classify)")
            ds.y = ds.y.astype(np.float64)
        else:
            ds.y = class_labels(ds.y)
            if len(np.unique(ds.y)) < 2:
                raise UserError(f"{data}: the target {target or 'y'!r} has a single class "
                                f"({str(ds.y[0])!r}); classification needs at least two")
        if task == "regress" and s["class_weight"] is not None:
            raise UserError("--class-weight is for classification")
        Xtr, Xva, ytr, yva = _split(ds, task, s["val_fraction"], s["seed"])
        if s["val_data"] is not None:
            Xva, yva = _validation_file(s["val_data"], ds, s["target"], task,
                                        ytr if task == "classify" else None)
    if info is not None and info.get("data_sha256") != fingerprint:
        raise UserError(f"{source}: not the data the checkpoint {args.resume} was trained on")
    # -- scaling: the training rows' mean/std (after the split), or the checkpoint's ----------
    scaling = {}
    raw_tr = Xtr
    if s.get("scale"):
        scaling = (_stored_scaling(model, args.resume, task) if model is not None else
                   _fit_scaling(Xtr, ytr, task, source, feature_names))
        Xtr = (Xtr - scaling["x_mean_"]) / scaling["x_scale_"]
        Xva = (Xva - scaling["x_mean_"]) / scaling["x_scale_"]
    dtype = np.dtype(s["dtype"]) if s["solver"] != "lbfgs" else np.dtype(np.float64)
    Xtr = to_dtype(Xtr, dtype, source, feature_names, raw=raw_tr)
    Xva = to_dtype(Xva, dtype, source, feature_names)
    classes = np.unique(ytr if data is None else np.concatenate([ytr, yva])) \
        if task == "classify" else None
    metric = "accuracy" if task == "classify" else "R^2"
    sizes = [Xtr.shape[1], *s["hidden"], len(classes) if task == "classify" else 1]
    batch = len(Xtr) if s["solver"] == "lbfgs" else min(s["batch_size"], len(Xtr))
    from .._state import training_bytes
    check_memory(training_bytes(sizes, batch, dtype.itemsize),
                 f"a network {_arch(sizes)} with batch size {batch} ({dtype.name})")

    record = dict(s=s, data=data, fingerprint=fingerprint, task=task, target=target,
                  metric=metric, n_train=len(Xtr), n_val=len(Xva))

    # -- model (one MLP whatever the solver; the solver only chooses how it trains) ------------
    y_mean, y_scale = scaling.get("y_mean_"), scaling.get("y_scale_")
    if task == "classify":
        Ytr = (ytr[:, None] == classes[None, :]).astype(dtype)
    else:
        Ytr = ytr.reshape(-1, 1) if y_mean is None else (ytr.reshape(-1, 1) - y_mean) / y_scale
        Ytr = to_dtype(Ytr, dtype, source, raw=ytr, what="target")
    if model is None:
        from ..model import MLP
        # digits: a sigmoid output with squared error (epochs); DATA, and digits by L-BFGS:
        # softmax + log loss for classes, identity + squared error for regression.  (L-BFGS
        # on digits' sigmoid + squared error meets its gradient tolerance after ~29
        # iterations at 0.79 held-out accuracy; softmax + log loss reaches 0.97.)
        out, loss = (("sigmoid", "squared_error") if data is None and s["solver"] != "lbfgs"
                     else ("softmax", "log_loss") if task == "classify" else
                     ("identity", "squared_error"))
        dropout = s["dropout"]
        model = MLP(sizes, activation=s["activation"], out_activation=out, loss=loss,
                    dtype=dtype, random_state=s["seed"], n_threads=args.threads,
                    alpha=s["alpha"],
                    dropout=dropout * len(s["hidden"]) if dropout and len(dropout) == 1
                    else dropout)
        if classes is not None:
            model.classes_ = classes
        if feature_names is not None:
            model.feature_names_in_ = np.asarray(feature_names, dtype=str)
        for k, v in scaling.items():  # saved with the model; predict/evaluate apply them
            setattr(model, k, v)
        history = {"val_score": [], "seconds": 0.0}
    else:
        if args.threads is not None:
            model.n_threads = args.threads
        history = info["history"]
    weights = None
    if s["class_weight"] is not None:
        from sklearn.utils.class_weight import compute_sample_weight
        weights = compute_sample_weight(s["class_weight"], ytr)
    if s["solver"] == "lbfgs":
        return _train_lbfgs(args, s, model, Xtr, Ytr, weights, (Xva, yva, ytr), holder, stop,
                            record)
    done = len(model.loss_curve_)
    if done >= s["epochs"]:
        raise UserError(f"--resume {args.resume}: already trained for {done} epochs; "
                        f"pass --epochs above {done} to continue")

    def extra(status):
        return _record(history=history, status=status, **record)

    momentum = s["momentum"] if s["solver"] == "sgd" else 0.0
    patience, best = s["early_stopping"], None  # best: (score, epoch, weights)
    progress = Progress(s["epochs"], done, len(Xtr), args.quiet, metric)
    last_saved = None
    start = time.perf_counter()
    seconds0 = history["seconds"]
    stopped = diverged = None
    holder.append(model)
    stop.deferring = True
    while len(model.loss_curve_) < s["epochs"]:
        if stop.signum is not None:
            stopped = stop.signum
            break
        before = len(model.loss_curve_)
        model.partial_fit(Xtr, Ytr, epochs=1, batch_size=min(s["batch_size"], len(Xtr)),
                          learning_rate=s["lr"], optimizer=s["solver"], momentum=momentum,
                          sample_weight=weights)
        if model.pending_epoch is not None or len(model.loss_curve_) == before:
            stopped = stop.signum or signal.SIGINT  # stopped mid-epoch, or before it began
            break
        epoch, loss = len(model.loss_curve_), model.loss_curve_[-1]
        if not (math.isfinite(loss) and all(np.isfinite(w).all() for w in
                                            model.coefs_ + model.intercepts_)):
            diverged = (epoch, loss)
            break
        history["val_score"].append(_score(task, model, Xva, yva))
        history["seconds"] = seconds0 + time.perf_counter() - start
        progress.update(epoch, loss, history["val_score"][-1])
        if patience is not None:
            score_now = history["val_score"][-1]
            if best is None or score_now > best[0]:
                best = (score_now, epoch, [np.array(w) for w in
                                           model.coefs_ + model.intercepts_])
            elif epoch - best[1] >= patience:
                break
        if args.out and args.checkpoint_every and epoch % args.checkpoint_every == 0 \
                and epoch < s["epochs"]:
            save(model, args.out, extra=extra("checkpoint"))
            last_saved = epoch
    progress.close()
    history["seconds"] = seconds0 + time.perf_counter() - start
    if best is not None and stopped is None and diverged is None:
        for w, kept in zip(model.coefs_ + model.intercepts_, best[2]):
            np.copyto(w, kept)  # the best epoch's weights
        if not args.quiet and not args.json:
            print(f"early stopping: best validation {metric} {best[0]:.4f} at epoch {best[1]} "
                  f"(weights kept), stopped after epoch {len(model.loss_curve_)}",
                  file=sys.stderr)
    if stopped is not None:
        name = signal.Signals(stopped).name
        pending = model.pending_epoch
        where = (f"during epoch {pending['epoch']}/{s['epochs']} (row "
                 f"{pending['position']} of {pending['n_rows']})" if pending is not None else
                 f"after epoch {len(model.loss_curve_)}/{s['epochs']}")
        if args.out:
            save(model, args.out, extra=extra("interrupted"))
            what = f"saved to {args.out}; continue with: fastmlp train --resume {args.out}"
        else:
            what = "nothing saved (no --out)"
        print(f"fastmlp: interrupted by {name} {where}; {what}", file=sys.stderr)
        return EXIT_SIGNAL[stopped]
    if diverged is not None:
        epoch, loss = diverged
        kept = (f"{args.out} keeps the checkpoint of epoch {last_saved}" if last_saved else
                f"{args.out} was left as it was" if args.out else "nothing saved")
        hint = "lower --lr" if s.get("scale", True) else "lower --lr or drop --no-scale"
        print(f"fastmlp: error: training diverged at epoch {epoch} (loss {loss}); {hint}; "
              f"{kept}", file=sys.stderr)
        return 1

    # -- results -------------------------------------------------------------------------------
    final = {"train": _score(task, model, Xtr, ytr), "held_out": _score(task, model, Xva, yva)}
    if args.out:
        save(model, args.out, extra=extra("complete"))
    if args.plot:
        _plot(args.plot, model.loss_curve_, history["val_score"], metric, source)
    rc = _report(args, s, source, task, metric, model.layer_sizes, final, history["seconds"],
                 len(Xtr), len(Xva), model.loss_curve_, data is None, dtype)
    return rc or _interrupted_after_training(stop)


def _train_lbfgs(args, s, model, Xtr, Ytr, weights, scored, holder, stop, record):
    """--solver lbfgs: one ``fit(optimizer='lbfgs')`` of the model the sgd/adam runs train
    (up to --epochs iterations); one optimisation, so neither checkpointed nor resumable."""
    from sklearn.exceptions import ConvergenceWarning
    Xva, yva, ytr = scored
    task, metric, source = record["task"], record["metric"], record["data"] or "digits"
    start = time.perf_counter()
    holder.append(model)
    stop.deferring = True
    if stop.signum is None:  # a signal before the optimiser starts: do not start it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Xtr, Ytr, optimizer="lbfgs", epochs=s["epochs"], sample_weight=weights)
    seconds = time.perf_counter() - start
    history = {"val_score": [], "seconds": seconds}
    fitted = model.optimizer_settings_ is not None
    curve = model.loss_curve_
    if stop.signum is not None:
        if args.out and fitted:
            save(model, args.out, extra=_record(history=history, status="interrupted", **record))
        what = (f"model saved to {args.out} (an L-BFGS run cannot be resumed)"
                if args.out and fitted else "nothing saved" + ("" if args.out else " (no --out)"))
        print(f"fastmlp: interrupted by {signal.Signals(stop.signum).name} after "
              f"{len(curve)} L-BFGS iterations; {what}", file=sys.stderr)
        return EXIT_SIGNAL[stop.signum]
    final = {"train": _score(task, model, Xtr, ytr), "held_out": _score(task, model, Xva, yva)}
    if args.out:
        save(model, args.out, extra=_record(history=history, status="complete", **record))
    if args.plot:
        _plot(args.plot, curve, [], metric, source, "L-BFGS iteration")
    rc = _report(args, s, source, task, metric, model.layer_sizes, final, seconds, len(Xtr),
                 len(Xva), curve or [float("nan")], record["data"] is None, model.dtype,
                 iterations=len(curve))
    return rc or _interrupted_after_training(stop)


def _report(args, s, source, task, metric, sizes, final, seconds, n_train, n_val, curve,
            digits, dtype, iterations=None):
    import json
    epochs = len(curve) if iterations is None else iterations
    dtype = np.dtype(dtype).name  # what the model holds (L-BFGS runs in float64)
    if args.json:
        print(json.dumps({
            "data": source, "task": task, "architecture": [int(v) for v in sizes],
            "activation": s["activation"], "solver": s["solver"], "dtype": dtype,
            "scaled": bool(s.get("scale", digits)),
            "epochs": epochs, "final_loss": curve[-1], "metric": metric,
            "held_out": final["held_out"], "train": final["train"], "n_train": n_train,
            "n_held_out": n_val, "seconds": round(seconds, 3),
            # L-BFGS iterations are not passes over the rows at a known count: no rate
            "samples_per_s": round(n_train * len(curve) / seconds, 1)
            if seconds > 0 and iterations is None else None,
            "model": args.out}))
        return 0
    what = "iterations" if iterations is not None else "epochs"
    if digits:
        print(f"digits {_arch(sizes)} {s['activation']}, {epochs} {what} in {seconds:.2f} s "
              f"(first-call JIT included); final loss {curve[-1]:.4f}")
    else:
        print(f"{source}: {task} {_arch(sizes)} {s['activation']} ({s['solver']}, "
              f"{dtype}), {epochs} {what} in {seconds:.2f} s; final loss {curve[-1]:.4g}")
    if final["held_out"] is not None:
        print(f"held-out {metric}: {final['held_out']:.4f} ({n_val} samples)")
    elif final["train"] is not None:
        print(f"training {metric}: {final['train']:.4f} ({n_train} samples; nothing held out)")
    if args.out:
        print(f"saved model to {args.out}")
    return 0


def _plot(path, loss_curve, val_scores, metric, title, xlabel="epoch"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.arange(1, len(loss_curve) + 1)
    ax.plot(epochs, loss_curve, color="tab:blue", label="training loss")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss", color="tab:blue")
    if all(v is not None and np.isfinite(v) for v in loss_curve) and min(loss_curve) > 0:
        ax.set_yscale("log")
    scores = [(i + 1, v) for i, v in enumerate(val_scores) if v is not None]
    if scores:
        ax2 = ax.twinx()
        ax2.plot(*zip(*scores), color="tab:orange", label=f"validation {metric}")
        ax2.set_ylabel(f"validation {metric}", color="tab:orange")
    ax.set_title(f"fastmlp train: {os.path.basename(title)}")
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
