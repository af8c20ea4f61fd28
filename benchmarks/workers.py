"""The worker processes of ``fastmlp bench``: one library trains one workload, and reports.

A worker is started by ``runner.py`` as a fresh interpreter that loads this folder as a
stand-alone package (not as ``fastmlp.bench``), so that the NumPy, PyTorch and scikit-learn
workers carry none of fastmlp's imports in their time or memory; each imports only its own
library, inside its function (PyTorch is imported by the PyTorch worker alone).

A worker warms up (imports, JIT, first allocations) on a tiny problem, records its resident
memory as the baseline, generates the data, trains one warm-up epoch and then times
``epochs`` more.  It prints one line, ``RESULT_MARK`` + JSON, and exits 0, or
``UNAVAILABLE_EXIT`` when its library is missing.
"""
import json
import statistics
import sys
import time

from .workloads import gemm_peak, make_data

RESULT_MARK = "FASTMLP_BENCH_RESULT "
UNAVAILABLE_EXIT = 3


# -- resident memory ------------------------------------------------------------------------------
def _proc_status(field):
    """A ``kB`` field of /proc/self/status in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_now():
    """Resident set size now, in bytes."""
    rss = _proc_status("VmRSS")
    return rss if rss is not None else _rss_peak()


def _rss_peak():
    """Peak resident set size in bytes since the last _reset_peak.  VmHWM, not ru_maxrss: on
    Linux ru_maxrss survives fork + exec, so a worker would report at least its parent's RSS."""
    hwm = _proc_status("VmHWM")
    if hwm is not None:
        return hwm
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _trim_heap():
    """Give the allocator's freed memory back to the system (glibc's malloc_trim), so that the
    baseline counts live memory only: freed blocks kept in the heap (the warm-up's and the
    planner's scratch arrays) were reused by the timed fit, which then measured 0 MB above a
    baseline that already held them.  A no-op where there is no glibc."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that the peak covers what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# -- the peers ------------------------------------------------------------------------------------
def _timed_epochs(run_epoch, epochs):
    """Run one warm-up epoch, then ``epochs`` timed ones; return the timed durations."""
    run_epoch()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    return times


def _fastmlp_plan(model):
    """How fastmlp ran the training steps (its planner's choice), for the report."""
    trainer = getattr(model, "_trainer", None)
    plan = getattr(getattr(trainer, "ws", None), "plan", None)
    if plan is None:
        return None
    blocks = getattr(trainer.ws, "row_blocks", 1)
    return {"strategy": plan.strategy, "source": plan.source, "seconds": dict(plan.seconds),
            "threads": getattr(plan, "threads", None), "row_blocks": blocks,
            "label": f"{plan.strategy}/{getattr(plan, 'threads', '?')}"
                     + (f", {blocks} row blocks a thread" if blocks > 1 else "")}


_PLANS = []  # the plan of the last fastmlp fit in this worker


def _probe_pending(model):
    """Whether fastmlp's planner would still probe the plan of ``model``'s network in this
    process (epochs ``PROBE_EPOCH`` and on of a fit run the plan's runner-up, once per process
    until the probe's verdict is on disk): the warm-up runs the probe, so that no timed epoch
    runs the runner-up instead of the plan."""
    watch = getattr(getattr(model, "_trainer", None), "_watch", None)
    return watch is not None and watch.probe_pending


def _probe_epochs():
    from fastmlp import _planner
    return _planner.PROBE_EPOCH + _planner.PROBE_EPOCHS + 4  # + split epochs not judged


def _work_fastmlp(spec, X, Y, tiny):
    """fastmlp.MLP, the low-level model: its epochs are timed by the epoch callback."""
    import fastmlp
    w = spec["workload"]

    def model():
        return fastmlp.MLP(w["sizes"], activation="sigmoid", out_activation="identity",
                           loss="squared_error", dtype=w["dtype"], random_state=0,
                           n_threads=spec["threads"])

    fit_args = dict(batch_size=w["batch_size"], learning_rate=w["learning_rate"],
                    optimizer="sgd", momentum=0.0, shuffle=True)
    if tiny:
        model().fit(*tiny, epochs=1, **fit_args)  # loads the compiled kernels
        return None
    pending = _probe_pending(model().fit(X, Y, epochs=1, **fit_args))  # (freed: not kept)
    if pending:
        model().fit(X, Y, epochs=_probe_epochs(), **fit_args)
    stamps = []
    m = model()
    m.fit(X, Y, epochs=1 + spec["epochs"], callback=lambda e, loss: stamps.append(
        time.perf_counter()), **fit_args)
    times = [b - a for a, b in zip(stamps[:-1], stamps[1:])]
    _PLANS.append(_fastmlp_plan(m))
    params = sum(c.nbytes for c in m.coefs_) + sum(b.nbytes for b in m.intercepts_)
    accounted = {"data": X.nbytes + Y.nbytes, "parameters": params,
                 "gradients": params,  # the trainer's flat gradient vector, same layout
                 "optimizer": params,  # SGD's velocity, kept even at momentum 0
                 "workspace": m.workspace_.nbytes,
                 "order": 8 * X.shape[0]}  # the shuffled sample order, int64
    return times, accounted, float(m.loss_curve_[-1])


def _estimator(module, w, max_iter, n_iter_no_change):
    if w["kind"] == "sgd":
        return module.MLPRegressor(
            hidden_layer_sizes=tuple(w["sizes"][1:-1]), activation="logistic", solver="sgd",
            momentum=0.0, nesterovs_momentum=False, learning_rate_init=w["learning_rate"],
            batch_size=w["batch_size"], alpha=0.0, max_iter=max_iter, shuffle=True,
            random_state=0, tol=0.0, n_iter_no_change=n_iter_no_change)
    return module.MLPClassifier(random_state=0, max_iter=max_iter,
                                n_iter_no_change=n_iter_no_change)


def _work_estimator(module, spec, X, Y, tiny):
    """An MLPRegressor/MLPClassifier (scikit-learn's or fastmlp's drop-in).  An estimator has
    no per-epoch hook, so the timed quantity is fit(max_iter=epochs) / n_iter_ after a warm-up
    fit; ``n_iter_no_change`` above max_iter keeps every epoch, and input validation is
    amortised over the epochs."""
    import warnings
    w = spec["workload"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the short fits
        if tiny:
            _estimator(module, w, 1, 2).fit(*tiny)
            return None
        est = _estimator(module, w, 1, spec["epochs"] + _probe_epochs() + 2)
        est.fit(X, Y)
        if module.__name__ == "fastmlp" and _probe_pending(est):
            est.set_params(max_iter=_probe_epochs())
            est.fit(X, Y)
        est.set_params(max_iter=spec["epochs"])
        t0 = time.perf_counter()
        est.fit(X, Y)
        elapsed = time.perf_counter() - t0
    _PLANS.append(_fastmlp_plan(est))
    n_iter = int(getattr(est, "n_iter_", spec["epochs"])) or 1
    return [elapsed / n_iter], None, float(est.loss_curve_[-1])


def _work_sklearn(spec, X, Y, tiny):
    from sklearn import neural_network
    from threadpoolctl import threadpool_limits
    with threadpool_limits(spec["threads"]):
        return _work_estimator(neural_network, spec, X, Y, tiny)


def _work_fastmlp_est(spec, X, Y, tiny):
    import fastmlp
    name = "MLPRegressor" if spec["workload"]["kind"] == "sgd" else "MLPClassifier"
    if not hasattr(fastmlp, name):
        raise _Unavailable(f"fastmlp.{name} does not exist yet")
    from threadpoolctl import threadpool_limits
    # the estimators have no n_threads: they use the BLAS limit in force (fastmlp._threads)
    with threadpool_limits(spec["threads"], user_api="blas"):
        return _work_estimator(fastmlp, spec, X, Y, tiny)


def numpy_sgd_epoch(sizes, dtype, batch_size, learning_rate, X, Y, seed=0, shuffle=True):
    """The NumPy reference of the sigmoid/identity/squared-error SGD network.

    Every buffer preallocated, every operation in place (``np.matmul``/``np.take`` with
    ``out=``, the sigmoid as negate-exp-add-reciprocal): what a careful NumPy user writes.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first.
    dtype : str
    batch_size : int
    learning_rate : float
    X : ndarray of shape (n, sizes[0])
    Y : ndarray of shape (n, sizes[-1])
    seed : int
        Initial weights (Glorot uniform) and shuffling.
    shuffle : bool

    Returns
    -------
    epoch : callable
        ``epoch()`` trains one pass over (X, Y).
    W, B : list of ndarray
        The weights ``W[l]`` (n_in, n_out) and biases ``B[l]`` (n_out,), updated in place.
    """
    import numpy as np
    dt = np.dtype(dtype)
    b, lr = min(batch_size, X.shape[0]), dt.type(learning_rate)
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1
    W = [(rng.uniform(-1, 1, (m, n)) * np.sqrt(6.0 / (m + n))).astype(dt)
         for m, n in zip(sizes[:-1], sizes[1:])]
    B = [np.zeros(n, dt) for n in sizes[1:]]
    dW = [np.empty_like(x) for x in W]
    dB = [np.empty_like(x) for x in B]
    A = [np.empty((b, n), dt) for n in sizes]  # A[0] is the gathered batch
    D = [None] + [np.empty((b, n), dt) for n in sizes[1:]]  # delta = dLoss/dZ
    T = [None] + [np.empty((b, n), dt) for n in sizes[1:]]  # sigmoid'
    Yb = np.empty((b, sizes[-1]), dt)
    ones = np.ones(b, dt)
    order = np.arange(X.shape[0])
    n_total = X.shape[0]

    def epoch():
        if shuffle:
            rng.shuffle(order)
        for start in range(0, n_total, b):
            idx = order[start:start + b]
            m = len(idx)
            a = [x[:m] for x in A]
            d = [None] + [x[:m] for x in D[1:]]
            t = [None] + [x[:m] for x in T[1:]]
            np.take(X, idx, axis=0, out=a[0])
            yb = np.take(Y, idx, axis=0, out=Yb[:m])
            for l in range(L):
                np.matmul(a[l], W[l], out=a[l + 1])
                a[l + 1] += B[l]
                if l < L - 1:  # sigmoid in place
                    np.negative(a[l + 1], out=a[l + 1])
                    np.exp(a[l + 1], out=a[l + 1])
                    a[l + 1] += 1
                    np.reciprocal(a[l + 1], out=a[l + 1])
            np.subtract(a[L], yb, out=d[L])  # squared error 0.5 * mean: delta = (A - Y) / m
            d[L] *= dt.type(1.0 / m)
            for l in range(L, 0, -1):
                np.matmul(a[l - 1].T, d[l], out=dW[l - 1])
                np.matmul(ones[:m], d[l], out=dB[l - 1])
                if l > 1:
                    np.matmul(d[l], W[l - 1].T, out=d[l - 1])
                    np.subtract(1, a[l - 1], out=t[l - 1])  # sigmoid' = A (1 - A)
                    t[l - 1] *= a[l - 1]
                    d[l - 1] *= t[l - 1]
            for p, g in zip(W + B, dW + dB):
                g *= lr
                p -= g

    return epoch, W, B


def _work_numpy(spec, X, Y, tiny):
    """The NumPy reference (numpy_sgd_epoch), on the workload's threads."""
    import numpy as np
    from threadpoolctl import threadpool_limits
    w = spec["workload"]
    if tiny:
        X, Y = tiny
    epoch, _, _ = numpy_sgd_epoch(w["sizes"], w["dtype"], w["batch_size"], w["learning_rate"],
                                  X, Y)
    with threadpool_limits(spec["threads"]), np.errstate(over="ignore"):
        if tiny:
            epoch()
            return None
        times = _timed_epochs(epoch, spec["epochs"])
    return times, None, None


def _work_torch(spec, X, Y, tiny):
    """PyTorch CPU as its users write it: nn.Sequential, a shuffled index per epoch, gathered
    batches, zero_grad / backward / step."""
    try:
        import torch
    except ImportError as exc:
        raise _Unavailable(f"PyTorch is not installed ({exc})")
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    w = spec["workload"]
    dt = {"float32": torch.float32, "float64": torch.float64}[w["dtype"]]
    sizes = w["sizes"]
    act = torch.nn.Sigmoid if w["kind"] == "sgd" else torch.nn.ReLU
    layers = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(m, n))
        if i < len(sizes) - 2:
            layers.append(act())
    net = torch.nn.Sequential(*layers).to(dt)
    if w["kind"] == "sgd":
        loss_fn = torch.nn.MSELoss()
        opt = torch.optim.SGD(net.parameters(), lr=w["learning_rate"], momentum=0.0)
    else:  # scikit-learn's L2 term alpha/2 ||W||^2 / batch is weight decay alpha / batch
        loss_fn = torch.nn.CrossEntropyLoss()
        opt = torch.optim.Adam(net.parameters(), lr=w["learning_rate"], eps=1e-8,
                               weight_decay=1e-4 / w["batch_size"])
    if tiny:
        X, Y = tiny
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)  # shares memory, no copy
    b, n_total = w["batch_size"], X.shape[0]

    def epoch():
        perm = torch.randperm(n_total)
        for start in range(0, n_total, b):
            idx = perm[start:start + b]
            xb, yb = Xt.index_select(0, idx), Yt.index_select(0, idx)
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
        return loss

    if tiny:
        epoch()
        return None
    last = []
    times = _timed_epochs(lambda: last.append(epoch()), spec["epochs"])
    return times, None, float(last[-1].item())


