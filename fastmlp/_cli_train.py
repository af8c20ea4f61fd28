"""``fastmlp train`` (issue 5): data -> split -> epochs through ``MLP.partial_fit`` (sgd/adam,
checkpointable, resumable to the bit) or ``MLPClassifier``/``MLPRegressor`` (lbfgs) -> held-out
metrics, model file, plot.

The epoch loop here only schedules: every batch runs in ``fastmlp._core.Trainer.run_epoch`` (through
MLP.partial_fit).  One epoch per partial_fit call, so an interrupted run, its checkpoint and
its resumption shuffle exactly as an uninterrupted one: each epoch's order is drawn from the
model's RandomState, which the model file stores with the order and position of an epoch that
was stopped mid-way.
"""
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from ._cli_data import UserError, class_labels, detect_task, read_data
from .persistence import ModelFileError, atomic_write, load_with_metadata, save

# Defaults: the digits main job (the seed's sigmoid network) and a DATA run (scikit-learn's).
DIGITS_DEFAULTS = dict(hidden=[64], activation="sigmoid", solver="sgd", epochs=30,
                       batch_size=32, lr=0.1, val_fraction=0.25, momentum=0.9)
DATA_DEFAULTS = dict(hidden=[100], activation="relu", solver="adam", epochs=200,
                     batch_size=200, lr=None, val_fraction=0.2, momentum=0.9, scale=True)
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001, "lbfgs": None}
# options a resumed run takes from the checkpoint; giving a different value is an error
RESUMED = ("target", "task", "hidden", "activation", "solver", "batch_size", "lr", "dtype",
           "val_fraction", "seed", "momentum", "scale")
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


# ---------------------------------------------------------------------------------------------
# setup
def _check_output_path(path, option):
    if path is None:
        return
    if os.path.isdir(path):
        raise UserError(f"{option} {path}: is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK) or (os.path.exists(path)
                                             and not os.access(path, os.W_OK)):
        raise UserError(f"{option} {path}: permission denied")


def _digits(seed):
    """scikit-learn's bundled digits, 25% held out (stratified); raw pixels: the job's
    standardisation is the generic, stored one (so `fastmlp predict` takes raw pixels)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


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


def _fit_scaling(Xtr, ytr, task):
    """Standardisation of the training rows: {attribute: float64 array} (x_mean_, x_scale_,
    and for regression y_mean_, y_scale_); a constant column gets scale 1."""
    from sklearn.preprocessing import StandardScaler
    sx = StandardScaler().fit(Xtr)
    scaling = {"x_mean_": sx.mean_, "x_scale_": sx.scale_}
    if task == "regress":
        sy = StandardScaler().fit(np.asarray(ytr, np.float64).reshape(len(ytr), -1))
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
    given = {k: getattr(args, k) for k in RESUMED + ("epochs",) if getattr(args, k) is not None}
    if resumed is not None:
        s = dict(resumed)
        s.setdefault("scale", False)  # checkpoints from before scaling trained unscaled
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
    s.update(dtype="float32", seed=0, target=None, task="auto")
    s.update(given)
    if s["lr"] is None:
        s["lr"] = DEFAULT_LR[s["solver"]] or 0.001
    if s["solver"] == "lbfgs":
        if args.checkpoint_every:
            raise UserError("--checkpoint-every needs --solver sgd or adam (an L-BFGS run "
                            "is one optimisation that cannot be checkpointed)")
    return s


# ---------------------------------------------------------------------------------------------
# progress
class Progress:
    """A tqdm bar on a terminal; plain lines (at most one a second) otherwise."""

    def __init__(self, total, initial, n_rows, quiet, metric):
        self.total, self.n_rows, self.metric = total, n_rows, metric
        self.quiet = quiet
        self.bar = None
        self.t_last = self.t_line = time.perf_counter()
        self.t0, self.e0 = self.t_last, initial
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="epoch", file=sys.stderr,
                            dynamic_ncols=True, leave=False)

    def update(self, epoch, loss, score):
        now = time.perf_counter()
        rate = self.n_rows / max(now - self.t_last, 1e-9)
        self.t_last = now
        if self.quiet:
            return
        if self.bar is not None:
            post = {"loss": f"{loss:.4g}", "samples/s": f"{rate:,.0f}"}
            if score is not None:
                post[f"val_{self.metric}"] = f"{score:.4f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
            return
        if epoch in (self.e0 + 1, self.total) or now - self.t_line >= 1.0:
            self.t_line = now
            per_epoch = (now - self.t0) / max(epoch - self.e0, 1)
            eta = per_epoch * (self.total - epoch)
            val = "" if score is None else f"  val {self.metric} {score:.4f}"
            print(f"epoch {epoch}/{self.total}  loss {loss:.6g}{val}  {rate:,.0f} samples/s  "
                  f"ETA {int(eta // 60)}:{int(eta % 60):02d}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Interrupted(Exception):
    """A signal outside training (while reading data, say): nothing to save."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopOnSignal:
    """While ``deferring`` (training, saving), SIGINT/SIGTERM set a flag and the trainer's
    ``stop_requested``: training stops at the end of the current batch and saves.  Otherwise
    (set-up), or on a second signal, they raise :class:`Interrupted` at once."""

    def __init__(self, model_ref):
        self.model_ref = model_ref
        self.signum = None
        self.deferring = False
        self.previous = {}

    def __enter__(self):
        for s in EXIT_SIGNAL:
            self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None or not self.deferring:
            raise Interrupted(signum)
        self.signum = signum
        model = self.model_ref()
        if model is not None:
            model.request_stop()

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)
        return False


