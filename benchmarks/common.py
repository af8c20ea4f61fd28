"""Workloads, data and the GEMM peak for the asv suite.

Self-contained on purpose (NumPy and fastmlp's public API only, nothing from ``fastmlp.bench``):
``asv continuous`` runs this suite against older commits, which must not need newer helpers.
The numbers mirror ``fastmlp/bench.py`` (tests/test_benchmarks.py checks that they agree).
"""
import os
import time

import numpy as np

NET = (784, 512, 512, 10)       # the reference network: sigmoid hidden, identity out, SGD
SK_NET = (100, 100, 10)         # scikit-learn's MLPClassifier defaults: relu, adam, batch 200
LEARNING_RATE = 0.01

# Samples per asv epoch, by batch size: 4 batches of 4096 (W4's N; W1's full N of 32768 is
# left to ``fastmlp bench``), 128 batches of 64 (W3 at half N).  Short enough for a --quick
# suite of a few minutes on 2 cores; the tests shrink them.
N_SAMPLES = {4096: 16384, 64: 8192}
SK_N = 50000
# FASTMLP_ASV_SCALE=0.25 shrinks every N (at least one batch): .ci/bench-smoke uses it.
SCALE = float(os.environ.get("FASTMLP_ASV_SCALE", "1"))

# name -> (net, dtype, batch size) for the track_ benchmarks
WORKLOADS = {
    "W1": (NET, "float32", 4096),
    "W3": (NET, "float32", 64),
    "W4": (NET, "float64", 4096),
    "sk64": (SK_NET, "float64", 200),
    "sk32": (SK_NET, "float32", 200),
}

GEMM_SHAPES = ((4096, 784, 512), (4096, 512, 512), (1024, 1024, 1024), (512, 512, 512))
GEMM_SECONDS = 0.25  # per shape and dtype


def n_samples(net, batch_size):
    n = SK_N if net == SK_NET else N_SAMPLES[batch_size]
    return max(min(batch_size, n), int(n * SCALE) // batch_size * batch_size)


def flops_per_sample(sizes):
    """Forward, delta and weight gradient: 6 * sum(n_in * n_out), minus the input layer's
    delta (2 * n_in0 * n_out0)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return 6 * sum(a * b for a, b in pairs) - 2 * pairs[0][0] * pairs[0][1]


def make_data(net, dtype, n, seed=0):
    """X standard normal (n, n_in); Y uniform (n, n_out) for the SGD net, integer labels of a
    random linear map of X for the classifier."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, net[0]), dtype=np.dtype(dtype).type)
    if net == SK_NET:
        return X, np.argmax(X @ rng.standard_normal((net[0], net[-1])).astype(dtype), axis=1)
    return X, rng.random((n, net[-1]), dtype=np.dtype(dtype).type)


def gemm_peak(seconds=None, shapes=None):
    """Best OpenBLAS GEMM rate (FLOP/s) over the shapes, per dtype, all cores.

    Deliberately not ``fastmlp.bench``'s peak function: asv runs this suite against older
    commits too, which have no ``fastmlp.bench``; the suite uses fastmlp's public API only."""
    seconds = GEMM_SECONDS if seconds is None else seconds
    shapes = GEMM_SHAPES if shapes is None else shapes
    peak = {}
    for dtype in ("float32", "float64"):
        rng = np.random.default_rng(0)
        best = 0.0
        for m, k, n in shapes:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            c = np.empty((m, n), dtype)
            np.matmul(a, b, out=c)
            deadline, fastest, reps = time.perf_counter() + seconds, float("inf"), 0
            while reps < 3 or time.perf_counter() < deadline:
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                fastest = min(fastest, time.perf_counter() - t0)
                reps += 1
            best = max(best, 2.0 * m * k * n / fastest)
        peak[dtype] = best
    return peak


def setup_cache():
    """Shared by the classes that train: the data of every workload as .npy files in asv's
    cache directory (each benchmark process loads only its own), and the GEMM peak."""
    files = {}
    for net, dtype, batch in {(net, dt, b) for net, dt, b in WORKLOADS.values()} | {
            (NET, "float64", 64)}:
        n = n_samples(net, batch)
        key = f"{len(net)}-{dtype}-{n}"
        if key in files:
            continue
        X, Y = make_data(net, dtype, n)
        base = os.path.abspath(f"data-{key}")
        np.save(base + "-X.npy", X)
        np.save(base + "-Y.npy", Y)
        files[key] = base
    return {"files": files, "gemm_peak": gemm_peak()}


setup_cache.timeout = 300


def load_data(cache, net, dtype, batch_size):
    n = n_samples(net, batch_size)
    base = cache["files"][f"{len(net)}-{dtype}-{n}"]
    return np.load(base + "-X.npy"), np.load(base + "-Y.npy")


def sgd_model(dtype, random_state=0):
    import fastmlp
    return fastmlp.MLP(NET, activation="sigmoid", out_activation="identity",
                       loss="squared_error", dtype=dtype, random_state=random_state)


def classifier(dtype):
    """fastmlp's MLPClassifier with scikit-learn's defaults; NotImplementedError (asv: skip)
    on commits that do not have it."""
    import fastmlp
    if not hasattr(fastmlp, "MLPClassifier"):
        raise NotImplementedError("fastmlp.MLPClassifier does not exist at this commit")
    return fastmlp.MLPClassifier(random_state=0)


# A fresh interpreter measuring the memory goal: peak RSS of a fit above the baseline (imports
# and compiled kernels loaded), over what the fit must hold.  VmHWM is reset after the
# baseline (clear_refs 5) -- ru_maxrss would carry the parent's peak across fork + exec.
MEMORY_PROBE = r'''
import gc, sys, json, numpy as np, fastmlp
dtype, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
net = (784, 512, 512, 10)
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
def model():
    return fastmlp.MLP(net, activation="sigmoid", dtype=dtype, random_state=0)
rng = np.random.default_rng(0)
model().fit(rng.standard_normal((128, 784)).astype(dtype), rng.random((128, 10)).astype(dtype),
            epochs=1, batch_size=64)
gc.collect()
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS")
X = rng.standard_normal((n, 784), dtype=np.dtype(dtype).type)
Y = rng.random((n, 10), dtype=np.dtype(dtype).type)
m = model().fit(X, Y, epochs=1, batch_size=batch, learning_rate=0.01)
used = status("VmHWM") - base
params = sum(c.nbytes for c in m.coefs_) + sum(b.nbytes for b in m.intercepts_)
# data + parameters + gradients + optimizer state (SGD velocity) + workspace + sample order
accounted = X.nbytes + Y.nbytes + 3 * params + m.workspace_.nbytes + 8 * n
print(json.dumps({"used": used, "accounted": accounted, "base": base}))
'''
