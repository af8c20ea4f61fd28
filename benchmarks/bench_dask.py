"""asv: fastmlp.dask's cost per step on a 2-worker LocalCluster (processes, one thread each).

For batch sizes small to large: the parallel efficiency against one process, the compute
share of a step (compute / step time: what the protocol leaves when the workers compute as
fast as one process), and the communication time per step.  Measured once per run in
``setup_cache`` (one cluster start); skipped when dask is not installed.  Does nothing on
import.
"""
from .dask_scaling import cluster_steps, single_process_step

SIZES = [128, 256, 256, 10]
WORKERS = 2


def measure(client, batches, sizes, steps=4):
    """{batch: {efficiency, compute_share, communication_ms}} on the client's cluster."""
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    results = {}
    for batch in batches:
        single = single_process_step(sizes, batch, 3)
        wall, compute = cluster_steps(client, sizes, batch, steps)
        results[batch] = {"efficiency": single / (workers * wall),
                          "compute_share": compute / wall,
                          "communication_ms": (wall - compute) * 1e3}
    return results


class TrackDaskStep:
    params = ([256, 2048, 16384],)
    param_names = ["batch_size"]
    timeout = 900

    def setup_cache(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            return None
        with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            return measure(client, self.params[0], SIZES)

    def setup(self, cache, batch_size):
        if cache is None:
            raise NotImplementedError("needs dask and distributed: pip install 'fastmlp[dask]'")

    def track_parallel_efficiency(self, cache, batch_size):
        return cache[batch_size]["efficiency"]

    def track_compute_share(self, cache, batch_size):
        return cache[batch_size]["compute_share"]

    def track_communication_ms(self, cache, batch_size):
        return cache[batch_size]["communication_ms"]

    track_parallel_efficiency.unit = "W x one process"
    track_compute_share.unit = "fraction"
    track_communication_ms.unit = "ms"
