"""The benchmarks cannot rot: every asv benchmark runs once on tiny data, ``fastmlp bench`` runs
end to end on a tiny workload, and the harness loads only where it should (asv imports the
``benchmarks/`` folder as ``benchmarks`` against older builds; fastmlp installs it as
``fastmlp.bench``).  No timing assertions: these machines are shared."""
import ast
import doctest
import importlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # asv imports the suite as the package `benchmarks`
    sys.path.insert(0, str(ROOT))

suite = importlib.import_module("benchmarks.bench_training")
HARNESS = ("workloads", "workers", "runner", "report", "command", "compare")
# every module of the folder that is not an asv suite (bench_*.py): the harness, scripts
NOT_SUITES = tuple(sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                          if not p.stem.startswith(("bench_", "__"))))

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
    monkeypatch.setattr(suite, "N_SAMPLES", {4096: 256, 64: 128})
    monkeypatch.setattr(suite, "CLASSIFIER_N", 400)
    monkeypatch.setattr(suite, "SCALE", 1.0)
    monkeypatch.setattr(suite, "GEMM_SHAPES", ((128, 128, 128),))
    monkeypatch.setattr(suite, "GEMM_SECONDS", 0.01)
    monkeypatch.chdir(tmp_path)  # prepare_cache writes its files into the working directory


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


def test_flops_per_sample_by_hand():
    from fastmlp.bench.workloads import flops_per_sample, limit_seconds
    # 784-512-512-10: 6 * (784*512 + 512*512 + 512*10) - 2 * 784*512
    assert flops_per_sample((784, 512, 512, 10)) == 3209216
    assert flops_per_sample((100, 100, 10)) == 6 * (100 * 100 + 100 * 10) - 2 * 100 * 100
    assert flops_per_sample((3, 2)) == 4 * 3 * 2  # one layer: forward and weight gradient
    assert limit_seconds((3, 2), 1000, 24e3) == 1.0


@pytest.mark.parametrize("name", HARNESS)
def test_harness_docstring_examples(name):
    module = importlib.import_module("fastmlp.bench." + name)
    assert doctest.testmod(module).failed == 0


def test_asv_suite_and_harness_share_one_definition():
    """The asv suite reads its workloads, FLOP count, data and GEMM probe from workloads.py."""
    assert suite.workloads.__name__ == "benchmarks.workloads"
    assert list(suite.TrackThroughput.params[0]) == list(suite.workloads.WORKLOADS)
    X, y = suite.workloads.make_data("clf", (100, 100, 10), "float32", 64)
    assert X.dtype.name == "float32" and X.shape == (64, 100) and y.shape == (64,)
    assert set(y) <= set(range(10))


_BENCH_NAME = re.compile(r"^(time|timeraw|mem|peakmem|track)_|^(Time|Timeraw|Mem|PeakMem|Track)"
                         r"[A-Z_]")


def test_asv_collects_benchmarks_only_from_the_suite():
    """asv imports every module of the folder: the modules that are not suites define no
    benchmark, and importing them loads neither fastmlp (asv runs them against older builds)
    nor an optional library; the harness of ``fastmlp bench`` not even NumPy."""
    assert set(HARNESS) <= set(NOT_SUITES)
    heavy = ("fastmlp", "torch", "dask", "distributed", "tqdm", "matplotlib", "numpy")
    for modules, allowed in ((HARNESS, ()), (NOT_SUITES, ("numpy",))):
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import importlib\n"
                f"for m in {modules!r}: importlib.import_module('benchmarks.' + m)\n"
                f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT / "tests")
        assert proc.returncode == 0, proc.stderr
        assert set(ast.literal_eval(proc.stdout)) <= set(allowed), modules
    for name in NOT_SUITES:
        module = importlib.import_module("benchmarks." + name)
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            assert not (callable(value) and _BENCH_NAME.match(attr)), (name, attr)
            if isinstance(value, type) and value.__module__ == module.__name__:
                assert not any(_BENCH_NAME.match(a) for a in vars(value)), (name, attr)
    asv_runner = pytest.importorskip("asv_runner.discovery")
    found = {b.name for b in asv_runner.disc_benchmarks(str(ROOT / "benchmarks"))}
    assert found and {n.split(".")[0] for n in found} == {"bench_training", "bench_engine",
                                                          "bench_dask"}
    assert "bench_training.TrackThroughput.track_fraction_of_gemm_limit" in found


