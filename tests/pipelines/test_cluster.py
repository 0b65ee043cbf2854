"""Clusters: a LocalCluster sized to the machine and reachable on loopback only (dashboard too); an existing
scheduler over TLS from explicit files or from Dask's configuration; clear errors for bad addresses."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from geomreg.geo.errors import InputError
from pipelines.cluster import GIB, ClusterOptions, local_size, open_client, security_from_options


def test_local_size():
    # CPU: one single-threaded process per core, capped by memory (4 GiB a worker)
    assert local_size(None, None, cores=8, memory=64 * GIB, gpus=0) == local_size(8, 1, cores=8, memory=64 * GIB, gpus=0)
    assert local_size(None, None, cores=8, memory=9 * GIB, gpus=0).n_workers == 4  # 2 GiB per worker (memory budget)
    assert local_size(None, None, cores=2, memory=1 * GIB, gpus=0).n_workers == 1
    s = local_size(None, 2, cores=8, memory=64 * GIB, gpus=0)
    assert (s.n_workers, s.threads_per_worker, s.op_threads) == (4, 2, 1)
    s = local_size(2, 1, cores=8, memory=64 * GIB, gpus=0)
    assert s.op_threads == 4  # two processes share 8 cores: 4 threads each for torch/OpenCV
    # GPU: one worker per GPU with two threads (one feeds the GPU, one plans/fuses/writes)
    s = local_size(None, None, cores=16, memory=64 * GIB, gpus=2)
    assert (s.n_workers, s.threads_per_worker, s.gpus) == (2, 2, 2)


def _listening(pid: int) -> set[str]:
    import psutil

    p = psutil.Process(pid)
    conns = p.net_connections(kind="inet") if hasattr(p, "net_connections") else p.connections(kind="inet")
    return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}


def test_local_cluster_listens_on_loopback_only(tmp_path):
    import psutil

    # ":0" (a port only) would mean every interface to Dask: it is pinned to loopback
    with open_client(ClusterOptions(workers=1, threads_per_worker=1, device="cpu", dashboard_address=":0")) as info:
        c = info.client
        assert info.kind == "local" and info.n_workers == 1 and not info.gpu
        assert info.address.startswith("tcp://127.0.0.1:")
        assert info.dashboard and info.dashboard.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(info.dashboard, timeout=30) as r:  # the dashboard is really served
            assert r.status == 200
        workers = c.scheduler_info()["workers"]
        assert workers and all(a.startswith("tcp://127.0.0.1:") for a in workers)
        worker_pids = list(c.run(os.getpid).values())
        pids = {os.getpid(), *worker_pids, *(psutil.Process(p).ppid() for p in worker_pids)}  # + the nannies
        ips = set().union(*(_listening(p) for p in pids))
        assert ips and ips <= {"127.0.0.1"}, ips


# --------------------------------------------------------------------------------------------
# Remote schedulers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, str]:
    """A throw-away CA and one certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=geomreg test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "req.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "cert.pem", "-days", "2",
        "-extfile", "ext.cnf")
    return {"ca": str(d / "ca.pem"), "cert": str(d / "cert.pem"), "key": str(d / "key.pem")}


@pytest.fixture(scope="module")
def tls_cluster(tls_files):
    from distributed import LocalCluster, Security

    f = tls_files
    sec = Security(tls_ca_file=f["ca"], tls_scheduler_cert=f["cert"], tls_scheduler_key=f["key"], tls_worker_cert=f["cert"],
                   tls_worker_key=f["key"], tls_client_cert=f["cert"], tls_client_key=f["key"], require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://", host="127.0.0.1", security=sec,
                      dashboard_address=None) as cluster:
        yield cluster


def test_tls_scheduler_with_explicit_files(tls_cluster, tls_files):
    f = tls_files
    assert tls_cluster.scheduler_address.startswith("tls://127.0.0.1:")
    with open_client(ClusterOptions(scheduler=tls_cluster.scheduler_address, tls_ca_file=f["ca"], tls_cert=f["cert"],
                                    tls_key=f["key"], connect_timeout=20)) as info:
        assert info.kind == "remote" and info.n_workers == 1
        assert info.client.submit(sum, [1, 2]).result() == 3


def test_tls_scheduler_from_dask_config(tls_cluster, tls_files):
    import dask

    f = tls_files
    cfg = {"distributed.comm.tls.ca-file": f["ca"], "distributed.comm.tls.client.cert": f["cert"],
           "distributed.comm.tls.client.key": f["key"], "distributed.comm.require-encryption": True}
    with dask.config.set(cfg):
        with open_client(ClusterOptions(scheduler=tls_cluster.scheduler_address, connect_timeout=20)) as info:
            assert info.client.submit(sum, [2, 3]).result() == 5


def test_tls_scheduler_without_credentials_is_refused(tls_cluster):
    with pytest.raises(InputError, match="cannot connect to the Dask scheduler at tls://.*--tls-ca-file"):
        with open_client(ClusterOptions(scheduler=tls_cluster.scheduler_address, connect_timeout=5)):
            pass


def test_bad_scheduler_addresses_and_tls_options(tmp_path):
    with pytest.raises(InputError, match="unsupported protocol 'http'"):
        with open_client(ClusterOptions(scheduler="http://127.0.0.1:8786")):
            pass
    with pytest.raises(InputError, match="expected tcp://HOST:PORT"):
        with open_client(ClusterOptions(scheduler="nohost")):
            pass
    with pytest.raises(InputError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        with open_client(ClusterOptions(scheduler="tcp://127.0.0.1:9", connect_timeout=2)):
            pass
    with pytest.raises(InputError, match="the port must be a number"):
        with open_client(ClusterOptions(scheduler="tcp://127.0.0.1:dask")):
            pass
    with pytest.raises(InputError, match="--tls-ca-file: file not found"):
        security_from_options(str(tmp_path / "ca.pem"), None, None)
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(InputError, match="needs at least --tls-ca-file and --tls-cert"):
        security_from_options(str(tmp_path / "ca.pem"), None, None)
    assert security_from_options(None, None, None) is None
    sec = security_from_options(str(tmp_path / "ca.pem"), str(tmp_path / "ca.pem"), None)
    assert sec.require_encryption and sec.tls_ca_file == str(Path(tmp_path / "ca.pem"))
