"""One place for the compiler flags every kernel uses.

FASTMATH drops ``nnan`` and ``ninf`` on purpose: a diverging run must still see NaN and inf
(the training loop checks the loss), and the saturating exp/tanh rely on comparisons with
infinities behaving.  ``reassoc``/``contract`` let LLVM vectorise reductions and fuse FMAs.
"""

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# The elementary functions (exp, sigmoid, tanh) keep their operation order: ``reassoc`` would
# merge the two-constant Cody-Waite range reduction and cost ~30 ulp in float64.
FASTMATH_STRICT = {"nsz", "contract"}

# Below this size an activation pass runs serially: waking the thread pool costs more than it
# saves.  Measured on 2 cores: a workqueue launch costs ~50-70 us, a serial sigmoid runs
# ~5e9 elements/s.  Memory-bound passes (optimizer updates, gathers) are always serial.
PARALLEL_MIN_ELEMENTS = 1 << 18

JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
PJIT = dict(JIT, parallel=True)
JIT_STRICT = dict(JIT, fastmath=FASTMATH_STRICT)
