"""``fastmlp bench``: fastmlp side by side with PyTorch CPU, NumPy and scikit-learn (issue 4).

Every measurement runs in its own worker process -- two libraries' thread pools in one process,
or a previous run's heap, would distort both time and memory -- and the workers are alternated
(run r of every peer, then run r+1, the order rotated each round) so that a noisy neighbour on
the shared cores hurts every peer alike.  A worker imports only its own library, warms up (JIT,
first allocations) on a tiny problem, records its resident memory as the baseline, generates the
data, trains one warm-up epoch and then times ``epochs`` more.  The parent reports medians over
the runs.

The GEMM-bound limit: a training step costs ``6 * sum(n_in * n_out) - 2 * n_in0 * n_out0`` FLOP
per sample (forward, delta and weight gradient; no delta for the input layer), so an epoch
cannot take less than ``flops_per_sample * N / peak``, with ``peak`` the best OpenBLAS
sgemm/dgemm rate measured in the same run (its own worker, before and after the others).

This module imports only the standard library at the top: the workers load this file directly
(``_BOOT`` below), without importing the fastmlp package, so that the NumPy, PyTorch and
scikit-learn workers carry none of fastmlp's imports in their time or memory.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

# -- the workloads ------------------------------------------------------------------------------
NET = (784, 512, 512, 10)

# kind "sgd": sigmoid hidden layers, identity output, squared error, plain SGD (momentum 0).
# kind "clf": scikit-learn's MLPClassifier defaults: relu, hidden (100,), adam, batch 200,
#             alpha 1e-4, softmax + log loss; 10 classes.
WORKLOADS = {
    "W1": dict(kind="sgd", sizes=NET, dtype="float32", batch_size=4096, n_samples=32768,
               quick_samples=8192, learning_rate=0.01),
    "W3": dict(kind="sgd", sizes=NET, dtype="float32", batch_size=64, n_samples=16384,
               quick_samples=2048, learning_rate=0.01),
    "W4": dict(kind="sgd", sizes=NET, dtype="float64", batch_size=4096, n_samples=16384,
               quick_samples=8192, learning_rate=0.01),
    "sk64": dict(kind="clf", sizes=(100, 100, 10), dtype="float64", batch_size=200,
                 n_samples=50000, quick_samples=5000, learning_rate=0.001),
    "sk32": dict(kind="clf", sizes=(100, 100, 10), dtype="float32", batch_size=200,
                 n_samples=50000, quick_samples=5000, learning_rate=0.001),
}
DESCRIPTIONS = {
    "sgd": "{net} sigmoid/identity, squared error, SGD; {dtype}, batch {batch_size}, N={n}",
    "clf": "sklearn MLPClassifier defaults: {net} relu, adam, batch {batch_size}, "
           "{n} x {n_in}, 10 classes, {dtype}",
}

# peer key -> (label, workload kinds it runs); the first applicable peer is the reference that
# the "fastmlp x" column divides by.
PEERS = {
    "fastmlp": ("fastmlp.MLP", ("sgd",)),
    "fastmlp-est": ("fastmlp estimator", ("sgd", "clf")),
    "numpy": ("NumPy (in-place)", ("sgd",)),
    "torch": ("PyTorch CPU", ("sgd", "clf")),
    "sklearn": ("scikit-learn", ("sgd", "clf")),
}
DEFAULT_PEERS = ("fastmlp", "fastmlp-est", "numpy", "torch", "sklearn")
# The estimator on W1/W3 is what the core issue asks for; on W4 it would only add run time.
SKIP_BY_DEFAULT = {("W4", "fastmlp-est")}

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE pin old OpenBLAS kernels (a workaround for old bugs on
# this fleet) and slow a current OpenBLAS; the workers run without them unless told otherwise.
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# GEMM shapes (m, k, n) for the peak: the reference net's products at batch 4096 and squares.
GEMM_SHAPES = ((4096, 784, 512), (4096, 512, 512), (1024, 1024, 1024), (512, 512, 512))
QUICK_GEMM_SHAPES = ((1024, 784, 512), (512, 512, 512))

RESULT_MARK = "FASTMLP_BENCH_RESULT "
UNAVAILABLE_EXIT = 3


def flops_per_sample(sizes):
    """FLOP of one training step per sample: forward, delta and weight gradient of every
    layer (2 * n_in * n_out each), minus the delta of the input layer."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return 6 * sum(a * b for a, b in pairs) - 2 * pairs[0][0] * pairs[0][1]


def limit_seconds(sizes, n_samples, peak_flops):
    """The GEMM-bound lower limit of one epoch, in seconds."""
    return flops_per_sample(sizes) * n_samples / peak_flops


