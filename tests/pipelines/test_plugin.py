"""The worker plugin: one matcher per worker, GPU=1 resource for tile batches, weights only from the package or an
explicit path with weights_only=True, and clear reasons when a matcher cannot be built."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_helpers import assert_same_outputs, write_manifest

from pipelines.manifest import BatchDefaults, load_manifest
from pipelines.plugin import PLUGIN_NAME, MatcherCache, MatcherPlugin, MatcherUnavailableOnWorker, worker_matcher
from pipelines.runner import run_batch


def _matcher_id(name: str) -> int:
    return id(worker_matcher(name))


def test_matcher_is_loaded_once_per_worker():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        c.register_plugin(MatcherPlugin(device="cpu", preload=(("cfog", None),)))
        assert all(c.run(lambda dask_worker: PLUGIN_NAME in dask_worker.plugins).values())
        ids = c.gather([c.submit(_matcher_id, "cfog", pure=False) for _ in range(8)])
        assert len(set(ids)) == 1  # every task on the worker got the same instance, from both threads
        cached = c.run(lambda dask_worker: sorted(dask_worker.plugins[PLUGIN_NAME].cache._matchers))
        assert list(cached.values()) == [[("cfog", None)]]


def test_regnetmamba2_without_packaged_weights_says_so(hidden_weights):
    cache = MatcherCache("cpu")
    for _ in range(2):  # the failure is remembered, not retried for every tile
        with pytest.raises(MatcherUnavailableOnWorker) as e:
            cache.get("regnetmamba2")
        msg = str(e.value)
        assert "no trained RegNetMamba-2 weights are packaged" in msg and "--matcher cfog" in msg


class _Payload:
    """Unpickling this would create a file: a checkpoint loaded without weights_only would run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_are_loaded_with_weights_only(tmp_path):
    import torch

    marker = tmp_path / "code_ran"
    ckpt = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "config": {}, "extra": _Payload(marker)}, ckpt)
    with pytest.raises(MatcherUnavailableOnWorker) as e:
        MatcherCache("cpu").get("regnetmamba2", str(ckpt))
    assert str(ckpt) in str(e.value) and "not a readable checkpoint" in str(e.value)
    assert not marker.exists()


def test_tile_batches_run_only_on_gpu_resource_workers(tmp_path, scene_pairs, sequential):
    """Two workers, one advertising GPU=1: with gpu=True every tile batch (and the matcher check) runs on that one."""
    from distributed import Client, Scheduler, SpecCluster, Worker, get_task_stream

    p = scene_pairs[1]
    (job,) = load_manifest(write_manifest(tmp_path / "pairs.csv", [{"reference": p.reference, "moving": p.moving}]), tmp_path / "out",
                           BatchDefaults(matcher="cfog", tile_size=256, overlap=32, batch_size=2))
    workers = {"gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
               "cpu": {"cls": Worker, "options": {"nthreads": 1}}}
    scheduler = {"cls": Scheduler, "options": {"dashboard": False, "host": "127.0.0.1"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster) as c:
        c.wait_for_workers(2)
        names = {a: w["name"] for a, w in c.scheduler_info()["workers"].items()}
        with get_task_stream(c) as ts:
            result = run_batch(c, [job], progress=False, device="cpu", gpu=True)
        assert result.ok and result.pairs[0].status == "registered"
        ran = {}
        for t in ts.data:
            ran.setdefault(str(t["key"]).split("-")[1], set()).add(names[t["worker"]])
        assert ran["fine"] == {"gpu"} and ran["check"] == {"gpu"}
    assert_same_outputs(Path(job.output), sequential[p.name], config_differs=("batch_size",))
