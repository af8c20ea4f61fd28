"""Per-call overhead and allocation of fastmlp's backend, for airspeed velocity (asv).

What a caller that embeds fastmlp (an optimiser, a training loop, another framework) pays per
call of ``loss_and_grads`` and ``forward``: the reusable ``fastmlp.backend.Engine`` (flat
parameters, caller-owned outputs) against the functional API (``backend.loss_and_grads`` /
``backend.forward`` on lists of per-layer arrays, new arrays out).  Two shapes:

- ``small``: 10-16-3, 32 rows -- the call is all overhead (validation, dispatch, threads);
- ``large``: 64-256-10, 2000 rows -- the call is mostly arithmetic.

``time_*`` is seconds per call; ``track_alloc_*`` the bytes traced by ``tracemalloc`` at the
peak of one steady-state call (after warm-up calls), i.e. what one call allocates.

asv runs this module against older builds too: a commit without ``Engine`` skips the engine
variants (NotImplementedError), the functional ones run wherever ``fastmlp.backend`` has them.
"""
SHAPES = {"small": ((10, 16, 3), 32), "large": ((64, 256, 10), 2000)}
APIS = ["engine", "functional"]
ACT, OUT, LOSS = "relu", "softmax", "log_loss"


def make_calls(shape, api):
    """(loss_and_grads, forward): zero-argument callables of one API on one shape, warmed up."""
    import numpy as np
    from fastmlp import backend
    sizes, n = SHAPES[shape]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    coefs = [rng.standard_normal((a, b)) * 0.1 for a, b in zip(sizes[:-1], sizes[1:])]
    intercepts = [np.zeros(b) for b in sizes[1:]]
    if api == "engine":
        if not hasattr(backend, "Engine"):
            raise NotImplementedError("fastmlp.backend.Engine does not exist at this commit")
        eng = backend.Engine(list(sizes), activation=ACT, out_activation=OUT, loss=LOSS)
        params = eng.pack(coefs, intercepts)
        grads = np.empty(eng.n_params)
        out = np.empty((n, sizes[-1]))
        calls = (lambda: eng.loss_and_grads(params, X, Y, alpha=1e-4, out=grads),
                 lambda: eng.forward(params, X, out=out))
    else:
        calls = (lambda: backend.loss_and_grads(coefs, intercepts, X, Y, activation=ACT,
                                                out_activation=OUT, loss=LOSS, alpha=1e-4),
                 lambda: backend.forward(coefs, intercepts, X, activation=ACT,
                                         out_activation=OUT))
    for call in calls:
        for _ in range(3):
            call()
    return calls


def peak_traced_bytes(call):
    """Peak bytes traced by tracemalloc during one call (above what was traced before it)."""
    import tracemalloc
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return float(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()


class TimeBackendCall:
    """Seconds per call of loss_and_grads and forward, Engine vs the functional API."""
    params = (list(SHAPES), APIS)
    param_names = ["shape", "api"]
    timeout = 120

    def setup(self, shape, api):
        self.loss_and_grads, self.forward = make_calls(shape, api)

    def time_loss_and_grads(self, shape, api):
        self.loss_and_grads()

    def time_forward(self, shape, api):
        self.forward()


class TrackBackendAllocation:
    """Bytes allocated (tracemalloc peak) by one steady-state call."""
    params = (list(SHAPES), APIS)
    param_names = ["shape", "api"]
    unit = "bytes"
    timeout = 120

    def setup(self, shape, api):
        self.loss_and_grads, self.forward = make_calls(shape, api)

    def track_alloc_loss_and_grads(self, shape, api):
        return peak_traced_bytes(self.loss_and_grads)

    def track_alloc_forward(self, shape, api):
        return peak_traced_bytes(self.forward)
