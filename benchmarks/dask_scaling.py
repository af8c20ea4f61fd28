"""Cost of data-parallel training on a Dask LocalCluster: time per step split into compute and
communication, and parallel efficiency against one process, for batch sizes small to large.

    python benchmarks/dask_scaling.py [--workers 2] [--threads 1] [--shuffle both]
                                      [--batches 256,1024,4096,16384]
                                      [--sizes 256,512,512,10] [--steps 8]

One step = every worker's raw sums of its share of one global batch, summed on the driver,
plus the optimizer step (fastmlp.dask's synchronous SGD), with ``shuffle=False`` (each global
batch dealt out over the workers) and ``shuffle=True`` (each worker gathers its rows of a
random batch) -- ``--shuffle off|on|both``.  ``--threads k``: workers of k threads each (the
single-process reference then runs k threads too).  "compute" is the slowest worker's
kernel time per step, "comm" the rest of the step's wall time (serialisation, the round trip,
the driver's sum and update).  The single-process reference runs the same global batch through
``fastmlp.backend.Engine`` with ``--threads`` threads in this process.  Efficiency = single /
(W * step): 1.0 means W workers are W times as fast as one process.  "cpu balance" = the
single process's CPU seconds / (W * the slowest worker's CPU seconds per step): the same ratio
counted in CPU time, which other jobs on a busy machine do not change (1.0: every worker does
1/W of the work; 1/W: one worker does all of it while the others wait).  "compute share" = compute / step:
the efficiency the protocol leaves when the workers compute as fast as the single process
(on a machine shared with other work they do not, and efficiency falls below it).  "first
extra ms": how much longer the fit's first step's slowest compute was than the median of the
others (the engines' one-time costs, once per fit, which the single-process reference, timed
after a warm-up call, leaves out); "steady eff.": the efficiency without it, which a fit of
many steps approaches (``--steps``: 8 global batches, one epoch, by default).  Does nothing
on import.
"""
import argparse
import time

import numpy as np


def single_process_step(sizes, batch, repeats, dtype="float64", threads=1):
    """Median seconds of one raw-sums call on ``batch`` rows, ``threads`` threads, this
    process."""
    from fastmlp.backend import Engine
    eng = Engine(sizes, activation="relu", out_activation="identity", loss="squared_error",
                 dtype=dtype, max_rows=batch, n_threads=threads)
    rs = np.random.RandomState(0)
    params = rs.normal(size=eng.n_params).astype(dtype) * 0.05
    X = rs.normal(size=(batch, sizes[0])).astype(dtype)
    Y = rs.normal(size=(batch, sizes[-1])).astype(dtype)
    out = np.empty(eng.n_params, dtype)
    eng.raw_sums(params, X, Y, out=out)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        eng.raw_sums(params, X, Y, out=out)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    single_process_step.cpu = float(np.median(cpu))  # CPU seconds, for main's balance
    return float(np.median(times))


def _count_step_cpu():
    """On a worker: record each engine step's CPU seconds (the process's, all threads) and its
    compute seconds (the step's own kernel time)."""
    from fastmlp.dask import engine as m
    if not hasattr(m, "_bench_step_cpu"):
        step = m._ShardEngine.step

        def counted(self, *args, **kwargs):
            c0 = time.process_time()
            try:
                result = step(self, *args, **kwargs)
            finally:
                m._bench_step_cpu.append(time.process_time() - c0)
            m._bench_step_compute.append(result[3])
            return result
        m._ShardEngine.step = counted
    m._bench_step_cpu = []
    m._bench_step_compute = []


def _step_cpu():
    from fastmlp.dask import engine as m
    return list(getattr(m, "_bench_step_cpu", []))


def _step_compute():
    from fastmlp.dask import engine as m
    return list(getattr(m, "_bench_step_compute", []))


