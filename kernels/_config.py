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
# (``network.split_step`` / ``split_forward``): every other kernel is serial, so that the
# BLAS-threaded path never wakes Numba's pool (its OpenMP workers busy-wait after a region and
# took the cores from OpenBLAS's threads: 10x slower per epoch, measured on 2 cores) and so
# that a forked child, where GNU OpenMP must not run, still has a complete serial path.
JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
PJIT = dict(JIT, parallel=True)
JIT_STRICT = dict(JIT, fastmath=FASTMATH_STRICT)