# ---------------------------------------------------------------------------------------------
def _score(task, model, X, y, classes, scaling=None):
    """Accuracy, or R^2 in the target's units (X already in the model's units)."""
    if len(X) == 0:
        return None
    out = model.predict(X)
    if task == "classify":
        return float(np.mean(classes[out.argmax(1)] == y))
    from sklearn.metrics import r2_score
    if len(y) < 2:
        return None
    out = np.asarray(out).reshape(len(y), -1)[:, 0]
    if scaling and "y_mean_" in scaling:
        out = out * scaling["y_scale_"][0] + scaling["y_mean_"][0]
    return float(r2_score(y, out))


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


def _run_train(args, holder, stop):
    for path, option in ((args.out, "--out"), (args.plot, "--plot")):
        _check_output_path(path, option)
    if args.plot is not None:
        if not args.plot.lower().endswith(".png"):
            raise UserError(f"--plot {args.plot}: the plot is a PNG; name it *.png")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'fastmlp[plot]'") from None

    model = None
    info = None
    if args.resume is not None:
        try:
            model, meta = load_with_metadata(args.resume)
        except ModelFileError as exc:
            raise UserError(str(exc)) from None
        info = meta.get("extra", {}).get("cli")
        if not isinstance(info, dict) or meta["kind"] != "MLP":
            raise UserError(f"--resume {args.resume}: not a checkpoint of `fastmlp train` "
                            f"with --solver sgd or adam; it cannot be resumed")
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
        Xtr, Xva, ytr, yva = _digits(s["seed"])
        task, target, feature_names, fingerprint = "classify", None, None, "digits"
        source = "digits"
    else:
        ds = read_data(data, target=s["target"])
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
        Xtr, Xva, ytr, yva = _split(ds, task, s["val_fraction"], s["seed"])
    if info is not None and info.get("data_sha256") != fingerprint:
        raise UserError(f"{source}: not the data the checkpoint {args.resume} was trained on")
    # -- scaling: the training rows' mean/std (after the split), or the checkpoint's ----------
    scaling = {}
    if s.get("scale"):
        scaling = (_stored_scaling(model, args.resume, task) if model is not None else
                   _fit_scaling(Xtr, ytr, task))
        Xtr = (Xtr - scaling["x_mean_"]) / scaling["x_scale_"]
        Xva = (Xva - scaling["x_mean_"]) / scaling["x_scale_"]
    y_mean, y_scale = scaling.get("y_mean_"), scaling.get("y_scale_")
    dtype = np.dtype(s["dtype"])
    Xtr, Xva = np.ascontiguousarray(Xtr, dtype), np.ascontiguousarray(Xva, dtype)
    classes = np.unique(ytr if data is None else np.concatenate([ytr, yva])) \
        if task == "classify" else None
    metric = "accuracy" if task == "classify" else "R^2"

    if s["solver"] == "lbfgs":
        return _train_lbfgs(args, s, task, Xtr, Xva, ytr, yva, classes, feature_names, target,
                            source, fingerprint, metric, holder, stop, scaling)

    # -- model ---------------------------------------------------------------------------------
    if task == "classify":
        Ytr = (ytr[:, None] == classes[None, :]).astype(dtype)
    else:
        Ytr = ytr.reshape(-1, 1) if y_mean is None else (ytr.reshape(-1, 1) - y_mean) / y_scale
        Ytr = Ytr.astype(dtype)
    if model is None:
        from .model import MLP
        sizes = [Xtr.shape[1], *s["hidden"], Ytr.shape[1]]
        # digits: the seed's network (sigmoid output, squared error); DATA: softmax + log
        # loss for classes, identity + squared error for regression
        out, loss = (("sigmoid", "squared_error") if data is None else
                     ("softmax", "log_loss") if task == "classify" else
                     ("identity", "squared_error"))
        model = MLP(sizes, activation=s["activation"], out_activation=out, loss=loss,
                    dtype=dtype, random_state=s["seed"], n_threads=args.threads)
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
    done = len(model.loss_curve_)
    if done >= s["epochs"]:
        raise UserError(f"--resume {args.resume}: already trained for {done} epochs; "
                        f"pass --epochs above {done} to continue")

    def extra(status):
        return {"cli": {"settings": s, "data": None if data is None else os.path.abspath(data),
                        "data_sha256": fingerprint, "task": task, "target": target,
                        "metric": metric, "history": history, "status": status,
                        "n_train": int(len(Xtr)), "n_val": int(len(Xva))}}

    momentum = s["momentum"] if s["solver"] == "sgd" else 0.0
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
        model.partial_fit(Xtr, Ytr, epochs=1, batch_size=min(s["batch_size"], len(Xtr)),
                          learning_rate=s["lr"], optimizer=s["solver"], momentum=momentum)
        if model.pending_epoch is not None:
            stopped = stop.signum or signal.SIGINT
            break
        epoch, loss = len(model.loss_curve_), model.loss_curve_[-1]
        if not (math.isfinite(loss) and all(np.isfinite(w).all() for w in
                                            model.coefs_ + model.intercepts_)):
            diverged = (epoch, loss)
            break
        score = _score(task, model, Xva, yva, classes, scaling)
        history["val_score"].append(score)
        history["seconds"] = seconds0 + time.perf_counter() - start
        progress.update(epoch, loss, score)
        if args.out and args.checkpoint_every and epoch % args.checkpoint_every == 0 \
                and epoch < s["epochs"]:
            save(model, args.out, extra=extra("checkpoint"))
            last_saved = epoch
    progress.close()
    history["seconds"] = seconds0 + time.perf_counter() - start
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
    seconds = history["seconds"]
    final = {"train": _score(task, model, Xtr, ytr, classes, scaling),
             "held_out": _score(task, model, Xva, yva, classes, scaling)}
    if args.out:
        save(model, args.out, extra=extra("complete"))
    if args.plot:
        _plot(args.plot, model.loss_curve_, history["val_score"], metric, source)
    rc = _report(args, s, source, task, metric, model.layer_sizes, final, seconds,
                 len(Xtr), len(Xva), model.loss_curve_, data is None)
    return rc or _interrupted_after_training(stop)


