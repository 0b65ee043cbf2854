"""Manifests: CSV and YAML, path resolution, per-pair options, and bad manifests named by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from geomreg.cli_options import config_from_options
from pipelines.manifest import BatchDefaults, ManifestError, load_manifest


def _csv(tmp_path: Path, text: str, name: str = "pairs.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_paths_and_default_outputs(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for n in ("a.tif", "b.tif", "c.tif"):
        (data / n).write_bytes(b"")
    m = _csv(data, "reference,moving,output\na.tif,b.tif,\na.tif,c.tif,sub/c_out.tif\n/abs/r.tif,https://host/x/d.tif?sig=1,/abs/out/d.tif\n")
    out = tmp_path / "out"
    jobs = load_manifest(m, out)
    assert [j.index for j in jobs] == [1, 2, 3]
    assert [j.where for j in jobs] == ["line 2", "line 3", "line 4"]
    # inputs relative to the manifest's folder; default output in DIR; relative output under DIR
    assert jobs[0].reference == str(data / "a.tif") and jobs[0].moving == str(data / "b.tif")
    assert jobs[0].output == str(out.resolve() / "b_registered.tif")
    assert jobs[1].output == str(out.resolve() / "sub" / "c_out.tif")
    # absolute paths and URLs are kept; the default name of a URL input is its file name without the query
    assert jobs[2].reference == "/abs/r.tif" and jobs[2].moving == "https://host/x/d.tif?sig=1"
    assert jobs[2].output == "/abs/out/d.tif" and jobs[2].name == "d.tif"


def test_relative_inputs_fall_back_to_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "r.tif").write_bytes(b"")
    (tmp_path / "m.tif").write_bytes(b"")
    sub = tmp_path / "manifests"
    sub.mkdir()
    m = _csv(sub, "reference,moving\nr.tif,m.tif\n")
    monkeypatch.chdir(tmp_path)
    (job,) = load_manifest(m, tmp_path / "out")
    assert job.reference == str(tmp_path / "r.tif")


def test_defaults_and_per_pair_options_build_the_config_register_would(tmp_path):
    m = _csv(tmp_path, "Reference,Moving,Tile-Size,transform,max_shift,pixel_mode,mode,matcher\n"
                       "r.tif,m1.tif,,,,,,\n"
                       "r.tif,m2.tif,256,affine,300m,yes,georef,regnetmamba2\n")
    defaults = BatchDefaults(transform="translation", tile_size=384, overlap=48, max_shift="40", matcher="cfog")
    a, b = load_manifest(m, tmp_path / "o", defaults)
    assert a.config == config_from_options(transform="translation", tile_size=384, overlap=48, max_shift="40", ref_band="auto",
                                           mov_band="auto", resolution=None, pixel_mode=False)
    assert a.matcher == "cfog" and a.mode == "resample" and a.options == ()
    assert b.config.tile_size == 256 and b.config.transform == "affine" and b.config.overlap == 48
    assert b.config.max_shift == 300.0 and b.config.max_shift_unit == "map" and b.config.pixel_mode is True
    assert b.mode == "georef" and b.matcher == "regnetmamba2"
    assert dict(b.options)["tile_size"] == 256


def test_yaml_with_defaults(tmp_path):
    p = tmp_path / "pairs.yaml"
    p.write_text("defaults:\n  transform: affine\n  tile_size: 256\npairs:\n"
                 "  - {reference: r.tif, moving: m1.tif}\n"
                 "  - {reference: r.tif, moving: m2.tif, output: two.tif, tile_size: 320, checkpoint: ck.pt}\n")
    a, b = load_manifest(p, tmp_path / "o")
    assert a.config.transform == "affine" and a.config.tile_size == 256 and a.where == "pair 1"
    assert b.config.tile_size == 320 and b.output.endswith("two.tif")
    assert b.checkpoint == str(tmp_path / "ck.pt")


def test_yaml_bare_list(tmp_path):
    p = tmp_path / "pairs.yml"
    p.write_text("- reference: r.tif\n  moving: m.tif\n")
    (j,) = load_manifest(p, tmp_path / "o")
    assert j.moving == str(tmp_path / "m.tif")


def test_comments_and_blank_lines_are_skipped(tmp_path):
    m = _csv(tmp_path, "# pairs of the week\nreference,moving\n\nr.tif,m.tif\n# r.tif,x.tif\n")
    (j,) = load_manifest(m, tmp_path / "o")
    assert j.where == "line 4"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("moving,output\nm.tif,o.tif\n", "missing: reference"),
        ("reference,moving,colour\nr.tif,m.tif,red\n", "unknown column(s) 'colour'"),
        ("reference,moving,moving\nr.tif,m.tif,n.tif\n", "moving appear more than once"),
        ("reference,moving\nr.tif,m.tif\n,m2.tif\n", "line 3: the reference path is empty"),
        ("reference,moving,tile_size\nr.tif,m.tif,big\n", "line 2: column tile_size: 'big' is not an integer"),
        ("reference,moving,tile_size\nr.tif,m.tif,32\n", "line 2: tile_size must be an integer >= 64"),
        ("reference,moving,transform\nr.tif,m.tif,spline\n", "line 2: column transform: 'spline' is not one of auto"),
        ("reference,moving,max_shift\nr.tif,m.tif,far\n", "line 2: cannot read max_shift 'far'"),
        ("reference,moving,pixel_mode\nr.tif,m.tif,maybe\n", "column pixel_mode: 'maybe' is not true or false"),
        ("reference,moving,matcher\nr.tif,m.tif,sift\n", "column matcher: 'sift' is not one of auto, regnetmamba2, regnetmamba2+polish, cfog"),
        ("reference,moving,checkpoint\nr.tif,m.tif,https://x/w.pt\n", "not from a URL"),
        ("reference,moving\nr.tif,m.tif,extra\n", "line 2: 3 cells but the header has 2 columns"),
        ("reference,moving\nr1.tif,m.tif\nr2.tif,m.tif\n", "line 2 and line 3 write the same output"),
        ("reference,moving,output\nr.tif,m.tif,r2.tif\nr2.tif,m2.tif,\n", "line 2: the output"),
        ("reference,moving,output\nr.tif,m.tif,{tmp}/m.tif\n", "is the moving input"),
        ("reference,moving\n", "lists no pairs"),
        ("", "manifest is empty"),
    ],
)
def test_bad_manifests_name_the_line_and_the_problem(tmp_path, text, expected):
    m = _csv(tmp_path, text.replace("{tmp}", str(tmp_path)))
    with pytest.raises(ManifestError) as e:
        load_manifest(m, tmp_path)
    assert expected in str(e.value)
    assert str(m) in str(e.value)  # the file is named


def test_missing_and_binary_manifests(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.csv", tmp_path)
    b = tmp_path / "bin.csv"
    b.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ManifestError, match="not a UTF-8 text file"):
        load_manifest(b, tmp_path)
    with pytest.raises(ManifestError, match="is a directory"):
        load_manifest(tmp_path, tmp_path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("pairs: {reference: r.tif}\n", "a YAML manifest is a list of pairs"),
        ("pairs:\n  - r.tif\n", "pair 1: expected a mapping"),
        ("defaults: {output: x.tif}\npairs:\n  - {reference: r.tif, moving: m.tif}\n", "defaults cannot set output"),
        ("jobs: []\n", "unknown top-level key(s) 'jobs'"),
        ("pairs:\n  - {reference: r.tif, moving: m.tif, overlap: 1.5}\n", "pair 1: column overlap: 1.5 is not an integer"),
        ("pairs: [\n", "not valid YAML"),
    ],
)
def test_bad_yaml_manifests(tmp_path, text, expected):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    with pytest.raises(ManifestError) as e:
        load_manifest(p, tmp_path)
    assert expected in str(e.value)
