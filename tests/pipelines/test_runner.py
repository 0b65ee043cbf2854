"""`geomreg batch` on a real multi-process cluster on 127.0.0.1: a `dask scheduler` and two `dask worker` processes
(one thread each) started here. Reliability: a worker killed mid-batch, a rerun that skips complete outputs and
redoes the rest, bad pairs reported with their reasons while the others complete."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from batch_helpers import BIN, REG_OPTS, assert_same_outputs, subprocess_env, write_manifest
from click.testing import CliRunner

from geomreg.cli import main
from pipelines.graph import sidecars


@dataclass(frozen=True)
class KilledBatch:
    manifest: Path
    out: Path
    returncode: int
    stdout: str
    stderr: str
    victim: str
    killed_while_running: bool


def _tile_task_worker(client, deadline: float, proc: subprocess.Popen) -> str:
    """Name of a worker that holds a tile batch of the running batch (polls the scheduler)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the batch ended before any tile task was seen:\n{proc.stdout.read()}\n{proc.stderr.read()}")
        busy = client.processing()
        for addr, keys in busy.items():
            if any(str(k).startswith("geomreg-fine-") for k in keys):
                return client.scheduler_info()["workers"][addr]["name"]
        time.sleep(0.05)
    raise AssertionError("no tile task was scheduled in time")


@pytest.fixture(scope="module")
def killed_batch(dask_processes, scene_pairs, tmp_path_factory) -> KilledBatch:
    """`geomreg batch` (a subprocess) on 4 pairs; one of the two workers is SIGKILLed while it runs a tile batch."""
    dask_processes.ensure_workers(2)
    d = tmp_path_factory.mktemp("killed")
    manifest = write_manifest(d / "pairs.csv", [{"reference": p.reference, "moving": p.moving} for p in scene_pairs])
    out = d / "out"
    proc = subprocess.Popen([str(BIN / "geomreg"), "batch", str(manifest), "--out", str(out), "--scheduler", dask_processes.address,
                             *REG_OPTS, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=d,
                            env=subprocess_env())
    try:
        with dask_processes.client() as c:
            victim = _tile_task_worker(c, time.monotonic() + 180, proc)
        running = proc.poll() is None
        dask_processes.kill(victim)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return KilledBatch(manifest, out, proc.returncode, stdout, stderr, victim, running)


def _summary(out: Path) -> dict[str, dict]:
    doc = json.loads((out / "batch_summary.json").read_text())
    return {Path(p["moving"]).stem: p for p in doc["pairs"]}


def test_worker_killed_mid_batch_still_completes_like_a_sequential_run(killed_batch, dask_processes, scene_pairs, sequential):
    kb = killed_batch
    assert kb.killed_while_running
    assert kb.returncode == 0, kb.stdout + kb.stderr
    assert kb.victim not in dask_processes.alive()
    with dask_processes.client() as c:
        assert len(c.scheduler_info()["workers"]) == 1  # the scheduler saw it go
    summary = _summary(kb.out)
    assert {k: v["status"] for k, v in summary.items()} == {p.name: "registered" for p in scene_pairs}
    for p in scene_pairs:
        assert_same_outputs(kb.out / f"{p.name}_registered.tif", sequential[p.name])
    # the terminal shows the cluster, the dashboard line and the summary table
    assert f"scheduler {dask_processes.address}" in kb.stdout and "dashboard:" in kb.stdout
    assert "4 pairs: 4 registered" in kb.stdout
    for p in scene_pairs:
        assert f"{p.name}.tif" in kb.stdout


def test_rerun_skips_complete_outputs_and_redoes_the_rest(killed_batch, dask_processes, scene_pairs, sequential, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(killed_batch.out, out)
    names = [p.name for p in scene_pairs]
    # pair 1: interrupted after its raster, before its report (written last): incomplete
    sidecars(out / f"{names[1]}_registered.tif")["report"].unlink()
    # pair 2: interrupted in the middle of its raster: only the temporary file is there
    for q in sidecars(out / f"{names[2]}_registered.tif").values():
        q.unlink()
    half = out / f".{names[2]}_registered.0123abcd.part.tif"
    half.write_bytes(b"II*\x00 half a tiff")
    before = {n: (out / f"{n}_registered.tif").stat().st_mtime_ns for n in (names[0], names[3])}

    r = CliRunner().invoke(main, ["batch", str(killed_batch.manifest), "--out", str(out), "--scheduler", dask_processes.address,
                                  *REG_OPTS, "--no-progress"])
    assert r.exit_code == 0, r.output
    summary = _summary(out)
    assert {n: summary[n]["status"] for n in names} == {names[0]: "skipped", names[1]: "registered", names[2]: "registered",
                                                        names[3]: "skipped"}
    assert {n: (out / f"{n}_registered.tif").stat().st_mtime_ns for n in before} == before  # untouched
    assert not half.exists()
    for n in names:
        assert_same_outputs(out / f"{n}_registered.tif", sequential[n])
    assert "2 registered, 2 skipped" in r.output
    assert summary[names[0]]["rmse_px"] is not None and summary[names[0]]["inliers"] > 0  # read back from its report


def test_bad_pairs_are_reported_while_the_others_complete(dask_processes, scene_pairs, bad_inputs, sequential, tmp_path):
    a, b = scene_pairs[0], scene_pairs[3]
    rows = [
        {"reference": a.reference, "moving": a.moving},
        {"reference": bad_inputs["broken"], "moving": scene_pairs[1].moving},  # unreadable reference
        {"reference": scene_pairs[0].reference, "moving": bad_inputs["far"]},  # no overlap
        {"reference": scene_pairs[2].reference, "moving": scene_pairs[2].moving, "matcher": "regnetmamba2",
         "checkpoint": tmp_path / "missing.pt"},  # the matcher cannot be loaded
        {"reference": b.reference, "moving": b.moving},
    ]
    manifest = write_manifest(tmp_path / "pairs.csv", rows, columns=("reference", "moving", "matcher", "checkpoint"))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", str(manifest), "--out", str(out), "--scheduler", dask_processes.address, *REG_OPTS,
                                  "--no-progress"])
    assert r.exit_code == 1, r.output
    s = _summary(out)
    assert s[a.name]["status"] == "registered" and s[b.name]["status"] == "registered"
    broken = s[scene_pairs[1].name]
    assert broken["status"] == "error" and str(bad_inputs["broken"]) in broken["reason"] and "not a readable raster" in broken["reason"]
    far = s["far_away"]
    assert far["status"] == "error" and "do not overlap" in far["reason"]
    nomatcher = s[scene_pairs[2].name]
    assert nomatcher["status"] == "error" and "regnetmamba2" in nomatcher["reason"] and "checkpoint not found" in nomatcher["reason"]
    for n in (scene_pairs[1].name, "far_away", scene_pairs[2].name):
        assert not any(q.exists() for q in sidecars(out / f"{n}_registered.tif").values())
    for p in (a, b):
        assert_same_outputs(out / f"{p.name}_registered.tif", sequential[p.name])
    assert "do not overlap" in r.output and "not a readable raster" in r.output  # the table shows the reasons
    assert "2 registered, 3 error" in r.output


