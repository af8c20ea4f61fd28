"""The benchmarks cannot rot: every asv benchmark runs once on tiny data, and ``fastmlp bench``
runs end to end on a tiny workload.  No timing assertions: these machines are shared."""
import importlib
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the suite is a plain directory, not an installed package
    sys.path.insert(0, str(ROOT))

common = importlib.import_module("benchmarks.common")
suite = importlib.import_module("benchmarks.bench_training")

PREFIXES = ("time_", "peakmem_", "track_", "timeraw_", "mem_")
_CACHES = {}  # setup_cache function -> its result, computed once per session (as asv does)


def _benchmarks():
    for cname, cls in sorted(vars(suite).items()):
        if not isinstance(cls, type) or cls.__module__ != suite.__name__:
            continue
        for name in sorted(vars(cls)):
            if name.startswith(PREFIXES):
                slow = name.startswith("timeraw_")  # fresh interpreters, a cold JIT compile
                yield pytest.param(cname, name, id=f"{cname}.{name}",
                                   marks=[pytest.mark.slow] if slow else [])


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "N_SAMPLES", {4096: 256, 64: 128})
    monkeypatch.setattr(common, "SK_N", 400)
    monkeypatch.setattr(common, "SCALE", 1.0)
    monkeypatch.setattr(common, "GEMM_SHAPES", ((128, 128, 128),))
    monkeypatch.setattr(common, "GEMM_SECONDS", 0.01)
    monkeypatch.chdir(tmp_path)  # setup_cache writes its files into the working directory


def _setup_cache(fn, tmp_path_factory):
    if fn not in _CACHES:
        os.chdir(tmp_path_factory.mktemp("asv-cache"))  # the tiny fixture restores the cwd
        _CACHES[fn] = fn()
    return _CACHES[fn]


def _run_timeraw(result):
    """What asv does with a timeraw_ benchmark's code: run it in a fresh interpreter."""
    stmt, setup = result if isinstance(result, tuple) else (result, "")
    code = setup + "\n" + stmt
    compile(code, "<timeraw>", "exec")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("cname,name", list(_benchmarks()))
def test_asv_benchmark_runs(tiny, tmp_path_factory, cname, name):
    cls = getattr(suite, cname)
    setup_cache = getattr(cls, "setup_cache", None)
    cache = (_setup_cache(setup_cache, tmp_path_factory),) if setup_cache is not None else ()
    params = getattr(cls, "params", ())
    if params and not isinstance(params[0], (list, tuple)):
        params = (params,)
    combos = list(itertools.product(*params)) if params else [()]
    if name.startswith("timeraw_"):
        combos = combos[:1]
    ran = 0
    for combo in combos:
        bench = cls()
        args = cache + tuple(combo)
        try:
            if hasattr(bench, "setup"):
                bench.setup(*args)
        except NotImplementedError:  # asv's "skip": only for an estimator this commit lacks
            continue
        result = getattr(bench, name)(*args)
        if name.startswith("track_"):
            assert isinstance(result, float) and math.isfinite(result) and result > 0
        elif name.startswith("timeraw_"):
            _run_timeraw(result)
        ran += 1
    assert ran, "every parameter combination was skipped"


def test_suite_matches_fastmlp_bench():
    from fastmlp import bench
    for name, (net, dtype, batch) in common.WORKLOADS.items():
        w = bench.WORKLOADS[name]
        assert (tuple(w["sizes"]), w["dtype"], w["batch_size"]) == (net, dtype, batch)
        assert common.flops_per_sample(net) == bench.flops_per_sample(net)
    # 784-512-512-10: 6 * (784*512 + 512*512 + 512*10) - 2 * 784*512
    assert bench.flops_per_sample((784, 512, 512, 10)) == 3209216


def test_plan_alternates_peers():
    from fastmlp.bench import plan_runs
    plan = plan_runs(["W3", "sk64"], ["fastmlp", "numpy", "torch"], repeats=2)
    w3 = [(p, r) for w, p, r in plan if w == "W3"]
    assert w3 == [("fastmlp", 0), ("numpy", 0), ("torch", 0),
                  ("numpy", 1), ("torch", 1), ("fastmlp", 1)]
    assert [p for w, p, _ in plan if w == "sk64"] == ["torch", "torch"]  # no NumPy classifier


