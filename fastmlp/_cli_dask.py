"""``fastmlp train DATA --dask CLUSTER``: the training job on a Dask cluster.

DATA is a Parquet or CSV file, a folder of them, or a glob, read lazily with dask.dataframe:
the rows are read by the workers and stay there (only parameters, gradients and a few
reductions -- the standardisation's means and deviations, the class labels, the scores --
reach the driver).  CLUSTER is ``local:N`` (a LocalCluster of N process workers, one thread
each, started for the job) or a scheduler address such as ``tcp://HOST:8786``.  The model file
is the same as a local run's (a fastmlp estimator with its standardisation), so ``fastmlp
predict``/``evaluate``/``info`` read it; a run that the cluster cannot finish saves its last
completed step to ``--out``.
"""
import glob
import json
import os
import re
import signal
import sys
import time

import numpy as np

from ._cli_data import UserError

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


def read_lazy(data, target):
    """(features DataFrame, target Series, feature names, target name, fingerprint), lazy."""
    import dask.dataframe as dd
    paths, fmt = _files(data)
    try:
        if fmt == "parquet":
            frame = dd.read_parquet(paths)
        else:
            frame = dd.read_csv(paths, sep="\t" if fmt == "tsv" else ",")
    except Exception as exc:  # the reader's own message names the problem
        raise UserError(f"{data}: cannot read as {fmt}: {str(exc).splitlines()[0]}") from None
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
    return frame[features], frame[target], [str(c) for c in features], str(target), fingerprint


def _client(spec):
    import contextlib

    import distributed
    kind, value = parse_cluster(spec)

    @contextlib.contextmanager
    def managed():
        if kind == "local":
            with distributed.LocalCluster(n_workers=value, threads_per_worker=1,
                                          processes=True, dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as c:
                yield c
        else:
            try:
                c = distributed.Client(value, timeout=30)
            except (OSError, TimeoutError) as exc:
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
    from ._cli_record import record
    from ._cli_run import StopOnSignal
    from ._cli_train import check_outputs
    from .dask import ClusterLostError, MLPClassifier, MLPRegressor
    from .persistence import save
    check_outputs(args)
    paths, _ = _files(args.data)
    if args.val_data is not None:
        if args.val_fraction is not None:
            raise UserError("--val-data replaces --val-fraction: give one of them")
        paths = paths + _files(args.val_data)[0]
    for path in (args.out, args.plot):
        if path is not None and os.path.abspath(path) in map(os.path.abspath, paths):
            raise UserError(f"{path}: would overwrite a data file")

    solver = args.solver or "adam"
    s = dict(target=args.target, task=args.task or "auto", hidden=args.hidden or [100],
             activation=args.activation or "relu", solver=solver, epochs=args.epochs or 200,
             batch_size=args.batch_size or 200,
             lr=args.lr or (0.01 if solver == "sgd" else 0.001),
             dtype="float64" if solver == "lbfgs" else (args.dtype or "float32"),
             val_fraction=0.2 if args.val_fraction is None else args.val_fraction,
             seed=0 if args.seed is None else args.seed,
             momentum=0.9 if args.momentum is None else args.momentum,
             scale=args.scale is not False, alpha=args.alpha or 0.0, dropout=args.dropout,
             class_weight=args.class_weight)
    if s["solver"] == "lbfgs" and s["dropout"] is not None:
        raise UserError("--dropout needs --solver sgd or adam")
    if s["dropout"] is not None and len(s["dropout"]) not in (1, len(s["hidden"])):
        raise UserError(f"--dropout: one rate, or one per hidden layer ({len(s['hidden'])}), "
                        f"got {len(s['dropout'])}")
    X, y, names, target, fingerprint = read_lazy(args.data, s["target"])
    if args.val_data is not None:  # held-out rows from their own files: every row of DATA trains
        Xv, yv, val_names, _, _ = read_lazy(args.val_data, target)
        if val_names != names:
            raise UserError(f"{args.val_data}: its feature columns {val_names[:8]} are not "
                            f"DATA's {names[:8]}")
        s.update(val_fraction=0.0, val_data=os.path.abspath(args.val_data))
        s["held_out"] = Xv.assign(**{"__target__": yv})
    holder = []
    # SIGINT/SIGTERM during the fit: stop after the current step and save it, as locally
    with StopOnSignal(lambda: holder[-1] if holder else None) as stop, \
            _client(args.dask) as client:
        return _train(args, s, client, X, y, names, target, fingerprint, record, save,
                      MLPClassifier, MLPRegressor, ClusterLostError, stop, holder)


def _train(args, s, client, X, y, names, target, fingerprint, record, save, MLPClassifier,
           MLPRegressor, ClusterLostError, stop, holder):
    import dask
    task = s["task"]
    if task == "auto":
        if y.dtype.kind not in "biuf":
            task = "classify"
        else:
            n_distinct, whole = dask.compute(y.nunique(), (y % 1 == 0).all())
            task = "classify" if whole and n_distinct <= 20 else "regress"
    elif task == "regress" and y.dtype.kind not in "biuf":
        raise UserError(f"{args.data}: target {target!r} is not numeric: cannot regress "
                        "(use --task classify)")
    if task == "regress" and s["class_weight"] is not None:
        raise UserError("--class-weight needs a classification task")
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
              alpha=s["alpha"], verbose=not args.quiet, client=client,
              dropout=dropout * len(s["hidden"]) if dropout and len(dropout) == 1
              else dropout, **kw)
    metric = "accuracy" if task == "classify" else "R^2"
    history = {"val_score": [], "seconds": 0.0}
    start = time.perf_counter()
    lost = None
    holder.append(est)
    stop.deferring = True
    try:
        if stop.signum is None:  # a signal before the fit starts: do not start it
            est.fit(Xa, ya)
    except ClusterLostError as exc:
        lost = exc
    except ValueError as exc:  # a setting the cluster fit refuses (e.g. dropout's rule)
        raise UserError(str(exc).splitlines()[0]) from None
    history["seconds"] = time.perf_counter() - start

    def save_model(status):
        local = est.to_local()
        for k, v in scaling.items():
            setattr(local, k, v)
        local.feature_names_in_ = np.asarray(names, dtype=object)
        save(local, args.out, extra=record(s, args.data, fingerprint, task, target, metric,
                                           history, status, n_train, n_val))

    if stop.signum is not None:
        from ._cli_run import EXIT_SIGNAL
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
        from ._cli_train import _plot
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
    else:
        held_txt = ("" if result["held_out"] is None else
                    f", held-out {metric} {result['held_out']:.4f}")
        print(f"trained on {n_train} rows with {stats['n_workers']} Dask workers in "
              f"{history['seconds']:.1f} s ({stats['steps']} steps): train {metric} "
              f"{result['train']:.4f}{held_txt}")
    return 0