def describe(name, w, n):
    net = "-".join(map(str, w["sizes"]))
    return f"{name}: " + DESCRIPTIONS[w["kind"]].format(net=net, n=n, n_in=w["sizes"][0], **w)


# ================================================================================================
# Workers (run in their own process; import their library only)
# ================================================================================================
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


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that the peak covers what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def make_data(kind, sizes, dtype, n, seed=0):
    """Synthetic data: X standard normal (n, n_in); for "sgd" Y uniform in [0, 1) (n, n_out),
    for "clf" integer labels from a random linear map of X (learnable, roughly balanced).
    Generated in the target dtype directly (no float64 temporaries of X)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]), dtype=np.dtype(dtype).type)
    if kind == "sgd":
        Y = rng.random((n, sizes[-1]), dtype=np.dtype(dtype).type)
    else:
        proj = rng.standard_normal((sizes[0], sizes[-1])).astype(dtype)
        Y = np.argmax(X @ proj, axis=1)
    return X, Y


def _timed_epochs(run_epoch, epochs):
    """Run one warm-up epoch, then ``epochs`` timed ones; return the timed durations."""
    run_epoch()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    return times


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
    stamps = []
    m = model()
    m.fit(X, Y, epochs=1 + spec["epochs"], callback=lambda e, loss: stamps.append(
        time.perf_counter()), **fit_args)
    times = [b - a for a, b in zip(stamps[:-1], stamps[1:])]
    params = sum(c.nbytes for c in m.coefs_) + sum(b.nbytes for b in m.intercepts_)
    opt = getattr(m, "_opt_state", None)
    opt_bytes = sum(a.nbytes for a in opt) if opt is not None else params
    accounted = {"data": X.nbytes + Y.nbytes, "parameters": params,
                 "gradients": params,  # the trainer's flat gradient vector, same layout
                 "optimizer": opt_bytes, "workspace": m.workspace_.nbytes,
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
        est = _estimator(module, w, 1, spec["epochs"] + 2)
        est.fit(X, Y)
        est.set_params(max_iter=spec["epochs"])
        t0 = time.perf_counter()
        est.fit(X, Y)
        elapsed = time.perf_counter() - t0
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
    return _work_estimator(fastmlp, spec, X, Y, tiny)


def numpy_sgd_epoch(sizes, dtype, batch_size, learning_rate, X, Y, seed=0, shuffle=True):
    """The NumPy reference of the sigmoid/identity/squared-error SGD network: every buffer
    preallocated, every operation in place (np.matmul/np.take with out=, the sigmoid as
    negate-exp-add-reciprocal).  Returns (epoch, W, B): epoch() trains one pass over (X, Y)
    and updates the lists of arrays W[l] (n_in, n_out) and B[l] (n_out,) in place."""
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
    import numpy as np
    from threadpoolctl import threadpool_limits
    budget = spec["gemm_seconds"]
    out = {}
    with threadpool_limits(spec["threads"]):
        for dtype in ("float32", "float64"):
            rng = np.random.default_rng(0)
            best = 0.0
            for m, k, n in spec["gemm_shapes"]:
                a = rng.standard_normal((m, k)).astype(dtype)
                b = rng.standard_normal((k, n)).astype(dtype)
                c = np.empty((m, n), dtype)
                np.matmul(a, b, out=c)
                deadline = time.perf_counter() + budget
                fastest = float("inf")
                reps = 0
                while reps < 3 or time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    np.matmul(a, b, out=c)
                    fastest = min(fastest, time.perf_counter() - t0)
                    reps += 1
                best = max(best, 2.0 * m * k * n / fastest)
            out[dtype] = best
    return out


class _Unavailable(Exception):
    """This peer cannot run here (library missing): the parent skips it with a note."""


WORKERS = {"fastmlp": _work_fastmlp, "fastmlp-est": _work_fastmlp_est, "numpy": _work_numpy,
           "torch": _work_torch, "sklearn": _work_sklearn}


def worker_main(argv):
    """Entry point of a worker process: argv[0] is the JSON spec; prints one result line."""
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
            "worker_s": time.perf_counter() - t_start}


# Loads this file as a module without importing the fastmlp package, then runs a worker.
_BOOT = ("import importlib.util as u, sys; s = u.spec_from_file_location('_fastmlp_bench_worker',"
         " sys.argv[1]); m = u.module_from_spec(s); s.loader.exec_module(m); "
         "sys.exit(m.worker_main(sys.argv[2:]))")


# ================================================================================================
# The parent: plan, run, aggregate, report
# ================================================================================================
def _n_cpus():
    """The cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_env(keep_openblas_env):
    env = dict(os.environ)
    if not keep_openblas_env:
        for name in OPENBLAS_PINS:
            env.pop(name, None)
    return env


