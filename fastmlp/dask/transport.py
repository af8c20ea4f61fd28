"""The driver's side of the transport of ``fastmlp.dask``: the client to fit with, the fleet of
engines (one Dask actor per shard) and the calls to all of them, with the recovery that
rebuilds the shard of a lost worker (see :mod:`fastmlp.dask` for the protocol)."""
from __future__ import annotations

import contextlib
import os
import time

from .engine import _ShardEngine

INSTALL_HINT = "fastmlp.dask needs dask and distributed: pip install 'fastmlp[dask]'"
# Seconds to wait for a live worker after losing one before giving up.
RECOVERY_TIMEOUT = 60.0
MAX_RECOVERIES = 20
# Seconds between checks that a worker still exists while waiting for its result.
POLL_SECONDS = 2.0


class ClusterLostError(RuntimeError):
    """The cluster cannot continue the fit (no worker left, or a shard that cannot be
    rebuilt).  The estimator keeps the parameters of the last completed step."""


def _import_distributed():
    try:
        import dask  # noqa: F401
        import dask.array  # noqa: F401
        import distributed
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return distributed


@contextlib.contextmanager
def _client_for(client):
    """The client to fit with: the one given; else the default client of this session; else
    the scheduler named by ``DASK_SCHEDULER_ADDRESS`` (dask's ``scheduler-address``); else a
    LocalCluster of process workers (one thread each) started here and closed afterwards."""
    distributed = _import_distributed()
    if client is not None:
        yield client
        return
    try:
        yield distributed.default_client()
        return
    except ValueError:
        pass
    import dask
    address = dask.config.get("scheduler-address", None)
    if address:
        with distributed.Client(address) as c:
            yield c
        return
    n = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)
    # its HTTP server on a free port, without a dashboard (no warning that 8787 is taken)
    with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", scheduler_kwargs={"dashboard": False}
                                  ) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _live_workers(client):
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _workers(client):
    """The live workers, at least one: while a lost worker is being restarted the cluster
    can have none for a moment (seen between two fits), so wait for one (RECOVERY_TIMEOUT)
    instead of failing; a cluster that gets none is a ClusterLostError."""
    workers = _live_workers(client)
    if workers:
        return workers
    try:
        client.wait_for_workers(1, timeout=RECOVERY_TIMEOUT)
    except Exception:  # noqa: BLE001 -- distributed's TimeoutError, a closed client, ...
        pass
    workers = _live_workers(client)
    if not workers:
        raise ClusterLostError(f"the cluster has no workers (waited {RECOVERY_TIMEOUT:.0f} s "
                               "for one)")
    return workers

class _Fleet:
    """The engines of one fit, one per shard, and the calls to all of them, with recovery."""

    def __init__(self, client, shards, spec):
        self.client = client
        self.shards = shards
        self.spec = spec
        self.rng_states = []   # epoch shuffles applied by every engine
        self.steps = 0
        self.wall = 0.0
        self.compute = 0.0
        self.recoveries = 0

    def _spec(self, shard):
        return dict(self.spec, lo=shard.lo, deal=shard.deal, checked=shard.checked,
                    **shard.extra)

    def start(self, workers):
        futs = []
        for shard, worker in zip(self.shards, workers):
            futs.append(self.client.submit(_ShardEngine, *shard.futures, self._spec(shard),
                                           list(self.rng_states), shard.val_futures,
                                           actor=True, pure=False, workers=[worker],
                                           allow_other_workers=True))
        for shard, f in zip(self.shards, futs):
            shard.actor, shard.engine = f.result(), f  # the future keeps the actor alive
            shard.address = self._holder(f)

    def _holder(self, future):
        """The worker holding an engine: the scheduler's ``who_has`` for the future that
        created the actor (public API; ``distributed.Actor`` exposes no public address)."""
        holders = self.client.who_has([future]).get(future.key) or ()
        return next(iter(holders), None)

    def close(self):
        for shard in self.shards:
            shard.actor = shard.engine = shard.futures = None

    def call(self, method, *args):
        """``method(*args)`` on every engine; results in shard order.  A shard whose worker
        died is rebuilt on a live worker and called again with the same arguments."""
        t0 = time.perf_counter()
        results = [None] * len(self.shards)
        pending = list(range(len(self.shards)))
        for _ in range(MAX_RECOVERIES + 1):
            futs, failed = [], []
            for i in pending:
                try:
                    futs.append((i, getattr(self.shards[i].actor, method)(*args)))
                except (OSError, RuntimeError):  # "Worker holding Actor was lost"
                    failed.append(i)
            for i, f in futs:
                try:
                    results[i] = self._wait(f, self.shards[i])
                except OSError:  # the actor's worker is gone ("Unable to contact ...")
                    failed.append(i)
            if not failed:
                break
            for i in failed:
                self._rebuild(i)
            pending = failed
        else:
            raise ClusterLostError(f"gave up after {MAX_RECOVERIES} worker losses in one step")
        self.wall += time.perf_counter() - t0
        if method in ("step", "full"):
            self.steps += 1
            self.compute += max(r[3] for r in results)
        return results

    def _wait(self, future, shard):
        """The result of an actor call; OSError when the actor's worker left the cluster
        (a closed connection says so at once; a worker retired in-process only by its
        absence from the scheduler's list, polled every POLL_SECONDS)."""
        while True:
            try:
                return future.result(timeout=POLL_SECONDS)
            except TimeoutError:
                if shard.address not in _live_workers(self.client):
                    raise OSError(f"worker {shard.address} left the cluster") from None

    def _rebuild(self, i):
        """A new engine for shard i on a live worker (its rows recomputed from the dask graph
        or sent again from the driver), with the epoch shuffles replayed."""
        from distributed import TimeoutError as DaskTimeout
        shard = self.shards[i]
        self.recoveries += 1
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            try:
                self.client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
            except (DaskTimeout, TimeoutError, OSError) as exc:
                last = exc
                break
            try:
                if shard.source is not None:
                    shard.futures = tuple(
                        None if a is None else self.client.scatter(a, hash=False)
                        for a in shard.source)
                if shard.val_source is not None:
                    shard.val_futures = self.client.scatter(shard.val_source, hash=False)
                f = self.client.submit(_ShardEngine, *shard.futures, self._spec(shard),
                                       list(self.rng_states), shard.val_futures, actor=True,
                                       pure=False)
                shard.actor = f.result(timeout=max(1.0, deadline - time.monotonic()))
                shard.engine = f
                shard.address = self._holder(f)
                return
            except (ValueError, TypeError):
                raise
            except Exception as exc:  # worker lost again while rebuilding, lost data, ...
                last = exc
                time.sleep(0.2)
        rows = (f"rows {shard.lo}..{shard.hi}" if shard.deal is None else
                f"part {shard.deal[0]} of {shard.deal[1]} of every batch")
        raise ClusterLostError(
            f"the cluster cannot continue: shard {i} ({rows}) could not "
            f"be rebuilt on a live worker within {RECOVERY_TIMEOUT:.0f} s ({last!r}); the "
            "estimator keeps the parameters of the last completed step")
