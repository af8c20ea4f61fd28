"""Flat storage for parameters, gradients and per-layer activations/deltas (allocated once)."""
import numpy as np

from .kernels import layer_view

# The most training steps one kernel call runs (``Trainer.run_epoch``).
STEPS_PER_CALL = 256

# Rows per chunk when a whole data set goes through the network (prediction; L-BFGS on
# sparse input; the functional backend's engines): bounds the workspace, and sparse input is
# densified one chunk at a time.
PREDICT_CHUNK = 4096


class Layout:
    """Where each W[l] and b[l] lives in the flat parameter vector (P,): all W[l] raveled in
    C order, then all b[l] -- scikit-learn's L-BFGS packing."""

    def __init__(self, sizes):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.n_layers = len(self.sizes) - 1
        self.coef_shapes = [(int(a), int(b)) for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        self.n_coef = sum(a * b for a, b in self.coef_shapes)
        self.n_params = self.n_coef + int(self.sizes[1:].sum())
        self._coef_slices, self._int_slices = [], []
        off = 0
        for a, b in self.coef_shapes:
            self._coef_slices.append(slice(off, off + a * b))
            off += a * b
        for _, b in self.coef_shapes:
            self._int_slices.append(slice(off, off + b))
            off += b

    def views(self, flat):
        """(coefs, intercepts): lists of views into flat (P,)."""
        coefs = [flat[s].reshape(shape) for s, shape in zip(self._coef_slices, self.coef_shapes)]
        intercepts = [flat[s] for s in self._int_slices]
        return coefs, intercepts

    def pack(self, coefs, intercepts, out):
        """Copy coefs/intercepts into out (P,) (overwrites); returns out."""
        for s, c in zip(self._coef_slices, coefs):
            out[s] = np.ravel(c)
        for s, b in zip(self._int_slices, intercepts):
            out[s] = b
        return out


class Workspace:
    """Every buffer one (model, batch capacity) needs, allocated once.

    acts / deltas hold A[1..L] and delta[1..L] as (capacity, n_l) blocks; X, Y, sw are the
    gathered batch when rows must be copied (shuffled or sparse input).  Both ways of running
    a step leave the same things there: under the ``split`` way each thread writes its own
    block of rows of acts, deltas, X, Y and sw, so they hold the whole batch as under ``blas``.
    Only the gradient sums are per thread: ``thread_grads`` (threads - 1, P) holds threads
    1.. (thread 0 sums into the trainer's grads; after a step the trainer's grads hold the
    total), then, where each thread runs its rows as several row blocks in turn
    (``fastmlp._blocks``), one scratch vector per thread for the next block's sums; ``partial``
    (threads,) holds their loss sums.  ``plan`` is the way the last call ran (a
    ``fastmlp._planner.Plan``: strategy, why, and the trial's timings), ``row_blocks`` the
    row blocks each thread ran its rows as in the last dense training call.  An inference
    workspace (``training=False``) has no deltas, Y or sw (empty arrays)."""

    def __init__(self, layout, capacity, dtype, n_outputs=None, training=True):
        sizes = layout.sizes
        total = capacity * int(sizes[1:].sum())
        rows = capacity if training else 0
        self.layout = layout
        self.capacity = int(capacity)
        self.dtype = np.dtype(dtype)
        self.acts = np.zeros(total, dtype)
        self.deltas = np.zeros(total if training else 0, dtype)
        self.X = np.zeros((capacity, int(sizes[0])), dtype)
        self.Y = np.zeros((rows, int(sizes[-1])), dtype)
        self.sw = np.zeros(rows, dtype)
        self.no_sw = np.zeros(0, dtype)
        self.n_rows = 0  # rows in the last batch that ran
        self.thread_grads = np.zeros((0, layout.n_params), dtype)
        self.partial = np.zeros(1, np.float64)
        # per step of one multi-step kernel call: batch losses, weight sums, Adam's rates
        steps = STEPS_PER_CALL if training else 0
        self.step_losses = np.zeros(steps, np.float64)
        self.step_wsums = np.zeros(steps, np.float64)
        self.lr_ts = np.zeros(steps, np.float64)
        self.plan = None
        self.row_blocks = 1  # the row blocks each thread ran in the last dense training call

    def ensure_split(self, n_threads):
        """Per-thread buffers for n_threads (allocated once, grown if asked for more: the
        split way's threads, and a scratch per thread for row blocks)."""
        if self.thread_grads.shape[0] < n_threads - 1:
            self.thread_grads = np.zeros((n_threads - 1, self.layout.n_params), self.dtype)
        if self.partial.shape[0] < n_threads:
            self.partial = np.zeros(n_threads, np.float64)

    def A(self, l, n=None):
        """A[l] for the last n rows computed (default: the last batch), l = 1..L."""
        n = self.n_rows if n is None else n
        return layer_view(self.acts, self.layout.sizes, self.capacity, l, n)

    def delta(self, l, n=None):
        """delta[l] = dLoss/dZ[l] of the last batch, l = 1..L."""
        n = self.n_rows if n is None else n
        return layer_view(self.deltas, self.layout.sizes, self.capacity, l, n)

    @property
    def nbytes(self):
        return sum(a.nbytes for a in (self.acts, self.deltas, self.X, self.Y, self.sw,
                                      self.thread_grads, self.partial, self.step_losses,
                                      self.step_wsums, self.lr_ts))