def run_worker(spec, env, timeout):
    """Run one worker; return (status, payload) with status "ok", "unavailable" or "error"."""
    with tempfile.TemporaryDirectory(prefix="fastmlp-bench-") as cwd:  # no ./fastmlp shadowing
        try:
            proc = subprocess.run([sys.executable, "-c", _BOOT, os.path.abspath(__file__),
                                   json.dumps(spec)], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "error", f"timed out after {timeout:.0f} s"
    payload = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            payload = json.loads(line[len(RESULT_MARK):])
    if proc.returncode == UNAVAILABLE_EXIT and payload:
        return "unavailable", payload["unavailable"]
    if proc.returncode != 0 or payload is None:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return "error", f"exit {proc.returncode}: {tail}"
    return "ok", payload


def plan_runs(workloads, peers, repeats, skip=()):
    """(workload, peer, round) in the order they run: rounds alternate the peers, and each
    round rotates their order."""
    plan = []
    for name in workloads:
        kind = WORKLOADS[name]["kind"]
        applicable = [p for p in peers if kind in PEERS[p][1] and (name, p) not in skip]
        for r in range(repeats):
            k = r % max(len(applicable), 1)
            for p in applicable[k:] + applicable[:k]:
                plan.append((name, p, r))
    return plan


def run_benchmark(workloads, peers, repeats=3, epochs=3, quick=False, n_samples=None,
                  threads=None, keep_openblas_env=False, timeout=600.0, progress=True,
                  skip=()):
    """Run the comparison; return the report as a JSON-ready dict."""
    from tqdm import tqdm
    threads = threads or _n_cpus()
    env = worker_env(keep_openblas_env)
    sizes_n = {name: int(n_samples or WORKLOADS[name]["quick_samples" if quick else "n_samples"])
               for name in workloads}
    plan = plan_runs(workloads, peers, repeats, skip)
    gemm_spec = {"peer": "gemm", "threads": threads, "gemm_seconds": 0.15 if quick else 0.4,
                 "gemm_shapes": QUICK_GEMM_SHAPES if quick else GEMM_SHAPES}
    raw = {(name, p): [] for name, p, _ in plan}
    notes, unavailable, errors = [], {}, {}
    peaks = []
    t_start = time.perf_counter()
    bar = tqdm(total=len(plan) + 2, unit="run", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, desc="fastmlp bench")

    def gemm():
        bar.set_postfix_str("GEMM peak")
        status, payload = run_worker(gemm_spec, env, timeout)
        bar.update(1)
        if status == "ok":
            peaks.append(payload["peak_flops"])
        else:
            notes.append(f"GEMM peak worker failed: {payload}")

    gemm()
    for name, peer, r in plan:
        if peer in unavailable:
            bar.update(1)
            continue
        bar.set_postfix_str(f"{name} {peer} run {r + 1}/{repeats}")
        spec = {"peer": peer, "workload": WORKLOADS[name], "n_samples": sizes_n[name],
                "epochs": epochs, "threads": threads}
        status, payload = run_worker(spec, env, timeout)
        bar.update(1)
        if status == "ok":
            raw[(name, peer)].append(payload)
        elif status == "unavailable":
            unavailable[peer] = payload
        else:
            errors.setdefault((name, peer), []).append(payload)
    gemm()
    bar.close()

    peak = {dt: max(p[dt] for p in peaks) for dt in ("float32", "float64")} if peaks else None
    report = {
        "fastmlp_bench": 1,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "threads": threads},
        "settings": {"repeats": repeats, "epochs": epochs, "quick": quick,
                     "openblas_env_unset": [] if keep_openblas_env else
                     [n for n in OPENBLAS_PINS if n in os.environ]},
        "gemm_peak_flops": peak,
        "gemm_peak_runs": peaks,
        "workloads": {},
        "skipped": {p: why for p, why in unavailable.items()},
        "notes": notes,
        "wall_s": time.perf_counter() - t_start,
    }
    for name in workloads:
        w = WORKLOADS[name]
        n = sizes_n[name]
        limit = limit_seconds(w["sizes"], n, peak[w["dtype"]]) if peak else None
        entry = {**{k: v for k, v in w.items() if k not in ("n_samples", "quick_samples")},
                 "description": describe(name, w, n), "n_samples": n,
                 "flops_per_sample": flops_per_sample(w["sizes"]), "limit_s": limit,
                 "results": {}, "errors": {}}
        for (wn, peer), runs in raw.items():
            if wn != name:
                continue
            if errors.get((name, peer)):
                entry["errors"][peer] = errors[(name, peer)]
            if not runs:
                continue
            epoch_s = statistics.median(r["epoch_s"] for r in runs)
            res = {"label": PEERS[peer][0], "runs": len(runs), "epoch_s": epoch_s,
                   "epoch_s_runs": [r["epoch_s"] for r in runs],
                   "samples_per_s": n / epoch_s,
                   "fraction_of_limit": limit / epoch_s if limit else None,
                   "rss_peak_mb": statistics.median(r["rss_peak"] for r in runs) / 2**20,
                   "rss_base_mb": statistics.median(r["rss_base"] for r in runs) / 2**20,
                   "fit_mem_mb": statistics.median(r["fit_mem"] for r in runs) / 2**20,
                   "final_loss": runs[-1]["final_loss"]}
            acc = runs[-1]["accounted"]
            if acc:
                total = sum(acc.values())
                res["accounted_mb"] = {k: v / 2**20 for k, v in acc.items()}
                res["accounted_total_mb"] = total / 2**20
                # the memory goal: peak <= baseline + 1.2 * accounted
                res["mem_ratio"] = res["fit_mem_mb"] / res["accounted_total_mb"]
            entry["results"][peer] = res
        ref = next((p for p in entry["results"] if p in ("fastmlp", "fastmlp-est")), None)
        order = [p for p in DEFAULT_PEERS if p in entry["results"]]
        entry["results"] = {p: entry["results"][p] for p in order}
        entry["reference"] = ref
        for peer, res in entry["results"].items():
            res["fastmlp_speedup"] = (res["epoch_s"] / entry["results"][ref]["epoch_s"]
                                      if ref else None)
        report["workloads"][name] = entry
    return report


