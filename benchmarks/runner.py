"""The parent of ``fastmlp bench``: plan the runs, start one worker process per run, and gather
the medians into the report (a JSON-ready dict; ``report.py`` prints and draws it).

Every measurement runs in its own process -- two libraries' thread pools in one process, or a
previous run's heap, would distort both time and memory -- and the peers take turns (run r of
every peer, then run r+1, the order rotated each round), so that a noisy neighbour on shared
cores hurts every peer alike.  The GEMM-bound limit of an epoch is
``workloads.flops_per_sample * N / peak``, with the peak measured by a GEMM worker before and
after the others in the same run.

Standard library only at the top (tqdm is imported when a run starts).
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from .workers import RESULT_MARK, UNAVAILABLE_EXIT
from .workloads import (DEFAULT_PEERS, GEMM_SHAPES, OPENBLAS_PINS, PEERS, QUICK_GEMM_SHAPES,
                        WORKLOADS, describe, flops_per_sample, limit_seconds)

_HERE = os.path.dirname(os.path.abspath(__file__))

# A worker's interpreter loads this folder as the stand-alone package ``_fastmlp_bench`` (its
# modules import each other relatively) without importing fastmlp, then runs the worker:
#     python -c _BOOT <this folder> <spec as JSON>
_BOOT = ("import importlib, importlib.util as u, os, sys; d = sys.argv[1]; "
         "s = u.spec_from_file_location('_fastmlp_bench', os.path.join(d, '__init__.py'), "
         "submodule_search_locations=[d]); m = u.module_from_spec(s); "
         "sys.modules['_fastmlp_bench'] = m; s.loader.exec_module(m); "
         "sys.exit(importlib.import_module('_fastmlp_bench.workers').worker_main(sys.argv[2:]))")


def _n_cpus():
    """The cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_env(keep_openblas_env):
    """The workers' environment: this process's, without OPENBLAS_PINS unless kept."""
    env = dict(os.environ)
    if not keep_openblas_env:
        for name in OPENBLAS_PINS:
            env.pop(name, None)
    return env


