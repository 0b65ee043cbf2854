"""Batch co-registration of many scene pairs on Dask distributed (`geomreg batch`).

    jobs = load_manifest("pairs.csv", out_dir="out", defaults=BatchDefaults())
    with open_client(ClusterOptions(workers=2)) as cluster:      # LocalCluster on 127.0.0.1, or --scheduler ADDR
        result = run_batch(cluster.client, jobs, gpu=cluster.gpu)
    print(format_table(result))

The tiles of all pairs are the Dask tasks; each pair is fused and written as soon as its tiles are
done, with exactly the steps of `geomreg register` (plan -> coarse pass -> tiles -> fusion -> outputs).
"""

from pipelines.cluster import ClusterInfo, ClusterOptions, open_client
from pipelines.manifest import BatchDefaults, ManifestError, PairJob, load_manifest
from pipelines.report import format_table, write_summary
from pipelines.runner import BatchResult, PairResult, run_batch

__all__ = [
    "BatchDefaults", "ManifestError", "PairJob", "load_manifest",
    "ClusterInfo", "ClusterOptions", "open_client",
    "BatchResult", "PairResult", "run_batch",
    "format_table", "write_summary",
]
