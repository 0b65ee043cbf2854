"""The batch tasks run in this process (no cluster): same outputs as `geomreg register`, failures as values,
and the states of outputs already on disk."""

from __future__ import annotations

import json
import shutil

from batch_helpers import assert_same_outputs, write_manifest

from geomreg.geo.plan import RegistrationPlan
from pipelines.graph import (
    Chunk, Planned, TaskFailure, fuse_pair, match_chunk, output_state, plan_pair, remove_partials, sidecars,
)
from pipelines.manifest import BatchDefaults, load_manifest
from pipelines.runner import _chunks

DEFAULTS = BatchDefaults(matcher="cfog", tile_size=256, overlap=32)


def _jobs(tmp_path, rows, **kw):
    m = write_manifest(tmp_path / "pairs.csv", rows, **kw)
    return load_manifest(m, tmp_path / "out", DEFAULTS)


def _run_in_process(job, overwrite=False):
    planned = plan_pair(job)
    assert isinstance(planned, Planned), planned
    from geomreg.geo.sampling import TileSampler

    sampler = TileSampler(planned.plan)  # as the runner does; these pairs have fewer tiles than its first round
    tasks = [planned.plan.tasks[i] for i in sampler.first()]
    assert len(tasks) == len(planned.plan.tasks)
    chunks = [match_chunk(c, job.matcher, job.checkpoint, job.config.batch_size) for c in _chunks(tasks, job.config.batch_size)]
    assert all(isinstance(c, Chunk) for c in chunks)
    return fuse_pair(job, planned, overwrite, 0, *chunks, sampler=sampler)


def test_tasks_give_the_outputs_of_geomreg_register(tmp_path, scene_pairs, sequential):
    p = scene_pairs[0]
    (job,) = _jobs(tmp_path, [{"reference": p.reference, "moving": p.moving}])
    assert output_state(job).state == "absent"
    o = _run_in_process(job)
    assert o.status == "registered" and o.transform == "translation" and o.inliers >= 50 and o.rmse_px < 0.5
    assert o.tiles == 4 and set(o.outputs) == {"raster", "tie_points", "qgis_points", "report"}
    assert_same_outputs(sidecars(job.output)["raster"], sequential[p.name])
    assert output_state(job).state == "complete"


def test_chunks_are_the_batches_register_uses(scene_pairs, tmp_path):
    p = scene_pairs[0]
    (job,) = _jobs(tmp_path, [{"reference": p.reference, "moving": p.moving, "batch_size": 3}], columns=("reference", "moving", "batch_size"))
    plan = plan_pair(job).plan
    assert isinstance(plan, RegistrationPlan) and len(plan.tasks) == 4
    chunks = _chunks(plan.tasks, 3)
    assert [len(c) for c in chunks] == [3, 1]
    assert [t.tile_id for c in chunks for t in c] == [t.tile_id for t in plan.tasks]


def test_failures_are_returned_with_their_reason(tmp_path, scene_pairs, bad_inputs):
    p = scene_pairs[0]
    broken, far = _jobs(tmp_path, [{"reference": bad_inputs["broken"], "moving": p.moving},
                                   {"reference": p.reference, "moving": bad_inputs["far"]}])
    r = plan_pair(broken)
    assert isinstance(r, TaskFailure) and r.stage == "plan"
    assert str(bad_inputs["broken"]) in r.reason and "not a readable raster" in r.reason
    r = plan_pair(far)
    assert isinstance(r, TaskFailure) and "do not overlap" in r.reason
    (tmp_path / "x").mkdir()
    (job,) = _jobs(tmp_path / "x", [{"reference": p.reference, "moving": p.moving, "matcher": "regnetmamba2", "checkpoint": tmp_path / "none.pt"}],
                   columns=("reference", "moving", "matcher", "checkpoint"))
    planned = plan_pair(job)
    c = match_chunk(planned.plan.tasks[:1], job.matcher, job.checkpoint, 8)
    assert isinstance(c, TaskFailure) and c.stage == "matcher" and "checkpoint not found" in c.reason
    o = fuse_pair(job, planned, False, 0, c)
    assert o.status == "error" and "checkpoint not found" in o.reason
    assert not any(q.exists() for q in sidecars(job.output).values())


def test_output_states(tmp_path, scene_pairs, sequential):
    p = scene_pairs[0]
    out = tmp_path / "out"
    (job,) = _jobs(tmp_path, [{"reference": p.reference, "moving": p.moving}])
    seq = sequential[p.name]
    out.mkdir()
    for q in sidecars(seq).values():
        shutil.copy(q, out / q.name)
    files = sidecars(job.output)
    assert output_state(job).state == "complete"

    # another pair's inputs, or other options, behind the same output name: not ours to skip or replace silently
    (other,) = load_manifest(write_manifest(tmp_path / "o.csv", [{"reference": p.reference, "moving": p.moving, "transform": "affine"}],
                                            columns=("reference", "moving", "transform")), out, DEFAULTS)
    st = output_state(other)
    assert st.state == "different" and "transform" in st.detail

    report = json.loads(files["report"].read_text())
    files["report"].write_text(json.dumps({**report, "status": "failed", "reason": "only 3 tie points"}))
    st = output_state(job)
    assert st.state == "partial" and "only 3 tie points" in st.detail
    files["report"].write_text("{ half a report")
    assert output_state(job).state == "partial"
    files["report"].write_text(json.dumps(report))
    files["tie_points"].unlink()
    assert output_state(job).detail == "missing tie_points"
    shutil.copy(sidecars(seq)["tie_points"], files["tie_points"])
    files["raster"].write_bytes(files["raster"].read_bytes()[:1000])  # truncated raster
    assert output_state(job).state == "partial"
    files["report"].unlink()
    assert output_state(job).state == "partial"  # the report is written last: without it, never complete


