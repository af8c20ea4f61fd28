"""The side-by-side comparison: fastmlp against PyTorch CPU, NumPy (preallocated, in place) and
scikit-learn, each in its own process, alternated, medians of several runs, every result as a
fraction of the GEMM-bound limit measured in the same run.

    python benchmarks/compare.py [--quick] [--workloads W1,W3] [--json] [--plot out.png]

is the same as ``fastmlp bench``: the code lives in ``fastmlp/bench.py`` so that the installed
command works without a source checkout.  (asv imports this module while collecting the suite;
it defines no benchmarks.)
"""

if __name__ == "__main__":
    import sys

    from fastmlp.bench import main

    sys.exit(main())
