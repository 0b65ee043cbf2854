"""Reading the CLI's output: JSON progress lines (preferred), tqdm bars (fallback), plain lines."""

from __future__ import annotations

from geomreg_qgis.toolbelt.progress import LineSplitter, parse_line


def test_json_progress_line():
    event = parse_line('{"event": "progress", "progress": 0.42, "stage": "matching", "done": 21, "total": 50}')
    assert event.progress == 0.42
    assert event.stage == "matching"
    assert event.result is None and not event.is_error


def test_json_progress_from_counts_and_percent():
    assert parse_line('{"event": "progress", "done": 3, "total": 4}').progress == 0.75
    assert parse_line('{"percent": 50}').progress == 0.5
    assert parse_line('{"progress": 42}').progress == 0.42  # a CLI counting in percent
    assert parse_line('{"progress": 1.7e9}').progress == 1.0


def test_json_result_and_error_lines():
    result = parse_line('{"event": "result", "status": "registered", "rmse_px": 0.2}')
    assert result.result == {"event": "result", "status": "registered", "rmse_px": 0.2}
    error = parse_line('{"event": "error", "message": "moving raster b.tif has no CRS"}')
    assert error.is_error and error.message == "moving raster b.tif has no CRS"
    assert error.result is None


def test_tqdm_bar_is_a_fallback_progress():
    event = parse_line("matching tiles:  42%|####2     | 21/50 [00:03<00:04,  6.1tile/s]")
    assert event.progress == 0.42
    assert event.stage == "matching tiles"
    assert parse_line(" 100%|##########| 50/50 [00:08<00:00]").progress == 1.0


def test_plain_and_error_lines():
    assert parse_line("   ") is None
    plain = parse_line("reading reference a.tif")
    assert plain.message == "reading reference a.tif" and plain.progress is None and not plain.is_error
    assert parse_line("Error: moving raster 'b.tif' has no CRS").is_error
    assert parse_line("{not json}").message == "{not json}"


def test_line_splitter_handles_carriage_returns_and_partial_chunks():
    splitter = LineSplitter()
    assert splitter.feed("a: 10%|#  | 1/10\r") == ["a: 10%|#  | 1/10"]
    assert splitter.feed('a: 20%|## | 2/10\r{"progress": 0.') == ["a: 20%|## | 2/10"]
    assert splitter.feed('5}\nlast') == ['{"progress": 0.5}']
    assert splitter.flush() == ["last"]
    assert splitter.flush() == []


def test_failure_line_is_an_error():
    assert parse_line("registration failed: only 3 tie points").is_error


def test_overall_progress_spans_geomreg_bars_and_never_goes_back():
    from geomreg_qgis.toolbelt.progress import OverallProgress

    overall = OverallProgress()
    assert overall.update(0.0, "tiles", overall=False) == 0.15
    assert overall.update(0.5, "tiles", overall=False) == 0.525
    assert overall.update(1.0, "tiles", overall=False) == 0.9
    assert overall.update(0.5, "writing", overall=False) == 0.95
    assert overall.update(0.2, "coarse tiles", overall=False) == 0.95  # never backwards
    assert overall.update(1.0, "something new", overall=False) == 0.975
    assert overall.update(1.0, None, overall=True) == 1.0
