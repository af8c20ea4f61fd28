"""``fastmlp train DATA --dask CLUSTER``: the training job on a Dask cluster.

DATA is a Parquet or CSV file, a folder of them, or a glob, read lazily with dask.dataframe:
the rows are read by the workers and stay there (only parameters, gradients and a few
reductions -- the standardisation's means and deviations, the class labels, the scores --
reach the driver).  CLUSTER is ``local:N`` (a LocalCluster of N process workers, one thread
each, started for the job; at most one a core this process may use) or a scheduler address
such as ``tcp://HOST:8786``.  The model file is the same as a local run's (a fastmlp estimator
with its standardisation), so ``fastmlp predict``/``evaluate``/``info`` read it; a run that the
cluster cannot finish saves its last completed step to ``--out``.
"""
import glob
import json
import logging
import os
import re
import signal
import sys
import time
import warnings

import numpy as np

from .data import UserError, task_for_numbers

_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}
# Options of `fastmlp train` that a cluster run refuses, and why (the rest apply as in a
# local run; --plot draws the loss curve).
_UNSUPPORTED = {
    "resume": ("--resume", "a cluster run cannot continue a checkpoint to the bit (its "
                           "model file holds the weights, not the run's optimizer and "
                           "shuffling state)"),
    "checkpoint_every": ("--checkpoint-every", "a cluster run saves --out when it ends, or its "
                                               "last completed step when the cluster is lost"),
    "early_stopping": ("--early-stopping", "use fastmlp.dask's early_stopping=True from "
                                           "Python"),
    "threads": ("--threads", "each worker's threads are set where it starts (dask worker "
                             "--nthreads)"),
}


def parse_cluster(spec):
    """``local:N`` -> ("local", N); a scheduler address -> ("address", spec)."""
    m = re.fullmatch(r"local:(\d+)", spec or "")
    if m:
        n = int(m.group(1))
        if not 1 <= n <= 1024:
            raise UserError(f"--dask {spec}: the number of local workers must be 1..1024")
        return "local", n
    if re.fullmatch(r"(tcp|tls|inproc|ucx|ws|wss)://\S+", spec or ""):
        return "address", spec
    raise UserError(f"--dask {spec!r}: expected local:N (N worker processes here) or a "
                    "scheduler address such as tcp://HOST:8786")


def _files(data):
    """The data files DATA names (a file, a folder or a glob), and their one format."""
    if os.path.isdir(data):
        paths = sorted(p for p in glob.glob(os.path.join(data, "*"))
                       if os.path.splitext(p)[1].lower() in _FORMATS)
    elif glob.has_magic(data):
        paths = sorted(glob.glob(data))
    else:
        if not os.path.exists(data):
            raise UserError(f"{data}: no such file or folder")
        paths = [data]
    if not paths:
        raise UserError(f"{data}: no Parquet or CSV files there")
    formats = {_FORMATS.get(os.path.splitext(p)[1].lower()) for p in paths}
    if None in formats:
        bad = [p for p in paths if os.path.splitext(p)[1].lower() not in _FORMATS][0]
        raise UserError(f"{bad}: --dask reads Parquet (.parquet, .pq) or CSV (.csv, .tsv) "
                        "files")
    if len(formats) > 1:
        raise UserError(f"{data}: mixes formats ({', '.join(sorted(formats))}); use one")
    return paths, formats.pop()


class LazyData:
    """DATA read lazily: ``X`` (features DataFrame), ``y`` (target Series), ``names`` (the
    feature names), ``target`` (its name), ``fingerprint``, and ``files``: [(path, its own
    frame)] in row order, to say which file and row hold a bad value."""

    def __init__(self, X, y, names, target, fingerprint, files, header_lines):
        self.X, self.y, self.names, self.target = X, y, names, target
        self.fingerprint, self.files, self.header_lines = fingerprint, files, header_lines


