"""What the benchmarks measure: the workloads, the peers, the FLOP count of a training step, the
synthetic data and the GEMM probe -- defined once, for both harnesses in this folder.

``fastmlp bench`` (``command.py`` -> ``runner.py`` -> ``workers.py`` -> ``report.py``) and the
asv suite (``bench_training.py``) read everything here.  The rules that keep that safe:

- Standard library only at the top; NumPy is imported inside the functions that need it.
  ``fastmlp``'s command line reads this module to build the ``bench`` options, and the workers
  of other libraries load it without carrying anything else in their time or memory.
- Nothing from the ``fastmlp`` package.  asv imports the *current* ``benchmarks/`` folder into
  environments holding *older* builds of fastmlp, so a definition the suite needs must live in
  this folder, never in code that an older fastmlp lacks.
"""
import time

# The reference network: sigmoid hidden layers, identity output, squared error, plain SGD.
NET = (784, 512, 512, 10)
# scikit-learn's MLPClassifier defaults (relu, hidden (100,), adam, batch 200) on 100 features,
# 10 classes.
CLASSIFIER_NET = (100, 100, 10)

# kind "sgd": the reference network (momentum 0).
# kind "clf": the MLPClassifier defaults (alpha 1e-4, softmax + log loss).
# n_samples / quick_samples: N of ``fastmlp bench`` and of ``fastmlp bench --quick``.
WORKLOADS = {
    "W1": dict(kind="sgd", sizes=NET, dtype="float32", batch_size=4096, n_samples=32768,
               quick_samples=8192, learning_rate=0.01),
    "W3": dict(kind="sgd", sizes=NET, dtype="float32", batch_size=64, n_samples=16384,
               quick_samples=2048, learning_rate=0.01),
    "W4": dict(kind="sgd", sizes=NET, dtype="float64", batch_size=4096, n_samples=16384,
               quick_samples=8192, learning_rate=0.01),
    "sk64": dict(kind="clf", sizes=CLASSIFIER_NET, dtype="float64", batch_size=200,
                 n_samples=50000, quick_samples=5000, learning_rate=0.001),
    "sk32": dict(kind="clf", sizes=CLASSIFIER_NET, dtype="float32", batch_size=200,
                 n_samples=50000, quick_samples=5000, learning_rate=0.001),
}
_DESCRIPTIONS = {
    "sgd": "{net} sigmoid/identity, squared error, SGD; {dtype}, batch {batch_size}, N={n}",
    "clf": "sklearn MLPClassifier defaults: {net} relu, adam, batch {batch_size}, "
           "{n} x {n_in}, 10 classes, {dtype}",
}

# peer key -> (label, workload kinds it runs); the first applicable of "fastmlp" and
# "fastmlp-est" is the reference that the "fastmlp x" column divides by.
PEERS = {
    "fastmlp": ("fastmlp.MLP", ("sgd",)),
    "fastmlp-est": ("fastmlp estimator", ("sgd", "clf")),
    "numpy": ("NumPy (in-place)", ("sgd",)),
    "torch": ("PyTorch CPU", ("sgd", "clf")),
    "sklearn": ("scikit-learn", ("sgd", "clf")),
}
DEFAULT_PEERS = ("fastmlp", "fastmlp-est", "numpy", "torch", "sklearn")
# The estimator on W1/W3 is what matters for a drop-in; on W4 it would only add run time.
SKIP_BY_DEFAULT = {("W4", "fastmlp-est")}

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE pin old OpenBLAS kernels (a workaround for old OpenBLAS
# bugs) and slow a current OpenBLAS; the workers run without them unless told otherwise.
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# GEMM shapes (m, k, n) for the peak: the reference net's products at batch 4096 and squares.
GEMM_SHAPES = ((4096, 784, 512), (4096, 512, 512), (1024, 1024, 1024), (512, 512, 512))
QUICK_GEMM_SHAPES = ((1024, 784, 512), (512, 512, 512))


def flops_per_sample(sizes):
    """FLOP of one training step per sample.

    Forward, delta and weight gradient of every layer (``2 * n_in * n_out`` each), minus the
    delta of the input layer: ``6 * sum(n_in * n_out) - 2 * n_in0 * n_out0``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first.

    Returns
    -------
    int

    Examples
    --------
    >>> flops_per_sample((784, 512, 512, 10))
    3209216
    """
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return 6 * sum(a * b for a, b in pairs) - 2 * pairs[0][0] * pairs[0][1]


def limit_seconds(sizes, n_samples, peak_flops):
    """The GEMM-bound lower limit of one epoch, in seconds: ``flops_per_sample * N / peak``."""
    return flops_per_sample(sizes) * n_samples / peak_flops


def describe(name, workload, n):
    """One line naming the workload, e.g. ``"W3: 784-512-512-10 sigmoid/identity, ..."``."""
    w = workload
    net = "-".join(map(str, w["sizes"]))
    return f"{name}: " + _DESCRIPTIONS[w["kind"]].format(net=net, n=n, n_in=w["sizes"][0], **w)


def make_data(kind, sizes, dtype, n, seed=0):
    """Synthetic data of a workload, generated in the target dtype (no float64 temporaries).

    Parameters
    ----------
    kind : {"sgd", "clf"}
    sizes : sequence of int
        Layer widths, input first.
    dtype : str
    n : int
        Number of samples.
    seed : int

    Returns
    -------
    X : ndarray of shape (n, sizes[0])
        Standard normal.
    Y : ndarray
        ``"sgd"``: uniform in [0, 1), shape (n, sizes[-1]).  ``"clf"``: integer labels of a
        random linear map of X (learnable, roughly balanced), shape (n,).
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]), dtype=np.dtype(dtype).type)
    if kind == "sgd":
        return X, rng.random((n, sizes[-1]), dtype=np.dtype(dtype).type)
    proj = rng.standard_normal((sizes[0], sizes[-1])).astype(dtype)
    return X, np.argmax(X @ proj, axis=1)


def gemm_peak(shapes=GEMM_SHAPES, seconds=0.25, dtypes=("float32", "float64")):
    """The best GEMM rate (``np.matmul``, i.e. OpenBLAS) over the shapes, per dtype.

    Each shape runs at least three times and for ``seconds``; the fastest call counts.  Uses
    the threads of the BLAS pool as they are set.

    Parameters
    ----------
    shapes : sequence of (m, k, n)
    seconds : float
        Time budget per shape and dtype.
    dtypes : sequence of str

    Returns
    -------
    dict
        dtype -> FLOP/s.
    """
    import numpy as np
    peak = {}
    for dtype in dtypes:
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
