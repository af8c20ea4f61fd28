"""The ``fastmlp`` command line's parser and ``main``, and the predict, evaluate and info
commands (``train`` runs in :mod:`.train`, or :mod:`.cluster` with ``--dask``; ``bench`` in
``fastmlp.bench``).

Each subcommand registers itself in ``build_parser``.  A user error (bad option, unreadable or
malformed data, damaged or edited model file, a size beyond the available memory) ends as one
``fastmlp: error: ...`` line on stderr with exit code 2, before any output file is created or
changed; output files are written atomically.  SIGINT/SIGTERM end a command with exit code
130/143 and nothing changed (``train`` first saves what it has to ``--out``).
"""
import argparse
import json
import math
import os
import signal
import sys
import warnings

import numpy as np

from .data import (UserError, class_labels, data_format, network, predictions, read_data,
                   score, to_dtype)
from .._environment import SettingError
from .._validation import ACTIVATIONS, SOLVERS
from .._version import __version__
from ..persistence import atomic_write

__all__ = ["main", "build_parser", "UserError"]


class _Parser(argparse.ArgumentParser):
    """argparse with the error contract: one line, ``fastmlp: error:``, exit 2."""

    def error(self, message):
        self.exit(2, f"fastmlp: error: {message}\n")


def _int_list(text):
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sizes


def _rate_list(text):
    try:
        rates = [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates, got {text!r}")
    if not rates or not all(0 <= r < 1 for r in rates):
        raise argparse.ArgumentTypeError(f"expected rates in [0, 1), got {text!r}")
    return rates


def _number(cast, low=None, high=None, low_open=False, high_open=False):
    def parse(text):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if cast is int else 'a number'}"
                                             f", got {text!r}")
        ok = math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
            hi = "" if high is None else f"{high}" + (")" if high_open else "]")
            rng = f"in {lo}{hi}" if high is not None else (
                f"> {low}" if low_open else f">= {low}")
            raise argparse.ArgumentTypeError(f"expected a value {rng}, got {text!r}")
        return v
    return parse


# ---------------------------------------------------------------------------------------------
def add_train_parser(sub):
    p = sub.add_parser(
        "train", help="train an MLP on DATA (default: the sigmoid network on digits)",
        description="Train an MLP on a table (CSV/TSV/Parquet, target = last column or "
                    "--target) or NumPy arrays (.npy: target = last column; .npz: X, y). "
                    "Without DATA: a sigmoid network on scikit-learn's bundled digits.")
    p.add_argument("data", nargs="?", metavar="DATA", help="training data file")
    p.add_argument("--target", help="target column (default: the last one)")
    p.add_argument("--task", choices=["auto", "classify", "regress"],
                   help="default auto: labels or <= 20 distinct integers -> classify")
    p.add_argument("--hidden", type=_int_list, help="hidden sizes, e.g. 100,50 "
                   "(default 100; digits 64)")
    p.add_argument("--activation", choices=list(ACTIVATIONS),
                   help="hidden activation (default relu; digits sigmoid)")
    p.add_argument("--solver", "--optimizer", dest="solver", choices=list(SOLVERS),
                   help="default adam; digits sgd (momentum 0.9)")
    p.add_argument("--epochs", type=_number(int, 1),
                   help="epochs (lbfgs: iterations); default 200, digits 30; with --resume "
                        "the total to reach")
    p.add_argument("--batch-size", type=_number(int, 1), help="default 200; digits 32")
    p.add_argument("--lr", type=_number(float, 0, low_open=True),
                   help="learning rate (default adam 0.001, sgd 0.01; digits 0.1)")
    p.add_argument("--momentum", type=_number(float, 0, 1, high_open=True),
                   help=argparse.SUPPRESS)
    p.add_argument("--no-scale", dest="scale", action="store_false", default=None,
                   help="train on the numbers as given; by default the features (and a "
                        "regression target) are standardised with the mean and standard "
                        "deviation of the training rows, stored in the model and applied by "
                        "predict/evaluate")
    p.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    p.add_argument("--threads", type=_number(int, 1),
                   help="threads (default: the cores this process may use; capped at them)")
    p.add_argument("--val-fraction", type=_number(float, 0, 1, high_open=True),
                   help="rows held out for the final metric (default 0.2; digits 0.25)")
    p.add_argument("--val-data", metavar="FILE",
                   help="validation rows from FILE (same columns as DATA) instead of holding "
                        "out --val-fraction of DATA: every row of DATA trains")
    p.add_argument("--alpha", type=_number(float, 0),
                   help="L2 penalty on the weights (default 0)")
    p.add_argument("--dropout", type=_rate_list, metavar="RATE[,RATE...]",
                   help="dropout rate of every hidden layer, or one per hidden layer "
                        "(sgd/adam; default none)")
    p.add_argument("--class-weight", choices=["balanced"],
                   help="weight each class inversely to its frequency (classification)")
    p.add_argument("--early-stopping", type=_number(int, 1), metavar="PATIENCE",
                   help="stop when the validation score has not improved for PATIENCE "
                        "epochs, and keep the best epoch's weights (sgd/adam)")
    p.add_argument("--seed", type=_number(int, 0, 2 ** 32 - 1),
                   help="seeds the split, the weights and the shuffling (default 0)")
    p.add_argument("--out", metavar="MODEL", help="save the model here (.npz)")
    p.add_argument("--checkpoint-every", type=_number(int, 1), metavar="N",
                   help="save to --out every N epochs")
    p.add_argument("--resume", metavar="MODEL",
                   help="continue the run saved in MODEL up to --epochs (same DATA)")
    p.add_argument("--plot", metavar="FILE.png", help="draw the loss curve and validation "
                   "score (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON "
                   "object")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--dask", metavar="CLUSTER",
                   help="train data-parallel on a Dask cluster: local:N (N worker processes "
                        "here) or a scheduler address (tcp://HOST:8786); DATA may then be a "
                        "folder or glob of Parquet/CSV files, read lazily")
    p.set_defaults(func=run_train)
    return p


