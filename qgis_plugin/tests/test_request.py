"""The request: CLI arguments mirror `geomreg register`, and bad inputs are named before any run."""

from __future__ import annotations

from conftest import ORIGIN, write_geotiff
import numpy as np

from geomreg_qgis.toolbelt.request import RegistrationRequest, validate_request


def _pair(tmp_path):
    data = np.tile(np.arange(64, dtype=np.float32) * 3, (64, 1))
    ref = write_geotiff(tmp_path / "ref.tif", data, ORIGIN)
    mov = write_geotiff(tmp_path / "mov.tif", data, ORIGIN)
    return str(ref), str(mov)


def test_cli_args_mirror_the_cli():
    request = RegistrationRequest("a.tif", "b.tif", "out.tif", transform="affine", matcher="cfog", tile_size=256,
                                  max_shift=40.0, device="cpu", overwrite=True)
    assert request.cli_args() == [
        "register", "a.tif", "b.tif", "-o", "out.tif", "--transform", "affine", "--matcher", "cfog",
        "--device", "cpu", "--tile-size", "256", "--max-shift", "40px", "--overwrite",
    ]
    assert request.cli_args(output="/staging/out.tif")[4] == "/staging/out.tif"
    # Engine defaults are left to the engine.
    assert "--tile-size" not in RegistrationRequest("a", "b", "c.tif").cli_args()
    assert RegistrationRequest("a", "b", "c.tif", max_shift=12.5).cli_args()[-2:] == ["--max-shift", "12.5px"]
    in_metres = RegistrationRequest("a", "b", "c.tif", max_shift=300, max_shift_unit="map")
    assert in_metres.cli_args()[-2:] == ["--max-shift", "300m"]
    assert in_metres.api_kwargs()["max_shift"] == "300m"


def test_api_kwargs():
    request = RegistrationRequest("a.tif", "b.tif", "out.tif", matcher="cfog", tile_size=256)
    assert request.api_kwargs() == {"transform": "auto", "matcher": "cfog", "device": "auto", "tile_size": 256}


def test_valid_request_has_no_problem(tmp_path):
    ref, mov = _pair(tmp_path)
    assert validate_request(RegistrationRequest(ref, mov, str(tmp_path / "out.tif"))) == []


def test_each_bad_input_is_named(tmp_path):
    ref, mov = _pair(tmp_path)
    missing = str(tmp_path / "nope.tif")
    (tmp_path / "corrupt.tif").write_bytes(b"not a tiff at all")
    no_crs = write_geotiff(tmp_path / "nocrs.tif", np.ones((32, 32)) * 7, ORIGIN, epsg=None)
    (tmp_path / "exists.tif").write_bytes(b"x")

    def messages(**kw):
        base = dict(reference=ref, moving=mov, output=str(tmp_path / "out.tif"))
        base.update(kw)
        return [p.message for p in validate_request(RegistrationRequest(**base))]

    assert messages(reference=missing) == [f"Reference raster '{missing}' does not exist."]
    [corrupt] = messages(moving=str(tmp_path / "corrupt.tif"))
    assert "corrupt.tif" in corrupt and "cannot be read as a raster" in corrupt
    [crs] = messages(moving=str(no_crs))
    assert "nocrs.tif" in crs and "no coordinate reference system" in crs
    assert messages(moving=ref) == [f"Reference and moving rasters are the same file ('{ref}')."]
    [same] = messages(output=mov)
    assert "is the moving raster itself" in same
    [exists] = messages(output=str(tmp_path / "exists.tif"))
    assert "already exists" in exists
    assert messages(output=str(tmp_path / "exists.tif"), overwrite=True) == []
    [suffix] = messages(output=str(tmp_path / "out.png"))
    assert "must be a GeoTIFF" in suffix
    [folder] = messages(output=str(tmp_path / "no" / "such" / "out.tif"))
    assert "does not exist" in folder
    assert messages(reference="") == ["No reference raster chosen."]
    assert "outside" in messages(tile_size=8)[0]
    assert "Unknown matcher" in messages(matcher="sift")[0]


def test_tile_sampling_and_memory_options_reach_the_cli_and_the_api():
    request = RegistrationRequest("a", "b", "c.tif", tiles="all", max_uncertainty=0.05, max_memory="1G")
    args = request.cli_args()
    assert args[args.index("--tiles") + 1] == "all"
    assert args[args.index("--max-uncertainty") + 1] == "0.05" and args[args.index("--max-memory") + 1] == "1G"
    assert {"tiles": "all", "max_uncertainty": 0.05, "max_memory": "1G"}.items() <= request.api_kwargs().items()
    assert "--tiles" not in RegistrationRequest("a", "b", "c.tif").cli_args()  # the engine's defaults otherwise
