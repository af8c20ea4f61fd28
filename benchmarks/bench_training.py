"""Training speed, memory and start-up of fastmlp, for airspeed velocity (asv).

Reference network 784-512-512-10 (sigmoid hidden, identity output, squared error, plain SGD):
W1 = float32 batch 4096, W3 = float32 batch 64, W4 = float64 batch 4096; plus scikit-learn's
MLPClassifier defaults (relu, hidden (100,), adam, batch 200) on 50000 x 100, 10 classes (the
workloads, FLOP count, data and GEMM probe are ``workloads.py``'s).  Every benchmark warms up
(JIT, workspace) in ``setup``; a timed call is one epoch.

asv runs this module against older builds of fastmlp too: it uses fastmlp's public API only
and skips (NotImplementedError) what a commit lacks.

Run: ``asv run --python=same --quick`` (smoke), ``asv continuous main HEAD`` (regressions).
"""
import json
import os
import statistics
import subprocess
import sys
import time

from . import workloads
from .workloads import CLASSIFIER_NET, NET

LEARNING_RATE = workloads.WORKLOADS["W1"]["learning_rate"]

# Samples per asv epoch, by batch size: 4 batches of 4096 (W1's full N of 32768 is left to
# ``fastmlp bench``), 128 batches of 64; the classifier at its full N.  Short enough for a
# --quick suite of a few minutes on 2 cores; the tests shrink them.
N_SAMPLES = {4096: 16384, 64: 8192}
CLASSIFIER_N = workloads.WORKLOADS["sk64"]["n_samples"]
# FASTMLP_ASV_SCALE=0.25 shrinks every N (at least one batch): .ci/bench-smoke uses it.
SCALE = float(os.environ.get("FASTMLP_ASV_SCALE", "1"))
GEMM_SHAPES = workloads.GEMM_SHAPES
GEMM_SECONDS = 0.25  # per shape and dtype


def _kind(net):
    return "clf" if tuple(net) == CLASSIFIER_NET else "sgd"