def run_train(args):
    if args.checkpoint_every and not args.out and not args.resume:
        raise UserError("--checkpoint-every needs --out MODEL")
    if getattr(args, "dask", None):
        from .cluster import run_train_dask
        return run_train_dask(args)
    from .train import run_train as train
    return train(args)


# ---------------------------------------------------------------------------------------------
def _load_model(path):
    from .record import load_model
    return load_model(path)


def _model_view(model, record):
    """What predict/evaluate need: (n_features, feature names, classes, task, target)."""
    n_features = network(model).n_features
    classes = getattr(model, "classes_", None)
    names = getattr(model, "feature_names_in_", None)
    names = None if names is None else [str(n) for n in names]
    task = "classify" if classes is not None else "regress"
    return n_features, names, classes, task, record.get("target")


def _features(path, model, record, target=None, need_target=False):
    n_features, names, classes, task, stored_target = _model_view(model, record)
    if data_format(path) in ("npy", "npz"):  # bare arrays: columns by position
        ds = read_data(path, target=target, need_target=need_target)
    else:
        ds = read_data(path, target=target or (stored_target if names is not None else None),
                       need_target=need_target, features=names,
                       drop=(stored_target,) if stored_target else ())
    for note in ds.notes:
        print(f"fastmlp: note: {note}", file=sys.stderr)
    if ds.X.shape[1] != n_features:
        raise UserError(f"{path}: {ds.X.shape[1]} feature columns, but the model expects "
                        f"{n_features}")
    return ds, classes, task


def _model_inputs(model, ds):
    """The data's features in the model's input units and precision (its stored
    standardisation applied); a value beyond the precision's range is an error."""
    mean, scale = getattr(model, "x_mean_", None), getattr(model, "x_scale_", None)
    X = ds.X if mean is None else (ds.X - mean) / scale
    X = to_dtype(X, network(model).dtype, ds.source, ds.feature_names, raw=ds.X)
    return X.astype(np.float64) if X.dtype != np.float64 else X


