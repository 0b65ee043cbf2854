"""The Dask cluster a batch runs on: a LocalCluster sized to this machine, or an existing scheduler.

Local: worker processes on 127.0.0.1 only (scheduler, workers and dashboards listen on the loopback
interface; nothing is reachable from the network). Remote (`--scheduler tcp://HOST:PORT`,
`tls://HOST:PORT` or a scheduler JSON file): any Dask cluster (dask-jobqueue, dask-kubernetes, Dask
Gateway, `dask scheduler` + `dask worker`); TLS comes from explicit files or from Dask's own
configuration (`distributed.comm.tls.*`, e.g. in ~/.config/dask/*.yaml or DASK_DISTRIBUTED__COMM__TLS__*
variables), exactly as a plain `distributed.Client` would use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from geomreg.geo.errors import InputError

log = logging.getLogger(__name__)

GIB = 1 << 30
# A worker's tile matching keeps within the pair's memory budget (default 1.5 GiB, geomreg/geo/memory.py; the
# budget is also capped at 80 % of the worker's memory limit): with room for the worker process itself and
# the fusion and writing it also runs, 2 GiB per worker. (Before the budget, RegNetMamba-2 on CPU peaked at
# 3.1-3.6 GB RSS for one batch of four 512 px tiles.)
MEMORY_PER_WORKER = 2 * GIB
DEFAULT_DASHBOARD = "127.0.0.1:8787"


@dataclass(frozen=True)
class ClusterOptions:
    scheduler: str | None = None  # tcp://HOST:PORT, tls://HOST:PORT or a scheduler file; None = LocalCluster
    workers: int | None = None  # LocalCluster worker processes; None = sized to the machine
    threads_per_worker: int | None = None
    device: str = "auto"  # decides whether a LocalCluster gets one GPU worker per GPU
    dashboard_address: str | None = DEFAULT_DASHBOARD  # LocalCluster only; None disables it
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    worker_timeout: float = 120.0  # seconds to wait for the first worker of a remote cluster
    connect_timeout: float = 30.0  # seconds to reach a remote scheduler


@dataclass
class ClusterInfo:
    client: object  # distributed.Client
    kind: str  # "local" or "remote"
    address: str
    dashboard: str | None
    n_workers: int
    threads_per_worker: int | None
    gpu: bool  # tile tasks ask for the GPU=1 resource
    op_threads: int | None  # threads each worker gives torch/OpenCV (LocalCluster: cores shared fairly)


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - psutil is a distributed dependency; be safe anyway
        return 8 * GIB


def gpu_count(device: str) -> int:
    """GPUs a LocalCluster should use. torch is imported only when the machine has an NVIDIA driver."""
    if device == "cpu":
        return 0
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists() or device.startswith("cuda")):
        return 0
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        return 0
    if device.startswith("cuda:"):
        return 1 if n else 0
    return n


@dataclass(frozen=True)
class LocalSize:
    n_workers: int
    threads_per_worker: int
    gpus: int
    op_threads: int


def local_size(workers: int | None, threads_per_worker: int | None, device: str = "auto",
               cores: int | None = None, memory: int | None = None, gpus: int | None = None) -> LocalSize:
    """How many worker processes a LocalCluster gets.

    GPU machine: one worker per GPU, two threads each (one feeds the GPU, one plans, fuses and writes).
    CPU: one single-threaded process per core (the matchers hold the GIL in places: processes scale,
    threads do not), capped by memory.
    """
    cores = cores or available_cores()
    memory = memory or available_memory()
    gpus = gpu_count(device) if gpus is None else gpus
    if gpus:
        n = workers or gpus
        t = threads_per_worker or 2
    else:
        t = threads_per_worker or 1
        n = workers or max(1, min(cores // t, memory // MEMORY_PER_WORKER))
    if n < 1 or t < 1:
        raise InputError(f"workers and threads per worker must be at least 1 (got {n} and {t})")
    op_threads = max(1, cores // (n * t)) if not gpus else 1
    return LocalSize(n, t, gpus, op_threads)


# --------------------------------------------------------------------------------------------
# Security
# --------------------------------------------------------------------------------------------


def security_from_options(ca_file: str | None, cert: str | None, key: str | None):
    """A distributed.Security for explicit TLS files, or None (then Dask's configuration applies)."""
    if not (ca_file or cert or key):
        return None
    from distributed import Security

    for name, p in (("--tls-ca-file", ca_file), ("--tls-cert", cert), ("--tls-key", key)):
        if p is not None and not Path(p).is_file():
            raise InputError(f"{name}: file not found", p)
    if not (ca_file and cert):
        raise InputError("TLS needs at least --tls-ca-file and --tls-cert (and --tls-key unless the key is inside the certificate file)")
    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def _check_address(addr: str) -> str:
    if Path(addr).expanduser().is_file():
        return addr
    if "://" not in addr:
        # A bare HOST:PORT means TCP, like distributed.Client itself.
        if ":" not in addr:
            raise InputError(f"--scheduler {addr!r}: expected tcp://HOST:PORT, tls://HOST:PORT or a scheduler JSON file")
        return addr
    scheme = addr.split("://", 1)[0]
    if scheme not in ("tcp", "tls", "ws", "wss", "ucx", "inproc"):
        raise InputError(f"--scheduler {addr!r}: unsupported protocol {scheme!r} (tcp, tls, ws, wss or ucx)")
    return addr


def _probe_scheduler(addr: str, timeout: float) -> None:
    """Fail fast, with a clear message, when nothing listens at a TCP-based scheduler address.

    distributed.Client would find out too, but only after starting its IO-loop thread, and on a starved
    machine that start itself can miss distributed's own 10 s limit and surface as a bare AssertionError."""
    scheme, _, hostport = addr.rpartition("://")
    if scheme not in ("", "tcp", "tls", "ws", "wss"):
        return  # ucx, inproc: not plain TCP
    host, _, port = hostport.split("/", 1)[0].rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise InputError(f"--scheduler {addr!r}: the port must be a number") from None
    try:
        socket.create_connection((host.strip("[]"), port_number), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"cannot connect to the Dask scheduler at {addr}: {e}") from None


# --------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------


def _workers(client) -> dict:
    return client.scheduler_info().get("workers", {})


def _gpu_workers(client) -> bool:
    return any((w.get("resources") or {}).get("GPU", 0) >= 1 for w in _workers(client).values())


@contextlib.contextmanager
def open_client(opts: ClusterOptions) -> Iterator[ClusterInfo]:
    """A connected distributed.Client (and its LocalCluster when we start one); both closed on exit."""
    from distributed import Client, LocalCluster

    if opts.scheduler:
        addr = _check_address(opts.scheduler)
        security = security_from_options(opts.tls_ca_file, opts.tls_cert, opts.tls_key)
        kw = {"security": security} if security is not None else {}
        try:
            if Path(addr).expanduser().is_file():
                client = Client(scheduler_file=str(Path(addr).expanduser()), timeout=opts.connect_timeout, **kw)
            else:
                _probe_scheduler(addr, opts.connect_timeout)
                client = Client(addr, timeout=opts.connect_timeout, **kw)
        except (OSError, TimeoutError) as e:
            raise InputError(f"cannot connect to the Dask scheduler at {addr}: {e}") from None
        except (TypeError, ValueError) as e:
            # e.g. a tls:// scheduler without credentials: distributed raises TypeError about the missing SSL context
            hint = " (give --tls-ca-file/--tls-cert/--tls-key, or set distributed.comm.tls in the Dask config)" if addr.startswith("tls") else ""
            raise InputError(f"cannot connect to the Dask scheduler at {addr}: {e}{hint}") from None
        try:
            try:
                client.wait_for_workers(1, timeout=opts.worker_timeout)
            except (TimeoutError, OSError):
                raise InputError(f"no Dask worker joined the scheduler at {addr} within {opts.worker_timeout:g} s") from None
            info = ClusterInfo(client=client, kind="remote", address=client.scheduler.address, dashboard=_dashboard(client),
                               n_workers=len(_workers(client)), threads_per_worker=None, gpu=_gpu_workers(client), op_threads=None)
            yield info
        finally:
            client.close()
        return

    size = local_size(opts.workers, opts.threads_per_worker, opts.device)
    dashboard = opts.dashboard_address
    if dashboard is not None and dashboard.startswith(":"):
        dashboard = "127.0.0.1" + dashboard  # never every interface
    # host=127.0.0.1: the scheduler, the workers and their nannies listen on loopback only; the
    # dashboard gets an explicit loopback address (":8787" would mean every interface).
    cluster = LocalCluster(
        n_workers=size.n_workers, threads_per_worker=size.threads_per_worker, processes=True,
        host="127.0.0.1", scheduler_port=0, dashboard_address=dashboard, worker_dashboard_address=None,
        resources={"GPU": 1} if size.gpus else None, silence_logs=logging.ERROR,
    )
    try:
        client = Client(cluster)
        try:
            yield ClusterInfo(client=client, kind="local", address=cluster.scheduler_address,
                              dashboard=_dashboard(client) if dashboard is not None else None, n_workers=size.n_workers,
                              threads_per_worker=size.threads_per_worker, gpu=bool(size.gpus), op_threads=size.op_threads)
        finally:
            client.close()
    finally:
        cluster.close()


def _dashboard(client) -> str | None:
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - no dashboard (bokeh missing or disabled)
        return None
    return link or None


def describe(info: ClusterInfo) -> str:
    if info.kind == "local":
        gpu = f", {info.n_workers} GPU" if info.gpu else ""
        return f"LocalCluster on 127.0.0.1: {info.n_workers} worker process(es) x {info.threads_per_worker} thread(s){gpu}"
    gpu = " (GPU workers: tiles ask for GPU=1)" if info.gpu else ""
    return f"scheduler {info.address}: {info.n_workers} worker(s){gpu}"


__all__ = ["ClusterOptions", "ClusterInfo", "open_client", "local_size", "security_from_options", "describe"]
