"""scripts/export_weights.py for real: whole-image threshold tuning on a tiny dataset, the fp16 weights, their card
(checksum, config, validation) and docs/MODEL_CARD.md, written into a temporary tree (never the shipped files)."""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from geomreg.matching import weights as W
from geomreg.matching.model import RegNetMamba2

_SPEC = importlib.util.spec_from_file_location("export_weights", Path(__file__).parents[2] / "scripts" / "export_weights.py")
export = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(export)


def _validation_ids(n: int) -> list[str]:
    """Pair ids that split_pairs puts in the validation split (sha1 of the id below 0.1)."""
    ids = (f"p{k}" for k in range(10_000))
    return [pid for pid in ids if int(hashlib.sha1(pid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < 0.1][:n]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """A MANIFEST.csv dataset of two 96 px validation pairs (vis-ir, opt-sar): mov is ref shifted, inverted."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = ["pair_id,modality,ref_path,mov_path,aligned,gt,width,height"]
    for pid, mod in zip(_validation_ids(2), ("vis-ir", "opt-sar")):
        d = root / mod / pid
        d.mkdir(parents=True)
        ref = cv2.GaussianBlur(rng.random((96, 96)).astype(np.float32), (0, 0), 2.0)
        ref = (255 * (ref - ref.min()) / np.ptp(ref)).astype(np.uint8)
        mov = cv2.warpAffine(ref, np.float32([[1, 0, -3], [0, 1, 2]]), (96, 96))  # mov(x) = ref(x + (3, -2))
        cv2.imwrite(str(d / "ref.png"), ref)
        cv2.imwrite(str(d / "mov.png"), 255 - mov)
        np.savetxt(d / "H_mov_to_ref.txt", np.array([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1]]))
        rows.append(f"{pid},{mod},{mod}/{pid}/ref.png,{mod}/{pid}/mov.png,no,{mod}/{pid}/H_mov_to_ref.txt,96,96")
    (root / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = RegNetMamba2()
    path = tmp_path / "ck.pt"
    history = [{"device": "cpu", "host": "test", "cpu_threads": 1, "start_step": 0, "steps": 7}]
    torch.save({"model": model.state_dict(), "config": model.cfg.to_dict(), "step": 7, "train_config": {}, "history": history}, path)
    return path


@pytest.fixture()
def tree(tmp_path, monkeypatch) -> Path:
    """The script writes the packaged weights and docs/MODEL_CARD.md under this folder instead of the repository."""
    root = tmp_path / "repo"
    (root / "weights").mkdir(parents=True)
    monkeypatch.setattr(export, "PACKAGED_DIR", root / "weights")
    monkeypatch.setattr(export, "CARD_MD", root / "docs" / "MODEL_CARD.md")
    return root


def _main(monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, "argv", ["export_weights.py", *map(str, args)])
    export.main()


def test_export_writes_weights_card_and_model_card(checkpoint, tiny_data, tree, monkeypatch, capsys):
    _main(monkeypatch, checkpoint, "--data", tiny_data, "--thresholds", "0.05,0.2", "--max-pairs", "1")
    out = capsys.readouterr().out
    for t in ("0.05", "0.2"):  # the real tuning's report, one line per threshold
        assert f"threshold {t}: whole-image validation score " in out
    assert "success@3 by modality: opt-sar " in out and "wrote " in out

    weights, card_path = tree / "weights" / "regnetmamba2.pt", tree / "weights" / "regnetmamba2.json"
    card = json.loads(card_path.read_text())
    assert card["sha256"] == W.sha256_of(weights)
    assert card["steps"] == 7 and card["training_legs"][0]["host"] == "test" and card["exported"]
    assert card["threshold_tuning"]["chosen"] in (0.05, 0.2) and set(card["threshold_tuning"]["scores"]) == {"0.05", "0.2"}
    assert card["validation"]["all/n"] == 2 and {"vis-ir/success@3", "opt-sar/success@5"} <= card["validation"].keys()
    assert "warp seeds 0" in card["validation_protocol"]
    state = torch.load(weights, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())

    # What ships loads the way users load it: checksum, config from the card, strict.
    monkeypatch.setattr(W, "PACKAGED_WEIGHTS", weights)
    monkeypatch.setattr(W, "PACKAGED_CARD", card_path)
    model = W.load_packaged()
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    assert model.cfg.coarse.threshold == card["threshold_tuning"]["chosen"]

    md = (tree / "docs" / "MODEL_CARD.md").read_text()
    assert f"sha256 `{card['sha256'][:16]}" in md and f"{card['parameters'] / 1e6:.2f} M parameters" in md
    assert "| opt-sar | 1 |" in md and "| vis-ir | 1 |" in md and "7 steps on cpu (1 CPU thread(s), host test)" in md


def test_score_only_prints_the_scores_and_writes_nothing(checkpoint, tiny_data, tree, monkeypatch, capsys):
    _main(monkeypatch, checkpoint, "--data", tiny_data, "--thresholds", "0.05", "--score-only", "--warp-seeds", "0,1")
    out = capsys.readouterr().out
    assert "threshold 0.05: whole-image validation score " in out and "(4 instances;" in out  # 2 pairs x 2 seeds
    assert not any(tree.rglob("*.*"))


def test_score_only_needs_data(checkpoint, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["export_weights.py", str(checkpoint), "--score-only"])
    with pytest.raises(SystemExit) as exc:
        export.main()
    assert exc.value.code == 2


@pytest.fixture()
def packaged(tmp_path):
    """Weights as they ship: a bare state_dict with its card (config) beside it."""
    model = RegNetMamba2()
    path = tmp_path / "regnetmamba2.pt"
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"config": model.cfg.to_dict()}))
    return path


def test_packaged_weights_can_be_scored_but_not_exported(packaged, tiny_data, tree, monkeypatch, capsys):
    _main(monkeypatch, packaged, "--data", tiny_data, "--thresholds", "0.05", "--score-only", "--max-pairs", "1")
    assert "threshold 0.05: whole-image validation score " in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        _main(monkeypatch, packaged, "--data", tiny_data, "--thresholds", "0.05")
    assert exc.value.code == 2 and "training checkpoint" in capsys.readouterr().err
    assert not any(tree.rglob("*.*"))


def test_guide_threshold_reaches_the_validation_matcher(checkpoint, tiny_data, tree, monkeypatch):
    """--guide-threshold changes the matcher the real validation builds (seen by wrapping, not replacing, its run)."""
    from geomreg.train.whole_validation import WholeImageValidation

    seen = []
    run = WholeImageValidation.run

    def spy(self, model, device):
        seen.append(self.matcher_config)
        return run(self, model, device)

    monkeypatch.setattr(WholeImageValidation, "run", spy)
    argv = [checkpoint, "--data", tiny_data, "--thresholds", "0.05", "--score-only", "--max-pairs", "1"]
    _main(monkeypatch, *argv)
    _main(monkeypatch, *argv, "--guide-threshold", "5")
    assert seen[0] is None  # the Matcher's own defaults
    assert seen[1].guide.threshold_px == 5.0 and seen[1].max_side == 1024


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
