"""`geomreg batch MANIFEST --out DIR [--scheduler ADDR] [--workers N]`.

The `geomreg` CLI finds this command through the `geomreg.commands` entry point in pyproject.toml.

Exit codes: 0 every pair registered (or already complete), 1 any pair failed, 2 bad manifest or options,
3 some pair's outputs or the batch summary could not be written (no space left, read-only, ...), 4 the Dask
scheduler was lost mid-batch (complete outputs kept; rerun to finish). See docs/failure_modes.md.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import sys
from pathlib import Path

import click

from geomreg.cli_options import (
    EXIT_BAD_INPUT, EXIT_CLUSTER_LOST, EXIT_CODES_BATCH, EXIT_FAILED, EXIT_OUTPUT, registration_options,
)

log = logging.getLogger(__name__)


def _guard(f):
    """Bad manifest or options -> message and exit 2; a summary or output folder the machine cannot take -> one
    line "<path>: <cause>" and exit 3; Ctrl-C -> exit 1; never a traceback for those."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from geomreg.geo.errors import InputError, OutputError

        try:
            return f(*args, **kwargs)
        except InputError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except OutputError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_OUTPUT)
        except KeyboardInterrupt:
            click.echo("interrupted: the pairs reported done are complete; run the same command again to do the rest "
                       "(complete outputs are skipped)", err=True)
            sys.exit(EXIT_FAILED)

    return wrapper


@click.command("batch", epilog=EXIT_CODES_BATCH)
@click.argument("manifest", type=str)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: default outputs <moving name>_registered.tif and relative output paths go here.")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="An existing Dask scheduler (tcp://HOST:PORT, tls://HOST:PORT or a scheduler JSON file). "
                   "Default: a LocalCluster on 127.0.0.1 sized to this machine.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="LocalCluster worker processes (default: one per core, or per GPU).")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=None, help="LocalCluster threads per worker (default 1; 2 on GPU workers).")
@registration_options
@click.option("--mode", type=click.Choice(["resample", "georef", "gcps"]), default="resample", show_default=True,
              help="resample onto the reference grid; georef: corrected geotransform only; gcps: embedded GCPs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Tiles per matcher batch, which is also the unit of work of a Dask task.")
@click.option("--overwrite", is_flag=True, help="Redo pairs whose outputs are complete already (default: skip them).")
@click.option("--dashboard-address", default="127.0.0.1:8787", show_default=True,
              help="LocalCluster dashboard (loopback by default); 'none' disables it.")
@click.option("--tls-ca-file", type=click.Path(dir_okay=False), default=None, help="CA certificate for a tls:// scheduler.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None, help="Client certificate for a tls:// scheduler.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, help="Client key for a tls:// scheduler.")
@click.option("--worker-timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds to wait for the first worker of a --scheduler cluster.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_guard
def batch_command(manifest, out_dir, scheduler, workers, threads_per_worker, matcher, checkpoint, device, mode, batch_size,
                  overwrite, dashboard_address, tls_ca_file, tls_cert, tls_key, worker_timeout, progress, **kw):
    """Register every pair of MANIFEST on Dask: a CSV with columns reference,moving[,output] and optional
    per-pair option columns (transform, matcher, checkpoint, tile_size, overlap, max_shift, ref_band,
    mov_band, resolution, pixel_mode, max_memory, tiles, max_uncertainty, mode, batch_size), or the same as YAML.

    Outputs are those of `geomreg register` (raster, report, tie points, .points). Complete outputs are
    skipped, so rerunning a manifest finishes an interrupted batch. Prints the dashboard address, a
    progress bar and a summary table (also written to DIR/batch_summary.{json,csv}).
    """
    from geomreg.cli_options import config_from_options

    from pipelines.cluster import ClusterOptions, describe, open_client
    from pipelines.manifest import MATCHERS, BatchDefaults, load_manifest
    from pipelines.report import format_table, write_summary
    from pipelines.runner import ClusterLost, run_batch

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        # Dask logs every connection at INFO, and a lost scheduler as tracebacks at ERROR; without -v the
        # batch's own lines say what happened (pair reasons, a lost scheduler). Importing distributed sets its
        # loggers' levels, so this comes after the import.
        import distributed  # noqa: F401

        for name in ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]:
            logging.getLogger(name).setLevel(logging.CRITICAL)  # distributed gives some loggers their own level
    config_from_options(**kw)  # the command-line values must be valid on their own (exit 2 otherwise)
    defaults = BatchDefaults(
        transform=kw["transform"], tile_size=kw["tile_size"], overlap=kw["overlap"], max_shift=str(kw["max_shift"]),
        ref_band=kw["ref_band"], mov_band=kw["mov_band"], resolution=kw["resolution"], pixel_mode=bool(kw["pixel_mode"]),
        max_memory=kw["max_memory"], tiles=kw["tiles"], max_uncertainty=kw["max_uncertainty"],
        matcher=matcher.strip().lower(), checkpoint=checkpoint, mode=mode, batch_size=batch_size,
    )
    if defaults.matcher not in MATCHERS:
        from geomreg.geo.errors import InputError

        raise InputError(f"--matcher {matcher!r}: choose one of {', '.join(MATCHERS)}")
    out = Path(out_dir).expanduser()
    jobs = load_manifest(manifest, out, defaults)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from geomreg.geo.errors import InputError
        from geomreg.geo.outputs import output_error

        err = output_error(e, out)
        if err is not None and err.errno != errno.ENOENT:
            raise err from None  # read-only, permission denied, no space: exit 3
        raise InputError(f"the output folder cannot be created: {e.strerror or e}", out) from None
    if scheduler and (workers or threads_per_worker):
        click.echo("note: --workers/--threads-per-worker size a LocalCluster; ignored with --scheduler", err=True)
    dash = None if str(dashboard_address).lower() in ("none", "off", "") else dashboard_address
    opts = ClusterOptions(scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker, device=device,
                          dashboard_address=dash, tls_ca_file=tls_ca_file, tls_cert=tls_cert, tls_key=tls_key,
                          worker_timeout=worker_timeout)
    click.echo(f"{len(jobs)} pair(s) from {manifest} -> {out}")
    try:
        with open_client(opts) as cluster:
            click.echo(describe(cluster))
            click.echo(f"dashboard: {cluster.dashboard or 'not available'}")
            result = run_batch(cluster.client, jobs, overwrite=overwrite, progress=progress, device=device, gpu=cluster.gpu,
                               op_threads=cluster.op_threads)
    except ClusterLost as e:
        _cluster_lost(e, out)
    click.echo(format_table(result))
    paths = write_summary(result, out)
    click.echo(f"summary: {paths['json']}")
    sys.exit(result.exit_code)


def _cluster_lost(e, out: Path) -> None:
    """The scheduler went away: what is done is complete and stays; say so, keep a summary, exit 4."""
    from geomreg.geo.errors import OutputError

    from pipelines.report import format_table, write_summary

    click.echo(format_table(e.partial))
    with contextlib.suppress(OutputError):
        click.echo(f"summary: {write_summary(e.partial, out)['json']}")
    done = sum(1 for p in e.partial.pairs if p.ok)
    click.echo(f"error: {e}; the {done} pair(s) reported done are complete and kept. Start a scheduler and run the same "
               "command again to do the rest (complete outputs are skipped).", err=True)
    sys.exit(EXIT_CLUSTER_LOST)