def run_worker(spec, env, timeout):
    """Run one worker process (a fresh interpreter in an empty folder).

    Returns
    -------
    status : {"ok", "unavailable", "error"}
    payload : dict or str
        The worker's result, or why there is none.
    """
    with tempfile.TemporaryDirectory(prefix="fastmlp-bench-") as cwd:  # no ./fastmlp shadowing
        try:
            proc = subprocess.run([sys.executable, "-c", _BOOT, _HERE,
                                   json.dumps(spec)], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "error", f"timed out after {timeout:.0f} s"
    payload = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            payload = json.loads(line[len(RESULT_MARK):])
    if proc.returncode == UNAVAILABLE_EXIT and payload:
        return "unavailable", payload["unavailable"]
    if proc.returncode != 0 or payload is None:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return "error", f"exit {proc.returncode}: {tail}"
    return "ok", payload


def plan_runs(workloads, peers, repeats, skip=()):
    """The runs in the order they happen: the peers take turns, the order rotated each round.

    Parameters
    ----------
    workloads : sequence of str
        Keys of ``workloads.WORKLOADS``.
    peers : sequence of str
        Keys of ``workloads.PEERS``; a peer runs only the workload kinds it supports.
    repeats : int
        Rounds per workload.
    skip : collection of (workload, peer)

    Returns
    -------
    list of (workload, peer, round)

    Examples
    --------
    >>> plan_runs(["W3"], ["fastmlp", "numpy"], repeats=2)
    [('W3', 'fastmlp', 0), ('W3', 'numpy', 0), ('W3', 'numpy', 1), ('W3', 'fastmlp', 1)]
    """
    plan = []
    for name in workloads:
        kind = WORKLOADS[name]["kind"]
        applicable = [p for p in peers if kind in PEERS[p][1] and (name, p) not in skip]
        for r in range(repeats):
            k = r % max(len(applicable), 1)
            for p in applicable[k:] + applicable[:k]:
                plan.append((name, p, r))
    return plan


def run_benchmark(workloads, peers, repeats=3, epochs=3, quick=False, n_samples=None,
                  threads=None, keep_openblas_env=False, timeout=600.0, progress=True,
                  skip=()):
    """Run the comparison: a GEMM worker, the planned runs, a GEMM worker again.

    Parameters
    ----------
    workloads, peers : sequence of str
        Keys of ``workloads.WORKLOADS`` and ``workloads.PEERS``.
    repeats : int
        Worker runs per peer and workload.
    epochs : int
        Timed epochs per run, after one warm-up epoch.
    quick : bool
        The workloads' ``quick_samples`` and a shorter GEMM probe.
    n_samples : int, optional
        N of every workload instead of its own.
    threads : int, optional
        Threads per worker; default the cores this process may use.
    keep_openblas_env : bool
        Keep ``workloads.OPENBLAS_PINS`` in the workers' environment.
    timeout : float
        Seconds one worker may run.
    progress : bool
        A progress bar on stderr.
    skip : collection of (workload, peer)

    Returns
    -------
    dict
        The report, JSON-ready: machine, settings, GEMM peak, and per workload the medians of
        every peer (``epoch_s``, ``samples_per_s``, ``fraction_of_limit``, memory, and
        ``fastmlp_speedup``, the peer's time over the reference's; None for the reference),
        the peers skipped and why, errors and notes.
    """
    from tqdm import tqdm
    threads = threads or _n_cpus()
    env = worker_env(keep_openblas_env)
    sizes_n = {name: int(n_samples or WORKLOADS[name]["quick_samples" if quick else "n_samples"])
               for name in workloads}
    plan = plan_runs(workloads, peers, repeats, skip)
    gemm_spec = {"peer": "gemm", "threads": threads, "gemm_seconds": 0.15 if quick else 0.4,
                 "gemm_shapes": QUICK_GEMM_SHAPES if quick else GEMM_SHAPES}
    raw = {(name, p): [] for name, p, _ in plan}
    notes, unavailable, errors = [], {}, {}
    peaks = []
    t_start = time.perf_counter()
    bar = tqdm(total=len(plan) + 2, unit="run", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, desc="fastmlp bench")

    def gemm():
        bar.set_postfix_str("GEMM peak")
        status, payload = run_worker(gemm_spec, env, timeout)
        bar.update(1)
        if status == "ok":
            peaks.append(payload["peak_flops"])
        else:
            notes.append(f"GEMM peak worker failed: {payload}")

    gemm()
    for name, peer, r in plan:
        if peer in unavailable:
            bar.update(1)
            continue
        bar.set_postfix_str(f"{name} {peer} run {r + 1}/{repeats}")
        spec = {"peer": peer, "workload": WORKLOADS[name], "n_samples": sizes_n[name],
                "epochs": epochs, "threads": threads}
        status, payload = run_worker(spec, env, timeout)
        bar.update(1)
        if status == "ok":
            raw[(name, peer)].append(payload)
        elif status == "unavailable":
            unavailable[peer] = payload
        else:
            errors.setdefault((name, peer), []).append(payload)
    gemm()
    bar.close()

    peak = {dt: max(p[dt] for p in peaks) for dt in ("float32", "float64")} if peaks else None
    report = {
        "fastmlp_bench": 1,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "threads": threads},
        "settings": {"repeats": repeats, "epochs": epochs, "quick": quick,
                     "openblas_env_unset": [] if keep_openblas_env else
                     [n for n in OPENBLAS_PINS if n in os.environ]},
        "gemm_peak_flops": peak,
        "gemm_peak_runs": peaks,
        "workloads": {},
        "skipped": {p: why for p, why in unavailable.items()},
        "notes": notes,
        "wall_s": time.perf_counter() - t_start,
    }
    for name in workloads:
        w = WORKLOADS[name]
        n = sizes_n[name]
        limit = limit_seconds(w["sizes"], n, peak[w["dtype"]]) if peak else None
        entry = {**{k: v for k, v in w.items() if k not in ("n_samples", "quick_samples")},
                 "description": describe(name, w, n), "n_samples": n,
                 "flops_per_sample": flops_per_sample(w["sizes"]), "limit_s": limit,
                 "results": {}, "errors": {}}
        for (wn, peer), runs in raw.items():
            if wn != name:
                continue
            if errors.get((name, peer)):
                entry["errors"][peer] = errors[(name, peer)]
            if not runs:
                continue
            epoch_s = statistics.median(r["epoch_s"] for r in runs)
            res = {"label": PEERS[peer][0], "runs": len(runs), "epoch_s": epoch_s,
                   "epoch_s_runs": [r["epoch_s"] for r in runs],
                   "samples_per_s": n / epoch_s,
                   "fraction_of_limit": limit / epoch_s if limit else None,
                   "rss_peak_mb": statistics.median(r["rss_peak"] for r in runs) / 2**20,
                   "rss_base_mb": statistics.median(r["rss_base"] for r in runs) / 2**20,
                   "fit_mem_mb": statistics.median(r["fit_mem"] for r in runs) / 2**20,
                   "final_loss": runs[-1]["final_loss"],
                   "plans": [r.get("plan") for r in runs if r.get("plan")]}
            acc = runs[-1]["accounted"]
            if acc:
                total = sum(acc.values())
                res["accounted_mb"] = {k: v / 2**20 for k, v in acc.items()}
                res["accounted_total_mb"] = total / 2**20
                # the memory goal: peak <= baseline + 1.2 * accounted
                res["mem_ratio"] = res["fit_mem_mb"] / res["accounted_total_mb"]
            entry["results"][peer] = res
        ref = next((p for p in entry["results"] if p in ("fastmlp", "fastmlp-est")), None)
        order = [p for p in DEFAULT_PEERS if p in entry["results"]]
        entry["results"] = {p: entry["results"][p] for p in order}
        entry["reference"] = ref
        for peer, res in entry["results"].items():  # the reference has no ratio to itself
            res["fastmlp_speedup"] = (res["epoch_s"] / entry["results"][ref]["epoch_s"]
                                      if ref and peer != ref else None)
        report["workloads"][name] = entry
    return report