def _outputs(model, ds, proba):
    """-> (column names, 2-D array of values) of the predictions, in the target's units."""
    classes = getattr(model, "classes_", None)
    X = _model_inputs(model, ds)
    if proba:
        if classes is None:
            raise UserError(f"--proba needs a classifier; this model {network(model).kind}")
        out = network(model).proba(X)
        return [f"proba_{c}" for c in classes], np.asarray(out)
    pred = predictions(model, X)
    if pred.ndim == 1 or pred.shape[1] == 1:
        return ["prediction"], pred.reshape(len(pred), 1)
    return [f"prediction_{j}" for j in range(pred.shape[1])], pred


def _format(v):
    if isinstance(v, np.float32):
        return str(v)  # the shortest repr that round-trips in float32
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


def _write_table(f, header, values, sep):
    import csv
    w = csv.writer(f, delimiter=sep, lineterminator="\n")
    w.writerow(header)
    for row in values:
        w.writerow([_format(v) for v in row])


def add_predict_parser(sub):
    p = sub.add_parser("predict", help="predict with a saved model",
                       description="Write one prediction per row of DATA (CSV to stdout, or "
                                   "--out FILE: .csv, .tsv or .npy).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", metavar="FILE", help=".csv, .tsv or .npy (default: CSV on stdout)")
    p.add_argument("--proba", action="store_true", help="class probabilities (classifiers)")
    p.set_defaults(func=run_predict)


def run_predict(args):
    out_fmt = None
    if args.out is not None:
        ext = os.path.splitext(args.out)[1].lower()
        out_fmt = {".csv": ",", ".tsv": "\t", ".npy": "npy"}.get(ext)
        if out_fmt is None and os.path.exists(args.out) and \
                not os.path.isfile(args.out) and not os.path.isdir(args.out):
            out_fmt = ","  # a device or FIFO (/dev/stdout): CSV
        if out_fmt is None:
            raise UserError(f"--out {args.out}: unknown format {ext or '(no extension)'!r}; "
                            f"expected .csv, .tsv or .npy")
        from .run import check_output_path
        check_output_path(args.out, "--out")
        if os.path.abspath(args.out) in (os.path.abspath(args.model),
                                         os.path.abspath(args.data)):
            raise UserError(f"--out {args.out}: would overwrite an input file")
    model, meta, record = _load_model(args.model)
    ds, _, _ = _features(args.data, model, record)
    header, values = _outputs(model, ds, args.proba)
    if args.out is None:
        _write_table(sys.stdout, header, values, ",")
        return 0
    if out_fmt == "npy":
        arr = values[:, 0] if values.shape[1] == 1 and not args.proba else values
        arr = arr.astype(str) if arr.dtype.kind == "O" else arr
        atomic_write(args.out, lambda f: np.save(f, arr, allow_pickle=False))
    else:
        import io
        buf = io.StringIO()
        _write_table(buf, header, values, out_fmt)
        atomic_write(args.out, lambda f: f.write(buf.getvalue().encode()))
    return 0


# ---------------------------------------------------------------------------------------------
def add_evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="score a saved model on labelled data",
                       description="Accuracy (classifiers) or R^2 (regressors) on DATA.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--target", help="target column (default: the one the model was trained "
                   "on, else the last)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_evaluate)


def _check_labels(path, ds, classes):
    """A classifier's accuracy needs labels of its kind: a continuous target, or one none of
    whose values is a class, is refused (as scikit-learn refuses "continuous and
    multiclass"); some values that are not classes are counted as wrong, with a note."""
    y, classes = class_labels(ds.y), np.asarray(classes)
    target = f"the target {ds.target_name!r}" if ds.target_name else "the target"
    if y.dtype.kind == "f" and classes.dtype.kind != "f":
        example = y[np.flatnonzero(np.mod(y, 1) != 0)[:1]].tolist() or y[:1].tolist()
        raise UserError(f"{path}: {target} has continuous values (e.g. {example[0]!r}), but "
                        f"this model is a classifier (classes: {_short(classes)}); a "
                        f"regressor scores such a target")
    if y.dtype.kind != classes.dtype.kind:  # compared as the scores compare them
        y, classes = y.astype(str), classes.astype(str)
    known = np.isin(y, classes)
    if not known.any():
        raise UserError(f"{path}: no value of {target} ({_short(np.unique(y))}) is one of the "
                        f"model's classes ({_short(classes)}); is it the right target?")
    if not known.all():
        unknown = np.unique(y[~known])
        print(f"fastmlp: note: {int((~known).sum())} of {len(y)} rows have labels that are not "
              f"among the model's classes ({_short(unknown)}): they count as wrong",
              file=sys.stderr)