def _train_lbfgs(args, s, task, Xtr, Xva, ytr, yva, classes, feature_names, target, source,
                 fingerprint, metric, holder, stop, scaling):
    from sklearn.exceptions import ConvergenceWarning
    from .estimators import MLPClassifier, MLPRegressor
    activation = "logistic" if s["activation"] == "sigmoid" else s["activation"]
    cls = MLPClassifier if task == "classify" else MLPRegressor
    est = cls(hidden_layer_sizes=tuple(s["hidden"]), activation=activation, solver="lbfgs",
              alpha=0.0, max_iter=s["epochs"], random_state=s["seed"])
    def frame(X):  # names travel with the rows, so the model records feature_names_in_
        if feature_names is None:
            return X
        import pandas as pd
        return pd.DataFrame(X, columns=feature_names)
    Xfit = frame(Xtr)
    yfit = ytr if "y_mean_" not in scaling else \
        (ytr - scaling["y_mean_"][0]) / scaling["y_scale_"][0]
    start = time.perf_counter()
    holder.append(est)
    stop.deferring = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(Xfit, yfit)
    for k, v in scaling.items():  # saved with the model; predict/evaluate apply them
        setattr(est, k, v)
    seconds = time.perf_counter() - start
    data = None if source == "digits" else source
    extra = {"cli": {"settings": s, "data": None if data is None else os.path.abspath(data),
                     "data_sha256": fingerprint, "task": task, "target": target,
                     "metric": metric, "history": {"val_score": [], "seconds": seconds},
                     "status": "complete", "n_train": int(len(Xtr)), "n_val": int(len(Xva))}}
    if stop.signum is not None:
        if args.out:
            extra["cli"]["status"] = "interrupted"
            save(est, args.out, extra=extra)
        print(f"fastmlp: interrupted by {signal.Signals(stop.signum).name} after "
              f"{est.n_iter_} L-BFGS iterations; "
              + (f"model saved to {args.out} (an L-BFGS run cannot be resumed)" if args.out
                 else "nothing saved (no --out)"), file=sys.stderr)
        return EXIT_SIGNAL[stop.signum]

    def score(X, y):
        if len(X) == 0 or (task == "regress" and len(X) < 2):
            return None
        if task == "classify":
            return float(est.score(frame(X), y))
        from sklearn.metrics import r2_score
        pred = np.asarray(est.predict(frame(X)), np.float64)
        if "y_mean_" in scaling:
            pred = pred * scaling["y_scale_"][0] + scaling["y_mean_"][0]
        return float(r2_score(y, pred))
    final = {"train": score(Xtr, ytr), "held_out": score(Xva, yva)}
    if args.out:
        save(est, args.out, extra=extra)
    curve = [float(est.loss_)]
    if args.plot:
        _plot(args.plot, curve, [], metric, source)
    sizes = [Xtr.shape[1], *s["hidden"], est.n_outputs_]
    rc = _report(args, s, source, task, metric, sizes, final, seconds, len(Xtr), len(Xva),
                 curve, False, iterations=int(est.n_iter_))
    return rc or _interrupted_after_training(stop)