def test_fastmlp_and_its_cli_do_not_load_the_harness():
    """`import fastmlp` loads no benchmark code; the command line reads only the bench
    options (command.py, workloads.py), never the workers (PyTorch) or the runner."""
    code = ("import sys, fastmlp\n"
            "first = sorted(m for m in sys.modules if m.startswith('fastmlp.bench'))\n"
            "from fastmlp import cli; cli.build_parser()\n"
            "print(first, sorted(m for m in sys.modules if m.startswith('fastmlp.bench')),"
            " 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "['fastmlp.bench',", "'fastmlp.bench.command',",
                                   "'fastmlp.bench.workloads']", "False"]


def test_plan_alternates_peers():
    from fastmlp.bench.runner import plan_runs
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
    assert entry["reference"] == "fastmlp" and fast["fastmlp_speedup"] is None
    numpy_ = entry["results"]["numpy"]
    assert numpy_["fastmlp_speedup"] == pytest.approx(numpy_["epoch_s"] / fast["epoch_s"])
    assert set(fast["accounted_mb"]) >= {"data", "parameters", "optimizer", "workspace"}
    assert fast["mem_ratio"] > 0 and fast["fit_mem_mb"] > 0
    assert entry["results"]["numpy"]["samples_per_s"] > 0
    assert png.stat().st_size > 0
    from fastmlp.bench.report import format_report
    text = format_report(report)
    assert "fastmlp.MLP" in text and "of limit" in text


def test_fastmlp_bench_threads_prints_the_scaling_table(tmp_path):
    """``--threads 1,2``: the comparison at each count, then one scaling row per workload and
    count with fastmlp's time, scikit-learn's and the plan fastmlp ran (a smoke test)."""
    cmd = [sys.executable, "-m", "fastmlp.cli", "bench", "--quick", "--threads", "1,2,1",
           "--workloads", "sk64", "--peers", "fastmlp-est,sklearn", "--samples", "400",
           "--repeats", "1", "--epochs", "1", "--no-progress", "--keep-openblas-env"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert text.count("fastmlp bench: ") == 2  # 1,2,1: each count once
    table = text[text.index("Thread scaling"):].splitlines()
    assert table[1].split()[:3] == ["workload", "threads", "fastmlp"]
    rows = [line.split() for line in table[3:] if line.strip()]
    assert [r[:2] for r in rows] == [["sk64", "1"], ["sk64", "2"]]
    for r in rows:
        assert float(r[2]) > 0 and float(r[4]) > 0 and float(r[5]) > 0
    assert "(one thread)" in table[3]  # one thread: the blas way, no trial


def test_threads_option_is_checked(capsys):
    from fastmlp import cli
    for bad in ("0", "1,x", ",", "2,-1"):
        assert cli.main(["bench", "--threads", bad, "--quick"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastmlp: error: argument --threads: expected a positive "
                              "integer"), err


def test_bench_thread_counts_above_the_budget_are_capped(monkeypatch, capsys):
    """``fastmlp bench --threads`` counts above the cores this process may use are capped,
    one line each, and a count capped to one already listed runs once (a count of 10**20
    reached the worker processes and failed in ctypes: "int too long to convert")."""
    from fastmlp import _threads, cli
    from fastmlp.bench import report, runner
    monkeypatch.setattr(_threads, "cpu_budget", lambda: 2)
    monkeypatch.setattr(report, "format_report", lambda r: "")
    monkeypatch.setattr(report, "format_scaling", lambda t: "")
    asked = []

    def fake_run(workloads, peers, threads=None, **kw):
        asked.append(threads)
        return {"workloads": {}}
    monkeypatch.setattr(runner, "run_benchmark", fake_run)
    monkeypatch.setattr(runner, "scaling", lambda reports: [])
    rc = cli.main(["bench", "--threads", "1,99999999999999999999,2,8", "--quick",
                   "--no-progress"])
    assert rc == 1  # no peer produced a result (the fake ran none)
    assert asked == [1, 2]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fastmlp: --threads {n} is more than the 2 CPU cores this process may use "
                   f"(its CPU affinity, container quota or Dask worker threads): using 2"
                   for n in ("99999999999999999999", "8")]


def test_a_bad_chart_path_is_refused_before_any_run(tmp_path, capsys):
    """``--plot`` is checked as ``fastmlp train --plot`` is, before the run: a folder's name
    was written as FOLDER.png after the whole run (and reported as the folder), a missing
    folder failed only after the run."""
    pytest.importorskip("matplotlib")
    from fastmlp import cli
    (tmp_path / "sub").mkdir()
    for path, says in ((tmp_path / "sub", "is a directory"),
                       (tmp_path / "nope" / "c.png", "does not exist"),
                       (tmp_path / "c.jpg", "the chart is a PNG")):
        assert cli.main(["bench", "--plot", str(path), "--quick", "--workloads", "sk32"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fastmlp: error: argument --plot: "), err
        assert says in err[0]
    assert sorted(os.listdir(tmp_path)) == ["sub"] and os.listdir(tmp_path / "sub") == []


def test_the_chart_is_written_whole_under_its_own_name(tmp_path):
    """plot_report writes the PNG atomically under exactly the name given."""
    pytest.importorskip("matplotlib")
    from fastmlp.bench.report import plot_report
    report = {"workloads": {"sk32": {"results": {"fastmlp-est": {
        "fraction_of_limit": 0.4, "fit_mem_mb": 40.0}}}}, "machine": {"threads": 2}}
    out = tmp_path / "chart.PNG"
    plot_report(report, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["chart.PNG"]


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys):
    from fastmlp import cli
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert cli.main(["bench", "--plot", "out.png", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err == ("fastmlp: error: argument --plot: needs matplotlib: pip install matplotlib "
                   "(or fastmlp[plot])\n")


def test_missing_peer_is_skipped_with_a_note(monkeypatch):
    from fastmlp.bench import report as report_mod, runner

    def fake_worker(spec, env, timeout):
        if spec["peer"] == "gemm":
            return "ok", {"peak_flops": {"float32": 1e11, "float64": 5e10}}
        if spec["peer"] == "torch":
            return "unavailable", "PyTorch is not installed"
        epoch_s = {"fastmlp": 0.5, "numpy": 2.0}[spec["peer"]]
        return "ok", {"epoch_times": [epoch_s], "epoch_s": epoch_s, "rss_base": 1,
                      "rss_peak": 2**21, "fit_mem": 2**20, "data_bytes": 1, "accounted": None,
                      "final_loss": 0.1, "worker_s": 1.0}

    monkeypatch.setattr(runner, "run_worker", fake_worker)
    report = runner.run_benchmark(["W1"], ["numpy", "torch", "fastmlp"], repeats=2, epochs=1,
                                  progress=False)
    assert report["skipped"] == {"torch": "PyTorch is not installed"}
    entry = report["workloads"]["W1"]
    res = entry["results"]
    assert list(res) == ["fastmlp", "numpy"] and res["numpy"]["runs"] == 2
    assert entry["reference"] == "fastmlp" and res["fastmlp"]["fastmlp_speedup"] is None
    assert res["numpy"]["fastmlp_speedup"] == 4.0  # numpy's 2.0 s over fastmlp's 0.5 s
    # W1: 3209216 FLOP/sample * 32768 samples at 1e11 FLOP/s
    assert entry["limit_s"] == pytest.approx(3209216 * 32768 / 1e11)
    assert res["fastmlp"]["fraction_of_limit"] == pytest.approx(entry["limit_s"] / 0.5)
    text = report_mod.format_report(report)
    assert "Skipped PyTorch CPU: PyTorch is not installed" in text
    assert re.search(r"NumPy \(in-place\) +2\.0000 +16,384 +4\.00 ", text), text
    assert "OPENBLAS_CORETYPE" not in runner.worker_env(False)
    if "OPENBLAS_CORETYPE" in os.environ:
        assert "OPENBLAS_CORETYPE" in runner.worker_env(True)


def test_compare_script_runs_from_a_checkout(tmp_path):
    """`python benchmarks/compare.py` loads its own folder (no fastmlp needed for the NumPy
    peer) and starts workers from it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--json", "--quick",
           "--workloads", "W3", "--peers", "numpy", "--samples", "128", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["workloads"]["W3"]["results"]["numpy"]["samples_per_s"] > 0
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"),
                           "--peers", "nope"], capture_output=True, text=True, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 2 and "expected a comma-separated subset" in proc.stderr


def test_numpy_reference_is_one_sgd_step():
    """The NumPy peer does the same work as fastmlp: one full batch = W - lr * grad, with the
    gradient of fastmlp's functional core."""
    import numpy as np
    from fastmlp import backend
    from fastmlp.bench.workers import numpy_sgd_epoch
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((32, 6)), rng.random((32, 2))
    epoch, W, B = numpy_sgd_epoch((6, 5, 4, 2), "float64", 32, 0.1, X, Y, shuffle=False)
    W0, B0 = [w.copy() for w in W], [b.copy() for b in B]
    epoch()
    _, gW, gB = backend.loss_and_grads(W0, B0, X, Y, activation="logistic",
                                       loss="squared_error", alpha=0.0)
    for new, old, g in zip(W + B, W0 + B0, list(gW) + list(gB)):
        np.testing.assert_allclose(new, old - 0.1 * g, rtol=1e-10, atol=1e-12)


GEMM_LIMIT = r"""
import sys
import threadpoolctl
from benchmarks import workers
seen = []
def peak(shapes, seconds):
    import numpy  # what gemm_peak does first
    seen.extend(i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas")
    return {}
workers.gemm_peak = peak
workers._work_gemm({"threads": 1, "gemm_shapes": (), "gemm_seconds": 0.0})
print(max(seen) if seen else 0)
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every limit is 1")
def test_the_gemm_peak_runs_on_the_workers_thread_count():
    """`fastmlp bench --threads 1` measured the GEMM peak on every core: the BLAS limit was
    set before NumPy (and its OpenBLAS) was loaded, so it limited nothing, and the 1-thread
    'of limit' read half of what it was."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", GEMM_LIMIT], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
