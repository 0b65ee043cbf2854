"""`geomreg batch`: the contract, exit codes (0 all registered, 1 any failed, 2 bad manifest/options) and the
default LocalCluster run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from batch_helpers import REG_OPTS, assert_same_outputs, write_manifest
from click.testing import CliRunner

from geomreg.cli import main


def _batch(*args: str):
    return CliRunner().invoke(main, ["batch", *map(str, args)])


def test_batch_is_a_geomreg_command_with_the_contract_options():
    r = _batch("--help")
    assert r.exit_code == 0
    for opt in ("MANIFEST", "--out", "--scheduler", "--workers", "--threads-per-worker", "--matcher", "--transform", "--tile-size",
                "--overwrite", "--tls-ca-file", "--batch-size"):
        assert opt in r.output


def test_found_through_the_entry_point_whichever_module_is_imported_first():
    import tomllib

    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["geomreg.commands"]["batch"] == "pipelines.cli_cmd:batch_command"
    for code in ("import pipelines.cli_cmd\nfrom geomreg.cli import main\nassert 'batch' in main.commands\n",
                 "from geomreg.cli import main\nimport pipelines.cli_cmd\nassert main.commands['batch'] is pipelines.cli_cmd.batch_command\n"):
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bad_manifests_and_options_exit_2_without_starting_a_cluster(tmp_path):
    m = tmp_path / "pairs.csv"
    m.write_text("reference,moving,tile_size\nr.tif,m.tif,256\nr.tif,m2.tif,huge\n")
    r = _batch(m, "--out", tmp_path / "out")
    assert r.exit_code == 2
    assert f"error: {m}: line 3: column tile_size: 'huge' is not an integer" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "out").exists()

    r = _batch(tmp_path / "nope.csv", "--out", tmp_path / "out")
    assert r.exit_code == 2 and "manifest not found" in r.output

    m.write_text("reference,moving\nr.tif,m.tif\n")
    r = _batch(m, "--out", tmp_path / "out", "--scheduler", "http://127.0.0.1:1")
    assert r.exit_code == 2 and "unsupported protocol 'http'" in r.output
    r = _batch(m, "--out", tmp_path / "out", "--tile-size", "32")  # click's own check
    assert r.exit_code == 2
    r = _batch(m, "--out", tmp_path / "out", "--max-shift", "far")
    assert r.exit_code == 2 and "cannot read max_shift 'far'" in r.output
    r = _batch(m, "--out", tmp_path / "out", "--matcher", "sift")
    assert r.exit_code == 2 and "choose one of auto, regnetmamba2, regnetmamba2+polish, cfog, regnetmamba2+cfog" in r.output
    (tmp_path / "file").write_text("")
    r = _batch(m, "--out", tmp_path / "file")
    assert r.exit_code == 2


def test_local_cluster_end_to_end(tmp_path, scene_pairs, sequential, hidden_weights):
    """The default cluster (one worker here to keep it light): dashboard on loopback, a progress bar, the table;
    in an installation without packaged weights (hidden here, in the worker processes too) a pair that asks for the
    network is reported per pair, clearly, and the exit code is 1."""
    p = scene_pairs[0]
    rows = [{"reference": p.reference, "moving": p.moving, "matcher": ""},
            {"reference": scene_pairs[1].reference, "moving": scene_pairs[1].moving, "matcher": "regnetmamba2"}]
    m = write_manifest(tmp_path / "pairs.csv", rows, columns=("reference", "moving", "matcher"))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", str(m), "--out", str(out), "--workers", "1", "--dashboard-address", "127.0.0.1:0", *REG_OPTS])
    assert "LocalCluster on 127.0.0.1: 1 worker process(es) x 1 thread(s)" in r.output
    assert "dashboard: http://127.0.0.1:" in r.output
    assert "tile/s" in r.output and "pairs 1/" in r.output  # the progress bar
    doc = json.loads((out / "batch_summary.json").read_text())
    assert doc["pairs"][0]["status"] == "registered"
    assert_same_outputs(Path(doc["pairs"][0]["output"]), sequential[p.name])
    assert r.exit_code == 1, r.output
    second = doc["pairs"][1]
    assert second["status"] == "error" and "no trained RegNetMamba-2 weights are packaged" in second["reason"]
    assert "no trained RegNetMamba-2 weights are packaged" in r.output


def test_local_cluster_default_matcher_loads_the_packaged_weights(tmp_path, default_matcher_name):
    """No --matcher: the worker process builds the default matcher from the packaged weights itself; the pair is
    384 px crops of the bundled optical / SAR-like sample (one tile), whose offset is known."""
    from tests.geo.scenes import sample_crops

    from geomreg.geo.sample import sample_pair

    ref, mov = sample_crops(tmp_path)
    m = write_manifest(tmp_path / "pairs.csv", [{"reference": ref, "moving": mov}])
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", str(m), "--out", str(out), "--workers", "1", "--dashboard-address", "127.0.0.1:0"])
    assert r.exit_code == 0, r.output
    (pair,) = json.loads((out / "batch_summary.json").read_text())["pairs"]
    assert pair["status"] == "registered"
    rep = json.loads(Path(pair["output"]).with_name(Path(pair["output"]).stem + "_report.json").read_text())
    assert rep["matcher"] == default_matcher_name
    true_shift = np.array(sample_pair().truth["moving_to_reference_affine"])[[2, 5]]
    err = np.hypot(*(np.array(rep["transform"]["shift_at_centre_map"]) - true_shift)) / 30
    print(f"geomreg batch (default matcher) on sample_crops: {err:.3f} px from the known offset")
    # The same registration as `geomreg register` on these crops (tests/test_cli.py): 0.029 px on 2026-12-06 at
    # commit ba1c812 (this test with -s prints it); bound with a 0.1 px margin.
    assert err < 0.13