def test_remove_partials_only_touches_this_outputs_temporaries(tmp_path):
    out = tmp_path / "a_registered.tif"
    mine = [tmp_path / ".a_registered.0123abcd.part.tif", tmp_path / ".a_registered_report.89abcdef.part.json",
            tmp_path / ".a_registered.0123abcd.part.tif.aux.xml"]
    others = [tmp_path / ".b_registered.0123abcd.part.tif", tmp_path / ".a_registered2.0123abcd.part.tif", tmp_path / "a_registered.tif"]
    for q in mine + others:
        q.write_text("x")
    assert sorted(remove_partials(out)) == sorted(mine)
    assert all(q.exists() for q in others)


def test_a_set_with_a_swap_journal_is_partial_and_rolled_back_by_the_next_write(tmp_path):
    """A crash in the middle of replacing a pair's outputs leaves a journal: the batch redoes the pair, and its
    write first puts the previous set back (geomreg.geo.outputs.OutputSet)."""
    from pipelines.graph import OutputState

    out = tmp_path / "p.tif"
    files = sidecars(out)
    for k, q in files.items():
        q.write_text(f"old {k}")
    # The swap had moved the old raster to its backup and the new raster in, then died.
    backup = tmp_path / ".p.tif.0123abcd.old"
    files["raster"].rename(backup)
    files["raster"].write_text("new raster")
    entries = [{"final": str(q), "staged": str(tmp_path / f".{q.name}.0123abcd.new"),
                "backup": str(tmp_path / f".{q.name}.0123abcd.old")} for q in files.values()]
    (tmp_path / ".p.tif.0123abcd.swap.json").write_text(json.dumps({"pid": -1, "host": "elsewhere", "entries": entries}))

    class Job:
        output = str(out)

    assert output_state(Job()) == OutputState("partial", "an interrupted replacement (its journal is there)")
    remove_partials(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(q.name for q in files.values())
    assert {k: q.read_text() for k, q in files.items()} == {k: f"old {k}" for k in files}


def test_match_chunk_keeps_the_workers_memory_budget(monkeypatch, scene_pairs, tmp_path):
    """A CPU worker's tile batches shrink to fit min(the pair's budget, 80 % of the worker's memory limit)."""
    import pipelines.graph as graph
    from geomreg.geo import memory, tiles

    seen = {}
    real = tiles.match_tiles

    def spy(tasks, matcher, batch_size=8, max_memory=None):
        seen["max_memory"] = max_memory
        return real(tasks, matcher, batch_size=batch_size, max_memory=max_memory)

    monkeypatch.setattr(tiles, "match_tiles", spy)
    monkeypatch.setattr(graph, "worker_memory_limit", lambda: 1 * memory.GIB)
    p = scene_pairs[0]
    (job,) = _jobs(tmp_path, [{"reference": p.reference, "moving": p.moving}])
    planned = plan_pair(job)
    c = match_chunk(planned.plan.tasks[:2], job.matcher, job.checkpoint, 8, 3 * memory.GIB)
    assert isinstance(c, Chunk) and len(c.matches) == 2
    assert seen["max_memory"] == int(0.8 * memory.GIB)
    match_chunk(planned.plan.tasks[:1], job.matcher, job.checkpoint, 8, 512 * memory.MIB)
    assert seen["max_memory"] == 512 * memory.MIB


def test_gpu_workers_take_batches_sized_for_the_device(scene_pairs, tmp_path):
    from geomreg.geo.memory import GIB, gpu_tiles_per_batch
    from geomreg.matching.api import memory_per_pair

    from pipelines.runner import _tiles_per_task

    assert gpu_tiles_per_batch(80 * GIB, 1 * GIB) == 56
    assert gpu_tiles_per_batch(200 * GIB, 1 * GIB) == 64  # capped
    assert gpu_tiles_per_batch(1 * GIB, 2 * GIB) == 1
    p = scene_pairs[0]
    (job,) = _jobs(tmp_path, [{"reference": p.reference, "moving": p.moving, "matcher": "regnetmamba2"}],
                   columns=("reference", "moving", "matcher"))
    tasks = plan_pair(job).plan.tasks
    side = max(max(t.mov_window[2:]) for t in tasks)
    n = _tiles_per_task(tasks, job, 80 * GIB)
    assert n == gpu_tiles_per_batch(80 * GIB, memory_per_pair(side, side)) and n > job.config.batch_size
    assert _tiles_per_task(tasks, job, None) == job.config.batch_size  # CPU workers: the configured batch
    # The default matcher, "auto", is the network too when the packaged weights are validated.
    from dataclasses import replace

    from geomreg.matching.api import auto_matcher_name

    if auto_matcher_name()[0].startswith("regnetmamba2"):
        assert _tiles_per_task(tasks, replace(job, matcher="auto"), 80 * GIB) == n
