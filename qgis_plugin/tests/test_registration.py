"""Reading the engine's report: the RMSE of the fit, not a per-tile or cross-validation one."""

from __future__ import annotations

from geomreg_qgis.toolbelt.registration import find_rmse


def test_rmse_of_the_fit_is_read_from_the_report():
    report = {
        "auto_selection_cv_rmse_px": {"affine": 0.9, "translation": 0.4},
        "tiles": [{"median_residual_px": 0.3}],
        "rmse_px": 0.21,
        "rmse_map": 6.3,
        "ce90_px": 0.3,
    }
    assert find_rmse(report) == (0.21, 6.3)


def test_rmse_in_another_layout():
    assert find_rmse({"statistics": {"rmse": {"px": 0.5, "map": 15.0}}}) == (0.5, 15.0)
    assert find_rmse({"fit": {"rmse_pixels": 0.7}, "cv_rmse_px": 3.0}) == (0.7, None)
    assert find_rmse({"status": "failed"}) == (None, None)