def cluster_steps(client, sizes, batch, steps, dtype="float64", shuffle=False):
    """(wall, compute) seconds per step of fastmlp.dask's SGD on ``steps`` global batches."""
    import fastmlp.dask as fdask
    rs = np.random.RandomState(0)
    n = batch * steps
    X = rs.normal(size=(n, sizes[0])).astype(dtype)
    Y = rs.normal(size=(n, sizes[-1])).astype(dtype)
    est = fdask.MLPRegressor(hidden_layer_sizes=tuple(sizes[1:-1]), solver="sgd",
                             batch_size=batch, max_iter=1, shuffle=shuffle, random_state=0,
                             learning_rate_init=1e-4, client=client)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, Y)  # warms the workers up (imports, Numba cache)
        client.run(_count_step_cpu)
        est.fit(X, Y)
    per_worker = [c for c in client.run(_step_cpu).values() if c]
    # the slowest worker's CPU seconds per step: what the load of other processes does not
    # change (a wall-clock figure on a busy machine does)
    cluster_steps.cpu = float(np.mean(np.max(per_worker, axis=0))) if per_worker else None
    # the slowest worker's compute, step by step: the fit's first step also pays the engines'
    # one-time costs (their buffers' first touch: ~150 ms for 8192 rows of 256-512-512-10 on
    # the 2-core machine), which the single-process reference, timed after a warm-up, does not
    slowest = [c for c in client.run(_step_compute).values() if c]
    slowest = np.max(slowest, axis=0) if slowest else np.zeros(0)
    cluster_steps.first_extra = (float(slowest[0] - np.median(slowest[1:]))
                                 if len(slowest) > 1 else 0.0)
    s = est.cluster_stats_
    return s["wall_seconds"] / s["steps"], s["compute_seconds"] / s["steps"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--shuffle", choices=["off", "on", "both"], default="both")
    p.add_argument("--batches", default="256,1024,4096,16384")
    p.add_argument("--sizes", default="256,512,512,10")
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args(argv)
    from distributed import Client, LocalCluster
    sizes = [int(s) for s in a.sizes.split(",")]
    P = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    print(f"network {sizes}: P = {P:,} parameters, {2 * P * 8 / 1e6:.1f} MB moved per worker "
          f"and step (float64); {a.workers} process worker{'s' if a.workers != 1 else ''} of "
          f"{a.threads} thread"
          f"{'s' if a.threads != 1 else ''} each")
    print(f"{'batch':>7} {'shuffle':>7} {'single ms':>10} {'step ms':>9} {'compute ms':>11} "
          f"{'comm ms':>8} {'efficiency':>10} {'compute share':>13} {'cpu balance':>11} "
          f"{'first extra ms':>14} {'steady eff.':>11}")
    shuffles = {"off": [False], "on": [True], "both": [False, True]}[a.shuffle]
    with LocalCluster(n_workers=a.workers, threads_per_worker=a.threads, processes=True,
                      dashboard_address=":0", scheduler_kwargs={"dashboard": False}
                      ) as cluster, Client(cluster) as client:
        for batch in [int(b) for b in a.batches.split(",")]:
            single = single_process_step(sizes, batch, 5, threads=a.threads)
            for shuffle in shuffles:
                wall, compute = cluster_steps(client, sizes, batch, a.steps, shuffle=shuffle)
                eff = single / (a.workers * wall)
                cpu = cluster_steps.cpu
                balance = single_process_step.cpu / (a.workers * cpu) if cpu else float("nan")
                extra = cluster_steps.first_extra
                steady = single / (a.workers * (wall - extra / a.steps))
                print(f"{batch:>7} {'on' if shuffle else 'off':>7} {single * 1e3:>10.2f} "
                      f"{wall * 1e3:>9.2f} {compute * 1e3:>11.2f} "
                      f"{(wall - compute) * 1e3:>8.2f} {eff:>10.2f} {compute / wall:>13.2f} "
                      f"{balance:>11.2f} {extra * 1e3:>14.1f} {steady:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