# -- output ---------------------------------------------------------------------------------------
def format_report(report):
    lines = []
    peak = report["gemm_peak_flops"]
    s = report["settings"]
    lines.append(f"fastmlp bench: {report['machine']['threads']} threads, {s['repeats']} run(s) "
                 f"per peer, {s['epochs']} timed epoch(s) per run (after a warm-up epoch), "
                 f"medians; each peer in its own process, alternated.")
    if s["openblas_env_unset"]:
        lines.append(f"Unset for the worker processes: {', '.join(s['openblas_env_unset'])} "
                     "(they pin old OpenBLAS kernels and slow a current one).")
    if peak:
        lines.append(f"GEMM peak (OpenBLAS, same run): {peak['float32'] / 1e9:.0f} GFLOP/s "
                     f"float32, {peak['float64'] / 1e9:.0f} GFLOP/s float64.")
    for name, entry in report["workloads"].items():
        lines.append("")
        lim = entry["limit_s"]
        lines.append(entry["description"] + (f"; GEMM limit {lim:.3f} s/epoch" if lim else ""))
        header = ("peer", "s/epoch", "samples/s", "fastmlp x", "of limit", "peak MB", "fit MB")
        rows = [header]
        for peer, r in entry["results"].items():
            rows.append((r["label"], f"{r['epoch_s']:.4f}", f"{r['samples_per_s']:,.0f}",
                         "-" if peer == entry["reference"] or r["fastmlp_speedup"] is None
                         else f"{r['fastmlp_speedup']:.2f}",
                         f"{r['fraction_of_limit']:.2f}" if r["fraction_of_limit"] else "-",
                         f"{r['rss_peak_mb']:.0f}", f"{r['fit_mem_mb']:.0f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for i, row in enumerate(rows):
            lines.append("  " + "  ".join(c.ljust(widths[0]) if j == 0 else c.rjust(widths[j])
                                          for j, c in enumerate(row)))
            if i == 0:
                lines.append("  " + "  ".join("-" * wd for wd in widths))
        for peer, r in entry["results"].items():
            if "mem_ratio" in r:
                parts = ", ".join(f"{k} {v:.1f}" for k, v in r["accounted_mb"].items())
                lines.append(f"  {r['label']} memory: {r['fit_mem_mb']:.1f} MB above the "
                             f"{r['rss_base_mb']:.0f} MB baseline for {r['accounted_total_mb']:.1f}"
                             f" MB accounted ({parts}): {r['mem_ratio']:.2f}x (goal <= 1.2x)")
        for peer, errs in entry["errors"].items():
            lines.append(f"  {PEERS[peer][0]} failed: {errs[0]}")
    lines.append("")
    lines.append("fastmlp x: the peer's time per epoch over fastmlp's (higher = fastmlp faster); "
                 "of limit: the GEMM-bound limit over the time per epoch; fit MB: peak RSS above "
                 "the worker's baseline after imports and warm-up.")
    for peer, why in report["skipped"].items():
        lines.append(f"Skipped {PEERS[peer][0]}: {why}")
    for note in report["notes"]:
        lines.append(f"Note: {note}")
    lines.append(f"Wall time {report['wall_s']:.0f} s.")
    return "\n".join(lines)


def plot_report(report, path):
    """Grouped bars per workload: fraction of the GEMM limit, and peak memory above baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(report["workloads"])
    peers = [p for p in DEFAULT_PEERS
             if any(p in report["workloads"][n]["results"] for n in names)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(peers), 1)
    for i, peer in enumerate(peers):
        xs = [j + (i - (len(peers) - 1) / 2) * width for j in range(len(names))]
        res = [report["workloads"][n]["results"].get(peer) for n in names]
        frac = [r["fraction_of_limit"] or 0 if r else 0 for r in res]
        mem = [r["fit_mem_mb"] if r else 0 for r in res]
        axes[0].bar(xs, frac, width, label=PEERS[peer][0])
        axes[1].bar(xs, mem, width, label=PEERS[peer][0])
    for ax, title in zip(axes, ("fraction of the GEMM-bound limit (higher is better)",
                                "peak memory above baseline, MB (lower is better)")):
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_title(title, fontsize=10)
    axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.suptitle("fastmlp bench (%d threads)" % report["machine"]["threads"])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- command line -----------------------------------------------------------------------------------
def _name_list(choices):
    def parse(text):
        names = [s.strip() for s in text.split(",") if s.strip()]
        bad = [n for n in names if n not in choices]
        if not names or bad:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(choices)}, got {text!r}")
        return names
    return parse


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def add_arguments(p):
    p.add_argument("--workloads", type=_name_list(list(WORKLOADS)), default=list(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    p.add_argument("--peers", type=_name_list(list(PEERS)), default=None,
                   help=f"comma-separated subset of {','.join(PEERS)} (default: all; missing "
                        "libraries are skipped with a note)")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help="worker runs per peer and workload (default 3, --quick 1)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="timed epochs per run, after one warm-up epoch (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true",
                   help="small N, one run, one epoch: a smoke test, not a measurement")
    p.add_argument("--samples", type=_positive_int, default=None,
                   help="override N of every workload")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads per worker (default: the cores this process may use)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="draw the comparison as a bar chart (needs matplotlib)")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help=f"keep {' and '.join(OPENBLAS_PINS)} for the workers (default: unset)")
    p.add_argument("--timeout", type=_positive_int, default=600,
                   help="seconds one worker may run (default 600)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


_DESCRIPTION = ("Train the same networks with fastmlp, PyTorch CPU, NumPy and scikit-learn, "
                "each in its own process, alternated; report time per epoch, samples/s, "
                "fastmlp's speed ratio to each peer, the fraction of the GEMM-bound limit "
                "(OpenBLAS peak measured in the same run) and peak memory.")
_DESCRIPTION = "\n".join(textwrap.wrap(_DESCRIPTION, 88))
_EPILOG = "workloads:\n" + "\n".join(
    "  " + describe(name, w, w["n_samples"]) for name, w in WORKLOADS.items())


def add_bench_parser(sub):
    p = sub.add_parser("bench", help="compare fastmlp with PyTorch, NumPy and scikit-learn",
                       description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_bench)
    return p


def run_bench(args):
    try:
        from .cli import UserError
    except ImportError:  # run as a plain script
        UserError = SystemExit
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install matplotlib "
                            "(or fastmlp[plot])")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.epochs is None:
        args.epochs = 1 if args.quick else 3
    skip = ()
    if args.peers is None:  # the default set skips the combinations in SKIP_BY_DEFAULT
        args.peers, skip = list(DEFAULT_PEERS), SKIP_BY_DEFAULT
    report = run_benchmark(args.workloads, args.peers, repeats=args.repeats,
                           epochs=args.epochs, quick=args.quick, n_samples=args.samples,
                           threads=args.threads, keep_openblas_env=args.keep_openblas_env,
                           timeout=args.timeout, progress=not args.no_progress,
                           skip=skip)
    if args.plot:
        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
        if args.plot:
            print(f"Chart written to {args.plot}.")
    if not any(e["results"] for e in report["workloads"].values()):
        return 1
    return 0


def main(argv=None):
    """``python benchmarks/compare.py``: the same as ``fastmlp bench``."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="fastmlp bench", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    return run_bench(args)