def read_lazy(data, target):
    """DATA's files as one lazy table (a :class:`LazyData`); every file must have the same
    columns (one error line naming the first that differs)."""
    import dask.dataframe as dd
    from .data import _names
    paths, fmt = _files(data)
    frames = []
    for path in paths:
        try:
            if fmt == "parquet":
                f = dd.read_parquet(path)
            else:
                f = dd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
        except Exception as exc:  # the reader's own message names the problem
            raise UserError(f"{path}: cannot read as {fmt}: {str(exc).splitlines()[0]}") \
                from None
        if frames:
            first, cols = list(frames[0].columns), list(f.columns)
            if set(cols) != set(first) or len(cols) != len(first):
                missing = [c for c in first if c not in cols]
                extra = [c for c in cols if c not in first]
                raise UserError(
                    f"{path}: its columns differ from {paths[0]}'s"
                    + (f"; missing {_names(missing)}" if missing else "")
                    + (f"; not in {os.path.basename(paths[0])}: {_names(extra)}"
                       if extra else "")
                    + " (every file of DATA needs the same columns)")
            f = f[first]  # the same order
        frames.append(f)
    frame = frames[0] if len(frames) == 1 else dd.concat(frames)
    columns = list(frame.columns)
    if len(columns) < 2:
        raise UserError(f"{data}: needs at least two columns (features and a target), got "
                        f"{columns}")
    target = columns[-1] if target is None else target
    if target not in columns:
        raise UserError(f"{data}: no column {target!r}; the columns are {columns[:20]}")
    features = [c for c in columns if c != target]
    bad = [c for c in features if frame[c].dtype.kind not in "biuf"]
    if bad:
        raise UserError(f"{data}: feature columns must be numeric; not numeric: {bad[:8]}")
    stats = [(os.path.abspath(p), os.path.getsize(p), int(os.path.getmtime(p)))
             for p in paths]
    from dask.base import tokenize
    fingerprint = "dask:" + tokenize(stats, target)
    return LazyData(frame[features], frame[target], [str(c) for c in features], str(target),
                    fingerprint, list(zip(paths, frames)), 1 if fmt != "parquet" else 0)


def _bad_cells(part, columns):
    """Of one partition: (rows, [first missing or infinite row per column, or -1], [its
    value, NaN for a missing one])."""
    first, values = [], []
    for c in columns:
        col = part[c]
        a = col.to_numpy(np.float64, na_value=np.nan) if col.dtype.kind in "biuf" else None
        bad = ~np.isfinite(a) if a is not None else col.isna().to_numpy()
        i = int(bad.argmax()) if bad.any() else -1
        first.append(i)
        values.append(np.nan if i < 0 or a is None else float(a[i]))
    return len(part), first, values


def _locate_bad_value(data):
    """The error naming the file, column and row of the first missing or infinite value of
    ``data`` (a :class:`LazyData`), as a local run names it: the first file that has one,
    its first feature column that has one (else the target), that column's first bad row;
    None when there is none.  Reads the files again, partition by partition: run only after
    a reduction found a bad value."""
    import dask
    for path, frame in data.files:
        features = [c for c in frame.columns if str(c) in data.names]
        cols = features + [c for c in frame.columns if str(c) == data.target]
        parts = dask.compute(*[dask.delayed(_bad_cells)(p, cols) for p in frame.to_delayed()])
        offset, first = 0, {}
        for rows, bad, values in parts:
            for j, i in enumerate(bad):
                if i >= 0 and cols[j] not in first:
                    first[cols[j]] = (offset + int(i), values[j])
            offset += rows
        for c in cols:
            if c in first:
                i, value = first[c]
                kind = "feature" if c in features else "target"
                where = f"{path}: {kind} column {str(c)!r}, row {i + 1}"
                if data.header_lines:
                    where += f" (line {i + 1 + data.header_lines})"
                return (f"{where}: missing value" if np.isnan(value) else
                        f"{where}: infinite value {str(value)!r}")
    return None


def _local_workers(n):
    """``local:N``'s worker count, capped at the cores this process may use (one thread a
    worker: more workers than cores only take turns on them, and each step waits for the
    slowest), said in one line as ``--threads`` is."""
    from .._threads import cap_request
    n, note = cap_request(n, "--dask local:{n}")
    if note:
        print(f"fastmlp: {note}", file=sys.stderr)
    return n


def _client(spec):
    import contextlib

    import distributed
    kind, value = parse_cluster(spec)

    if kind == "local":
        value = _local_workers(value)

    @contextlib.contextmanager
    def managed():
        if kind == "local":
            # the command reports what goes wrong in one line: the cluster's own log lines
            # (a worker's "Compute Failed", the scheduler's notes) would only repeat it
            # (an HTTP server on a free port, no dashboard: no warning that 8787 is taken)
            with distributed.LocalCluster(n_workers=value, threads_per_worker=1,
                                          processes=True, dashboard_address=":0",
                                          scheduler_kwargs={"dashboard": False},
                                          silence_logs=logging.CRITICAL) as cluster, \
                    distributed.Client(cluster) as c:
                yield c
        else:
            try:
                c = distributed.Client(value, timeout=30)
            except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a bad inproc://
                raise UserError(f"--dask {value}: cannot reach the scheduler ({exc})") from None
            with c:
                yield c
    return managed()