def run_evaluate(args):
    model, meta, record = _load_model(args.model)
    ds, classes, task = _features(args.data, model, record, target=args.target,
                                  need_target=True)
    if ds.y is None:
        raise UserError(f"{args.data}: no target to evaluate against")
    if task == "regress":
        if ds.y.dtype.kind not in "biuf":
            raise UserError(f"{args.data}: the target is not numeric; this model is a "
                            f"regressor")
        if len(ds.y) < 2:
            raise UserError(f"{args.data}: R^2 needs at least two rows")
    else:
        _check_labels(args.data, ds, classes)
    value = score(task, ds.y, predictions(model, _model_inputs(model, ds)))
    metric = "accuracy" if task == "classify" else "R^2"
    if args.json:
        print(json.dumps({"metric": metric, "score": value, "n_samples": int(len(ds.y))}))
    else:
        print(f"{metric}: {value:.4f} ({len(ds.y)} samples)")
    return 0


# ---------------------------------------------------------------------------------------------
def add_info_parser(sub):
    p = sub.add_parser("info", help="describe a saved model")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print the file's metadata as JSON")
    p.set_defaults(func=run_info)


def _short(values, limit=10):
    values = [str(v) for v in values]
    return ", ".join(values[:limit]) + (f", ... ({len(values)} in all)"
                                        if len(values) > limit else "")


