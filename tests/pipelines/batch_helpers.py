"""Helpers of the batch pipeline tests (fixtures are in conftest.py): scene pairs, sequential `geomreg register`
runs, manifests, output comparison, and a real multi-process Dask cluster on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BIN = Path(sys.executable).parent
# Small scenes: 384 x 384 px with 256 px tiles (4 tiles a pair) keep a whole batch to seconds of CPU.
REG_OPTS = ["--matcher", "cfog", "--tile-size", "256", "--overlap", "32"]
N_PAIRS = 4


@dataclass(frozen=True)
class Pair:
    name: str  # the moving file's stem
    reference: Path
    moving: Path


def register_sequentially(pair: Pair, out_dir: Path) -> Path:
    """`geomreg register` on one pair, the way a user runs it (the reference for batch outputs)."""
    from click.testing import CliRunner

    from geomreg.cli import main

    out = out_dir / f"{pair.name}_registered.tif"
    r = CliRunner().invoke(main, ["register", str(pair.reference), str(pair.moving), "-o", str(out), *REG_OPTS, "--no-progress"])
    assert r.exit_code == 0, r.output
    return out


def write_manifest(path: Path, rows: list[dict], columns: tuple[str, ...] = ("reference", "moving")) -> Path:
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_same_outputs(batch_out: Path, seq_out: Path, config_differs: tuple[str, ...] = ()) -> None:
    """The batch output of a pair equals the sequential one: raster bytes, .points text, tie point table, report
    (all but the timings, the output paths and the config fields the caller set differently on purpose)."""
    import geopandas as gpd
    import pandas as pd

    assert batch_out.read_bytes() == seq_out.read_bytes(), f"{batch_out} differs from {seq_out}"
    side = lambda p, s: p.with_name(p.stem + s)  # noqa: E731
    assert side(batch_out, ".points").read_text() == side(seq_out, ".points").read_text()
    a = gpd.read_file(side(batch_out, "_tiepoints.gpkg"))
    b = gpd.read_file(side(seq_out, "_tiepoints.gpkg"))
    pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")), pd.DataFrame(b.drop(columns="geometry")))
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()
    ra = json.loads(side(batch_out, "_report.json").read_text())
    rb = json.loads(side(seq_out, "_report.json").read_text())
    for k in ("timings_s", "outputs"):
        ra.pop(k), rb.pop(k)
    for k in config_differs:
        ra["config"].pop(k), rb["config"].pop(k)
    assert ra == rb, sorted(k for k in ra if ra.get(k) != rb.get(k))


# --------------------------------------------------------------------------------------------
# A real cluster: `dask scheduler` + `dask worker` processes on 127.0.0.1
# --------------------------------------------------------------------------------------------


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@dataclass
class DaskProcesses:
    root: Path
    scheduler: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    address: str = ""
    _n: int = 0
    _logs: list = field(default_factory=list)

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.root / log_name, "w")
        self._logs.append(log)
        # A session of its own: a Ctrl-C meant for pytest does not kill it before stop() does, in order.
        return subprocess.Popen([str(BIN / "dask"), *args], cwd=REPO, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def start_scheduler(self) -> None:
        sf = self.root / "scheduler.json"
        self.scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(sf)], "scheduler.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sf.exists():
                try:
                    self.address = json.loads(sf.read_text())["address"]
                    return
                except (ValueError, KeyError):
                    pass
            if self.scheduler.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"dask scheduler did not start: {(self.root / 'scheduler.log').read_text()[-2000:]}")

    def start_worker(self) -> str:
        name = f"w{self._n}"
        self._n += 1
        self.workers[name] = self._spawn(["worker", self.address, "--name", name, "--nthreads", "1", "--nworkers", "1",
                                          "--no-nanny", "--host", "127.0.0.1", "--no-dashboard"], f"{name}.log")
        return name

    def alive(self) -> list[str]:
        return [n for n, p in self.workers.items() if p.poll() is None]

    def kill(self, name: str) -> None:
        p = self.workers[name]
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)

    def client(self):
        from distributed import Client

        return Client(self.address, timeout="30s")

    def ensure_workers(self, n: int, timeout: float = 120) -> None:
        while len(self.alive()) < n:
            self.start_worker()
        with self.client() as c:
            c.wait_for_workers(n, timeout=timeout)

    def stop(self) -> None:
        procs = list(self.workers.values()) + ([self.scheduler] if self.scheduler else [])
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)
        for f in self._logs:
            f.close()
