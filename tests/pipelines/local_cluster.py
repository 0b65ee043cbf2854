"""A Dask LocalCluster (worker processes under nannies, on 127.0.0.1) in a process of its own, for the batch
fault tests: killing this process takes the scheduler away from a running batch.

    python local_cluster.py ADDRESS_FILE [--workers 2] [--memory-limit 1GiB]
                            [--hog KEY_PREFIX:N ... --hog-dir DIR] [--allowed-failures N]

The scheduler address is written to ADDRESS_FILE once the workers are up. With --hog, the first N tasks
whose key starts with KEY_PREFIX make their worker allocate more memory than its limit as they start: the
nanny then kills and restarts that worker, as it does for a real memory blow-up.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _hog_plugin(hogs: dict[str, int], hog_dir: str, limit: int):
    from distributed import WorkerPlugin

    class Hog(WorkerPlugin):
        name = "geomreg-test-memory-hog"

        def setup(self, worker) -> None:
            self.worker = worker

        def transition(self, key, start, finish, **kwargs) -> None:
            prefix = next((p for p in hogs if str(key).startswith(p)), None)
            if finish != "executing" or prefix is None:
                return
            d = Path(hog_dir)
            done = len(list(d.glob(f"hog-{prefix}*")))
            if done >= hogs[prefix]:
                return
            (d / f"hog-{prefix}{done}").write_text(str(key))
            import numpy as np

            blob = np.ones(int(limit * 1.5) // 8)  # touched pages: resident memory over the limit
            time.sleep(30)  # the nanny's memory monitor kills this process long before
            del blob

    return Hog()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("address_file")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--hog", action="append", default=[])
    ap.add_argument("--hog-dir", default=".")
    ap.add_argument("--allowed-failures", type=int, default=3)
    a = ap.parse_args()

    import dask
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.scheduler.allowed-failures": a.allowed_failures})
    with LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      memory_limit=a.memory_limit) as cluster, Client(cluster) as client:
        if a.hog:
            hogs = {h.rsplit(":", 1)[0]: int(h.rsplit(":", 1)[1]) for h in a.hog}
            client.register_plugin(_hog_plugin(hogs, a.hog_dir, parse_bytes(a.memory_limit)))
        client.wait_for_workers(a.workers, timeout=120)
        tmp = Path(a.address_file + ".tmp")
        tmp.write_text(cluster.scheduler_address)
        tmp.replace(a.address_file)
        while True:
            time.sleep(1)