def run_info(args):
    model, meta, cli = _load_model(args.model)
    if args.json:
        print(json.dumps({k: v for k, v in meta.items() if k != "arrays"}, default=str))
        return 0
    kind = meta["kind"]
    lines = [f"{args.model}: fastmlp {kind} (file format {meta['format_version']}, written by "
             f"fastmlp {meta['fastmlp_version']} at {meta['created']})"]
    if kind == "MLP":
        sizes = model.layer_sizes
        lines.append(f"architecture: {'-'.join(map(str, sizes))}; hidden {model.activation}, "
                     f"output {model.out_activation}, loss {model.loss}; {model.dtype.name}")
        curve = model.loss_curve_
        opt = model.optimizer_settings_
        lbfgs = opt is not None and opt["optimizer"] == "lbfgs"
        if lbfgs:
            lines.append("optimizer: lbfgs (full batch, scikit-learn's L-BFGS-B)")
        elif opt is not None:
            extra = f", momentum {opt['momentum']}" if "momentum" in opt else ""
            lines.append(f"optimizer: {opt['optimizer']}, lr {opt['learning_rate']}{extra}, "
                         f"batch {opt['batch_size']}")
        pending = model.pending_epoch
        if pending is not None:
            lines.append(f"interrupted during epoch {pending['epoch']} at row "
                         f"{pending['position']} of {pending['n_rows']}")
    else:
        fitted = hasattr(model, "coefs_")
        sizes = ([model.coefs_[0].shape[0]] + [c.shape[1] for c in model.coefs_]
                 if fitted else None)
        arch = "-".join(map(str, sizes)) if sizes else "not fitted"
        dtype = model.coefs_[0].dtype.name if fitted else "-"
        lines.append(f"architecture: {arch}; hidden {model.activation}, output "
                     f"{getattr(model, 'out_activation_', '-')}, loss {model.loss}; {dtype}")
        lines.append(f"solver: {model.solver}, lr {model.learning_rate_init}, batch "
                     f"{model.batch_size}, alpha {model.alpha}")
        curve = getattr(model, "loss_curve_", None) or (
            [model.loss_] if getattr(model, "loss_", None) is not None else [])
        lbfgs = model.solver == "lbfgs"
    classes = getattr(model, "classes_", None)
    if classes is not None:
        lines.append(f"classes ({len(classes)}): {_short(classes)}")
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        lines.append(f"features ({len(names)}): {_short(names)}")
    if cli.get("target"):
        lines.append(f"target: {cli['target']!r} ({cli.get('task')})")
    if getattr(model, "x_mean_", None) is not None:
        lines.append("scaling: features standardised" + (
            " and target standardised" if getattr(model, "y_mean_", None) is not None else "")
            + " (mean/std of the training rows; predict and evaluate apply it)")
    elif cli.get("data"):
        lines.append("scaling: none (trained on the numbers as given)")
    if curve:
        hist = (f"training: {len(curve)} epochs, loss {curve[0]:.4g} -> {curve[-1]:.4g} "
                f"(best {min(curve):.4g})") if not lbfgs else \
            (f"training: {len(curve)} L-BFGS iterations, loss {curve[0]:.4g} -> "
             f"{curve[-1]:.4g}" if kind == "MLP" else
             f"training: {model.n_iter_} L-BFGS iterations, final loss {curve[-1]:.4g}")
        scores = [v for v in cli.get("history", {}).get("val_score", []) if v is not None]
        if scores:
            hist += f"; last validation {cli.get('metric')} {scores[-1]:.4f}"
        if cli.get("data") or cli:
            hist += (f"; data {cli.get('data') or 'digits'} ({cli.get('n_train')} train, "
                     f"{cli.get('n_val')} held out)")
        if cli.get("status"):
            hist += f"; {cli['status']}"
        lines.append(hist)
    else:
        lines.append("training: none yet")
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------------
def build_parser():
    parser = _Parser(prog="fastmlp", description="Fast MLPs on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    add_train_parser(sub)
    add_predict_parser(sub)
    add_evaluate_parser(sub)
    add_info_parser(sub)
    from ..bench.command import add_bench_parser  # its options; the harness loads when it runs
    add_bench_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning on the command line: one ``fastmlp: warning:`` line.  Python's own format
    adds the file, line number and source line of the library code that warned (a model
    file's n_threads above this machine's cores printed ``.../_core.py:593: RuntimeWarning:
    ...`` and ``with thread_limits(self.n_threads) as nt:``)."""
    print(f"fastmlp: warning: {' '.join(str(message).split())}",
          file=sys.stderr if file is None else file)


def main(argv=None):
    """The ``fastmlp`` command: runs it and returns its exit status.  Warnings are shown as
    one line each while it runs (the caller's way of showing them is put back after)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["train", *argv]  # `fastmlp` alone is the main job
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already reported
        return exc.code
    from .run import EXIT_SIGNAL, Interrupted, StopOnSignal
    if getattr(args, "threads", None) is not None and not getattr(args, "dask", None):
        # capped at the CPU budget, said in one line per count (bench takes a list of counts:
        # each is capped, and a count that caps to one already listed runs once)
        from .._threads import cap_request
        counts = [args.threads] if isinstance(args.threads, int) else args.threads
        capped, notes = [], []
        try:
            for k in counts:
                c, note = cap_request(k, "--threads {n}")
                if note:
                    notes.append(note)
                if c not in capped:
                    capped.append(c)
        except SettingError as exc:  # the budget's own variables (LOKY_MAX_CPU_COUNT)
            print(f"fastmlp: error: {exc}", file=sys.stderr)
            return 2
        args.threads = capped[0] if isinstance(args.threads, int) else capped
        for note in notes:
            print(f"fastmlp: {note}", file=sys.stderr)
    try:
        with StopOnSignal(lambda: None):  # a signal raises Interrupted: files are cleaned up
            return args.func(args)
    except Interrupted as exc:
        print(f"fastmlp: interrupted by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return EXIT_SIGNAL[exc.signum]
    except (UserError, SettingError) as exc:  # SettingError: a bad NUMBA_*/FASTMLP_* variable
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastmlp: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        print(f"fastmlp: error: out of memory ({exc})", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `fastmlp predict ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # a write failed (disk full, I/O error); atomic: nothing changed
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fastmlp: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1