def test_fastmlp_bench_quick_json(tmp_path):
    """The command end to end on a tiny W3, every peer (a missing library is a skip note)."""
    png = tmp_path / "bench.png"
    cmd = [sys.executable, "-m", "fastmlp.cli", "bench", "--quick", "--json", "--workloads",
           "W3", "--samples", "256", "--repeats", "1", "--epochs", "1", "--no-progress",
           "--keep-openblas-env", "--plot", str(png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    entry = report["workloads"]["W3"]
    assert entry["n_samples"] == 256 and entry["flops_per_sample"] == 3209216
    assert report["settings"]["openblas_env_unset"] == []
    assert report["gemm_peak_flops"]["float32"] > 0
    for peer in ("fastmlp", "fastmlp-est", "numpy", "torch", "sklearn"):
        assert peer in entry["results"] or peer in report["skipped"], (peer, entry["errors"])
    fast = entry["results"]["fastmlp"]
    assert fast["epoch_s"] > 0 and fast["fraction_of_limit"] > 0
    assert fast["fastmlp_speedup"] == 1.0
    assert set(fast["accounted_mb"]) >= {"data", "parameters", "optimizer", "workspace"}
    assert fast["mem_ratio"] > 0 and fast["fit_mem_mb"] > 0
    assert entry["results"]["numpy"]["samples_per_s"] > 0
    assert png.stat().st_size > 0
    from fastmlp.bench import format_report
    text = format_report(report)
    assert "fastmlp.MLP" in text and "of limit" in text


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys):
    from fastmlp import cli
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert cli.main(["bench", "--plot", "out.png", "--quick"]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_missing_peer_is_skipped_with_a_note(monkeypatch):
    from fastmlp import bench

    def fake_worker(spec, env, timeout):
        if spec["peer"] == "gemm":
            return "ok", {"peak_flops": {"float32": 1e11, "float64": 5e10}}
        if spec["peer"] == "torch":
            return "unavailable", "PyTorch is not installed"
        return "ok", {"epoch_times": [0.5], "epoch_s": 0.5, "rss_base": 1, "rss_peak": 2**21,
                      "fit_mem": 2**20, "data_bytes": 1, "accounted": None,
                      "final_loss": 0.1, "worker_s": 1.0}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    report = bench.run_benchmark(["W1"], ["numpy", "torch"], repeats=2, epochs=1,
                                 progress=False)
    assert report["skipped"] == {"torch": "PyTorch is not installed"}
    res = report["workloads"]["W1"]["results"]
    assert list(res) == ["numpy"] and res["numpy"]["runs"] == 2
    assert "Skipped PyTorch CPU: PyTorch is not installed" in bench.format_report(report)
    assert "OPENBLAS_CORETYPE" not in bench.worker_env(False)
    if "OPENBLAS_CORETYPE" in os.environ:
        assert "OPENBLAS_CORETYPE" in bench.worker_env(True)


def test_numpy_reference_is_one_sgd_step():
    """The NumPy peer does the same work as fastmlp: one full batch = W - lr * grad, with the
    gradient of fastmlp's functional core."""
    import numpy as np
    from fastmlp import backend
    from fastmlp.bench import numpy_sgd_epoch
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((32, 6)), rng.random((32, 2))
    epoch, W, B = numpy_sgd_epoch((6, 5, 4, 2), "float64", 32, 0.1, X, Y, shuffle=False)
    W0, B0 = [w.copy() for w in W], [b.copy() for b in B]
    epoch()
    _, gW, gB = backend.loss_and_grads(W0, B0, X, Y, activation="logistic",
                                       loss="squared_error", alpha=0.0)
    for new, old, g in zip(W + B, W0 + B0, list(gW) + list(gB)):
        np.testing.assert_allclose(new, old - 0.1 * g, rtol=1e-10, atol=1e-12)