def n_samples(net, batch_size):
    """N of an asv epoch (scaled by FASTMLP_ASV_SCALE, whole batches, at least one)."""
    n = CLASSIFIER_N if _kind(net) == "clf" else N_SAMPLES[batch_size]
    return max(min(batch_size, n), int(n * SCALE) // batch_size * batch_size)


def prepare_cache():
    """The ``setup_cache`` of the classes that train: the data of every workload as .npy files
    in asv's cache directory (each benchmark process loads only its own), and the GEMM peak."""
    import numpy as np
    files = {}
    shapes = {(w["sizes"], w["dtype"], w["batch_size"]) for w in workloads.WORKLOADS.values()}
    for net, dtype, batch in sorted(shapes | {(NET, "float64", 64)}):
        n = n_samples(net, batch)
        key = f"{len(net)}-{dtype}-{n}"
        if key in files:
            continue
        X, Y = workloads.make_data(_kind(net), net, dtype, n)
        base = os.path.abspath(f"data-{key}")
        np.save(base + "-X.npy", X)
        np.save(base + "-Y.npy", Y)
        files[key] = base
    return {"files": files, "gemm_peak": workloads.gemm_peak(GEMM_SHAPES, GEMM_SECONDS)}


prepare_cache.timeout = 300


def load_data(cache, net, dtype, batch_size):
    """(X, Y) of a workload, from the files of ``prepare_cache``."""
    import numpy as np
    n = n_samples(net, batch_size)
    base = cache["files"][f"{len(net)}-{dtype}-{n}"]
    return np.load(base + "-X.npy"), np.load(base + "-Y.npy")


def sgd_model(dtype, random_state=0):
    """fastmlp.MLP of the reference network."""
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


class TimeEpoch:
    """Seconds per epoch of the reference network (W1/W3/W4 shapes; N in N_SAMPLES)."""
    params = (["float32", "float64"], [64, 4096])
    param_names = ["dtype", "batch_size"]
    setup_cache = staticmethod(prepare_cache)
    number = 1
    repeat = (2, 5, 10.0)
    warmup_time = 0
    timeout = 180

    def setup(self, cache, dtype, batch_size):
        self.X, self.Y = load_data(cache, NET, dtype, batch_size)
        self.model = sgd_model(dtype)
        self.batch_size = batch_size
        self.time_epoch(cache, dtype, batch_size)  # JIT load, workspace

    def time_epoch(self, cache, dtype, batch_size):
        self.model.partial_fit(self.X, self.Y, epochs=1, batch_size=self.batch_size,
                               learning_rate=LEARNING_RATE, optimizer="sgd")


class TimeSklearnDefaults:
    """Seconds per epoch of fastmlp.MLPClassifier at scikit-learn's defaults (50000 x 100)."""
    params = (["float32", "float64"],)
    param_names = ["dtype"]
    setup_cache = staticmethod(prepare_cache)
    number = 1
    repeat = (3, 10, 10.0)
    warmup_time = 0
    timeout = 180

    def setup(self, cache, dtype):
        import numpy as np
        self.X, self.y = load_data(cache, CLASSIFIER_NET, dtype, 200)
        self.est = classifier(dtype)
        self.est.partial_fit(self.X, self.y, classes=np.unique(self.y))

    def time_epoch(self, cache, dtype):
        self.est.partial_fit(self.X, self.y)


class PeakMemFit:
    """Peak RSS of a benchmark process that fits one epoch (data included)."""
    params = (["float32", "float64"],)
    param_names = ["dtype"]
    setup_cache = staticmethod(prepare_cache)
    timeout = 180

    def setup(self, cache, dtype):
        self.X, self.Y = load_data(cache, NET, dtype, 4096)

    def peakmem_fit(self, cache, dtype):
        sgd_model(dtype).fit(self.X, self.Y, epochs=1, batch_size=4096,
                                    learning_rate=LEARNING_RATE)


class TrackThroughput:
    """Samples per second and fraction of the GEMM-bound limit (peak measured in setup_cache):
    median of three epochs after a warm-up epoch."""
    params = (list(workloads.WORKLOADS),)
    param_names = ["workload"]
    setup_cache = staticmethod(prepare_cache)
    timeout = 240

    def setup(self, cache, workload):
        w = workloads.WORKLOADS[workload]
        net, dtype, batch = w["sizes"], w["dtype"], w["batch_size"]
        X, Y = load_data(cache, net, dtype, batch)
        if net == CLASSIFIER_NET:
            import numpy as np
            est = classifier(dtype)
            est.partial_fit(X, Y, classes=np.unique(Y))
            step = lambda: est.partial_fit(X, Y)  # noqa: E731
        else:
            model = sgd_model(dtype)
            step = lambda: model.partial_fit(X, Y, epochs=1, batch_size=batch,  # noqa: E731
                                             learning_rate=LEARNING_RATE)
            step()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        self.epoch_s = statistics.median(times)
        self.n = X.shape[0]
        self.limit_s = workloads.flops_per_sample(net) * self.n / cache["gemm_peak"][dtype]

    def track_samples_per_s(self, cache, workload):
        return self.n / self.epoch_s

    track_samples_per_s.unit = "samples/s"

    def track_fraction_of_gemm_limit(self, cache, workload):
        return self.limit_s / self.epoch_s

    track_fraction_of_gemm_limit.unit = "fraction"


class TrackFitMemory:
    """The memory goal, in a fresh interpreter: peak RSS of a fit above the baseline
    (imports, compiled kernels), in MB and as a multiple of what the fit must hold (data,
    parameters, gradients, optimizer state, workspace).  Goal: ratio <= 1.2."""
    params = (["float32", "float64"],)
    param_names = ["dtype"]
    timeout = 240

    def setup(self, dtype):
        if not sys.platform.startswith("linux"):
            raise NotImplementedError("reads /proc/self/status")
        n = n_samples(NET, 4096)
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, dtype, str(n),
                              str(min(4096, n))], capture_output=True, text=True, check=True)
        self.probe = json.loads(out.stdout.strip().splitlines()[-1])

    def track_fit_memory_ratio(self, dtype):
        return self.probe["used"] / self.probe["accounted"]

    track_fit_memory_ratio.unit = "ratio"

    def track_fit_memory_mb(self, dtype):
        return self.probe["used"] / 2**20

    track_fit_memory_mb.unit = "MB"


