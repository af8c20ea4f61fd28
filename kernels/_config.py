"""One place for the compiler flags every kernel uses.

FASTMATH drops ``nnan`` and ``ninf`` on purpose: a diverging run must still see NaN and inf
(the training loop checks the loss), and the saturating exp/tanh rely on comparisons with
infinities behaving.  ``reassoc``/``contract`` let LLVM vectorise reductions and fuse FMAs.
"""

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# The elementary functions (exp, sigmoid, tanh) keep their operation order: ``reassoc`` would
# merge the two-constant Cody-Waite range reduction and cost ~30 ulp in float64.
FASTMATH_STRICT = {"nsz", "contract"}

# parallel=True only where one region covers a whole training step or prediction chunk
# (``network.train_kernels(...).split_steps`` / ``split_forward``): every other kernel is serial, so that the
# BLAS-threaded path never wakes Numba's pool (its OpenMP workers busy-wait after a region and
# took the cores from OpenBLAS's threads: 10x slower per epoch, measured on 2 cores) and so
# that a forked child, where GNU OpenMP must not run, still has a complete serial path.
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy", no_cfunc_wrapper=True)
PJIT = dict(JIT, parallel=True)
JIT_STRICT = dict(JIT, fastmath=FASTMATH_STRICT)
# IEEE operations exactly as written (no FMA contraction, no reciprocal for a division): the
# gradient's finishing pass, which reproduces scikit-learn's NumPy operations ulp for ulp
# (L-BFGS amplifies one-ulp differences into visibly different fits).
JIT_EXACT = dict(JIT, fastmath=False)
# Start-up.  Every jitted function is a compilation unit of its own (~65 ms of fixed cost cold,
# measured; each level of calls also re-optimises the code linked below it), so a fit should
# compile as few, and as small, units as it needs.  The kernels that run a step or a prediction
# are made per (activation, output activation, loss, dropout) (``network.train_kernels``),
# with those codes as constants; Numba types a constant as a literal, the literal travels down
# the calls, and the per-activation and per-loss leaves (``activations.activate_block`` etc.,
# ``losses.loss_block``) are chosen at typing time from it: a fit compiles the code of its own
# activation and loss only, never the other eight (cold first fit of an iris
# MLPClassifier: 11 s -> ~6 s, measured).  Numba's IR inlining (``inline="always"``) would
# prune more but deep-copies the IR at every call site: it made the same fit slower (24 s).
# The leaves' options: JIT without ``cache`` (they are compiled into, and cached with, their
# caller).
JIT_OVERLOAD = {k: v for k, v in JIT.items() if k != "cache"}
# No kernel is passed around as a first-class function, so none needs Numba's C-callable
# wrapper (``no_cfunc_wrapper`` in JIT); functions only ever called from other kernels need no
# Python entry point either (the wrapper boxes and unboxes every argument: ~half of a small
# unit's compile time, measured).
JIT_INNER = dict(JIT, no_cpython_wrapper=True, no_cfunc_wrapper=True)
# Numba's IR inlining, for element functions only: a loss's term (kernels/losses.py), GELU's
# pieces and its element functions (kernels/expfn.py, kernels/activations.py).  As calls, LLVM
# left them out of line -- past its inlining threshold -- and the loops over a block called them
# element by element, unvectorised (100 x 10 log loss 3.8 us against 1.35; 100 x 512 float64
# GELU 964 us against 106; measured).
JIT_INLINED = dict(JIT_INNER, inline="always")
JIT_STRICT_INLINED = dict(JIT_STRICT, inline="always")
