"""Training speed, memory and start-up of fastmlp, for airspeed velocity.

Reference network 784-512-512-10 (sigmoid hidden, identity output, squared error, plain SGD):
W1 = float32 batch 4096, W3 = float32 batch 64, W4 = float64 batch 4096; plus scikit-learn's
MLPClassifier defaults (relu, hidden (100,), adam, batch 200) on 50000 x 100, 10 classes.
Every benchmark warms up (JIT, workspace) in ``setup``; a timed call is one epoch.

Run: ``asv run --python=same --quick`` (smoke), ``asv continuous main HEAD`` (regressions).
"""
import os
import subprocess
import sys
import json
import statistics
import time

from . import common
from .common import NET, SK_NET, LEARNING_RATE


class TimeEpoch:
    """Seconds per epoch of the reference network (W1/W3/W4 shapes; N in common.N_SAMPLES)."""
    params = (["float32", "float64"], [64, 4096])
    param_names = ["dtype", "batch_size"]
    setup_cache = staticmethod(common.setup_cache)
    number = 1
    repeat = (2, 5, 10.0)
    warmup_time = 0
    timeout = 180

    def setup(self, cache, dtype, batch_size):
        self.X, self.Y = common.load_data(cache, NET, dtype, batch_size)
        self.model = common.sgd_model(dtype)
        self.batch_size = batch_size
        self.time_epoch(cache, dtype, batch_size)  # JIT load, workspace

    def time_epoch(self, cache, dtype, batch_size):
        self.model.partial_fit(self.X, self.Y, epochs=1, batch_size=self.batch_size,
                               learning_rate=LEARNING_RATE, optimizer="sgd")


class TimeSklearnDefaults:
    """Seconds per epoch of fastmlp.MLPClassifier at scikit-learn's defaults (50000 x 100)."""
    params = (["float32", "float64"],)
    param_names = ["dtype"]
    setup_cache = staticmethod(common.setup_cache)
    number = 1
    repeat = (3, 10, 10.0)
    warmup_time = 0
    timeout = 180

    def setup(self, cache, dtype):
        import numpy as np
        self.X, self.y = common.load_data(cache, SK_NET, dtype, 200)
        self.est = common.classifier(dtype)
        self.est.partial_fit(self.X, self.y, classes=np.unique(self.y))

    def time_epoch(self, cache, dtype):
        self.est.partial_fit(self.X, self.y)


class PeakMemFit:
    """Peak RSS of a benchmark process that fits one epoch (data included)."""
    params = (["float32", "float64"],)
    param_names = ["dtype"]
    setup_cache = staticmethod(common.setup_cache)
    timeout = 180

    def setup(self, cache, dtype):
        self.X, self.Y = common.load_data(cache, NET, dtype, 4096)

    def peakmem_fit(self, cache, dtype):
        common.sgd_model(dtype).fit(self.X, self.Y, epochs=1, batch_size=4096,
                                    learning_rate=LEARNING_RATE)


class TrackThroughput:
    """Samples per second and fraction of the GEMM-bound limit (peak measured in setup_cache):
    median of three epochs after a warm-up epoch."""
    params = (list(common.WORKLOADS),)
    param_names = ["workload"]
    setup_cache = staticmethod(common.setup_cache)
    timeout = 240

    def setup(self, cache, workload):
        net, dtype, batch = common.WORKLOADS[workload]
        X, Y = common.load_data(cache, net, dtype, batch)
        if net == SK_NET:
            import numpy as np
            est = common.classifier(dtype)
            est.partial_fit(X, Y, classes=np.unique(Y))
            step = lambda: est.partial_fit(X, Y)  # noqa: E731
        else:
            model = common.sgd_model(dtype)
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
        self.limit_s = common.flops_per_sample(net) * self.n / cache["gemm_peak"][dtype]

    def track_samples_per_s(self, cache, workload):
        return self.n / self.epoch_s

    track_samples_per_s.unit = "samples/s"

    def track_fraction_of_gemm_limit(self, cache, workload):
        return self.limit_s / self.epoch_s

    track_fraction_of_gemm_limit.unit = "fraction"


class TrackFitMemory:
    """The memory goal of issue 4, in a fresh interpreter: peak RSS of a fit above the baseline
    (imports, compiled kernels), in MB and as a multiple of what the fit must hold (data,
    parameters, gradients, optimizer state, workspace).  Goal: ratio <= 1.2."""
    params = (["float32", "float64"],)
    param_names = ["dtype"]
    timeout = 240

    def setup(self, dtype):
        if not sys.platform.startswith("linux"):
            raise NotImplementedError("reads /proc/self/status")
        n = common.n_samples(NET, 4096)
        out = subprocess.run([sys.executable, "-c", common.MEMORY_PROBE, dtype, str(n),
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


def _warm_cache():
    """A Numba cache directory (in asv's cache directory) filled by one fit."""
    d = os.path.abspath("numba-cache")
    os.makedirs(d, exist_ok=True)
    code = _FIT_SETUP + _FIT
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