# -- start-up: each sample a fresh interpreter ---------------------------------------------------
_FIT_SETUP = """
import numpy as np
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 64)).astype("float32")
Y = rng.random((256, 4)).astype("float32")
"""
_FIT = """
import fastmlp
fastmlp.MLP([64, 32, 4], dtype="float32", random_state=0).fit(X, Y, epochs=1, batch_size=64)
"""
# NUMBA_CACHE_DIR must be set before numba is imported: in the untimed setup of the child.
_COLD_SETUP = """
import atexit, os, shutil, tempfile
_d = tempfile.mkdtemp(prefix="fastmlp-asv-numba-")
atexit.register(shutil.rmtree, _d, True)
os.environ["NUMBA_CACHE_DIR"] = _d
""" + _FIT_SETUP


# The kernels TimeGridSearch's workers load (relu, softmax + log loss, float64, Adam, and the
# prediction its scoring runs): without them in the warm cache, the first sample's workers
# compiled, and the grid search timed Numba's compiler.
_WARM_CLASSIFIER = """
try:
    from fastmlp import MLPClassifier
except ImportError:  # a build older than the estimators
    MLPClassifier = None
if MLPClassifier is not None:
    Xc = rng.standard_normal((300, 64))
    yc = rng.integers(0, 10, 300)
    MLPClassifier(hidden_layer_sizes=(32,), max_iter=2, random_state=0).fit(Xc, yc).predict(Xc)
"""


def _warm_cache():
    """A Numba cache directory (in asv's cache directory) filled by the fits the start-up and
    grid-search benchmarks run."""
    d = os.path.abspath("numba-cache")
    os.makedirs(d, exist_ok=True)
    code = _FIT_SETUP + _FIT + _WARM_CLASSIFIER
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=dict(os.environ, NUMBA_CACHE_DIR=d))
    return d


_warm_cache.timeout = 300


class TimeStartup:
    """Import time, and import + first fit (a small net) with a cold and a warm Numba cache."""
    setup_cache = staticmethod(_warm_cache)
    number = 1
    repeat = (1, 3, 30.0)
    rounds = 1
    timeout = 300

    def timeraw_import(self, cache_dir):
        return "import fastmlp"

    def timeraw_first_fit_cold_cache(self, cache_dir):
        return _FIT, _COLD_SETUP

    def timeraw_first_fit_warm_cache(self, cache_dir):
        setup = f"import os\nos.environ['NUMBA_CACHE_DIR'] = {cache_dir!r}\n" + _FIT_SETUP
        return _FIT, setup


# -- a user's grid search, end to end: each sample a fresh interpreter -----------------------------
_GRID = """
import warnings
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from contextlib import nullcontext
from joblib import parallel_config
if {peer!r}.startswith("fastmlp"):
    from fastmlp import MLPClassifier
else:
    from sklearn.neural_network import MLPClassifier
X, y = load_digits(return_X_y=True)
grid = {{"mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
        "mlpclassifier__alpha": [1e-4, 1e-3, 1e-2]}}
backend = parallel_config(backend="threading") if {peer!r}.endswith("threads") else nullcontext()
with warnings.catch_warnings(), backend:
    warnings.simplefilter("ignore")
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(max_iter=50,
                                                                        random_state=0)),
                          grid, cv=3, n_jobs=2).fit(X, y)
"""


class TimeGridSearch:
    """``GridSearchCV(StandardScaler + MLPClassifier, 6 settings, cv=3, n_jobs=2)`` on digits,
    end to end in a fresh interpreter (imports and joblib's worker processes included; warm
    Numba cache): what a scikit-learn user's model selection costs, fastmlp against
    scikit-learn.  ``fastmlp-threads`` runs the same search on joblib's threading backend
    (fastmlp's kernels release the GIL): no worker process pays Python's, scikit-learn's
    and Numba's start-up again."""
    setup_cache = staticmethod(_warm_cache)
    params = ["fastmlp", "fastmlp-threads", "sklearn"]
    param_names = ["peer"]
    number = 1
    repeat = (1, 3, 60.0)
    rounds = 1
    timeout = 300

    def timeraw_grid_search(self, cache_dir, peer):
        setup = f"import os\nos.environ['NUMBA_CACHE_DIR'] = {cache_dir!r}\n"
        return _GRID.format(peer=peer), setup