def _work_gemm(spec):
    """The best OpenBLAS GEMM rate (FLOP/s) at the representative shapes, per dtype."""
    import numpy  # noqa: F401  (first: threadpool_limits limits only libraries loaded)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(spec["threads"]):
        return gemm_peak(spec["gemm_shapes"], spec["gemm_seconds"])


class _Unavailable(Exception):
    """This peer cannot run here (library missing): the parent skips it with a note."""


WORKERS = {"fastmlp": _work_fastmlp, "fastmlp-est": _work_fastmlp_est, "numpy": _work_numpy,
           "torch": _work_torch, "sklearn": _work_sklearn}


def worker_main(argv):
    """Entry point of a worker process: ``argv[0]`` is the JSON spec (peer, workload, N,
    epochs, threads).  Prints one ``RESULT_MARK`` line; returns the exit status."""
    spec = json.loads(argv[0])
    try:
        if spec["peer"] == "gemm":
            result = {"peak_flops": _work_gemm(spec)}
        else:
            result = _run_peer(spec)
    except _Unavailable as exc:
        print(RESULT_MARK + json.dumps({"unavailable": str(exc)}), flush=True)
        return UNAVAILABLE_EXIT
    except ImportError as exc:
        print(RESULT_MARK + json.dumps({"unavailable": f"{type(exc).__name__}: {exc}"}),
              flush=True)
        return UNAVAILABLE_EXIT
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