def _report(args, s, source, task, metric, sizes, final, seconds, n_train, n_val, curve,
            digits, iterations=None):
    import json
    epochs = len(curve) if iterations is None else iterations
    if args.json:
        print(json.dumps({
            "data": source, "task": task, "architecture": [int(v) for v in sizes],
            "activation": s["activation"], "solver": s["solver"], "dtype": s["dtype"],
            "scaled": bool(s.get("scale", digits)),
            "epochs": epochs, "final_loss": curve[-1], "metric": metric,
            "held_out": final["held_out"], "train": final["train"], "n_train": n_train,
            "n_held_out": n_val, "seconds": round(seconds, 3),
            "samples_per_s": round(n_train * len(curve) / seconds, 1) if seconds > 0 else None,
            "model": args.out}))
        return 0
    what = "iterations" if iterations is not None else "epochs"
    if digits:
        print(f"digits {_arch(sizes)} {s['activation']}, {epochs} {what} in {seconds:.2f} s "
              f"(first-call JIT included); final loss {curve[-1]:.4f}")
    else:
        print(f"{source}: {task} {_arch(sizes)} {s['activation']} ({s['solver']}, "
              f"{s['dtype']}), {epochs} {what} in {seconds:.2f} s; final loss {curve[-1]:.4g}")
    if final["held_out"] is not None:
        print(f"held-out {metric}: {final['held_out']:.4f} ({n_val} samples)")
    elif final["train"] is not None:
        print(f"training {metric}: {final['train']:.4f} ({n_train} samples; nothing held out)")
    if args.out:
        print(f"saved model to {args.out}")
    return 0


def _plot(path, loss_curve, val_scores, metric, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.arange(1, len(loss_curve) + 1)
    ax.plot(epochs, loss_curve, color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
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