def run_train_dask(args):
    """The train job on a cluster; returns the exit code."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise UserError("--dask needs dask and distributed: pip install 'fastmlp[dask]'") \
            from None
    parse_cluster(args.dask)
    for attr, (option, why) in _UNSUPPORTED.items():
        if getattr(args, attr, None) is not None:
            raise UserError(f"{option} is not supported with --dask: {why}")
    if args.data is None:
        raise UserError("--dask needs DATA (a Parquet/CSV file, folder or glob)")
    from .record import record
    from .run import StopOnSignal
    from .train import DATA_DEFAULTS, DEFAULT_LR, check_outputs
    from ..dask import ClusterLostError, MLPClassifier, MLPRegressor
    from ..persistence import save
    check_outputs(args)
    paths, _ = _files(args.data)
    if args.val_data is not None:
        if args.val_fraction is not None:
            raise UserError("--val-data replaces --val-fraction: give one of them")
        paths = paths + _files(args.val_data)[0]
    for path in (args.out, args.plot):
        if path is not None and os.path.abspath(path) in map(os.path.abspath, paths):
            raise UserError(f"{path}: would overwrite a data file")

    # a local DATA run's defaults (train.DATA_DEFAULTS), so the two runs train the same network
    d = DATA_DEFAULTS
    solver = args.solver or d["solver"]
    s = dict(target=args.target, task=args.task or "auto", hidden=args.hidden or list(d["hidden"]),
             activation=args.activation or d["activation"], solver=solver,
             epochs=args.epochs or d["epochs"], batch_size=args.batch_size or d["batch_size"],
             lr=args.lr or DEFAULT_LR[solver] or 0.001,
             dtype="float64" if solver == "lbfgs" else (args.dtype or "float32"),
             val_fraction=d["val_fraction"] if args.val_fraction is None else args.val_fraction,
             seed=0 if args.seed is None else args.seed,
             momentum=d["momentum"] if args.momentum is None else args.momentum,
             scale=args.scale is not False, alpha=args.alpha or 0.0, dropout=args.dropout,
             class_weight=args.class_weight)
    if s["solver"] == "lbfgs" and s["dropout"] is not None:
        raise UserError("--dropout needs --solver sgd or adam")
    if s["dropout"] is not None and len(s["dropout"]) not in (1, len(s["hidden"])):
        raise UserError(f"--dropout: one rate, or one per hidden layer ({len(s['hidden'])}), "
                        f"got {len(s['dropout'])}")
    data = read_lazy(args.data, s["target"])
    sources = [data]
    if args.val_data is not None:  # held-out rows from their own files: every row of DATA trains
        val = read_lazy(args.val_data, data.target)
        if val.names != data.names:
            raise UserError(f"{args.val_data}: its feature columns {val.names[:8]} are not "
                            f"DATA's {data.names[:8]}")
        s.update(val_fraction=0.0, val_data=os.path.abspath(args.val_data))
        s["held_out"] = val.X.assign(**{"__target__": val.y})
        sources.append(val)
    holder = []
    # SIGINT/SIGTERM during the fit: stop after the current step and save it, as locally
    with StopOnSignal(lambda: holder[-1] if holder else None) as stop, \
            _client(args.dask) as client:
        return _train(args, s, client, data, sources, record, save, MLPClassifier,
                      MLPRegressor, ClusterLostError, stop, holder)


def _check_finite(sources, extra=()):
    """One pass over every row of DATA (and --val-data): a missing or infinite value is one
    error line naming its file, column and row (as a local run's) before anything reaches
    the engines; returns the results of the reductions ``extra``, computed in the same
    pass."""
    import dask
    checks = [(d.X.count(), d.y.count(), d.y.size, d.X.abs().max(),  # features: numeric
               d.y.abs().max() if d.y.dtype.kind in "biuf" else 0.0) for d in sources]
    results = dask.compute(checks, *extra)
    for d, (x_count, y_count, n, x_max, y_max) in zip(sources, results[0]):
        if (np.asarray(x_count) < n).any() or y_count < n or \
                not np.isfinite(np.asarray(x_max, np.float64)).all() or not np.isfinite(y_max):
            raise UserError(_locate_bad_value(d) or f"{d.files[0][0]}: a missing or "
                                                    "infinite value")
    return results[1:]


def _train(args, s, client, data, sources, record, save, MLPClassifier, MLPRegressor,
           ClusterLostError, stop, holder):
    import dask
    X, y, names, target, fingerprint = (data.X, data.y, data.names, data.target,
                                        data.fingerprint)
    task = s["task"]
    if task == "auto" and y.dtype.kind in "biuf":
        n_distinct, whole = _check_finite(sources, (y.nunique(), (y % 1 == 0).all()))
        task = task_for_numbers(bool(whole), int(n_distinct))
    else:
        _check_finite(sources)
        if task == "auto":
            task = "classify"
    if task == "regress" and y.dtype.kind not in "biuf":
        raise UserError(f"{args.data}: target {target!r} is not numeric: cannot regress "
                        "(use --task classify)")
    if task == "regress" and s["class_weight"] is not None:
        raise UserError("--class-weight needs a classification task")
    if task == "classify" and "held_out" in s:
        # an output no training row teaches: refused as a local run (and y_val) refuses it
        from .train import _few
        known, seen = dask.compute(y.unique(), s["held_out"]["__target__"].unique())
        known = set(np.asarray(known).tolist())
        unknown = sorted(set(np.asarray(seen).tolist()) - known, key=str)
        if unknown:
            raise UserError(f"--val-data {args.val_data}: "
                            f"{'class' if len(unknown) == 1 else 'classes'} "
                            f"{_few(unknown, 5)} not in DATA's training rows (its classes: "
                            f"{_few(sorted(known, key=str))})")
    frame = X.assign(**{"__target__": y})
    if "held_out" in s:
        train, held = frame, s.pop("held_out")
    elif s["val_fraction"] > 0:
        train, held = frame.random_split([1 - s["val_fraction"], s["val_fraction"]],
                                         random_state=s["seed"])
    else:
        train, held = frame, None
    Xtr, ytr = train.drop(columns="__target__"), train["__target__"]
    scaling = {}
    if s["scale"]:
        mean, std = dask.compute(Xtr.mean(), Xtr.std(ddof=0))
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise UserError(f"{args.data}: a feature column is too large to standardise or "
                            "holds NaN/infinity")
        scaling = {"x_mean_": mean, "x_scale_": np.where(std > 0, std, 1.0)}
        if task == "regress":
            ym, ys = dask.compute(ytr.mean(), ytr.std(ddof=0))
            scaling.update(y_mean_=np.array([ym], np.float64),
                           y_scale_=np.array([ys if ys > 0 else 1.0], np.float64))
    dtype = np.dtype(s["dtype"])

    def inputs(part):
        Xp, yp = part.drop(columns="__target__"), part["__target__"]
        if scaling:
            Xp = (Xp - scaling["x_mean_"]) / scaling["x_scale_"]
            if task == "regress":
                yp = (yp - scaling["y_mean_"][0]) / scaling["y_scale_"][0]
        Xa = Xp.to_dask_array(lengths=True).astype(dtype)
        ya = yp.to_dask_array(lengths=True)
        return Xa, (ya.astype(np.float64) if task == "regress" else ya)

    Xa, ya = inputs(train)
    # row counts (and the held-out rows' lengths) while the cluster is there to count them
    held_arrays = inputs(held) if held is not None else None
    n_train = int(Xa.shape[0])
    n_val = 0 if held_arrays is None else int(held_arrays[0].shape[0])
    cls = MLPClassifier if task == "classify" else MLPRegressor
    dropout = s["dropout"]
    kw = {} if task != "classify" else {"class_weight": s["class_weight"]}
    est = cls(hidden_layer_sizes=tuple(s["hidden"]), activation=s["activation"],
              solver=s["solver"], max_iter=s["epochs"], batch_size=s["batch_size"],
              learning_rate_init=s["lr"], momentum=s["momentum"], random_state=s["seed"],
              alpha=s["alpha"], verbose=False, client=client,
              dropout=dropout * len(s["hidden"]) if dropout and len(dropout) == 1
              else dropout, **kw)
    metric = "accuracy" if task == "classify" else "R^2"
    history = {"val_score": [], "seconds": 0.0}
    # what a local run shows: its progress display (epochs of sgd/adam; L-BFGS shows none)
    from .run import Progress
    progress = None
    if s["solver"] != "lbfgs":
        progress = Progress(s["epochs"], 0, n_train, args.quiet, metric)
        est._after_epoch = lambda epoch, loss: progress.update(epoch, loss, None)
    start = time.perf_counter()
    lost = None
    holder.append(est)
    stop.deferring = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if stop.signum is None:  # a signal before the fit starts: do not start it
                est.fit(Xa, ya)
    except ClusterLostError as exc:
        lost = exc
    except ValueError as exc:  # a setting the cluster fit refuses (e.g. dropout's rule)
        raise UserError(str(exc).splitlines()[0]) from None
    finally:
        if progress is not None:
            progress.close()
    history["seconds"] = time.perf_counter() - start
    # the fit's warnings (the optimizer stopped at --epochs, a batch size clipped to the
    # rows) as one note line each, as a local run's notes; none with --quiet, and none on
    # an interrupted run (its own message says what happened)
    if not args.quiet and stop.signum is None and lost is None:
        notes = []
        for w in caught:
            text = str(w.message).splitlines()[0] if str(w.message) else ""
            if text and text not in notes and issubclass(w.category, UserWarning):
                notes.append(text)
        for text in notes:
            print(f"fastmlp: note: {text}", file=sys.stderr)

    def save_model(status):
        local = est.to_local()
        for k, v in scaling.items():
            setattr(local, k, v)
        local.feature_names_in_ = np.asarray(names, dtype=object)
        save(local, args.out, extra=record(s, args.data, fingerprint, task, target, metric,
                                           history, status, n_train, n_val))

    if stop.signum is not None:
        from .run import EXIT_SIGNAL
        if args.out and hasattr(est, "coefs_"):
            save_model("interrupted")
            kept = (f"the last completed step is saved to {args.out} (a cluster run cannot "
                    "be resumed)")
        else:
            kept = "nothing saved" + ("" if args.out else " (no --out)")
        what = "L-BFGS iterations" if s["solver"] == "lbfgs" else "epochs"
        print(f"fastmlp: interrupted by {signal.Signals(stop.signum).name} after "
              f"{getattr(est, 'n_iter_', 0)} {what}; {kept}", file=sys.stderr)
        return EXIT_SIGNAL[stop.signum]
    if lost is not None:
        if args.out and hasattr(est, "coefs_"):
            save_model("interrupted")
            kept = f"the last completed step is saved to {args.out}"
        else:
            kept = "nothing saved (no --out)"
        print(f"fastmlp: error: {str(lost).splitlines()[0]}; {kept}", file=sys.stderr)
        return 1
    # R^2 in scaled units equals R^2 in the target's units: the scaling is affine
    scores = {"train": est.score(Xa, ya)}
    if held_arrays is not None and n_val:
        scores["held_out"] = est.score(*held_arrays)
    history["val_score"] = [scores.get("held_out")] if "held_out" in scores else []
    if args.out:
        save_model("complete")
    if args.plot:
        from .train import _plot
        curve = est.loss_curve_ if s["solver"] != "lbfgs" else [float(est.loss_)]
        _plot(args.plot, curve, [], metric, args.data)
    stats = est.cluster_stats_
    result = {"task": task, "metric": metric, "train": scores["train"],
              "held_out": scores.get("held_out"), "n_train": n_train, "n_val": n_val,
              "epochs": int(est.n_iter_), "seconds": round(history["seconds"], 3),
              "workers": stats["n_workers"], "steps": stats["steps"],
              "worker_losses": stats["worker_losses"]}
    if args.json:
        print(json.dumps(result))
        return 0
    # the local run's summary, then where it ran
    from .train import _report
    curve = est.loss_curve_ if s["solver"] != "lbfgs" else [float(est.loss_)]
    sizes = [len(names), *s["hidden"], est.n_outputs_]
    _report(args, s, args.data, task, metric, sizes, scores | {"held_out": scores.get(
        "held_out")}, history["seconds"], n_train, n_val, curve, False, est.coefs_[0].dtype,
        iterations=int(est.n_iter_) if s["solver"] == "lbfgs" else None)
    workers = stats["n_workers"]
    losses = stats["worker_losses"]
    print(f"on {workers} Dask worker{'s' if workers != 1 else ''} ({stats['steps']} steps"
          + (f"; {losses} worker{'s' if losses != 1 else ''} lost and replaced" if losses
             else "") + ")")
    return 0
