"""``python benchmarks/compare.py [options]``: ``fastmlp bench`` from a source checkout.

fastmlp side by side with PyTorch CPU, NumPy (preallocated, in place) and scikit-learn, each in
its own process, alternated, medians of several runs, every result as a fraction of the
GEMM-bound limit measured in the same run.  The options are those of ``fastmlp bench``
(``command.py``).  This script loads the folder it sits in as a package, so it runs this
checkout's harness whichever fastmlp is installed (the fastmlp peers train with the fastmlp
that ``import fastmlp`` finds).  asv imports this module while collecting the suite; it defines
no benchmarks and does nothing on import.
"""

if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.command import main

    sys.exit(main())
