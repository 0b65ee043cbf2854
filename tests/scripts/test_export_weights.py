import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from geomreg.matching.model import RegNetMamba2

_SPEC = importlib.util.spec_from_file_location("export_weights", Path(__file__).parents[2] / "scripts" / "export_weights.py")
export = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(export)


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = RegNetMamba2()
    path = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "config": model.cfg.to_dict(), "step": 7, "train_config": {}}, path)
    return path


def test_score_only_prints_the_scores_and_writes_nothing(checkpoint, tmp_path, monkeypatch, capsys):
    chosen = {}

    def fake_tune(model, data, thresholds, max_pairs, gt_fixes=None, warp_seeds=(0,), matcher_config=None):
        chosen["thresholds"], chosen["seeds"] = thresholds, warp_seeds
        print("threshold 0.02: whole-image validation score 0.500")
        return model, {"scores": {"0.02": 0.5}, "chosen": 0.02, "best_metrics": {}}

    def no_export(*a, **k):
        raise AssertionError("--score-only must not export")

    monkeypatch.setattr(export, "tune_threshold_whole", fake_tune)
    monkeypatch.setattr(export, "export_packaged", no_export)
    monkeypatch.setattr(sys, "argv", ["export_weights.py", str(checkpoint), "--data", str(tmp_path), "--thresholds", "0.02", "--score-only", "--warp-seeds", "0,1"])
    export.main()
    assert chosen["thresholds"] == [0.02] and chosen["seeds"] == (0, 1)
    assert "validation score 0.500" in capsys.readouterr().out


def test_score_only_needs_data(checkpoint, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["export_weights.py", str(checkpoint), "--score-only"])
    with pytest.raises(SystemExit) as exc:
        export.main()
    assert exc.value.code == 2


@pytest.fixture()
def packaged(tmp_path):
    """Weights as they ship: a bare state_dict with its card (config) beside it."""
    import json

    model = RegNetMamba2()
    path = tmp_path / "regnetmamba2.pt"
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"config": model.cfg.to_dict()}))
    return path


def test_packaged_weights_can_be_scored_but_not_exported(packaged, tmp_path, monkeypatch, capsys):
    scored = {}

    def fake_tune(model, data, thresholds, max_pairs, gt_fixes=None, warp_seeds=(0,), matcher_config=None):
        scored["model"] = model
        return model, {"scores": {"0.02": 0.5}, "chosen": 0.02, "best_metrics": {}}

    monkeypatch.setattr(export, "tune_threshold_whole", fake_tune)
    monkeypatch.setattr(sys, "argv", ["export_weights.py", str(packaged), "--data", str(tmp_path), "--thresholds", "0.02", "--score-only"])
    export.main()
    assert isinstance(scored["model"], RegNetMamba2)
    monkeypatch.setattr(sys, "argv", ["export_weights.py", str(packaged), "--data", str(tmp_path), "--thresholds", "0.02"])
    with pytest.raises(SystemExit) as exc:
        export.main()
    assert exc.value.code == 2 and "training checkpoint" in capsys.readouterr().err


def test_guide_threshold_reaches_the_validation_matcher(checkpoint, tmp_path, monkeypatch):
    seen = {}

    def fake_tune(model, data, thresholds, max_pairs, gt_fixes=None, warp_seeds=(0,), matcher_config=None):
        seen["config"] = matcher_config
        return model, {"scores": {}, "chosen": 0.02, "best_metrics": {}}

    monkeypatch.setattr(export, "tune_threshold_whole", fake_tune)
    argv = ["export_weights.py", str(checkpoint), "--data", str(tmp_path), "--thresholds", "0.02", "--score-only"]
    monkeypatch.setattr(sys, "argv", argv)
    export.main()
    assert seen["config"] is None  # the Matcher's own defaults
    monkeypatch.setattr(sys, "argv", argv + ["--guide-threshold", "5"])
    export.main()
    assert seen["config"].guide.threshold_px == 5.0 and seen["config"].max_side == 1024


def test_the_model_card_is_what_the_generator_writes():
    """docs/MODEL_CARD.md is generated (`export_weights.py --card-only`): edit docs/model_card_notes.md or the
    generator, then regenerate; the card's sections come in the usual model-card order."""
    import json

    repo = Path(__file__).parents[2]
    card = json.loads((repo / "geomreg" / "weights" / "regnetmamba2.json").read_text())
    text = export.render_card(card, (repo / "docs" / "model_card_notes.md").read_text())
    assert (repo / "docs" / "MODEL_CARD.md").read_text() == text
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:6] == ["## Model details", "## Intended use", "## Training data", "## Training procedure",
                            "## Evaluation", "## Limitations"]
    assert "## Licences" in sections