def test_pairs_that_need_a_coarse_pass(texture, tmp_path):
    """An offset larger than a quarter tile: coarse tile batches, the refined plan, then the fine tiles, each a task;
    the outputs equal `geomreg register` with the same options (in-process cluster, no sockets)."""
    from distributed import Client, LocalCluster
    from tests.geo.scenes import moving_scene, reference_scene, shift

    from pipelines.manifest import BatchDefaults, load_manifest
    from pipelines.runner import run_batch

    src = tmp_path / "scenes"
    src.mkdir()
    ref, g = reference_scene(src, texture, margin=128, name="ref_far.tif")
    mov = moving_scene(src, texture, g, shift(-70.4 * 30.0, 41.7 * 30.0), name="mov_far.tif")
    seq = tmp_path / "seq"
    seq.mkdir()
    r = CliRunner().invoke(main, ["register", str(ref), str(mov), "-o", str(seq / "mov_far_registered.tif"), *REG_OPTS,
                                  "--max-shift", "100", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert any("coarse pass" in n for n in json.loads((seq / "mov_far_registered_report.json").read_text())["plan_notes"])

    jobs = load_manifest(write_manifest(tmp_path / "pairs.csv", [{"reference": ref, "moving": mov}]), tmp_path / "out",
                         BatchDefaults(matcher="cfog", tile_size=256, overlap=32, max_shift="100"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as c:
        result = run_batch(c, jobs, progress=False, device="cpu")
    assert result.ok and result.pairs[0].status == "registered", result.pairs[0].reason
    assert_same_outputs(tmp_path / "out" / "mov_far_registered.tif", seq / "mov_far_registered.tif")


def test_progressive_rounds_match_the_tiles_register_matches(texture, tmp_path):
    """A pair with more tiles than the first round: the batch runner asks for rounds of tiles as geomreg.register
    does (geomreg/geo/sampling.py), stops at the same tile, and writes the same outputs (in-process cluster)."""
    from distributed import Client, LocalCluster
    from tests.geo.scenes import moving_scene, reference_scene, shift

    from pipelines.manifest import BatchDefaults, load_manifest
    from pipelines.runner import run_batch

    src = tmp_path / "scenes"
    src.mkdir()
    ref, g = reference_scene(src, texture, margin=0, size=640, name="ref_big.tif")
    mov = moving_scene(src, texture, g, shift(-2.37 * 30.0, 1.61 * 30.0), name="mov_big.tif")
    opts = ["--matcher", "cfog", "--tile-size", "160", "--overlap", "16", "--max-shift", "16", "--transform", "translation"]
    seq = tmp_path / "seq"
    seq.mkdir()
    r = CliRunner().invoke(main, ["register", str(ref), str(mov), "-o", str(seq / "mov_big_registered.tif"), *opts, "--no-progress"])
    assert r.exit_code == 0, r.output
    sampling = json.loads((seq / "mov_big_registered_report.json").read_text())["tile_sampling"]
    assert sampling["mode"] == "progressive" and sampling["tiles_processed"] < sampling["tiles_total"], sampling

    jobs = load_manifest(write_manifest(tmp_path / "pairs.csv", [{"reference": ref, "moving": mov}]), tmp_path / "out",
                         BatchDefaults(matcher="cfog", tile_size=160, overlap=16, max_shift="16", transform="translation"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as c:
        result = run_batch(c, jobs, progress=False, device="cpu")
    assert result.ok and result.pairs[0].status == "registered", result.pairs[0].reason
    assert result.tiles == sampling["tiles_processed"]
    assert_same_outputs(tmp_path / "out" / "mov_big_registered.tif", seq / "mov_big_registered.tif")
