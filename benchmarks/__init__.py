"""fastmlp's benchmarks: the airspeed velocity (asv) suite and the side-by-side comparison.

One folder, two identities:

- ``benchmarks`` -- asv imports this folder as a package (``asv.conf.json`` at the repository
  root), collects every module and runs ``bench_training.py`` against the build of each commit
  it measures, older ones included.  So nothing here imports code from the ``fastmlp`` package
  beyond its public API (``fastmlp.MLP``, the estimators), the modules import each other
  relatively, and a module does nothing on import.
- ``fastmlp.bench`` -- the same files, installed as a subpackage of fastmlp
  (``[tool.setuptools.package-dir]`` in pyproject.toml; a source checkout maps it the same way
  when ``fastmlp.bench`` is first imported), so that ``fastmlp bench`` works from a wheel.

Modules: ``workloads`` (the workloads, peers, FLOP count, data and GEMM probe: the one
definition), ``bench_training`` (the asv suite), and the comparison by job: ``command`` (the
options, light) -> ``runner`` (plan, processes, medians) -> ``workers`` (one library per
process) and ``report`` (table, chart); ``compare`` runs it from a checkout.
"""