def scaling(reports):
    """The thread-scaling table of several ``run_benchmark`` reports (one per thread count):
    per workload, per thread count, fastmlp's time per epoch (the reference peer's), the
    fraction of the GEMM-bound limit, scikit-learn's time and fastmlp's speed over it, and the
    plans fastmlp's runs used ('split/4 (timed)').

    Returns
    -------
    dict
        ``{"threads": [k, ...], "workloads": {name: [row per thread count]}}``, each row
        ``{"threads", "fastmlp_s", "fraction_of_limit", "sklearn_s", "x_sklearn", "plans"}``
        (None where a peer gave no result).

    Examples
    --------
    >>> fake = lambda k, f, s: {"machine": {"threads": k}, "workloads": {"sk64": {
    ...     "reference": "fastmlp-est", "results": {
    ...         "fastmlp-est": {"epoch_s": f, "fraction_of_limit": None, "plans": []},
    ...         "sklearn": {"epoch_s": s}}}}}
    >>> t = scaling([fake(1, 0.04, 0.1), fake(2, 0.02, 0.1)])
    >>> t["threads"], [round(r["x_sklearn"], 2) for r in t["workloads"]["sk64"]]
    ([1, 2], [2.5, 5.0])
    """
    table = {"threads": [r["machine"]["threads"] for r in reports], "workloads": {}}
    for report in reports:
        k = report["machine"]["threads"]
        for name, entry in report["workloads"].items():
            res = entry["results"]
            ref = res.get(entry.get("reference")) if entry.get("reference") else None
            sk = res.get("sklearn")
            fast_s = ref["epoch_s"] if ref else None
            sk_s = sk["epoch_s"] if sk else None
            plans = sorted({f"{p.get('label', p['strategy'])} ({p['source']})"
                            for p in (ref or {}).get("plans", [])})
            table["workloads"].setdefault(name, []).append({
                "threads": k, "fastmlp_s": fast_s,
                "fraction_of_limit": ref.get("fraction_of_limit") if ref else None,
                "sklearn_s": sk_s,
                "x_sklearn": sk_s / fast_s if fast_s and sk_s else None, "plans": plans})
    return table