def _run_peer(spec):
    import gc
    w = spec["workload"]
    work = WORKERS[spec["peer"]]
    t_start = time.perf_counter()
    # 1. imports and compiled code, on a tiny problem; then the baseline
    n_tiny = 2 * min(w["batch_size"], 64)
    tiny = make_data(w["kind"], w["sizes"], w["dtype"], n_tiny, seed=1)
    tiny_spec = dict(spec, workload=dict(w, batch_size=min(w["batch_size"], 64)))
    work(tiny_spec, None, None, tiny)
    del tiny
    gc.collect()
    _trim_heap()
    _reset_peak()
    base = _rss_now()
    # 2. the data, one warm-up epoch, the timed epochs
    X, Y = make_data(w["kind"], w["sizes"], w["dtype"], spec["n_samples"], seed=0)
    data_bytes = X.nbytes + Y.nbytes
    times, accounted, loss = work(spec, X, Y, None)
    peak = _rss_peak()
    return {"epoch_times": times, "epoch_s": statistics.median(times),
            "rss_base": base, "rss_peak": peak, "fit_mem": peak - base,
            "data_bytes": data_bytes, "accounted": accounted, "final_loss": loss,
            "plan": _PLANS[-1] if _PLANS else None,
            "worker_s": time.perf_counter() - t_start}


